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

from cardiospike.settings import *  # noqa: E402, F403
