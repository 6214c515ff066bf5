"""Shared fixtures: users in their roles, patients assigned or not, the real services, and
the headless Chromium of the browser tests.

Tests marked ``services`` talk to the Redis of the test run (``REDIS_URL``) and start other
processes (a Celery worker, daphne) on the test database. Without ``REDIS_URL`` they skip
with the reason, unless ``CARDIOSPIKE_REQUIRE_SERVICES=1`` (set by CI) turns the skip into a
failure, so CI can never go green by skipping them. The browser tests skip the same way (or
fail in CI) without Debian's chromium and chromium-driver.
"""

import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from monitoring.models import Device, Patient, Recording

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    # Persistent connections (CONN_MAX_AGE) held by threads the tests start (the live
    # server, consumers) would keep the test database open and block its teardown.
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Throttles and failed-login counts live in the cache: each test starts with none, so
    that one test's failed logins never lock another's user out."""
    from django.core.cache import cache, caches

    cache.clear()
    login_counts = caches["login"]
    if settings.CACHES["login"]["BACKEND"].endswith("RedisCache"):
        # only the counts' own keys: clear() would flush the whole Redis database, the
        # Celery queues and channel groups of the test run with it
        client = redis.Redis.from_url(settings.CACHES["login"]["LOCATION"])
        keys = list(client.scan_iter(match=f"{login_counts.key_prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()
    else:
        login_counts.clear()


@pytest.fixture
def clinician(django_user_model):
    return django_user_model.objects.create_user(username="clinician", password="pw-clinician-1")


@pytest.fixture
def other_clinician(django_user_model):
    return django_user_model.objects.create_user(username="other", password="pw-other-1")


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        username="staff", password="pw-staff-1", is_staff=True, is_superuser=True
    )


@pytest.fixture
def patient(clinician):
    patient = Patient.objects.create(mrn="MRN-001", name="Assigned Patient", ward="A", bed="1")
    patient.clinicians.add(clinician)
    return patient


@pytest.fixture
def other_patient(other_clinician):
    patient = Patient.objects.create(mrn="MRN-002", name="Someone Else", ward="B", bed="2")
    patient.clinicians.add(other_clinician)
    return patient


@pytest.fixture
def device(patient):
    return Device.objects.create(serial="DEV-001", label="bed 1", patient=patient)


@pytest.fixture
def device_token(device):
    return device.issue_token()


@pytest.fixture
def recording(patient, device):
    return Recording.objects.create(
        patient=patient,
        device=device,
        sampling_rate_hz=250.0,
        gain_adc_per_mv=200.0,
        n_channels=1,
        lead_names=["II"],
    )


@pytest.fixture
def twelve_lead_recording(patient):
    return Recording.objects.create(
        patient=patient,
        source=Recording.Source.UPLOAD,
        source_name="00001_lr",
        sampling_rate_hz=100.0,
        gain_adc_per_mv=1000.0,
        n_channels=12,
        lead_names=["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"],
    )


@pytest.fixture
def rng():
    return np.random.default_rng(20261124)


# --- Real services ----------------------------------------------------------------------


def services_required() -> bool:
    return os.getenv("CARDIOSPIKE_REQUIRE_SERVICES", "") == "1"


def require_redis_url() -> str:
    """The Redis of the test run; skips (or, in CI, fails) when there is none."""
    if not settings.REDIS_URL:
        message = "REDIS_URL is not set: this test needs the real Redis of the test run"
        if services_required():
            pytest.fail(message)
        pytest.skip(message)
    return settings.REDIS_URL


@pytest.fixture
def redis_url():
    """The Redis of the test run; skips (or, in CI, fails) when there is none."""
    return require_redis_url()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_database_url() -> str:
    """A DATABASE_URL that makes another process open the test run's database."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    if connection.vendor == "postgresql":
        credentials = db["USER"] or ""
        if db.get("PASSWORD"):
            credentials += f":{db['PASSWORD']}"
        host = db.get("HOST") or "127.0.0.1"
        port = db.get("PORT") or 5432
        return f"postgres://{credentials}@{host}:{port}/{db['NAME']}"
    raise RuntimeError(f"no subprocess database URL for {connection.vendor}")


def child_env() -> dict:
    """Environment for a child process (worker, daphne) that shares the test database."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "SQLITE_PATH")
    }
    env.update(
        DATABASE_URL=child_database_url(),
        SECRET_KEY=settings.SECRET_KEY,  # sessions made here must verify there
        DEBUG="true",
        PYTHONPATH=str(PROJECT_ROOT),
    )
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    return env


@pytest.fixture
def service_env(transactional_db):
    """Environment for a child process (worker, daphne) that shares the test database."""
    return child_env()


@pytest.fixture(scope="module")
def module_service_env(django_db_setup):
    """The same, for a child process that serves a whole module's tests (the daphne of
    tests/test_daphne.py's ``daphne_process``). Its tests still ask for ``transactional_db``
    (``daphne_server`` does), so that the child sees what they create."""
    return child_env()


def start_process(args: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115 (closed by stop_process)
    process = subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    process.log_file = log
    return process


def stop_process(process: subprocess.Popen, grace_s: float = 15) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    process.log_file.close()


def wait_until(predicate, timeout_s: float, what: str, process=None, log_path=None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if process is not None and process.poll() is not None:
            break
        time.sleep(0.2)
    log = Path(log_path).read_text(errors="replace")[-3000:] if log_path else ""
    raise AssertionError(f"timed out waiting for {what}\n--- process log ---\n{log}")


@pytest.fixture
def eager_celery():
    """Run Celery tasks in the test's process, as the embedded defaults do, even where
    ``REDIS_URL`` points the app at a broker (CI). For tests about what a task does, not about
    the queue; tests/test_celery_worker.py and tests/test_upload_worker.py drive a real worker.
    """
    from cardiospike.celery import app

    # Celery's settings object answers defaults it does not hold, so monkeypatch cannot undo
    # them; save and restore by hand.
    saved = {key: app.conf[key] for key in ("task_always_eager", "task_eager_propagates")}
    app.conf.update(task_always_eager=True, task_eager_propagates=True)
    yield
    app.conf.update(saved)


# --- Headless Chromium (tests/chromium.py) ---------------------------------------------


@pytest.fixture(scope="session")
def chromium():
    """One Chromium and chromedriver for the whole test session: starting and stopping them
    took about a second a test. Tests use ``browser``, which isolates them from each other."""
    from tests.chromium import SharedChromium, require_chromium

    require_chromium()
    shared = SharedChromium()
    shared.start()
    yield shared
    shared.stop()


@pytest.fixture
def browser(chromium):
    """The shared Chromium, in a window of a browser context of the test's own: no cookies,
    storage, login or window of an earlier test."""
    from tests.chromium import csp_violations

    context_id = chromium.open_test_window()
    driver = chromium.driver
    yield driver
    try:
        refused = csp_violations(driver)
    finally:
        chromium.close_test_window(context_id)
    # Every browser test checks the pages it went through: an inline script, handler or style
    # added to a template fails here, even where the page still seems to work.
    assert not refused, "the Content-Security-Policy refused:\n" + "\n".join(refused)


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for a test module's small models (``pytest.mark.usefixtures``):
    several threads only fight the suite's other processes for the cores."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class FakeClock:
    """``timezone.now`` for the test: moves only when told."""

    def __init__(self) -> None:
        self.now = timezone.now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch):
    """``timezone.now`` frozen for the test, moved by ``clock.advance(seconds)``."""
    fake = FakeClock()
    monkeypatch.setattr(timezone, "now", fake)
    return fake
