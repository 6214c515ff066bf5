"""Every page carries the Content-Security-Policy header, and no template undoes it.

The policy (settings.CONTENT_SECURITY_POLICY, set by monitoring.middleware) lets browsers run
only the site's own script and style files. The browser tests check in Chromium that no page
breaks it (the browser fixture in tests/conftest.py, tests/test_csp_browser.py); these check
the header itself, and the templates no browser test opens (the error pages, the admin's
shown-once keys).
"""

import re

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from monitoring.middleware import ContentSecurityPolicyMiddleware, with_sources
from tests.conftest import PROJECT_ROOT
from tests.test_research_notice import visitors  # noqa: F401 (the fixture)
from tests.test_settings import run_settings

pytestmark = pytest.mark.django_db

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

# (who, address, expected status); {patient} and {recording} are primary keys
PAGES = [
    ("anonymous", "/login/", 200),
    ("anonymous", "/", 302),  # the redirect to the login page
    ("anonymous", "/admin/login/", 200),
    ("clinician", "/", 200),
    ("clinician", "/station/", 200),
    ("clinician", "/patients/{patient}/", 200),
    ("clinician", "/patients/{patient}/live/", 200),
    ("clinician", "/patients/{patient}/upload/", 200),
    ("clinician", "/recordings/{recording}/", 200),
    ("clinician", "/recordings/{recording}/review/", 200),
    ("clinician", "/analyzer/", 200),
    ("clinician", "/diagnosis/", 200),
    ("clinician", "/docs/api/", 200),
    ("clinician", "/docs/api/?script", 200),
    ("clinician", "/manage/", 403),
    ("staff", "/manage/", 200),
    ("staff", "/admin/", 200),
    ("staff", "/admin/monitoring/patient/", 200),
    ("clinician", "/no-such-page/", 404),
]


@pytest.mark.parametrize(("who", "address", "status"), PAGES)
def test_it_sends_the_policy_on_every_page(visitors, patient, recording, who, address, status):  # noqa: F811
    response = visitors[who].get(
        address.format(patient=patient.pk, recording=recording.pk), HTTP_ACCEPT="text/html"
    )
    assert response.status_code == status
    assert response["Content-Security-Policy"] == POLICY


def test_it_sends_the_policy_on_api_answers(client, clinician):
    client.force_login(clinician)
    response = client.get("/api/patients/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert "script-src 'self';" in response["Content-Security-Policy"]


def test_it_allows_inline_styles_on_the_browsable_api_only(client, clinician):
    # DRF's templates lay out a few elements with style= attributes; its scripts are files
    client.force_login(clinician)
    api = client.get("/api/patients/", HTTP_ACCEPT="text/html")["Content-Security-Policy"]
    assert "style-src 'self' 'unsafe-inline';" in api
    assert "script-src 'self';" in api
    assert "'unsafe-inline'" not in client.get("/")["Content-Security-Policy"]


def test_it_keeps_a_policy_the_view_set():
    def view(request):
        response = HttpResponse("embeddable")
        response["Content-Security-Policy"] = "frame-ancestors 'self'"
        return response

    response = ContentSecurityPolicyMiddleware(view)(RequestFactory().get("/"))
    assert response["Content-Security-Policy"] == "frame-ancestors 'self'"


def test_it_sends_no_header_when_the_setting_is_empty(client, settings):
    settings.CONTENT_SECURITY_POLICY = ""
    settings.CONTENT_SECURITY_POLICY_EXCEPTIONS = {}
    assert "Content-Security-Policy" not in client.get("/login/")


def test_django_development_error_pages_go_without_it(client, clinician, settings):
    # with DEBUG on, Django's 404 and 500 pages style themselves inline
    settings.DEBUG = True
    client.force_login(clinician)
    assert "Content-Security-Policy" not in client.get("/no-such-page/")
    assert "Content-Security-Policy" in client.get("/")


def test_the_policy_follows_the_setting(client, settings):
    settings.CONTENT_SECURITY_POLICY = "default-src 'self' https://cdn.example.org"
    assert client.get("/login/")["Content-Security-Policy"] == (
        "default-src 'self' https://cdn.example.org"
    )


PRINT_POLICY = """
import django
from django.conf import settings
django.setup()
print(repr(settings.CONTENT_SECURITY_POLICY))
"""


def policy_from_environment(value: str) -> str:
    result = run_settings(PRINT_POLICY, CONTENT_SECURITY_POLICY=value)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_the_environment_sets_the_policy():
    assert policy_from_environment("default-src 'self'") == repr("default-src 'self'")
    # a blank line in an env file keeps the policy; only "off" drops it
    assert policy_from_environment("  ") == repr(POLICY)
    assert policy_from_environment("off") == repr("")


def test_an_exception_adds_sources_without_removing_any():
    assert with_sources("default-src 'self'; script-src 'self'", {"script-src": ["x"]}) == (
        "default-src 'self'; script-src 'self' x"
    )
    # a directive the policy lacks falls back to default-src: start from its sources
    assert with_sources("default-src 'self' a", {"style-src": ["'unsafe-inline'"]}) == (
        "default-src 'self' a; style-src 'self' a 'unsafe-inline'"
    )
    # 'none' beside a source would be ignored by the browser anyway
    assert with_sources("object-src 'none'", {"object-src": ["'self'"]}) == "object-src 'self'"


def test_the_api_docs_load_their_start_up_script_from_a_file(client, clinician):
    client.force_login(clinician)
    page = client.get("/docs/api/").content.decode()
    scripts = re.findall(r"<script\b[^>]*>", page)
    assert scripts and all("src=" in tag for tag in scripts)
    assert "<style" not in page
    script = client.get("/docs/api/?script")
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle(" in script.content.decode()


def test_the_api_docs_script_stays_behind_the_login(client):
    # it holds the visitor's CSRF token
    response = client.get("/docs/api/?script")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.urls("tests.test_research_notice")  # the site's addresses plus /fail/, a bug
def test_the_500_page_carries_the_policy_and_its_stylesheet(client, clinician, settings):
    settings.DEBUG = False
    client.raise_request_exception = False
    client.force_login(clinician)
    response = client.get("/fail/")
    assert response.status_code == 500
    assert response["Content-Security-Policy"] == POLICY
    assert 'href="/static/cardiospike/standalone.css"' in response.content.decode()


# What a strict policy blocks: an inline script (a <script> that is neither a file nor a
# json_script data block), an on*= handler attribute, a javascript: URL, a <style> element and
# a style= attribute.
INLINE = re.compile(
    r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>"
    r"|\son[a-z]+\s*="
    r"|javascript:"
    r"|<style\b"
    r"|\sstyle\s*=",
    re.IGNORECASE,
)
TEMPLATES = sorted((PROJECT_ROOT / "monitoring" / "templates").rglob("*.html"))


@pytest.mark.parametrize(
    "template", TEMPLATES, ids=[str(t.relative_to(PROJECT_ROOT)) for t in TEMPLATES]
)
def test_no_template_has_inline_script_or_style(template):
    # comments ({# #}) may name what they avoid
    source = re.sub(r"\{#.*?#\}", "", template.read_text(), flags=re.DOTALL)
    assert INLINE.findall(source) == []


def test_the_templates_are_found():
    assert len(TEMPLATES) > 20
