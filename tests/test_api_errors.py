"""The API's refusals share one shape, ``{"detail": "..."}``: unknown URLs under /api/ too."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    ["/api/nope/", "/api/recordings/1/nope/", "/api/patients/x/hr-trend/", "/api/device/v2/"],
)
def test_an_unknown_api_url_answers_json_404(client, clinician, path):
    # it was the HTML 404 page: a script reading the body as JSON failed on it
    for logged_in in (False, True):
        if logged_in:
            client.force_login(clinician)
        response = client.get(path)
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"detail": "Not found."}


def test_an_unknown_api_url_answers_json_404_to_any_method(client, clinician):
    client.force_login(clinician)
    response = client.post("/api/nope/", "{}", content_type="application/json")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}


def test_a_missing_object_answers_the_same_shape(client, clinician):
    client.force_login(clinician)
    response = client.get("/api/patients/999999/")
    assert response.status_code == 404 and list(response.json()) == ["detail"]


@pytest.mark.parametrize("path", ["/nope/", "/apinope/", "/patients/999999/"])
def test_other_unknown_urls_keep_the_html_404_page(client, clinician, path):
    client.force_login(clinician)
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert "<h1>Not found</h1>" in response.content.decode()


@pytest.fixture
def multipart_urls(patient):
    return ["/api/diagnosis/", "/api/diagnosis/record/", f"/api/patients/{patient.pk}/uploads/"]


def test_too_many_files_get_a_json_400(client, clinician, multipart_urls):
    # Django's TooManyFilesSent is a SuspiciousOperation, which DRF left to Django: an HTML 400
    client.force_login(clinician)
    for url in multipart_urls:
        files = [SimpleUploadedFile(f"f{i}.dat", b"x") for i in range(101)]
        response = client.post(url, {"files": files})
        assert response.status_code == 400, url
        assert response["Content-Type"] == "application/json", url
        assert response.json() == {"detail": "too many files: at most 100 in one request"}


def test_too_many_form_fields_get_a_json_400(client, clinician, multipart_urls):
    client.force_login(clinician)
    for url in multipart_urls:
        response = client.post(url, {f"k{i}": "1" for i in range(1001)})
        assert response.status_code == 400, url
        assert response["Content-Type"] == "application/json", url
        assert response.json() == {"detail": "too many form fields: at most 1000 in one request"}


def test_form_fields_over_the_memory_limit_get_a_json_413(client, clinician, settings):
    # RequestDataTooBig, also a SuspiciousOperation: Django's HTML 400 before
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client.force_login(clinician)
    response = client.post("/api/diagnosis/", {"age_years": "1" * 2000})
    assert response.status_code == 413
    assert response.json() == {"detail": "the request body exceeds the 1000-byte limit"}


@pytest.mark.parametrize("limit", ["0", "-3", "abc", "1.5"])
def test_a_page_limit_that_is_not_a_positive_whole_number_is_a_400(client, clinician, limit):
    # these gave the default 100 rows without a word
    client.force_login(clinician)
    response = client.get(f"/api/patients/?limit={limit}")
    assert response.status_code == 400
    assert response.json()["detail"].startswith('"limit" must be a whole number of rows')
    assert repr(limit) in response.json()["detail"]


def test_a_blank_page_limit_is_the_default(client, clinician, patient):
    client.force_login(clinician)
    assert client.get("/api/patients/?limit=").json()["count"] == 1
    assert len(client.get("/api/patients/?limit=1").json()["results"]) == 1


@pytest.mark.parametrize("offset", ["-5", "abc", "1.5", "²", "9" * 40])
def test_a_page_offset_that_is_not_a_whole_number_is_a_400(client, clinician, patient, offset):
    # these gave the first page without a word: a loop paging by offset read it again and again
    client.force_login(clinician)
    response = client.get(f"/api/patients/?offset={offset}")
    assert response.status_code == 400
    assert response.json() == {
        "detail": f'"offset" must be a whole number of rows from 0, got {offset[:20]!r}'
    }


def test_a_page_offset_past_the_end_is_an_empty_page(client, clinician, patient):
    client.force_login(clinician)
    assert client.get("/api/patients/?offset=").json()["count"] == 1
    assert len(client.get("/api/patients/?offset=0").json()["results"]) == 1
    page = client.get(f"/api/patients/?offset={'9' * 25}").json()
    assert page["count"] == 1 and page["results"] == [] and page["next"] is None
