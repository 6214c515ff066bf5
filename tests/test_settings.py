"""Settings are read once at import, so each case runs as in a fresh interpreter."""

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from django.conf import settings

from tests.conftest import PROJECT_ROOT

PRINT_SETTINGS = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "debug": settings.DEBUG,
    "engine": settings.DATABASES["default"]["ENGINE"],
    "db_name": str(settings.DATABASES["default"]["NAME"]),
    "eager": settings.CELERY_TASK_ALWAYS_EAGER,
    "propagates": getattr(settings, "CELERY_TASK_EAGER_PROPAGATES", False),
    "broker": settings.CELERY_BROKER_URL,
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "email": settings.EMAIL_BACKEND,
    "hosts": settings.ALLOWED_HOSTS,
    "static": settings.STORAGES["staticfiles"]["BACKEND"],
    "cookies_secure": [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE],
}))
"""

SERVICE_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "DEBUG",
    "EMAIL_HOST",
    "EMAIL_BACKEND",
    "EMAIL_FILE_PATH",
    "SITE_URL",
)
# What a production start needs besides DEBUG=false: a strong key (32+ characters; we use 50+
# characters, 5+ different), where alarm emails go, and the address their links start with.
PRODUCTION_KEY = "kV3-q8Zr_w2Lp9sXy4Bn6Tm1Hd7Fc5Gj0Ae" * 2
PRODUCTION_MAIL = {"EMAIL_HOST": "smtp.example.org", "SITE_URL": "https://monitor.example.org"}


# Django's start imports third-party libraries that take seconds (scipy alone, most of each
# interpreter's time on this suite's 2-core machines). A driver interpreter imports them once,
# never the product's settings nor any product module (nor torch, which Django must not load);
# each case is a fork of it that takes its own environment and only then runs its code, which
# loads the settings and starts Django as in a fresh interpreter.
PRELOADED = (
    "numpy",
    "scipy.interpolate",
    "scipy.ndimage",
    "scipy.signal",
    "scipy.stats",
    "redis",
    "redis.asyncio",
    "celery",
    "celery.app",
    "kombu",
    "twisted.internet.asyncioreactor",
    "twisted.internet.tcp",
    "django.db.models",
    "django.forms",
    "django.http",
    "django.urls",
    "rest_framework",
    "channels",
)
DRIVER = """
import gc, importlib, json, os, signal, sys, tempfile

for name in sys.argv[1:]:
    importlib.import_module(name)
from django.conf import settings

loaded = {name.split(".")[0] for name in sys.modules}
product = loaded & {"cardiospike", "monitoring", "inference", "frontend", "daphne", "torch"}
assert not settings.configured and not product, product
assert "twisted.internet.reactor" not in sys.modules  # no reactor installed for the cases
sys.argv = ["-c"]
# out of the collector's sight: a case's collections and its exit would otherwise touch, and
# so copy, every page of the preloaded heap (seconds a case)
gc.freeze()


def run_case(case, stdout_fd, stderr_fd):
    # what `python -c` has: the environment, no input, its own output, a fresh __main__
    os.environ.clear()
    os.environ.update(case["env"])
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(stdout_fd, 1)
    os.dup2(stderr_fd, 2)
    signal.alarm(case["timeout_s"])  # subprocess.run's timeout: a hung case is killed
    exec(compile(case["code"], "<string>", "exec"), {"__name__": "__main__"})


for line in sys.stdin:  # one batch of cases a line, run side by side; EOF ends the driver
    running = []
    for case in json.loads(line):
        stdout, stderr = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            # an exception leaves the loop uncaught: its traceback and exit status 1, as in
            # `python -c`; the interpreter then shuts down as one would (atexit, threads)
            run_case(case, stdout.fileno(), stderr.fileno())
            sys.exit(0)
        running.append((pid, stdout, stderr))
    results = []
    for pid, stdout, stderr in running:
        returncode = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        outputs = []
        for output in (stdout, stderr):
            output.seek(0)
            outputs.append(output.read().decode(errors="replace"))
            output.close()
        results.append([returncode, *outputs])
    print(json.dumps(results), flush=True)
"""
_driver: subprocess.Popen | None = None
_driver_lock = threading.Lock()


def case_environment(overrides: dict[str, str | None]) -> dict[str, str]:
    """The service variables unset but ``overrides``, in development mode (DEBUG=true), as a
    developer's checkout and this test run are, unless ``overrides`` say otherwise; an
    override of None unsets the variable (``DEBUG=None``: the product's own default)."""
    env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARIABLES}
    env.update(DJANGO_SETTINGS_MODULE="cardiospike.settings", DEBUG="true")
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def stop_driver() -> None:
    if _driver is not None and _driver.poll() is None:
        _driver.stdin.close()  # its loop ends at EOF
        _driver.wait(timeout=30)


atexit.register(stop_driver)


def run_side_by_side(
    *cases: tuple[str, dict[str, str | None]],
) -> list[subprocess.CompletedProcess]:
    """Run each ``(code, overrides)`` as in a fresh interpreter (``case_environment``), all at
    once, each with its own exit status and output."""
    global _driver
    batch = [
        {"code": code, "env": case_environment(overrides), "timeout_s": 120}
        for code, overrides in cases
    ]
    with _driver_lock:  # one batch at a time: the driver answers them in order
        if _driver is None or _driver.poll() is not None:
            _driver = subprocess.Popen(
                [sys.executable, "-c", DRIVER, *PRELOADED],
                cwd=PROJECT_ROOT,
                env=case_environment({}),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        _driver.stdin.write(json.dumps(batch) + "\n")
        _driver.stdin.flush()
        answer = _driver.stdout.readline()
    assert answer, f"the settings driver exited with status {_driver.wait()}: see its stderr"
    return [
        subprocess.CompletedProcess([sys.executable, "-c", case["code"]], *result)
        for case, result in zip(batch, json.loads(answer), strict=True)
    ]


def run_settings(
    code: str = PRINT_SETTINGS, **overrides: str | None
) -> subprocess.CompletedProcess:
    """Run ``code`` as in a fresh interpreter with ``overrides`` (``case_environment``)."""
    return run_side_by_side((code, overrides))[0]


def refusal(**overrides: str | None) -> str:
    """The error output of a start that the settings refuse with ``overrides``."""
    result = run_settings(**overrides)
    assert result.returncode != 0, result.stdout
    return result.stderr


def settings_with(**overrides: str | None) -> dict:
    result = run_settings(**overrides)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_it_runs_alone_on_embedded_defaults(tmp_path):
    # in development mode, as scripts/quickstart runs it
    values = settings_with(SQLITE_PATH=str(tmp_path / "db.sqlite3"))
    assert values["debug"] is True
    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["db_name"] == str(tmp_path / "db.sqlite3")
    assert values["eager"] is True and values["propagates"] is True
    assert values["broker"] == "memory://"
    assert values["layer"] == "channels.layers.InMemoryChannelLayer"
    assert values["email"] == "django.core.mail.backends.console.EmailBackend"


def test_it_moves_onto_postgresql_and_redis_from_the_environment():
    values = settings_with(
        DATABASE_URL="postgres://cs:pw@db.internal:5433/cardiospike",
        REDIS_URL="redis://cache.internal:6380/2",
    )
    assert values["engine"] == "django.db.backends.postgresql"
    assert values["db_name"] == "cardiospike"
    assert values["eager"] is False
    assert values["broker"] == "redis://cache.internal:6380/2"
    assert values["layer"] == "channels_redis.core.RedisChannelLayer"


def test_it_sends_email_by_smtp_when_a_host_is_set():
    assert settings_with(EMAIL_HOST="127.0.0.1")["email"].endswith("smtp.EmailBackend")
    assert settings_with(EMAIL_FILE_PATH="/tmp/mail")["email"].endswith("filebased.EmailBackend")


def test_it_refuses_the_development_secret_with_debug_off():
    result = run_settings(DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr and "DEBUG is off" in result.stderr
    short = run_settings(DEBUG="false", SECRET_KEY="too-short", **PRODUCTION_MAIL)
    assert short.returncode != 0 and "shorter than 32 characters" in short.stderr


def test_debug_is_off_unless_the_environment_turns_it_on(tmp_path):
    """Security by default: a deployment that forgets DEBUG runs as production."""
    # no DEBUG and no SECRET_KEY (manage.py, daphne or celery started bare): refused, and the
    # message names both ways out, development mode and a production key
    message = refusal(DEBUG=None, SQLITE_PATH=str(tmp_path / "db.sqlite3"))
    assert "DEBUG is off (the default)" in message
    assert "set DEBUG=true" in message and "set SECRET_KEY to a long random value" in message
    assert "DEBUG is off" in refusal(DEBUG=None, SECRET_KEY=settings.DEVELOPMENT_SECRET_KEY)

    values = settings_with(DEBUG=None, SECRET_KEY=PRODUCTION_KEY, **PRODUCTION_MAIL)
    assert values["debug"] is False
    assert values["static"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"
    assert values["cookies_secure"] == [True, True]
    assert settings_with(DEBUG="true")["cookies_secure"] == [False, False]


def test_it_refuses_a_device_offline_alarm_that_silence_would_pre_empt():
    # the periodic check watches live recordings; one closed for silence first never alarms
    error = refusal(DEVICE_OFFLINE_S="300", DEVICE_SILENCE_CLOSE_S="300")
    assert "DEVICE_OFFLINE_S (300 s) must be shorter than DEVICE_SILENCE_CLOSE_S (300 s)" in error
    assert settings_with(DEVICE_OFFLINE_S="299", DEVICE_SILENCE_CLOSE_S="300")


def test_it_starts_in_production_mode_with_a_real_secret():
    values = settings_with(
        DEBUG="false",
        SECRET_KEY=PRODUCTION_KEY,
        ALLOWED_HOSTS="monitor.example.org",
        **PRODUCTION_MAIL,
    )
    assert values["debug"] is False
    assert values["hosts"] == ["monitor.example.org"]
    assert values["static"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"


def test_it_names_a_malformed_boolean_and_reads_an_empty_one_as_unset():
    message = refusal(DEBUG="maybe")
    assert "DEBUG='maybe'" in message and "yes/no/on/off" in message
    # DEBUG= (empty) counts as unset: the default, off, which refuses the development secret
    assert "DEBUG is off (the default)" in refusal(DEBUG="")
    assert settings_with(DEBUG="", SECRET_KEY=PRODUCTION_KEY, **PRODUCTION_MAIL)["debug"] is False


# Code for run_settings that needs the tables (in the SQLITE_PATH it is given).
MIGRATED = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
"""

EAGER_TASK = (
    MIGRATED
    + """
from monitoring.models import Recording
from monitoring.tasks import summarize_recording
try:
    summarize_recording.delay(404)
except Recording.DoesNotExist:
    print("propagated")
"""
)


@functools.cache
def migrated_template() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="cardiospike-migrated-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    result = run_settings(MIGRATED, SQLITE_PATH=str(folder / "db.sqlite3"))
    assert result.returncode == 0, result.stderr
    return folder / "db.sqlite3"


def migrated_database(path: Path) -> str:
    """``path``, a copy of a database with every migration applied, for a case that runs
    MIGRATED: migrating takes seconds and gives every case the same tables, so it is done once
    a test process, and each case's own migrate then finds nothing left to apply."""
    shutil.copyfile(migrated_template(), path)
    return str(path)


def test_it_runs_tasks_eagerly_and_propagates_their_errors_without_redis(tmp_path):
    result = run_settings(EAGER_TASK, SQLITE_PATH=migrated_database(tmp_path / "db"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "propagated"


def test_every_periodic_task_expires_within_its_own_period():
    """Beat queues on while the workers are down; a run older than its period is superseded
    by the next and must not run when they return (an hour of checks back to back, ahead of
    the analyses)."""
    from cardiospike.celery import app

    schedule = app.conf.beat_schedule  # what beat reads
    assert schedule
    for name, entry in schedule.items():
        assert 0 < entry["options"]["expires"] <= entry["schedule"], name


def test_django_starts_without_torch_and_passes_on_the_thread_count():
    # torch takes a second or two to import: a process that runs no model (manage.py, a web
    # server before its first analysis, each of this suite's subprocesses) must not pay it
    code = (
        "import json, os, sys, django\ndjango.setup()\n"
        "loaded = 'torch' in sys.modules\nimport torch\n"
        "print(json.dumps([loaded, torch.get_num_threads()]))"
    )
    printed = run_settings(code, TORCH_THREADS="1").stdout.strip().splitlines()[-1]
    assert json.loads(printed) == [False, 1]


PRINT_SESSION_SETTINGS = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps([settings.SESSION_IDLE_S, settings.SESSION_COOKIE_AGE,
                  settings.SESSION_EXPIRE_AT_BROWSER_CLOSE]))
"""


def session_settings(**overrides: str | None) -> list:
    result = run_settings(PRINT_SESSION_SETTINGS, **overrides)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_an_idle_session_ends_after_12_hours_unless_set_otherwise():
    # Django's own default was two weeks, in a cookie that outlived the browser
    assert session_settings(SESSION_IDLE_S=None) == [43200, 43200, True]
    assert session_settings(SESSION_IDLE_S="3600") == [3600, 3600, True]


def test_it_names_a_nonsensical_idle_time():
    assert "SESSION_IDLE_S='12h': expected an integer" in refusal(SESSION_IDLE_S="12h")
    for value in ("0", "-1", "59", "2592001"):
        message = refusal(SESSION_IDLE_S=value)
        assert f"SESSION_IDLE_S={value}: expected seconds from 60 " in message, message
        assert "to 2592000 (30 days)" in message
    # an open live page renews its session at its access recheck: one rare enough to miss
    # the renewal is refused
    message = refusal(SESSION_IDLE_S="100", LIVE_RECHECK_S="30")
    assert "SESSION_IDLE_S=100: expected seconds from 120 " in message
    assert "4 x LIVE_RECHECK_S" in message


def test_it_names_a_nonsensical_login_limit():
    assert "LOGIN_FAILURES_PER_ACCOUNT='lots': expected an integer" in refusal(
        LOGIN_FAILURES_PER_ACCOUNT="lots"
    )
    # 0 would refuse every login, the right password included
    message = refusal(LOGIN_FAILURES_PER_ACCOUNT="0")
    assert "LOGIN_FAILURES_PER_ACCOUNT=0: expected a whole number from 1" in message
    assert "LOGIN_LOCKOUT_S=-5: expected a whole number from 1" in refusal(LOGIN_LOCKOUT_S="-5")
    # at the per-address count or below, one stranger's address would lock the account out
    # of every new address
    message = refusal(LOGIN_FAILURES_PER_USER="10", LOGIN_FAILURES_PER_ACCOUNT="10")
    assert "LOGIN_FAILURES_PER_ACCOUNT (10) must be above LOGIN_FAILURES_PER_USER (10)" in message
