"""A body over an endpoint's documented limit gets 413 from its Content-Length, unparsed.

Signed in with a session, DRF's CSRF check reads ``request.POST``, which on a DRF request
parses the whole body with the view's parsers, before the view could look at its length: a
5 MiB body of "x" to /predict got 400 "JSON parse error" instead of the 413 the README
promises, and a valid 60 MB JSON body was parsed in memory (3.7 s) before its 413.
"""

import json
import secrets

import pytest
from django.test import Client
from rest_framework.request import Request

from monitoring.models import ApiToken

pytestmark = pytest.mark.django_db

LIMIT_BYTES = 10_000
# A CSRF secret as Django's cookie holds it (32 letters and digits); the header repeats it.
CSRF_SECRET = "a" * 32

# endpoint, content type, the setting that limits its body
ENDPOINTS = [
    ("/predict", "application/json", "PREDICT_MAX_BODY_BYTES"),
    ("/api/predict/", "application/json", "PREDICT_MAX_BODY_BYTES"),
    ("/api/diagnosis/", "application/json", "PREDICT_MAX_BODY_BYTES"),
    ("/api/diagnosis/", "multipart/form-data; boundary=BOUNDARY", "PREDICT_MAX_BODY_BYTES"),
    ("/api/diagnosis/record/", "multipart/form-data; boundary=BOUNDARY", "PREDICT_MAX_BODY_BYTES"),
    (
        "/api/patients/{patient}/uploads/",
        "multipart/form-data; boundary=BOUNDARY",
        "UPLOAD_MAX_BYTES",
    ),
]


@pytest.fixture
def parses(monkeypatch) -> list[str]:
    """The paths whose request body DRF parsed (any parser, any caller)."""
    parsed = []
    original = Request._parse

    def spy(self):
        parsed.append(self._request.path)
        return original(self)

    monkeypatch.setattr(Request, "_parse", spy)
    return parsed


def session_client(user) -> Client:
    """A browser's session: CSRF enforced, with the cookie and the matching header."""
    client = Client(enforce_csrf_checks=True, HTTP_X_CSRFTOKEN=CSRF_SECRET)
    client.force_login(user)
    client.cookies["csrftoken"] = CSRF_SECRET
    return client


def token_client(user) -> Client:
    _, key = ApiToken.issue(user)
    return Client(HTTP_AUTHORIZATION=f"Token {key}")


@pytest.mark.parametrize("make_client", [session_client, token_client], ids=["session", "token"])
@pytest.mark.parametrize(("path", "content_type", "setting"), ENDPOINTS)
def test_an_oversize_body_gets_413_before_it_is_parsed(
    settings, clinician, patient, parses, make_client, path, content_type, setting
):
    setattr(settings, setting, LIMIT_BYTES)
    client = make_client(clinician)
    url = path.format(patient=patient.pk)
    # not JSON, not multipart: parsed, it would be a 400 (session auth answered "JSON parse
    # error"), so only a check of the length before parsing answers 413
    body = b"x" * (LIMIT_BYTES + 1)
    response = client.post(url, body, content_type=content_type)
    assert response.status_code == 413, response.content
    detail = response.json()["detail"]
    # each endpoint's own words; uploads say the limit (docs/upload.md), the others the length
    assert f"{LIMIT_BYTES}" in detail.replace(",", "")
    assert parses == []
    # a browser asking for HTML too: the browsable API's error page checked the permissions,
    # which authenticated the session and so parsed the body after all (review, 2026-12-07)
    response = client.post(url, body, content_type=content_type, HTTP_ACCEPT="text/html")
    assert response.status_code == 413
    assert response["Content-Type"].startswith("application/json")
    assert parses == []


@pytest.mark.parametrize("make_client", [session_client, token_client], ids=["session", "token"])
def test_a_valid_json_body_over_the_limit_is_not_parsed(settings, clinician, parses, make_client):
    settings.PREDICT_MAX_BODY_BYTES = LIMIT_BYTES
    body = json.dumps({"ecg": [0.123456] * 5000})
    response = make_client(clinician).post("/predict", body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["detail"] == (
        f"body of {len(body)} bytes exceeds the {LIMIT_BYTES}-byte limit"
    )
    assert parses == []


def test_a_body_within_the_limit_still_needs_the_csrf_token(clinician):
    # the size check comes first; the session's CSRF check still runs after it
    client = Client(enforce_csrf_checks=True)
    client.force_login(clinician)
    client.cookies["csrftoken"] = secrets.token_hex(16)
    response = client.post(
        "/predict", json.dumps({"ecg": [0.1] * 500}), content_type="application/json"
    )
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_an_anonymous_oversize_body_gets_413_not_401(settings, parses):
    # the length is judged before the credentials, so nobody's body is read to say 401
    settings.PREDICT_MAX_BODY_BYTES = LIMIT_BYTES
    response = Client().post(
        "/api/diagnosis/", b"x" * (LIMIT_BYTES + 1), content_type="application/json"
    )
    assert response.status_code == 413
    assert parses == []


def test_a_content_length_that_is_not_a_number_is_400_for_a_session_too(clinician, parses):
    response = session_client(clinician).post(
        "/predict",
        json.dumps({"ecg": [0.1] * 500}),
        content_type="application/json",
        CONTENT_LENGTH="12abc",
    )
    assert response.status_code == 400
    assert response.json()["detail"] == "Content-Length '12abc' is not a number of bytes"
    assert parses == []
