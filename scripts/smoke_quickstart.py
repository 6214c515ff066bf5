"""Smoke test of the quick start on embedded defaults, as a new user runs it.

Runs ``scripts/quickstart`` with no DATABASE_URL or REDIS_URL (on a temporary SQLite file),
waits for the printed address, then checks ``/health``, the login page, a login with the
printed demo credentials and the dashboard behind it, and that the simulated demo devices'
chunks arrive (each demo device has a live recording with samples in the database within
a minute). After it stops the quick start (as Ctrl-C does), their recordings are closed by
the devices: the simulator was stopped before the server. Exits non-zero on any failure.

    python scripts/smoke_quickstart.py
"""

import http.cookiejar
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 900  # the first run installs the requirements
STREAM_TIMEOUT_S = 60  # for the simulated devices' first samples to be stored
DEMO_DEVICES = ("ESP32-DEMO-01", "ESP32-DEMO-02")  # the quick start streams both


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="cardiospike-smoke-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    database = workdir / "db.sqlite3"
    env.update(PORT=str(port), SQLITE_PATH=str(database), DEBUG="true")
    env.pop("SIMULATED_DEVICES", None)
    started = time.monotonic()
    process = subprocess.Popen(
        ["scripts/quickstart"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    try:
        health = wait_for_health(base, process, output)
        print(f"smoke: /health 200 after {time.monotonic() - started:.1f} s: {json.dumps(health)}")
        text = "".join(output)
        assert f"http://127.0.0.1:{port}/" in text, "the quick start did not print its address"
        match = re.search(r"user demo password (\S+)", text)
        assert match, f"no demo login printed:\n{text}"
        check_login(base, "demo", match.group(1))
        check_devices_stream(database, process, output)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    check_recordings_closed(database, "".join(output))
    print("smoke: quick start on embedded defaults OK")
    return 0


def wait_for_health(base: str, process: subprocess.Popen, output: list[str]) -> dict:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("smoke: the quick start exited:\n" + "".join(output))
        try:
            with urllib.request.urlopen(base + "/health", timeout=5) as response:  # noqa: S310
                body = json.load(response)
            assert body["checks"]["database"]["vendor"] == "sqlite", body
            assert body["checks"]["broker"]["mode"] == "eager", body
            assert body["checks"]["channel_layer"]["backend"] == "InMemoryChannelLayer", body
            return body
        except OSError:
            time.sleep(1)
    raise SystemExit("smoke: /health never answered:\n" + "".join(output))


def check_login(base: str, username: str, password: str) -> None:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(base + "/login/", timeout=10) as response:
        page = response.read().decode()
    assert response.status == 200 and "Research software, not a medical device" in page
    csrf = next(cookie.value for cookie in jar if cookie.name == "csrftoken")
    form = urllib.parse.urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": csrf}
    ).encode()
    request = urllib.request.Request(base + "/login/", data=form, headers={"Referer": base})
    with opener.open(request, timeout=10) as response:
        dashboard = response.read().decode()
        final_url = response.geturl()
    assert final_url == base + "/", f"login did not reach the dashboard: {final_url}"
    assert "DEMO-0001" in dashboard and "DEMO-0004" not in dashboard, dashboard[:2000]
    print(f"smoke: logged in as {username}; the dashboard lists the assigned demo patients")


def device_recordings(database: Path) -> dict[str, tuple[str, str, int]]:
    """Serial -> (status, closed_by, samples stored) of each device's newest recording."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as db:
        rows = db.execute(
            "SELECT d.serial, r.status, r.closed_by, COALESCE(SUM(c.n_samples), 0)"
            " FROM monitoring_recording r JOIN monitoring_device d ON d.id = r.device_id"
            " LEFT JOIN monitoring_samplechunk c ON c.recording_id = r.id"
            " GROUP BY r.id ORDER BY r.id"
        ).fetchall()
    return {serial: (status, closed_by, samples) for serial, status, closed_by, samples in rows}


def check_devices_stream(database: Path, process: subprocess.Popen, output: list[str]) -> None:
    deadline = time.monotonic() + STREAM_TIMEOUT_S
    recordings: dict = {}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("smoke: the quick start exited:\n" + "".join(output))
        try:
            recordings = device_recordings(database)
        except sqlite3.OperationalError:
            recordings = {}  # the tables are there; a write in progress can hold the lock
        # a second of signal at 250 Hz: the devices' chunks are stored, not just opened
        if all(recordings.get(serial, ("", "", 0))[2] >= 250 for serial in DEMO_DEVICES):
            print(f"smoke: the simulated devices stream: {recordings}")
            return
        time.sleep(1)
    raise SystemExit(
        f"smoke: no samples from the simulated devices within {STREAM_TIMEOUT_S} s: "
        f"{recordings}\n" + "".join(output)
    )


def check_recordings_closed(database: Path, output: str) -> None:
    recordings = device_recordings(database)
    for serial in DEMO_DEVICES:
        status, closed_by, _ = recordings[serial]
        assert (status, closed_by) == ("closed", "device"), f"{serial}: {recordings}\n{output}"
    print("smoke: stopping the quick start closed the simulated devices' recordings")


if __name__ == "__main__":
    sys.exit(main())
