"""scripts/quickstart's default SITE_URL and development mode, from the script's own lines (the
rest of it installs and serves: scripts/smoke_quickstart.py runs it whole)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = PROJECT_ROOT / "scripts" / "quickstart"


def site_url_lines() -> str:
    """From the HOST default to the SITE_URL export: the settings part, without the installs."""
    lines = SCRIPT.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("HOST="))
    last = next(i for i, line in enumerate(lines) if line.startswith("export SITE_URL="))
    return "\n".join(lines[first : last + 1])


@pytest.mark.parametrize(
    ("host", "site_url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000"),
        ("localhost", "http://localhost:8000"),
        ("0.0.0.0", "http://127.0.0.1:8000"),  # noqa: S104 (a wildcard is no address to link to)
        ("[::]", "http://127.0.0.1:8000"),
        ("::1", "http://[::1]:8000"),  # IPv6 gets its brackets
        ("[::1]", "http://[::1]:8000"),  # ...once
    ],
)
def test_the_default_site_url_is_the_address_served(host, site_url, tmp_path):
    script = f'set -euo pipefail\n{site_url_lines()}\necho "$SITE_URL"'
    # no SITE_URL or EMAIL_* from the environment running the tests
    env = {"PATH": os.environ["PATH"], "HOST": host}
    answer = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    assert answer.stdout.strip() == site_url


DEVELOPMENT_MODE = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps([settings.DEBUG, settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE]))
"""


def test_the_quick_start_runs_in_development_mode(tmp_path):
    """The settings default to DEBUG off; the quick start's own line turns it on, so that a
    fresh clone serves over plain http:// with the development key, working logins (cookies
    not Secure) and seed_demo."""
    line = next(x for x in SCRIPT.read_text().splitlines() if x.startswith("export DEBUG="))
    script = f'set -euo pipefail\n{line}\nexec "$PYTHON" -c "$CODE"'
    # a new user's shell: no DEBUG, no SECRET_KEY
    env = {
        "PATH": os.environ["PATH"],
        "PYTHON": sys.executable,
        "CODE": DEVELOPMENT_MODE,
        "DJANGO_SETTINGS_MODULE": "cardiospike.settings",
        "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
    }
    answer = subprocess.run(
        ["bash", "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout.strip().splitlines()[-1]) == [True, False, False]
