"""Production deployment: HTTPS behind a proxy, client addresses, error reports, body limits."""

import json
import re

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.cache import cache
from django.test import RequestFactory
from django.views.debug import get_default_exception_reporter_filter, technical_500_response

from cardiospike.asgi import application
from cardiospike.debug import CredentialsSafeExceptionReporterFilter
from tests.conftest import PROJECT_ROOT
from tests.test_settings import (
    MIGRATED,
    PRODUCTION_KEY,
    PRODUCTION_MAIL,
    migrated_database,
    refusal,
    run_settings,
    run_side_by_side,
)

# What the README's production recipe exports, besides the services.
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": PRODUCTION_KEY,
    **PRODUCTION_MAIL,
    "ALLOWED_HOSTS": "monitor.example.org",
    "CSRF_TRUSTED_ORIGINS": "https://monitor.example.org",
    "TRUST_X_FORWARDED_PROTO": "true",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "3600",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
}


def settings_values(names: list[str], **overrides: str) -> dict:
    code = (
        "import json, django\nfrom django.conf import settings\ndjango.setup()\n"
        f"print(json.dumps({{n: getattr(settings, n, None) for n in {names!r}}}))"
    )
    result = run_settings(code, **overrides)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- HTTPS behind a TLS-terminating proxy -------------------------------------------------

SECURITY = [
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "CSRF_TRUSTED_ORIGINS",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
]


def test_https_settings_are_off_by_default_and_read_from_the_environment():
    assert settings_values(SECURITY) == {
        "SECURE_PROXY_SSL_HEADER": None,
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
        "CSRF_TRUSTED_ORIGINS": [],
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
    }
    assert settings_values(SECURITY, **PRODUCTION) == {
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 3600,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "CSRF_TRUSTED_ORIGINS": ["https://monitor.example.org"],
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
    }


def test_secure_cookies_can_be_turned_off_for_a_plain_http_network():
    values = settings_values(SECURITY, **PRODUCTION, SESSION_COOKIE_SECURE="false")
    assert values["SESSION_COOKIE_SECURE"] is False and values["CSRF_COOKIE_SECURE"] is False


def test_a_malformed_hsts_age_is_named():
    assert "SECURE_HSTS_SECONDS='a year'" in refusal(SECURE_HSTS_SECONDS="a year")


LOGIN_BEHIND_PROXY = (
    MIGRATED
    + """
import json
from django.test import Client
proxy = {"HTTP_HOST": "monitor.example.org", "HTTP_X_FORWARDED_PROTO": "https"}
client = Client(enforce_csrf_checks=True, **proxy)
page = client.get("/login/")
login = client.post(
    "/login/",
    {"username": "x", "password": "y", "csrfmiddlewaretoken": client.cookies["csrftoken"].value},
    HTTP_ORIGIN="https://monitor.example.org",
    HTTP_REFERER="https://monitor.example.org/login/",
)
plain = Client(HTTP_HOST="monitor.example.org").get("/login/")
print(json.dumps({
    "page": page.status_code,
    "login": login.status_code,
    "link": login.wsgi_request.build_absolute_uri("/"),
    "plain": [plain.status_code, plain.get("Location")],
    "hsts": page.get("Strict-Transport-Security"),
}))
"""
)


def logins_behind_proxy(tmp_path, *cases: dict[str, str]) -> list[dict]:
    """LOGIN_BEHIND_PROXY with each case's overrides, side by side, each on its own database."""
    results = run_side_by_side(
        *(
            (
                LOGIN_BEHIND_PROXY,
                {
                    "SQLITE_PATH": migrated_database(tmp_path / f"{number}.sqlite3"),
                    "ALLOWED_HOSTS": "monitor.example.org",
                    **overrides,
                },
            )
            for number, overrides in enumerate(cases)
        )
    )
    values = []
    for result in results:
        assert result.returncode == 0, result.stderr
        values.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return values


def test_a_login_through_a_tls_proxy_passes_the_csrf_check(tmp_path):
    # DEBUG stays on (no collected static files here); the proxy settings do not depend on it.
    before, after = logins_behind_proxy(
        tmp_path,
        {},
        {
            "TRUST_X_FORWARDED_PROTO": "true",
            "SECURE_SSL_REDIRECT": "true",
            "SECURE_HSTS_SECONDS": "3600",
        },
    )
    assert before["login"] == 403  # the browser's https:// origin against Django's http://
    assert before["link"] == "http://monitor.example.org/"

    assert after["page"] == 200
    assert after["login"] == 200  # the form again, "wrong password": past the CSRF check
    assert after["link"] == "https://monitor.example.org/"
    assert after["plain"] == [301, "https://monitor.example.org/login/"]
    assert after["hsts"] == "max-age=3600"


def test_check_deploy_is_clean_with_the_documented_production_variables():
    check = run_settings(
        "from django.core.management import call_command; import django; django.setup(); "
        "call_command('check', deploy=True, tags=['security'], fail_level='WARNING')",
        **PRODUCTION,
    )
    assert check.returncode == 0, check.stderr
    assert "no issues" in check.stdout


def test_every_variable_settings_reads_is_documented():
    source = (PROJECT_ROOT / "cardiospike" / "settings.py").read_text()
    names = set(re.findall(r'(?:getenv|envbool|envint|envfloat|envlist)\("([A-Z_]+)"', source))
    documented = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
    assert {"CHANNEL_CAPACITY", "NUM_PROXIES", "REQUEST_MAX_BYTES"} <= names
    assert sorted(name for name in names if f"`{name}`" not in documented) == []


# --- Client addresses for the throttles ----------------------------------------------------


def test_num_proxies_is_read_from_the_environment():
    code = (
        "import json, django\nfrom django.conf import settings\ndjango.setup()\n"
        "print(json.dumps(settings.REST_FRAMEWORK['NUM_PROXIES']))"
    )
    assert json.loads(run_settings(code).stdout.strip().splitlines()[-1]) == 0
    assert json.loads(run_settings(code, NUM_PROXIES="1").stdout.strip().splitlines()[-1]) == 1
    assert "NUM_PROXIES='nginx'" in refusal(NUM_PROXIES="nginx")


@pytest.mark.django_db
def test_a_client_rotating_x_forwarded_for_is_still_throttled(client, settings):
    settings.PREDICT_ALLOW_ANONYMOUS = True
    settings.PREDICT_ANON_RATE = "2/min"
    cache.clear()
    statuses = [
        client.post(
            "/predict",
            "{}",
            content_type="application/json",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{i}",
        ).status_code
        for i in range(3)
    ]
    cache.clear()
    assert statuses[:2] == [400, 400]  # no "ecg": refused, but counted
    assert statuses[2] == 429


# --- Error reports ---------------------------------------------------------------------------

SERVICE_URLS = {
    "DATABASE_URL": "postgres://cs:db-s3cret@db.internal:5432/cardiospike",
    "REDIS_URL": "redis://:redis-s3cret@cache.internal:6379/0",
    "CELERY_BROKER_URL": "redis://worker:broker-s3cret@cache.internal:6379/0",
    "CELERY_RESULT_BACKEND": "redis://:redis-s3cret@cache.internal:6379/0",
}
PASSWORDS = ("db-s3cret", "redis-s3cret", "broker-s3cret")


def test_error_reports_hide_the_passwords_in_service_urls(settings):
    for name, value in SERVICE_URLS.items():
        setattr(settings, name, value)
    settings.CHANNEL_LAYERS = {
        "default": {"CONFIG": {"hosts": [{"address": SERVICE_URLS["REDIS_URL"]}]}}
    }
    reporter_filter = get_default_exception_reporter_filter()
    assert isinstance(reporter_filter, CredentialsSafeExceptionReporterFilter)
    safe = reporter_filter.get_safe_settings()
    assert not [word for word in PASSWORDS if word in json.dumps(safe, default=str)]
    assert safe["DATABASE_URL"] == (
        "postgres://cs:********************@db.internal:5432/cardiospike"
    )
    assert safe["REDIS_URL"] == "redis://:********************@cache.internal:6379/0"
    assert safe["CELERY_BROKER_URL"].startswith("redis://worker:****")
    address = safe["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"][0]["address"]
    assert address == safe["REDIS_URL"]
    assert safe["STATIC_URL"] == settings.STATIC_URL  # URLs without a password stay as they are

    page = debug_error_page()
    assert b"boom" in page and b"cache.internal" in page
    # (not a literal here: the page quotes the source lines around the error)
    assert not [word for word in PASSWORDS if word.encode() in page]


def debug_error_page() -> bytes:
    """The DEBUG 500 page of an error raised where no local variable holds a password."""
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        request = RequestFactory().get("/")
        return technical_500_response(request, type(exc), exc, exc.__traceback__).content


def test_a_bad_channel_capacity_is_named_and_a_good_one_used():
    error = refusal(CHANNEL_CAPACITY="lots")
    assert "ImproperlyConfigured" in error and "CHANNEL_CAPACITY='lots'" in error
    layers = settings_values(["CHANNEL_LAYERS"], CHANNEL_CAPACITY="50")["CHANNEL_LAYERS"]
    assert layers["default"]["CONFIG"]["capacity"] == 50


# --- Request body limit ----------------------------------------------------------------------


def test_the_body_limit_sits_above_every_legitimate_body():
    values = settings_values(["REQUEST_MAX_BYTES", "UPLOAD_MAX_BYTES", "PREDICT_MAX_BODY_BYTES"])
    assert values["REQUEST_MAX_BYTES"] == values["UPLOAD_MAX_BYTES"] + 2**20
    raised = settings_values(["REQUEST_MAX_BYTES"], UPLOAD_MAX_BYTES=str(200 * 2**20))
    assert raised["REQUEST_MAX_BYTES"] == 201 * 2**20
    assert "REQUEST_MAX_BYTES=1000 is below" in refusal(REQUEST_MAX_BYTES="1000")


def http_scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("localhost", 80),
    }


async def raw_answer(communicator: ApplicationCommunicator) -> tuple[int, str, bytes]:
    """Status, content type and body of the application's answer."""
    start = await communicator.receive_output(timeout=10)
    assert start["type"] == "http.response.start"
    body = b""
    while True:
        message = await communicator.receive_output(timeout=10)
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    await communicator.wait(timeout=10)  # the application has returned
    headers = {name.lower(): value for name, value in start["headers"]}
    return start["status"], headers[b"content-type"].decode(), body


async def answer(communicator: ApplicationCommunicator) -> tuple[int, dict]:
    status, content_type, body = await raw_answer(communicator)
    assert content_type == "application/json"
    return status, json.loads(body)


@pytest.fixture
def small_limit(settings):
    settings.REQUEST_MAX_BYTES = 1000
    settings.PREDICT_ALLOW_ANONYMOUS = True
    settings.PREDICT_ANON_RATE = "1000/min"
    cache.clear()
    yield
    cache.clear()


@pytest.mark.asyncio
async def test_a_declared_oversize_body_is_refused_before_it_is_read(small_limit):
    scope = http_scope("/predict", [(b"content-length", b"100663296")])  # 96 MiB
    communicator = ApplicationCommunicator(application, scope)
    # nothing of the body is sent: the answer comes without it
    status, body = await answer(communicator)
    assert status == 413
    assert body == {
        "detail": "request body of 100663296 bytes exceeds the 1000-byte limit (REQUEST_MAX_BYTES)"
    }


@pytest.mark.asyncio
async def test_a_chunked_body_is_cut_off_once_past_the_limit(small_limit):
    communicator = ApplicationCommunicator(application, http_scope("/predict", []))
    for _ in range(3):  # 1200 bytes, and more to come; the app never sees the end
        await communicator.send_input(
            {"type": "http.request", "body": b" " * 400, "more_body": True}
        )
    status, body = await answer(communicator)
    assert status == 413
    assert body == {"detail": "request body exceeds the 1000-byte limit (REQUEST_MAX_BYTES)"}


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("declared", [True, False])
async def test_a_body_under_the_limit_reaches_the_view(small_limit, declared):
    payload = json.dumps({"ecg": "not a list"}).encode()
    headers = [(b"content-length", str(len(payload)).encode())] if declared else []
    communicator = ApplicationCommunicator(application, http_scope("/predict", headers))
    await communicator.send_input({"type": "http.request", "body": payload[:10], "more_body": True})
    await communicator.send_input({"type": "http.request", "body": payload[10:]})
    status, body = await answer(communicator)
    assert status == 400  # the view ran
    if declared:  # and read the body (Django reads one without a length as empty)
        assert body["detail"].startswith('"ecg" must be a list')


# The same refusal for a browser: an upload form posted to a page gets a page, not raw JSON.
KAGGLE_TEST_CSV_BYTES = 104857600  # what a browser declared for mitbih_test.csv with the form


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/patients/1/upload/", "/recordings/3/analyze/", "/login/"])
async def test_a_page_gets_an_html_413_with_the_limit_and_what_to_do(settings, path):
    settings.UPLOAD_MAX_BYTES = 64 * 2**20
    settings.REQUEST_MAX_BYTES = 65 * 2**20
    scope = http_scope(path, [(b"content-length", str(KAGGLE_TEST_CSV_BYTES).encode())])
    status, content_type, body = await raw_answer(ApplicationCommunicator(application, scope))
    assert status == 413
    assert content_type == "text/html; charset=utf-8"
    page = body.decode()
    assert "Research software, not a medical device" in page  # as every page
    assert "The request is 100 MiB." in page
    assert "at most 65 MiB in one request, and a recording upload may be at most 64 MiB" in page
    assert "Split the recording into shorter files" in page
    assert "REQUEST_MAX_BYTES" in page and "{" not in page


@pytest.mark.asyncio
async def test_a_page_upload_cut_off_while_chunked_gets_the_page_too(small_limit):
    scope = http_scope("/patients/1/upload/", [])
    communicator = ApplicationCommunicator(application, scope)
    for _ in range(3):
        await communicator.send_input(
            {"type": "http.request", "body": b" " * 400, "more_body": True}
        )
    status, content_type, body = await raw_answer(communicator)
    assert (status, content_type) == (413, "text/html; charset=utf-8")
    page = body.decode()
    assert "Research software, not a medical device" in page
    assert "The request is" not in page  # its size is not known
    assert "at most 0.00095 MiB in one request" in page


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path", ["/api/patients/1/uploads/", "/api/predict/", "/predict", "/api/device/v1/chunks/"]
)
async def test_the_api_keeps_its_json_413(small_limit, path):
    scope = http_scope(path, [(b"content-length", str(KAGGLE_TEST_CSV_BYTES).encode())])
    status, body = await answer(ApplicationCommunicator(application, scope))
    assert status == 413
    assert body == {
        "detail": "request body of 104857600 bytes exceeds the 1000-byte limit (REQUEST_MAX_BYTES)"
    }
