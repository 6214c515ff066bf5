"""scripts/quickstart's default SITE_URL, computed by the script's own lines (the rest of it
installs and serves: scripts/smoke_quickstart.py runs it whole)."""

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "quickstart"


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
