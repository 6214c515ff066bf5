"""Settings of the test run: the product's own (cardiospike/settings.py) in development mode.

The product defaults to DEBUG off, which refuses the development SECRET_KEY, serves only the
collected static files and sends cookies over HTTPS only. The suite runs as a developer's
checkout does, with DEBUG=true: set in the environment before the settings read it, so that the
processes the tests start (daphne, a Celery worker, `python -c`) inherit it too. Set, not
defaulted: a DEBUG=false left in the shell would otherwise fail most of the suite for want of
collected static files. (pytest-django still runs each test with settings.DEBUG False, as
Django's test runner does.) The tests of the production behaviour start a fresh interpreter
with an environment of their own (tests/test_settings.py, tests/test_deployment_settings.py).
"""

import os

os.environ["DEBUG"] = "true"


def _worker_redis_url(redis_url: str, worker: str) -> str:
    """The Redis of one pytest-xdist worker (``gw0``, ``gw1``, ...): the run's database number
    plus the worker's. Two workers on one Redis database would share its channel groups
    (``patient-1`` is a patient of each worker's test database), its Celery queues and its
    login counts, and hear each other's messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(redis_url)
    base = int(parts.path.strip("/") or 0)
    database = base + int(worker.removeprefix("gw"))
    if database > 15:  # Redis's default 16 databases
        raise RuntimeError(f"{redis_url} leaves no Redis database for pytest-xdist worker {worker}")
    return urlunsplit(parts._replace(path=f"/{database}"))


# Each pytest-xdist worker (scripts/test runs two) has its own Redis database, set in the
# environment before the product's settings read it, so that the processes a test starts
# (daphne, a Celery worker) inherit it as they inherit DEBUG. They inherit the worker's name
# too, and read these settings again: the marker keeps them from adding its number twice.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if (
    os.environ.get("REDIS_URL")
    and _worker
    and os.environ.get("CARDIOSPIKE_REDIS_WORKER") != _worker
):
    os.environ["REDIS_URL"] = _worker_redis_url(os.environ["REDIS_URL"], _worker)
    os.environ["CARDIOSPIKE_REDIS_WORKER"] = _worker

from django.conf import global_settings  # noqa: E402

from cardiospike.settings import *  # noqa: E402, F403

# Passwords hashed with MD5: Django's default PBKDF2 (a million rounds, about 0.3 s a hash on a
# CI core), which the product keeps, is paid by every user a test creates and every login,
# hundreds of times a run. What the tests check of passwords (login, lockout, change, a rehash
# on login) does not depend on the algorithm; Django's own list follows, so a hash made with any
# of those still verifies. The child processes the tests start (daphne, a Celery worker)
# inherit DJANGO_SETTINGS_MODULE, so they verify these hashes too; the tests that start a fresh
# interpreter on the product's settings (tests/test_settings.py, test_login_throttle.py,
# test_quickstart.py) check no password of a user made here.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    *global_settings.PASSWORD_HASHERS,
]
