"""Websocket fan-out: M browser clients watching N live simulated patients.

    python bench/ws_fanout.py [--clients 50] [--patients 50] [--duration 30] [--view station]
                              [--daphne 1] [--workers 2]

Starts what ``bench/device_ingest.py`` starts (a fresh PostgreSQL database, an empty Redis
database, daphne and Celery workers; its helpers are imported), creates N simulated patients
with devices and M staff users with logged-in sessions, connects M websocket clients (the
``websockets`` library, the session cookie as a browser sends it) and then streams the N
devices in real time for ``--duration`` seconds. ``--view station``: each client opens the
central station (``/ws/station/``, one socket, every patient's decimated "wave");
``--view patient``: each client opens one ``/ws/patients/<id>/?since_s=0`` per patient.

Measured, per run:

- messages per second delivered to all clients together (every type);
- ingest-to-browser latency p50/p99: a samples (or wave) message's arrival at a client minus
  the moment the device got the acknowledgment of the chunk it carries, matched by recording
  and first sample (a wave's first sample is the chunk's on the decimated grid). The live
  message is published after the chunk's commit, before the HTTP response leaves, so a small
  negative latency is possible and is kept as measured; "send" latencies count from when
  the device sent the chunk instead (acknowledgment time minus the HTTP round trip), so they
  include the ingest itself; "pub" latencies count from the ``sent_at`` the server stamps on
  the samples message when it publishes it (after the commit): the fan-out alone, on one
  clock (everything runs on this machine);
- chunks whose samples never reached some client (lost) and the clients' connection errors.

Prints a table and writes JSON under ``bench/results/``. Target (issue 6): 50 x 50, p99 < 1 s.
"""

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from device_ingest import (  # noqa: E402, I001 (after the path is set)
    Services,
    create_devices,
    free_port,
    manage,
    server_env,
    start_servers,
    stop,
    wait_for_health,
)
from monitoring.simulator import (  # noqa: E402
    DeviceConfig,
    SimulationConfig,
    prepare_signals,
    simulate,
)

P99_TARGET_S = 1.0
STATION_WAVE_HZ = 50.0  # monitoring.consumers.STATION_WAVE_HZ


def create_viewers(env: dict, count: int) -> tuple[str, list[str]]:
    """M staff users with a logged-in session each: (cookie name, session keys)."""
    code = (
        "import json\n"
        "from importlib import import_module\n"
        "from django.conf import settings\n"
        "from django.contrib.auth import get_user_model, SESSION_KEY, BACKEND_SESSION_KEY, "
        "HASH_SESSION_KEY\n"
        "keys = []\n"
        f"for i in range({count}):\n"
        "    user = get_user_model().objects.create_user(f'viewer{i}', is_staff=True)\n"
        "    store = import_module(settings.SESSION_ENGINE).SessionStore()\n"
        "    store[SESSION_KEY] = str(user.pk)\n"
        "    store[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend'\n"
        "    store[HASH_SESSION_KEY] = user.get_session_auth_hash()\n"
        "    store.create()\n"
        "    keys.append(store.session_key)\n"
        "print(json.dumps([settings.SESSION_COOKIE_NAME, keys]))\n"
    )
    name, keys = json.loads(manage(env, "shell", "-c", code).strip().splitlines()[-1])
    return name, keys


def patient_ids(env: dict) -> list[int]:
    code = (
        "import json; from monitoring.models import Patient; "
        "print(json.dumps(list(Patient.objects.order_by('pk').values_list('pk', flat=True))))"
    )
    return json.loads(manage(env, "shell", "-c", code).strip().splitlines()[-1])


class Client:
    """One browser: its sockets, and when each samples/wave message arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[tuple[int, int], float] = {}  # (recording, first_sample) -> time
        self.sent_at: dict[tuple[int, int], float] = {}  # the same -> the server's "sent_at"
        self.messages = 0
        self.errors: list[str] = []
        self.patients: set[int] = set()  # those it watches (--view patient)

    async def watch(
        self, url: str, headers: list, stop: asyncio.Event, ready, handshakes: asyncio.Semaphore
    ) -> None:
        announced = False
        try:
            await handshakes.acquire()
            async with websockets.connect(
                url, additional_headers=headers, max_size=None, open_timeout=30
            ) as socket:
                handshakes.release()
                ready()
                announced = True
                while not stop.is_set():
                    try:
                        raw = await asyncio.wait_for(socket.recv(), timeout=0.5)
                    except TimeoutError:
                        continue
                    now = time.time()
                    message = json.loads(raw)
                    self.messages += 1
                    if message["type"] in ("samples", "wave"):
                        key = (message["recording"], message["first_sample"])
                        self.arrivals.setdefault(key, now)
                        if message.get("sent_at") is not None:
                            self.sent_at.setdefault(key, message["sent_at"])
        except Exception as exc:  # a refused or dropped socket is a result, not a crash
            self.errors.append(f"{type(exc).__name__}: {exc}")
            if not announced:  # a socket that never opened: stop waiting for it
                handshakes.release()
                ready()


def decimated_first(first_sample: int, fs_hz: float) -> int:
    """The chunk's first sample on the station's decimated grid (consumers.decimate)."""
    factor = max(1, round(fs_hz / STATION_WAVE_HZ))
    return math.ceil(first_sample / factor)


def run(args: argparse.Namespace, workdir: Path) -> dict:
    tag = f"ws{args.clients}x{args.patients}_{int(time.time())}"
    queue = f"bench-{tag}"
    with Services(args.postgres, args.redis, args.redis_db, tag) as services:
        env = server_env(services, queue)
        manage(env, "migrate", "--noinput", "-v0")
        devices = create_devices(env, args.patients)
        cookie_name, keys = create_viewers(env, args.clients)
        patients = patient_ids(env)
        ports = [free_port() for _ in range(args.daphne)]
        processes = {}
        try:
            start_servers(processes, env, ports, args.workers, queue, tag, workdir)
            bases = [f"http://127.0.0.1:{port}" for port in ports]
            for base in bases:
                wait_for_health(base)
            configs = [
                DeviceConfig(**{**device, "base_url": bases[index % len(bases)]})
                for index, device in enumerate(devices)
            ]
            signals = prepare_signals(configs, args.source, args.duration, seed=args.seed)
            simulation = SimulationConfig(
                base_url=bases[0],
                chunk_s=args.chunk_s,
                speed=1.0,
                duration_s=args.duration,
                close=False,
                keep_acks=True,
                seed=args.seed,
            )
            result = asyncio.run(fan_out(args, bases, cookie_name, keys, patients, configs,
                                         signals, simulation,
                                         lambda: recording_patients(env)))  # fmt: skip
            result["dead_processes"] = [n for n, p in processes.items() if p.poll() is not None]
        finally:
            for process in processes.values():
                stop(process)
    return result


def recording_patients(env: dict) -> dict[int, int]:
    code = (
        "import json; from monitoring.models import Recording; "
        "print(json.dumps(list(Recording.objects.values_list('pk', 'patient_id'))))"
    )
    rows = json.loads(manage(env, "shell", "-c", code).strip().splitlines()[-1])
    return {recording: patient for recording, patient in rows}


async def fan_out(
    args, bases, cookie_name, keys, patients, configs, signals, simulation, recording_patients
) -> dict:
    stop_event = asyncio.Event()
    clients = [Client() for _ in keys]
    tasks = []
    per_client = min(args.per_client or len(patients), len(patients))
    n_sockets = len(keys) * (per_client if args.view == "patient" else 1)
    opened = 0
    # browsers do not all open their sockets in the same instant: thousands of handshakes at
    # once overflow daphne's listen backlog and are reset
    handshakes = asyncio.Semaphore(args.handshakes)

    def ready():
        nonlocal opened
        opened += 1

    for index, (client, key) in enumerate(zip(clients, keys, strict=True)):
        base = bases[index % len(bases)]
        ws_base = base.replace("http://", "ws://")
        headers = [("Cookie", f"{cookie_name}={key}"), ("Origin", base)]
        # client i watches patients i, i+1, ... (per_client of them, wrapping around)
        watched = [patients[(index + k) % len(patients)] for k in range(per_client)]
        client.patients = set(watched)
        paths = (
            [f"/ws/patients/{pk}/?since_s=0" for pk in watched]
            if args.view == "patient"
            else ["/ws/station/?since_s=0"]
        )
        for path in paths:
            tasks.append(asyncio.create_task(client.watch(ws_base + path, headers, stop_event,
                                                          ready, handshakes)))  # fmt: skip
    deadline = time.monotonic() + 60 + 0.05 * n_sockets  # 20 handshakes per s at least
    while opened < n_sockets and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    counts_before = sum(client.messages for client in clients)
    started = time.monotonic()
    reports = await simulate(configs, signals, simulation)
    await asyncio.sleep(args.settle)  # the last chunks' messages are on their way
    wall_s = time.monotonic() - started
    stop_event.set()
    await asyncio.gather(*tasks)
    delivered = sum(client.messages for client in clients) - counts_before

    latencies, from_send, from_publish, missing, expected = [], [], [], 0, 0
    patient_of = recording_patients()
    for report in reports:
        fs_hz = next(c.fs_hz for c in configs if c.name == report.name)
        for ack in report.acks:
            first = (
                ack.first_sample
                if args.view == "patient"
                else decimated_first(ack.first_sample, fs_hz)
            )
            for client in clients:
                if args.view == "patient" and patient_of[report.recording] not in client.patients:
                    continue  # a patient this client does not watch
                expected += 1
                arrived = client.arrivals.get((report.recording, first))
                if arrived is None:
                    missing += 1
                else:
                    latencies.append(arrived - ack.acked_at)
                    from_send.append(arrived - (ack.acked_at - ack.latency_s))
                    sent_at = client.sent_at.get((report.recording, first))
                    if sent_at is not None:
                        from_publish.append(arrived - sent_at)
    errors = [error for client in clients for error in client.errors]
    p50, p99 = p50_p99(latencies)
    send_p50, send_p99 = p50_p99(from_send)
    publish_p50, publish_p99 = p50_p99(from_publish)
    return {
        "clients": len(keys),
        "patients": len(patients),
        "view": args.view,
        "sockets": n_sockets,
        "duration_s": args.duration,
        "wall_s": round(wall_s, 2),
        "chunks_acked": sum(report.chunks_acked for report in reports),
        "messages_delivered": delivered,
        "messages_per_s": round(delivered / wall_s, 1),
        "deliveries_expected": expected,
        "deliveries_missing": missing,
        "latency_p50_s": p50,
        "latency_p99_s": p99,
        "latency_max_s": round(float(max(latencies)), 4) if latencies else None,
        "from_send_p50_s": send_p50,
        "from_send_p99_s": send_p99,
        "from_publish_p50_s": publish_p50,
        "from_publish_p99_s": publish_p99,
        "client_errors": errors[:10],
        "n_client_errors": len(errors),
    }


def p50_p99(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    p50, p99 = np.percentile(values, [50, 99])
    return round(float(p50), 4), round(float(p99), 4)


def print_table(result: dict) -> None:
    def fmt(value, digits=3):
        return "n/a" if value is None else f"{value:.{digits}f}"

    print(
        f"{'clients':>7} {'patients':>8} {'view':>8} {'msg/s':>9} {'p50 s':>7} {'p99 s':>7} "
        f"{'max s':>7} {'send p50':>8} {'send p99':>8} {'pub p50':>8} {'pub p99':>8} "
        f"{'missing':>11} {'errors':>6}"
    )
    print(
        f"{result['clients']:>7} {result['patients']:>8} {result['view']:>8} "
        f"{result['messages_per_s']:>9.1f} {fmt(result['latency_p50_s']):>7} "
        f"{fmt(result['latency_p99_s']):>7} {fmt(result['latency_max_s']):>7} "
        f"{fmt(result['from_send_p50_s']):>8} {fmt(result['from_send_p99_s']):>8} "
        f"{fmt(result['from_publish_p50_s']):>8} {fmt(result['from_publish_p99_s']):>8} "
        f"{result['deliveries_missing']:>5}/{result['deliveries_expected']:<5} "
        f"{result['n_client_errors']:>6}"
    )
    ok = result["latency_p99_s"] is not None and result["latency_p99_s"] < P99_TARGET_S
    print(f"p99 < {P99_TARGET_S:.0f} s: {'yes' if ok else 'no'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--view", choices=("station", "patient"), default="station")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of streaming")
    parser.add_argument("--chunk-s", type=float, default=1.0)
    parser.add_argument("--daphne", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument(
        "--per-client",
        type=int,
        default=0,
        help="--view patient: live views each client opens (default: every patient)",
    )
    parser.add_argument(
        "--handshakes", type=int, default=50, help="websocket handshakes in flight at once"
    )
    parser.add_argument("--source", nargs="+", default=["normal"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--redis-db", type=int, default=13)
    parser.add_argument("--json", type=Path, default=None, help="default: bench/results/...")
    parser.add_argument("--logs", type=Path, help="keep the servers' logs in this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ws-fanout-") as folder:
        logs = args.logs or Path(folder)
        logs.mkdir(parents=True, exist_ok=True)
        result = run(args, logs)
    print_table(result)
    path = args.json or ROOT / "bench" / "results" / (
        f"ws-fanout-{args.clients}x{args.patients}-{args.view}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
