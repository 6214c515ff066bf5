import json
import time
from dataclasses import replace

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from monitoring.simulator import (
    DEFAULT_FS_HZ,
    DEFAULT_GAIN_ADC_PER_MV,
    FORMATS,
    DeviceConfig,
    Faults,
    SimulationConfig,
    format_report,
    prepare_devices,
    prepare_signals,
    run_simulation,
    source_names,
)

DEFAULT_SOURCES = ["normal", "pvc", "af", "vt-run"]


class Command(BaseCommand):
    help = (
        "Run virtual ECG devices that stream to a CardioSpike server over HTTP (device protocol "
        "v1), replaying MIT-BIH records or synthetic rhythms, with optional fault injection. "
        "See docs/simulator.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server")
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument(
            "--token", action="append", default=[], help="a device token (repeat for more)"
        )
        who.add_argument(
            "--demo",
            action="store_true",
            help="issue fresh tokens for the demo devices of seed_demo (replacing theirs) and "
            "create simulated patients and devices SIM-### beyond them (DEBUG only)",
        )
        parser.add_argument(
            "--count", type=int, help="devices (default: 2 with --demo, or one per --token)"
        )
        parser.add_argument(
            "--source",
            action="append",
            default=[],
            help=f"what a device replays, one of {', '.join(source_names())}; repeat to give "
            f"devices different sources (they take them in turn; default "
            f"{' '.join(DEFAULT_SOURCES)})",
        )
        parser.add_argument(
            "--data",
            default=None,
            help="folder holding mitdb/ (default $CARDIOSPIKE_DATA_DIR or ../shared/data)",
        )
        parser.add_argument("--speed", type=float, default=1.0, help="x real time (default 1)")
        parser.add_argument("--chunk-s", type=float, default=1.0, help="seconds per chunk")
        parser.add_argument("--format", choices=FORMATS, default="json", help="body format")
        parser.add_argument(
            "--duration", type=float, help="seconds of signal per device (default: until Ctrl-C)"
        )
        parser.add_argument("--fs", type=float, default=DEFAULT_FS_HZ, help="Hz, with --token")
        parser.add_argument(
            "--gain", type=float, default=DEFAULT_GAIN_ADC_PER_MV, help="ADC/mV, with --token"
        )
        parser.add_argument("--baseline", type=int, default=0, help="ADC value of 0 mV")
        parser.add_argument("--drop", type=float, default=0.0, help="P(a post fails; resent)")
        parser.add_argument("--duplicate", type=float, default=0.0, help="P(a chunk posted twice)")
        parser.add_argument("--reorder", type=float, default=0.0, help="P(a chunk held back)")
        parser.add_argument("--lose", type=float, default=0.0, help="P(a chunk lost for good)")
        parser.add_argument(
            "--disconnect", metavar="EVERY_S:FOR_S", help="link down FOR_S s every EVERY_S s"
        )
        parser.add_argument("--retry-s", type=float, default=1.0, help="wait before a resend")
        parser.add_argument(
            "--no-close", action="store_true", help="leave the recordings open at the end"
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--json", help="also write the per-device report to this file")

    def handle(self, *args, **options):
        try:
            faults = Faults(
                drop=options["drop"],
                duplicate=options["duplicate"],
                reorder=options["reorder"],
                lose=options["lose"],
                **_disconnect(options["disconnect"]),
            )
            simulation = SimulationConfig(
                base_url=options["url"].rstrip("/"),
                chunk_s=options["chunk_s"],
                speed=options["speed"],
                duration_s=options["duration"],
                body_format=options["format"],
                faults=faults,
                retry_s=options["retry_s"],
                close=not options["no_close"],
                seed=options["seed"],
            )
            devices = self.devices(options)
            sources = options["source"] or DEFAULT_SOURCES
            signals = prepare_signals(
                devices, sources, options["duration"], options["data"], options["seed"]
            )
        except (ValueError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from None
        names = ", ".join(
            f"{device.name} ({sources[i % len(sources)]})" for i, device in enumerate(devices)
        )
        self.stdout.write(
            f"Simulating {len(devices)} device(s) -> {simulation.base_url} at {simulation.speed:g}x"
            f" real time, {simulation.chunk_s:g}-s {simulation.body_format} chunks: {names}"
        )
        self.stdout.flush()
        started = time.monotonic()
        reports = run_simulation(devices, signals, simulation)
        self.stdout.write(format_report(reports, time.monotonic() - started))
        if options["json"]:
            with open(options["json"], "w") as handle:
                json.dump([report.as_dict() for report in reports], handle, indent=1)
        if any(report.stopped for report in reports):
            raise CommandError("some devices were refused (see the errors above)")
        refused = sum(report.chunks_refused for report in reports)
        ahead = sum(report.chunks_ahead for report in reports)
        if ahead:
            # the usual cause at --speed above 1: device time outruns the server's clock by
            # (speed - 1) s every wall second
            reach = ""
            if simulation.duration_s is not None and simulation.speed > 1:
                ahead_s = simulation.duration_s * (1 - 1 / simulation.speed)
                reach = (
                    f": at --speed {simulation.speed:g} a {simulation.duration_s:g}-s run ends "
                    f"{ahead_s:.0f} s ahead of the wall clock"
                )
            raise CommandError(
                f"{refused} chunk(s) refused for good and dropped, {ahead} of them ahead of "
                f"the server's time{reach}; raise the server's DEVICE_MAX_AHEAD_S above that "
                "(default 600 s), or run slower or shorter (docs/simulator.md)"
            )
        if refused:
            raise CommandError(
                f"{refused} chunk(s) refused for good by the server and dropped "
                "(see the warnings above)"
            )

    def devices(self, options) -> list[DeviceConfig]:
        count = options["count"]
        if count is not None and count < 1:
            raise ValueError(f"--count must be at least 1, got {count}")
        if options["demo"]:
            if not settings.DEBUG:
                raise CommandError(
                    "--demo replaces the demo devices' tokens and creates simulated patients; "
                    "it runs only with DEBUG on. Give --token instead."
                )
            devices = prepare_devices(count or 2)
            return [replace(device, baseline_adc=options["baseline"]) for device in devices]
        tokens = options["token"]
        count = count or len(tokens)
        if count > len(tokens):
            # two devices with one token would close each other's recordings
            raise ValueError(f"--count {count} needs {count} tokens; got {len(tokens)}")
        return [
            DeviceConfig(
                name=f"device-{index + 1}",
                token=token,
                fs_hz=options["fs"],
                gain_adc_per_mv=options["gain"],
                baseline_adc=options["baseline"],
            )
            for index, token in enumerate(tokens[:count])
        ]


def _disconnect(text: str | None) -> dict:
    if not text:
        return {}
    every_s, for_s = Faults.parse_disconnect(text)
    return {"disconnect_every_s": every_s, "disconnect_for_s": for_s}
