"""What one HTTP request costs the server before any analysis: the floor under device ingest.

    python bench/http_floor.py [--requests 2000] [--concurrency 16] [--runs 3]

Starts one daphne on a fresh PostgreSQL database (as ``bench/device_ingest.py`` does, with
Redis for the channel layer), then sends, for each kind of request below, ``--requests``
requests at ``--concurrency`` in flight, and measures the daphne process's CPU (utime + stime)
and PostgreSQL's and Redis's per request:

- ``refused chunk``: a chunk posted with an unknown device token of the right form (401): the
  whole middleware stack, DRF and one token lookup, nothing stored;
- ``stored chunk``: a valid 1-s, 250-Hz JSON chunk of one device (new seq each time), with the
  analysis queue left unconsumed (no worker: the claim is held, so one task is queued per
  recording), i.e. ingest alone.

The budget it is compared with: this machine's cores divided by the devices. Issue 5's target
of 200 devices posting one chunk a second on 2 cores leaves 10 ms of CPU per device-second for
everything (ingest, analysis, database, the simulated devices themselves). Prints a table
(medians over ``--runs``) and writes JSON.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.device_ingest import (  # noqa: E402, I001 (after the path is set)
    Services,
    cpu_seconds,
    create_devices,
    free_port,
    manage,
    server_env,
    service_cpu_seconds,
    start,
    stop,
    wait_for_health,
)
from monitoring.protocol import Chunk, encode_json_chunk  # noqa: E402
from monitoring.simulator import CHUNKS_PATH, JSON_CONTENT_TYPE  # noqa: E402

FS_HZ = 250
GAIN_ADC_PER_MV = 200.0
# the form of a device token (monitoring.models.TOKEN_PREFIX), so that the server looks it up
UNKNOWN_TOKEN = "csd_" + "0" * 43


def chunk_body(seq: int) -> bytes:
    samples = (np.sin(np.arange(FS_HZ) / 10.0) * 300).astype(np.int16).reshape(-1, 1)
    return encode_json_chunk(
        Chunk(
            seq=seq,
            first_sample=seq * FS_HZ,
            fs_hz=FS_HZ,
            gain_adc_per_mv=GAIN_ADC_PER_MV,
            n_channels=1,
            samples=samples,
        )
    )


async def fire(base: str, token: str, kind: str, first_seq: int, n: int, concurrency: int):
    """Send ``n`` requests of ``kind``; returns the statuses seen."""
    headers = {"Authorization": f"Device {token}", "Content-Type": JSON_CONTENT_TYPE}
    statuses: dict[int, int] = {}
    # a stored chunk's seq must follow the last: keep them in order, ``concurrency`` devices'
    # worth of in-flight requests is only for the refused kind
    in_flight = concurrency if kind == "refused chunk" else 1
    queue = list(range(first_seq, first_seq + n))
    async with aiohttp.ClientSession() as http:

        async def one_worker():
            while queue:
                seq = queue.pop(0)
                async with http.post(
                    base + CHUNKS_PATH, data=chunk_body(seq), headers=headers
                ) as r:
                    await r.read()
                    statuses[r.status] = statuses.get(r.status, 0) + 1

        await asyncio.gather(*(one_worker() for _ in range(in_flight)))
    return statuses


def measure(daphne_pid: int, base: str, token: str, kind: str, first_seq: int, args) -> dict:
    daphne_before, services_before = cpu_seconds(daphne_pid), service_cpu_seconds()
    started = time.monotonic()
    statuses = asyncio.run(fire(base, token, kind, first_seq, args.requests, args.concurrency))
    wall_s = time.monotonic() - started
    daphne_s = cpu_seconds(daphne_pid) - daphne_before
    services_after = service_cpu_seconds()
    services_s = sum(cpu - services_before.get(pid, 0.0) for pid, cpu in services_after.items())
    return {
        "kind": kind,
        "requests": args.requests,
        "statuses": statuses,
        "requests_per_s": args.requests / wall_s,
        "daphne_ms_per_request": 1000 * daphne_s / args.requests,
        "services_ms_per_request": 1000 * services_s / args.requests,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--redis-db", type=int, default=12)
    parser.add_argument("--json", default="bench/results/http_floor.json")
    args = parser.parse_args()

    runs: dict[str, list[dict]] = {"refused chunk": [], "stored chunk": []}
    tag = f"floor_{os.getpid()}"
    with (
        tempfile.TemporaryDirectory() as tmp,
        Services(args.postgres, args.redis, args.redis_db, tag) as services,
    ):
        env = server_env(services, f"bench-{tag}")
        manage(env, "migrate", "--noinput", "-v0")
        (device,) = create_devices(env, 1)
        port = free_port()
        daphne = start(
            ["daphne", "-b", "127.0.0.1", "-p", str(port), "cardiospike.asgi:application"],
            env,
            Path(tmp) / "daphne.log",
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for_health(base)
            asyncio.run(fire(base, UNKNOWN_TOKEN, "refused chunk", 0, 200, args.concurrency))
            seq = 0
            for run in range(args.runs):
                runs["refused chunk"].append(
                    measure(daphne.pid, base, UNKNOWN_TOKEN, "refused chunk", 0, args)
                )
                runs["stored chunk"].append(
                    measure(daphne.pid, base, device["token"], "stored chunk", seq, args)
                )
                seq += args.requests
                print(f"run {run + 1} of {args.runs} done", file=sys.stderr)
        finally:
            stop(daphne)

    print(f"\n{args.requests} requests per kind and run, median of {args.runs} runs, 1 daphne")
    print("| request | daphne CPU ms per request | PostgreSQL + Redis CPU ms | requests/s |")
    print("| --- | ---: | ---: | ---: |")
    summary = {}
    for kind, measured in runs.items():
        row = {
            key: statistics.median(m[key] for m in measured)
            for key in ("daphne_ms_per_request", "services_ms_per_request", "requests_per_s")
        }
        summary[kind] = {**row, "runs": measured}
        print(
            f"| {kind} | {row['daphne_ms_per_request']:.2f} | "
            f"{row['services_ms_per_request']:.2f} | {row['requests_per_s']:.0f} |"
        )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"args": vars(args), "results": summary}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
