"""Every HTML page the product serves says it is research software, not a medical device.

The site's own pages get the notice from base.html; the pages other apps render (the admin,
DRF's browsable API, the Swagger UI) and Django's error pages get it only from the overrides in
monitoring/templates/, which TEMPLATES' DIRS puts ahead of those apps' own templates. A page
that slips back to the app's template loses the notice silently, hence this walk.
"""

import pytest
from django.test import Client
from django.urls import path

import cardiospike.urls

pytestmark = pytest.mark.django_db

NOTICE = "Research software, not a medical device"

# (who, address, expected status); {pk} is the patient's primary key
PAGES = [
    ("anonymous", "/login/", 200),
    ("anonymous", "/admin/login/", 200),
    ("clinician", "/", 200),
    ("clinician", "/station/", 200),
    ("clinician", "/docs/api/", 200),
    ("clinician", "/api/", 200),
    ("clinician", "/api/patients/", 200),
    ("clinician", "/api/patients/{pk}/", 200),
    ("clinician", "/manage/", 403),
    ("staff", "/manage/", 200),
    ("staff", "/admin/", 200),
    ("staff", "/admin/monitoring/patient/", 200),
    ("staff", "/admin/monitoring/patient/{pk}/change/", 200),
    ("staff", "/admin/password_change/", 200),
]


@pytest.fixture
def visitors(clinician, staff_user):
    clients = {"anonymous": Client(), "clinician": Client(), "staff": Client()}
    clients["clinician"].force_login(clinician)
    clients["staff"].force_login(staff_user)
    return clients


@pytest.mark.parametrize(("who", "address", "status"), PAGES)
def test_page_carries_the_notice(visitors, patient, who, address, status):
    # A browser's Accept header: DRF answers it with its browsable API, not JSON.
    response = visitors[who].get(address.format(pk=patient.pk), HTTP_ACCEPT="text/html")
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    assert NOTICE in response.content.decode()


@pytest.mark.parametrize("who", ["anonymous", "clinician", "staff"])
def test_404_page_carries_the_notice(visitors, settings, who):
    # DEBUG off: Django renders 404.html instead of its technical page.
    settings.DEBUG = False
    response = visitors[who].get("/no-such-page/")
    assert response.status_code == 404
    assert NOTICE in response.content.decode()


def test_400_page_carries_the_notice(client, settings):
    # A Host not in ALLOWED_HOSTS is a SuspiciousOperation, answered with 400.html.
    settings.DEBUG = False
    response = client.get("/login/", HTTP_HOST="evil.example.org")
    assert response.status_code == 400
    assert NOTICE in response.content.decode()


def fail(request):
    raise RuntimeError("a bug")


# This module is the URLconf of the 500 test: the site's addresses plus one that fails.
urlpatterns = [path("fail/", fail), *cardiospike.urls.urlpatterns]
handler500 = cardiospike.urls.handler500


@pytest.mark.urls(__name__)
def test_500_page_carries_the_notice(client, clinician, settings):
    # Django renders 500.html without context processors (they may be what failed):
    # cardiospike.urls.handler500 hands it the notice itself.
    settings.DEBUG = False
    client.raise_request_exception = False
    client.force_login(clinician)
    response = client.get("/fail/")
    assert response.status_code == 500
    assert NOTICE in response.content.decode()


def test_a_refused_form_page_carries_the_notice():
    # a form posted without its CSRF token (an expired page): Django's bare 403 otherwise
    response = Client(enforce_csrf_checks=True).post("/login/", {"username": "x", "password": "y"})
    assert response.status_code == 403
    assert NOTICE in response.content.decode()
    assert "reload the page" in response.content.decode()
