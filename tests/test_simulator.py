"""The device simulator: its signals and faults, and runs against the real ingest endpoint.

The runs go through pytest-django's live server (a real HTTP server in this process, on the
test database) with a few seconds of signal at high speed. Whatever faults the devices
suffer, the server must end with every sample stored exactly once.
"""

import asyncio
import re

import numpy as np
import pytest
from aiohttp import web
from django.core.management import CommandError, call_command

from monitoring.demo import seed_demo
from monitoring.models import Device, Patient, Recording, SampleChunk
from monitoring.protocol import Chunk, parse_chunk
from monitoring.recordings import summarize
from monitoring.samples import decode_int16
from monitoring.simulator import (
    CLOSE_PATH,
    DeviceConfig,
    DeviceReport,
    Faults,
    SimulationConfig,
    load_source,
    parse_retry_after,
    prepare_devices,
    prepare_signals,
    run_simulation,
    simulate,
    to_adc,
)
from tests.inference.conftest import physionet_folder

FS_HZ = 250.0
GAIN = 200.0


@pytest.fixture(autouse=True)
def no_streaming_analysis(monkeypatch):
    # These tests are about delivery and storage; the streaming analysis has its own tests,
    # and running it eagerly inside the live server's requests would only slow them down.
    monkeypatch.setattr("monitoring.ingest.schedule_analysis", lambda recording_id: None)


@pytest.fixture(autouse=True)
def sqlite_takes_the_write_lock_first(monkeypatch):
    # The live server answers devices on concurrent threads. SQLite's default (deferred)
    # transactions then deadlock when two of them read and both try to write: one fails at
    # once with "database is locked" (its busy timeout does not apply) and answers 500.
    # IMMEDIATE transactions wait for the lock instead. daphne serves one request at a time
    # per process, so the quick start does not meet this; PostgreSQL never does.
    from django.db import connection

    if connection.vendor == "sqlite":
        options = connection.settings_dict["OPTIONS"]
        monkeypatch.setitem(options, "transaction_mode", "IMMEDIATE")


@pytest.fixture(scope="module")
def mitdb():
    return physionet_folder("mitdb", "100")


@pytest.fixture
def fast_devices(settings):
    # At 40x real time a device posts 40 chunks a second: above the default per-device limit.
    settings.DEVICE_THROTTLE_RATE = "100000/min"


def stored_samples(recording: Recording) -> tuple[np.ndarray, np.ndarray]:
    """(sample indices, values) of every stored sample, in index order."""
    indices, values = [], []
    for chunk in recording.chunks.order_by("first_sample"):
        indices.append(np.arange(chunk.first_sample, chunk.first_sample + chunk.n_samples))
        values.append(decode_int16(chunk.data, recording.n_channels)[:, 0])
    return np.concatenate(indices), np.concatenate(values)


def make_devices(patients: int) -> list[DeviceConfig]:
    devices = []
    for number in range(patients):
        patient = Patient.objects.create(mrn=f"SIMTEST-{number}", name=f"Sim {number}")
        device = Device.objects.create(serial=f"SIMTEST-{number}", patient=patient)
        devices.append(DeviceConfig(device.serial, device.issue_token(), FS_HZ, GAIN))
    return devices


def simulation(live_server, **overrides) -> SimulationConfig:
    options = {
        "base_url": live_server.url,
        "speed": 40.0,
        "duration_s": 8.0,
        "chunk_s": 0.5,
        "retry_s": 1.0,
        "seed": 7,
        "drain_timeout_s": 60.0,
    }
    options.update(overrides)
    return SimulationConfig(**options)


def assert_stored_exactly_once(report, expected_adc: np.ndarray) -> Recording:
    recording = Recording.objects.get(pk=report.recording)
    indices, values = stored_samples(recording)
    assert np.array_equal(indices, np.arange(len(expected_adc))), "a sample missing or twice"
    assert np.array_equal(values, expected_adc)
    summary = summarize(recording)
    assert summary["missing_samples"] == 0
    assert summary["n_samples"] == len(expected_adc)
    assert report.samples_acked == len(expected_adc)
    assert report.chunks_unsent == 0 and report.chunks_refused == 0
    return recording


# --- Signals and faults -------------------------------------------------------------------


def test_it_turns_millivolts_into_clipped_int16_adc_units():
    adc = to_adc(np.array([0.0, 1.0, -0.5, 0.0024, 500.0, -500.0]), 200.0, baseline_adc=10)
    assert adc.dtype == np.int16
    assert adc.tolist() == [10, 210, -90, 10, 32767, -32768]


def test_it_generates_synthetic_sources_that_differ_by_seed_and_kind():
    normal = load_source("normal", FS_HZ, duration_s=20.0, seed=1)
    assert normal.shape == (5000,)
    assert np.array_equal(normal, load_source("normal", FS_HZ, duration_s=20.0, seed=1))
    assert not np.array_equal(normal, load_source("normal", FS_HZ, duration_s=20.0, seed=2))
    assert not np.array_equal(normal, load_source("af", FS_HZ, duration_s=20.0, seed=1))
    # the strip is generated up to ten minutes and replayed beyond
    assert len(load_source("pvc", 100.0, duration_s=3600.0)) == 600 * 100


@pytest.mark.parametrize(
    ("spec", "message"),
    [("sinus", "unknown source"), ("mitdb:", "mitdb:RECORD"), ("mitdb:100@x", "seconds")],
)
def test_it_refuses_an_unknown_source(spec, message):
    with pytest.raises(ValueError, match=message):
        load_source(spec, FS_HZ)


def test_it_replays_a_mitdb_excerpt_resampled_to_the_device_rate(mitdb):
    from inference.datasets.mitdb import load_record
    from inference.signal import resample

    whole = load_source("mitdb:100", FS_HZ, data=mitdb.parent)
    excerpt = load_source("mitdb:100@600", FS_HZ, data=mitdb.parent)
    record = load_record(mitdb, "100")
    assert len(whole) == round(len(record.signal_mv) * FS_HZ / record.fs)
    assert len(excerpt) == len(whole) - 600 * 250
    direct = resample(record.signal_mv[600 * 360 :], 360.0, FS_HZ)
    assert np.allclose(excerpt, direct)
    with pytest.raises(ValueError, match="leaves less than a second"):
        load_source("mitdb:100@5000", FS_HZ, data=mitdb.parent)


def test_it_keeps_the_link_down_on_schedule():
    faults = Faults(disconnect_every_s=10.0, disconnect_for_s=3.0)
    assert faults.link_down(5.0) == 0.0  # up during the first period
    assert faults.link_down(10.0) == pytest.approx(3.0)
    assert faults.link_down(12.5) == pytest.approx(0.5)
    assert faults.link_down(13.0) == 0.0
    assert faults.link_down(21.0) == pytest.approx(2.0)
    assert Faults.parse_disconnect("30:5") == (30.0, 5.0)
    for text in ("30", "a:b"):
        with pytest.raises(ValueError, match="EVERY_S:FOR_S"):
            Faults.parse_disconnect(text)
    with pytest.raises(ValueError, match="FOR_S < EVERY_S"):
        Faults(disconnect_every_s=5.0, disconnect_for_s=5.0)
    with pytest.raises(ValueError, match="probability"):
        Faults(drop=1.5)


# --- Against the real endpoint ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_it_delivers_every_sample_once_despite_drops_duplicates_and_reordering(
    live_server, fast_devices
):
    devices = make_devices(2)
    signals = prepare_signals(devices, ["pvc", "af"], duration_s=8.0, seed=3)
    faults = Faults(drop=0.3, duplicate=0.3, reorder=0.3)
    reports = run_simulation(devices, signals, simulation(live_server, faults=faults))

    for report, signal in zip(reports, signals, strict=True):
        assert report.chunks_made == 16 and report.chunks_acked == 16
        recording = assert_stored_exactly_once(report, signal[:2000])
        assert recording.session == report.session
        assert recording.status == Recording.Status.CLOSED and report.closed
        assert report.errors["dropped"] > 0 and report.retries >= report.errors["dropped"]
        assert report.duplicates_sent > 0 and report.reordered > 0
        # every answer was an acknowledgment (a duplicate's too): no server error
        assert set(report.errors) == {"dropped"}, report.errors
    # at 0.3 each, some chunks of 32 surely arrived out of order: the server's next_seq
    # handled it (a chunk it had not seen would be missing above)
    assert sum(report.reordered for report in reports) >= 3


@pytest.mark.django_db(transaction=True)
def test_a_second_run_of_the_same_devices_opens_new_recordings(live_server, fast_devices):
    """Each run is a new session (as a device's boot is): the first run closed its recordings,
    and a repeated session id would make every chunk of the second run answer 409."""
    devices = make_devices(1)
    signals = prepare_signals(devices, ["normal"], duration_s=4.0, seed=5)
    first = run_simulation(devices, signals, simulation(live_server))[0]
    second = run_simulation(devices, signals, simulation(live_server))[0]
    assert first.session != second.session
    assert second.chunks_acked == second.chunks_made > 0 and not second.errors
    assert Recording.objects.filter(session__in=[first.session, second.session]).count() == 2


@pytest.mark.django_db(transaction=True)
def test_it_delivers_binary_chunks_through_a_disconnect(live_server, fast_devices):
    devices = make_devices(1)
    signals = prepare_signals(devices, ["vt-run"], duration_s=8.0, seed=4)
    faults = Faults(drop=0.2, disconnect_every_s=3.0, disconnect_for_s=1.5)
    config = simulation(live_server, body_format="binary", faults=faults)
    [report] = run_simulation(devices, signals, config)

    assert report.chunks_acked == report.chunks_made == 16
    assert_stored_exactly_once(report, signals[0][:2000])
    assert report.last_ack["next_seq"] == 16 and report.last_ack["missing_samples"] == 0


@pytest.mark.django_db(transaction=True)
def test_it_leaves_a_gap_where_a_chunk_is_lost_for_good(live_server, fast_devices):
    devices = make_devices(1)
    signals = prepare_signals(devices, ["normal"], duration_s=8.0, seed=5)
    config = simulation(live_server, faults=Faults(lose=0.25), seed=11)
    [report] = run_simulation(devices, signals, config)

    assert 0 < report.chunks_lost < 16
    assert report.chunks_acked == 16 - report.chunks_lost
    recording = Recording.objects.get(pk=report.recording)
    indices, values = stored_samples(recording)
    assert len(indices) == report.samples_acked == 2000 - 125 * report.chunks_lost
    assert np.array_equal(values, signals[0][indices])  # nothing invented in the gaps
    # whole chunks are absent (gaps), never parts of one
    present = np.unique(indices // 125)
    assert len(present) == report.chunks_acked
    gap_samples = (present[-1] + 1) * 125 - len(indices)
    assert summarize(recording)["missing_samples"] == gap_samples
    assert report.last_ack["missing_samples"] == gap_samples


@pytest.mark.django_db(transaction=True)
def test_it_obeys_the_throttle_and_still_delivers_everything(live_server, settings):
    settings.DEVICE_THROTTLE_RATE = "3/sec"
    devices = make_devices(1)
    signals = prepare_signals(devices, ["normal"], duration_s=2.0, seed=6)
    config = simulation(live_server, duration_s=2.0, chunk_s=0.25, speed=40.0)
    [report] = run_simulation(devices, signals, config)

    # 8 chunks made within 0.05 s: the fourth post comes within a second of the first unless
    # each takes over 330 ms, and the server answers 429 with Retry-After
    assert report.errors["429"] > 0
    assert_stored_exactly_once(report, signals[0][:500])


@pytest.mark.django_db(transaction=True)
def test_it_stops_a_device_whose_token_is_refused(live_server):
    device = DeviceConfig("stranger", "csd_not-a-token", FS_HZ, GAIN)
    signals = prepare_signals([device], ["normal"], duration_s=2.0)
    [report] = run_simulation([device], signals, simulation(live_server, duration_s=2.0))
    assert report.stopped.startswith("401")
    assert report.chunks_acked == 0 and Recording.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_device_moved_mid_stream_goes_on_in_a_new_session_for_its_new_patient(
    live_server, fast_devices, monkeypatch, caplog
):
    """The server answers the first chunk after the move 409 "new_session" with "backlog":
    "drop"; the device starts a new session with the next chunk it samples and drops what it
    had queued, which was sampled on the first patient: the second patient's recording holds
    only samples taken after the device learned of the move. (It resent the queue there until
    2026-12-07: an exploratory test saw 26 s of one patient's ECG raise an alarm for the next.)
    Nothing is refused, and no sample is stored twice."""
    from monitoring import ingest

    devices = make_devices(2)  # the second device's patient is the one moved to
    first = Patient.objects.get(mrn="SIMTEST-0")
    second = Patient.objects.get(mrn="SIMTEST-1")
    Device.objects.filter(serial="SIMTEST-1").update(patient=None)  # one device per patient
    after_commit = ingest.after_commit

    def move_after_chunk_5(recording, chunk):
        after_commit(recording, chunk)
        if chunk.seq == 5 and recording.patient_id == first.pk:
            Device.objects.filter(serial="SIMTEST-0").update(patient=second)

    monkeypatch.setattr("monitoring.ingest.after_commit", move_after_chunk_5)
    signals = prepare_signals(devices[:1], ["normal"], duration_s=8.0, seed=8)
    caplog.set_level("WARNING", logger="monitoring.simulator")
    # real time: a chunk every 0.5 s, so that most chunks are made after the device learns of
    # the move (each post here runs its analysis eagerly: at 4x the whole signal was queued)
    [report] = run_simulation(devices[:1], signals, simulation(live_server, speed=1.0))

    assert report.new_sessions == 1 and report.errors == {"409": 1}
    assert report.chunks_refused == 0 and report.chunks_unsent == 0
    assert report.chunks_dropped >= 1  # chunk 6, and any queued behind it
    assert report.chunks_acked + report.chunks_dropped == report.chunks_made == 16
    before = Recording.objects.get(patient=first)
    after = Recording.objects.get(patient=second)
    assert after.session == report.session != before.session
    assert before.status == after.status == Recording.Status.CLOSED
    indices, values = stored_samples(before)
    assert np.array_equal(indices, np.arange(6 * 125))
    assert np.array_equal(values, signals[0][: 6 * 125])
    # the new session's sample 0 is the first sample made after the dropped chunks
    first_kept = (6 + report.chunks_dropped) * 125
    indices, values = stored_samples(after)
    assert np.array_equal(indices, np.arange(2000 - first_kept))
    assert np.array_equal(values, signals[0][first_kept:2000])
    [warning] = [r.message for r in caplog.records if "new session" in r.message]
    assert warning.startswith(
        f"SIMTEST-0: chunk 6 of session {before.session} refused (recording {before.pk} "
        "belongs to another patient than the device's current one; start a new session and "
        "drop the samples not yet acknowledged: they were taken before the device was moved, "
        f"for another stay than the device's current one); new session {report.session}, "
        f"{report.chunks_dropped} queued chunks ("
    )
    assert warning.endswith("dropped: sampled for another stay")


@pytest.mark.django_db(transaction=True)
def test_it_warns_of_refused_chunks_at_most_once_per_interval(live_server, fast_devices, caplog):
    # 50 Hz is below the rates the analysis accepts: the server refuses every chunk (400)
    [device] = make_devices(1)
    slow = DeviceConfig(device.name, device.token, 50.0, GAIN)
    signals = prepare_signals([slow], ["normal"], duration_s=4.0)
    caplog.set_level("WARNING", logger="monitoring.simulator")
    [report] = run_simulation([slow], signals, simulation(live_server, duration_s=4.0))

    assert report.chunks_refused == report.chunks_made == 8
    warnings = [r for r in caplog.records if r.name == "monitoring.simulator"]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
    assert "chunk 0 of session" in warnings[0].message
    assert "refused with HTTP 400, dropped (fs_hz 50 is outside" in warnings[0].message


# --- Devices from the database and the command -------------------------------------------


@pytest.mark.django_db
def test_it_takes_the_demo_devices_first_then_creates_simulated_ones():
    seed_demo()
    devices = prepare_devices(4)
    assert [device.name for device in devices] == [
        "ESP32-DEMO-01",
        "ESP32-DEMO-02",
        "SIM-001",
        "SIM-002",
    ]
    for config in devices:
        # the token issued is the device's current one
        assert Device.objects.get(serial=config.name).token_hash
        assert config.token.startswith("csd_")
    sim = Patient.objects.get(mrn="SIM-002")
    assert sim.devices.get().serial == "SIM-002"
    assert sim.clinicians.filter(username="demo").exists()
    # their alarms are emailed like the demo patients': the ward, escalating to the nurse
    assert sorted(sim.alarm_recipients.values_list("address", "escalation")) == [
        ("charge-nurse@demo.cardiospike.invalid", True),
        ("simulation@demo.cardiospike.invalid", False),
    ]
    # running again reuses them instead of creating more
    assert [device.name for device in prepare_devices(3)][-1] == "SIM-001"
    assert Patient.objects.filter(mrn__startswith="SIM-").count() == 2


@pytest.mark.django_db
def test_a_simulated_patient_given_another_device_keeps_it():
    assert [device.name for device in prepare_devices(1, use_demo=False)] == ["SIM-001"]
    Device.objects.filter(serial="SIM-001").delete()
    own = Device.objects.create(serial="WARD-9", patient=Patient.objects.get(mrn="SIM-001"))
    # one device per patient: SIM-001's device comes back unassigned, and SIM-002 streams
    assert [device.name for device in prepare_devices(1, use_demo=False)] == ["SIM-002"]
    own.refresh_from_db()
    assert own.patient.mrn == "SIM-001"
    assert Device.objects.get(serial="SIM-001").patient is None


@pytest.mark.django_db(transaction=True)
def test_the_command_streams_demo_devices_to_a_server(live_server, fast_devices, settings, capsys):
    settings.DEBUG = True
    seed_demo()
    call_command(
        "simulate_devices",
        "--demo",
        "--count=3",
        f"--url={live_server.url}",
        "--speed=40",
        "--duration=4",
        "--source=normal",
        "--source=pac",
    )
    output = capsys.readouterr().out
    assert "ESP32-DEMO-01 (normal)" in output and "SIM-001 (normal)" in output
    assert "12 acknowledged" in output and "3000 of 3000 samples acknowledged" in output
    assert "0 chunks refused for good, 0 dropped" in output
    for serial in ("ESP32-DEMO-01", "ESP32-DEMO-02", "SIM-001"):
        recording = Recording.objects.get(device__serial=serial)
        assert summarize(recording)["n_samples"] == 1000


@pytest.mark.django_db(transaction=True)
def test_the_command_fails_naming_the_limit_when_the_server_refuses_chunks_as_ahead_of_time(
    live_server, fast_devices, settings, capsys
):
    """At --speed above 1 device time outruns the server's clock; past DEVICE_MAX_AHEAD_S
    the server refuses the chunks (400) and the device drops them. Until 2026-12-08 the
    command said nothing of it and exited 0 (--speed 20 --duration 1800: 1,149 of 1,800
    chunks refused)."""
    settings.DEBUG = True
    settings.DEVICE_MAX_AHEAD_S = 1.0
    seed_demo()
    with pytest.raises(CommandError, match="DEVICE_MAX_AHEAD_S") as failed:
        call_command(
            "simulate_devices",
            "--demo",
            "--count=1",
            f"--url={live_server.url}",
            "--speed=40",
            "--duration=8",
            "--source=normal",
        )
    output = capsys.readouterr().out
    refused = int(re.search(r"(\d+) chunks refused for good \((\d+) ahead", output).group(1))
    assert refused > 0
    assert f"{refused} chunk(s) refused for good" in str(failed.value)
    assert "a 8-s run ends 8 s ahead of the wall clock" in str(failed.value)
    stored = SampleChunk.objects.filter(recording__device__serial="ESP32-DEMO-01").count()
    assert stored == 8 - refused


def test_the_command_refuses_demo_devices_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("simulate_devices", "--demo")


def test_the_command_refuses_a_retry_wait_that_would_resend_in_a_tight_loop():
    # a closed port and a short run: were the option taken, the test would end, not hang
    options = ["--token=csd_a", "--url=http://127.0.0.1:9", "--duration=0.5", "--retry-s=0"]
    with pytest.raises(CommandError, match="retry wait must be positive"):
        call_command("simulate_devices", *options)


def test_the_command_needs_a_token_per_device():
    with pytest.raises(CommandError, match="needs 2 tokens"):
        call_command("simulate_devices", "--token=csd_a", "--count=2")


# --- Against a scripted server: the answers a real server rarely gives ---------------------


class ScriptedServer:
    """An HTTP server on 127.0.0.1 whose answer to each chunk is ``answer(server, chunk)``
    (an aiohttp response); it keeps every chunk posted, in the order they came."""

    def __init__(self, answer):
        self.answer = answer
        self.posts: list[Chunk] = []
        self.stop = asyncio.Event()

    @staticmethod
    def ack(chunk: Chunk) -> web.Response:
        body = {
            "recording": 1,
            "seq": chunk.seq,
            "stored": True,
            "next_seq": chunk.seq + 1,
            "end_sample": chunk.end_sample,
            "missing_samples": 0,
        }
        return web.json_response(body, status=201)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.path == CLOSE_PATH:
            return web.json_response({"recording": 1, "status": "closed"})
        chunk = parse_chunk(body, request.headers["Content-Type"])
        self.posts.append(chunk)
        return await self.answer(self, chunk)

    def run(self, duration_s: float, **overrides) -> DeviceReport:
        """One 250 Hz device for ``duration_s`` s of signal (value == frame index)."""
        device = DeviceConfig("scripted", "csd_token", FS_HZ, GAIN)
        self.signal = np.arange(round(duration_s * FS_HZ), dtype=np.int16)
        options = {"speed": 10.0, "duration_s": duration_s, "chunk_s": 0.5, "retry_s": 1.0}
        options.update(overrides)

        async def main() -> DeviceReport:
            app = web.Application()
            app.router.add_post("/{path:.*}", self.handle)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            config = SimulationConfig(base_url=f"http://{host}:{port}", **options)
            try:
                [report] = await simulate([device], [self.signal], config, self.stop)
            finally:
                await runner.cleanup()
            return report

        return asyncio.run(main())


def test_a_throttled_device_posts_nothing_more_until_retry_after_has_passed():
    """A 429's Retry-After holds the device's link, not only the refused chunk: the chunks
    queued meanwhile wait too (the throttle counts the device's requests, not a chunk's)."""

    async def throttled(server, chunk):
        return web.json_response(
            {"detail": "slow down"}, status=429, headers={"Retry-After": "3600"}
        )

    server = ScriptedServer(throttled)
    report = server.run(duration_s=2.0, speed=20.0, drain_timeout_s=0.5)

    assert [chunk.seq for chunk in server.posts] == [0]
    assert report.errors == {"429": 1}
    assert report.chunks_made == report.chunks_unsent == 4


def test_after_a_server_error_the_link_backs_off_and_the_oldest_chunk_goes_first():
    """A 503 holds every post for the backoff (1 s of device time here); then the queue goes
    out oldest first, as the firmware's does, instead of newer chunks overtaking the failed one."""

    async def fails_once(server, chunk):
        if len(server.posts) == 1:
            return web.json_response({"detail": "restarting"}, status=503)
        return server.ack(chunk)

    server = ScriptedServer(fails_once)
    report = server.run(duration_s=2.0)

    # chunk 1 is sampled at 1.0 s, while chunk 0 (failed at 0.5 s) waits until 1.5 s
    assert [chunk.seq for chunk in server.posts] == [0, 0, 1, 2, 3]
    assert report.errors == {"503": 1} and report.retries == 1
    assert report.chunks_acked == report.chunks_made == 4
    assert report.samples_acked == len(server.signal)


def test_after_a_17_s_server_restart_the_link_is_back_within_the_backoff_cap():
    """The backoff is capped well under DEVICE_OFFLINE_S (30 s): an exploratory test's 17-s
    daphne restart, with the old 30-s cap (the firmware's was 60 s), kept a device away 34 s
    and raised "device offline" for it. With an 8-s cap the first post after the server is
    back comes at most 8 s later."""
    down_s, speed = 17.0, 20.0
    started: list[float] = []
    answered_at_s: list[float] = []  # device time of each post

    async def restarting(server, chunk):
        now = asyncio.get_running_loop().time()
        started[:] = started or [now]
        device_s = 0.5 + (now - started[0]) * speed  # the first post leaves at 0.5 s
        answered_at_s.append(device_s)
        if device_s < down_s:
            return web.json_response({"detail": "restarting"}, status=503)
        return server.ack(chunk)

    server = ScriptedServer(restarting)
    report = server.run(duration_s=30.0, speed=speed)

    first_after_s = min(t for t in answered_at_s if t >= down_s)
    assert first_after_s - down_s <= 8.0 + 0.5  # + a post's time at 20x
    assert report.chunks_acked == report.chunks_made


@pytest.mark.parametrize(
    "answer",
    [
        web.Response(text="<h1>Not Found</h1>", status=404, content_type="text/html"),
        web.json_response({"detail": "recording 7 does not exist"}, status=404),
        web.json_response({"detail": "gone"}, status=410),
    ],
    ids=["no endpoint at the server URL", "a deleted recording", "another 4xx"],
)
def test_a_404_drops_the_chunk_as_the_firmware_does_and_the_next_one_goes_on(answer):
    """The same address answers 404 every time (a server URL naming another server, a
    recording that was deleted): resending cannot help. The simulator used to back off and
    resend it for ever, holding every later chunk behind it; the firmware drops it."""

    async def refuses_chunk_0(server, chunk):
        return answer if chunk.seq == 0 else server.ack(chunk)

    server = ScriptedServer(refuses_chunk_0)
    report = server.run(duration_s=2.0)

    assert [chunk.seq for chunk in server.posts] == [0, 1, 2, 3]  # chunk 0 sent once
    assert report.errors == {str(answer.status): 1} and report.retries == 0
    assert report.chunks_refused == 1
    assert report.chunks_acked == 3 and report.chunks_unsent == 0


def test_an_error_page_that_is_not_utf8_is_retried_rather_than_crashing_the_run():
    async def garbled_once(server, chunk):
        if len(server.posts) == 1:
            return web.Response(
                body=b"\xff\xfe<h1>Bad gateway</h1>",
                status=502,
                content_type="text/html",
                charset="utf-8",
            )
        return server.ack(chunk)

    server = ScriptedServer(garbled_once)
    report = server.run(duration_s=1.0)

    assert report.errors == {"502": 1}
    assert report.chunks_acked == report.chunks_made == 2


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("2", 2.0),
        ("0.5", 0.5),
        ("-3", 0.0),
        ("99999999", 3600.0),
        ("inf", None),
        ("nan", None),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_bounded_seconds(header, seconds):
    assert parse_retry_after(header) == seconds


def test_a_stop_sends_the_frames_sampled_since_the_last_chunk():
    """Ctrl-C or SIGTERM between two chunks: the frames sampled since the last one go out as
    a last, shorter chunk, so the recording ends where the device stopped."""

    async def stop_during_chunk_2(server, chunk):
        if chunk.seq == 1:
            # 0.1 s of wall time at 2x real time: about 50 of chunk 2's 125 frames sampled
            await asyncio.sleep(0.1)
            server.stop.set()
        return server.ack(chunk)

    server = ScriptedServer(stop_during_chunk_2)
    report = server.run(duration_s=10.0, speed=2.0)

    *whole, last = server.posts
    assert [chunk.seq for chunk in whole] == [0, 1] and last.seq == 2
    assert last.first_sample == 250 and 0 < last.n_frames < 125
    assert np.array_equal(last.samples[:, 0], server.signal[250 : last.end_sample])
    assert report.samples_made == report.samples_acked == last.end_sample
    assert report.chunks_unsent == 0 and report.closed
