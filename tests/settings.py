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
