"""HTTP speed of POST /predict on the quick-start server (daphne, SQLite, no Redis).

    python bench/predict_http.py [--clients 1 8 32] [--duration 10] [--runs 3]

Starts the server the way ``scripts/quickstart`` does, on a temporary SQLite database with a
user and an API token, then drives it with ``wrk`` (Debian package ``wrk``) sending the seed's
request (500 floats, token authentication). Prints requests/s and p50/p99 latency, medians over
``--runs`` runs per client count, and writes JSON. Load goes to 127.0.0.1 only.
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_database(env: dict) -> str:
    """Migrate a fresh SQLite database and return an API token for a bench user."""
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    code = (
        "from django.contrib.auth.models import User; "
        "from monitoring.models import ApiToken; "
        "user = User.objects.create_user('bench'); "
        "print(ApiToken.issue(user)[1])"
    )
    result = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip().splitlines()[-1]


def wait_for_health(base: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the server did not answer /health")


def to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url: str, script: Path, clients: int, duration_s: int) -> dict:
    threads = min(clients, 2)
    output = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{clients}", f"-d{duration_s}s", "--latency", "-s", script, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": to_ms(re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE).group(1)),
        "p99_ms": to_ms(re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE).group(1)),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default="bench/results/predict_http.json")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")

    workdir = Path(tempfile.mkdtemp(prefix="cardiospike-bench-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        SQLITE_PATH=str(workdir / "db.sqlite3"),
        DJANGO_SETTINGS_MODULE="cardiospike.settings",
        DEBUG="true",  # as scripts/quickstart runs it (the settings default to off)
    )
    token = prepare_database(env)
    body = json.dumps(
        {"ecg": [round(0.5 * ((i % 200) == 0) + 0.01 * (i % 7), 3) for i in range(500)]}
    )
    script = workdir / "predict.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Token {token}"\n'
    )
    port = free_port()
    server = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "cardiospike.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    results = {}
    try:
        wait_for_health(base)
        run_wrk(base + "/predict", script, 1, 2)  # warm up: model load, first requests
        for clients in args.clients:
            runs = [
                run_wrk(base + "/predict", script, clients, args.duration) for _ in range(args.runs)
            ]
            results[clients] = {
                "runs": runs,
                "median": {
                    key: statistics.median(run[key] for run in runs)
                    for key in ("requests_per_s", "p50_ms", "p99_ms")
                },
            }
            failures = sum(run["non_2xx"] for run in runs)
            if failures:
                print(f"warning: {failures} non-2xx answers at {clients} clients")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()  # daphne can linger on SIGTERM with idle keep-alive connections
            server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"POST /predict, 500 floats, token auth, daphne on SQLite; median of {args.runs} runs "
        f"of {args.duration} s"
    )
    print("| clients | requests/s | p50 latency | p99 latency |")
    print("| ---: | ---: | ---: | ---: |")
    for clients, result in results.items():
        median = result["median"]
        print(
            f"| {clients} | {median['requests_per_s']:.0f} | {median['p50_ms']:.1f} ms | "
            f"{median['p99_ms']:.1f} ms |"
        )
    output = Path(args.json)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"benchmark": "predict_http", "results": results}, indent=2))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
