"""A production start cannot drop alarm emails silently: where email goes and the links' address
must be set, the secret key must be strong (Django's rule), the README's production recipe gives
all of it, and a worker at INFO does not log a line per stream analysis."""

import json
import logging
import re
import runpy
import subprocess

import pytest
from django.core.checks.security.base import _check_secret_key
from django.core.exceptions import ImproperlyConfigured

from monitoring import tasks
from monitoring.tasks import analyze_stream_task, summarize_recording
from tests.conftest import PROJECT_ROOT
from tests.test_settings import (
    PRODUCTION_KEY,
    PRODUCTION_MAIL,
    SERVICE_VARIABLES,
    run_settings,
)

SETTINGS_PATH = PROJECT_ROOT / "cardiospike" / "settings.py"
README = PROJECT_ROOT / "README.md"


def load_settings(monkeypatch, **env: str) -> dict:
    """The settings module run afresh in this process with only ``env`` of the deployment
    variables set (the loaded settings stay as they are)."""
    for name in SERVICE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS_PATH))


def refused(monkeypatch, **env: str) -> str:
    with pytest.raises(ImproperlyConfigured) as refusal:
        load_settings(monkeypatch, **env)
    return str(refusal.value)


PRODUCTION_START = {"DEBUG": "false", "SECRET_KEY": PRODUCTION_KEY}


# --- where alarm emails go ------------------------------------------------------------------


def test_production_refuses_to_start_with_nowhere_for_alarm_emails_to_go(monkeypatch):
    # the README's old recipe: no EMAIL_HOST, so the console, the worker's stdout
    message = refused(monkeypatch, **PRODUCTION_START, SITE_URL="https://monitor.example.org")
    assert "no email server is set" in message
    assert "printed on the worker's console and counted as sent" in message
    for way_out in ("EMAIL_HOST", "EMAIL_PORT", "EMAIL_HOST_PASSWORD", "EMAIL_FILE_PATH"):
        assert way_out in message
    assert "EMAIL_BACKEND=<a Django email backend>" in message
    # development keeps its console
    development = load_settings(monkeypatch, DEBUG="true")
    assert development["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"


@pytest.mark.parametrize(
    ("env", "backend"),
    [
        ({"EMAIL_HOST": "smtp.example.org"}, "django.core.mail.backends.smtp.EmailBackend"),
        ({"EMAIL_FILE_PATH": "/var/mail/cs"}, "django.core.mail.backends.filebased.EmailBackend"),
        # turned off on purpose: alarms reach webhook recipients only
        (
            {"EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend"},
            "django.core.mail.backends.dummy.EmailBackend",
        ),
    ],
)
def test_production_starts_once_email_has_somewhere_to_go(monkeypatch, env, backend):
    values = load_settings(
        monkeypatch, **PRODUCTION_START, SITE_URL="https://monitor.example.org", **env
    )
    assert values["DEBUG"] is False and values["EMAIL_BACKEND"] == backend


def test_production_refuses_to_start_without_the_address_of_the_links(monkeypatch):
    message = refused(monkeypatch, **PRODUCTION_START, EMAIL_HOST="smtp.example.org")
    assert "SITE_URL is unset" in message and "/patients/2/live/" in message
    assert "https://monitor.example.org" in message
    values = load_settings(
        monkeypatch, **PRODUCTION_START, **PRODUCTION_MAIL | {"SITE_URL": "https://m.example/"}
    )
    assert values["SITE_URL"] == "https://m.example"  # no trailing slash: links add theirs


@pytest.mark.parametrize("value", ["monitor.example.org", "https://", "ftp://monitor.example.org"])
def test_a_site_url_that_cannot_start_a_link_is_refused_even_in_development(monkeypatch, value):
    message = refused(monkeypatch, DEBUG="true", SITE_URL=value)
    assert f"SITE_URL={value!r}" in message and "http:// or https://" in message


# --- the secret key -------------------------------------------------------------------------

# (key, refused at the start): the rule is Django's security.W009 but for its length, 32
# rather than 50, so that a key the old rule accepted still starts an upgraded server
KEYS = [
    ("a" * 40, True),  # the tester's key: long enough for the old rule (32), one character
    ("ab" * 30, True),  # 60 characters, 2 different
    (PRODUCTION_KEY[:31], True),  # too short
    ("django-insecure-" + PRODUCTION_KEY, True),  # what startproject generates
    ("kV3-q8Zr_w2Lp9sXy4Bn6Tm1Hd7Fc5Gj0Ae" + "x" * 14, False),  # 49: W009 only warns
    (PRODUCTION_KEY[:32], False),  # as token_urlsafe(24) or the old docs' 32
    (PRODUCTION_KEY, False),
]


@pytest.mark.parametrize(("key", "weak"), KEYS)
def test_a_weak_secret_key_is_refused(monkeypatch, key, weak):
    env = {**PRODUCTION_START, **PRODUCTION_MAIL, "SECRET_KEY": key}
    if not weak:
        assert load_settings(monkeypatch, **env)["SECRET_KEY"] == key
    else:
        message = refused(monkeypatch, **env)
        assert "SECRET_KEY" in message and "weak" in message
        assert "security.W009" in message and "secrets.token_urlsafe(50)" in message
    # Django's own check agrees on everything but the length between 32 and 49
    if len(key) >= 50 or weak:
        assert _check_secret_key(key) is not weak


def test_forty_identical_characters_are_refused(monkeypatch):
    env = {**PRODUCTION_START, **PRODUCTION_MAIL, "SECRET_KEY": "a" * 40}
    assert "fewer than 5 different characters" in refused(monkeypatch, **env)


# --- the README's production recipe ---------------------------------------------------------


def production_section() -> str:
    text = README.read_text()
    start = text.index("## Running on PostgreSQL, Redis and Celery workers")
    return text[start : text.index("\n## ", start + 1)]


def readme_environment() -> dict:
    """The variables the README's production block exports, as bash evaluates its lines."""
    block = re.search(r"```sh\n(.*?)```", production_section(), re.S).group(1)
    exports = [line for line in block.splitlines() if line.startswith("export ")]
    names = {
        match.split("=")[0]
        for line in exports
        for match in re.findall(r"\b([A-Z_]+=)", line.split("#")[0])
    }
    script = "\n".join(
        ["set -e", *exports, 'python3 -c "import json, os; print(json.dumps(dict(os.environ)))"']
    )
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return {k: v for k, v in json.loads(result.stdout).items() if k in names}


def test_the_readme_production_block_starts_with_smtp_and_whole_links(monkeypatch):
    env = readme_environment()
    assert {"EMAIL_HOST", "EMAIL_PORT", "EMAIL_HOST_USER", "SITE_URL"} <= set(env)
    env = {k: v for k, v in env.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    values = load_settings(monkeypatch, **env)
    assert values["DEBUG"] is False
    assert values["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert values["EMAIL_HOST"] and values["EMAIL_PORT"] == int(env["EMAIL_PORT"])
    assert values["SITE_URL"].startswith("https://")
    assert _check_secret_key(values["SECRET_KEY"])
    # and, as it says, check --deploy finds nothing
    check = run_settings(
        "from django.core.management import call_command; import django; django.setup(); "
        "call_command('check', deploy=True, tags=['security'], fail_level='WARNING')",
        **env,
    )
    assert check.returncode == 0, check.stderr
    assert "no issues" in check.stdout


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a document's headings."""
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", markdown, re.M)
    }


def test_the_production_section_links_to_docs_that_exist():
    links = re.findall(r"\]\(([^)#\s]+\.md)(?:#([^)\s]+))?\)", production_section())
    targets = {path for path, _ in links}
    # how to set up patients, devices and their tokens, and alarm recipients
    assert {"docs/dashboard.md", "docs/device-protocol.md", "docs/alarms.md"} <= targets
    assert "firmware/README.md" in targets and "docs/configuration.md" in targets
    for path, anchor in links:
        document = PROJECT_ROOT / path
        assert document.exists(), path
        if anchor:
            assert anchor in anchors(document.read_text()), f"{path}#{anchor}"


# --- the worker's log at INFO ---------------------------------------------------------------


def task_lines(caplog, task) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "celery.app.trace" and task.name in record.getMessage()
    ]


@pytest.mark.django_db
def test_a_stream_analysis_logs_no_success_line_of_its_own(recording, caplog, monkeypatch):
    monkeypatch.setattr(tasks, "stream_tally", tasks.StreamAnalysisTally())
    caplog.set_level(logging.INFO)
    for _ in range(3):
        analyze_stream_task.apply(args=[recording.pk])
    summarize_recording.apply(args=[recording.pk])
    # every other task keeps Celery's line, result and all
    [summarized] = task_lines(caplog, summarize_recording)
    assert "succeeded in" in summarized
    assert task_lines(caplog, analyze_stream_task) == []
    assert not [r for r in caplog.records if r.getMessage().startswith("stream analysis")]


@pytest.mark.django_db
def test_a_worker_sums_its_stream_analyses_up_once_a_period(recording, caplog, monkeypatch):
    monkeypatch.setattr(tasks, "stream_tally", tasks.StreamAnalysisTally())
    caplog.set_level(logging.INFO)
    analyze_stream_task.apply(args=[recording.pk])
    analyze_stream_task.apply(args=[recording.pk])
    monkeypatch.setattr(tasks, "STREAM_LOG_SUMMARY_S", 0.0)  # the minute has passed
    analyze_stream_task.apply(args=[recording.pk])
    [summary] = [r.getMessage() for r in caplog.records if r.name == "monitoring.tasks"]
    assert re.fullmatch(
        rf"stream analysis, last \d+ s: 3 task\(s\), recording\(s\) {recording.pk}, "
        r"0 samples, 0 beats, slowest \d+\.\d\d s",
        summary,
    )


@pytest.mark.django_db
def test_a_failing_stream_analysis_is_still_logged(caplog):
    caplog.set_level(logging.INFO)
    result = analyze_stream_task.apply(args=[404], throw=False)
    assert result.failed()
    [failure] = task_lines(caplog, analyze_stream_task)
    assert "DoesNotExist" in failure
