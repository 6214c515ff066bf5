"""Uploads and results follow the house rules: clinicians only their patients, staff all."""

import pytest

from monitoring.models import Recording
from tests.upload_helpers import api_upload, files_payload, pending_csv_upload, signal_csv

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]


@pytest.fixture
def uploaded(other_patient):
    """A stored upload of another clinician's patient (analysis not run)."""
    return pending_csv_upload(other_patient)


RESULT_URLS = [
    "/api/recordings/{pk}/analysis/",
    "/api/recordings/{pk}/beats/",
    "/api/recordings/{pk}/beats/1/saliency/",
    "/api/recordings/{pk}/results.csv",
    "/api/recordings/{pk}/strip.png",
    "/recordings/{pk}/",
]


def test_it_hides_another_clinicians_patient_from_the_upload(client, clinician, other_patient):
    client.force_login(clinician)
    response = api_upload(client, other_patient.pk, {"ecg.csv": signal_csv(10)}, fs_hz=250)
    assert response.status_code == 404
    page = client.post(
        f"/patients/{other_patient.pk}/upload/",
        {"files": files_payload({"ecg.csv": signal_csv(10)}), "fs_hz": "250"},
    )
    assert page.status_code == 404
    assert client.get(f"/patients/{other_patient.pk}/upload/").status_code == 404
    assert Recording.objects.count() == 0


@pytest.mark.parametrize("url", RESULT_URLS)
def test_it_hides_another_clinicians_results(client, clinician, uploaded, url):
    client.force_login(clinician)
    assert client.get(url.format(pk=uploaded.pk)).status_code == 404


def test_it_refuses_to_reanalyse_another_clinicians_upload(client, clinician, uploaded):
    client.force_login(clinician)
    assert client.post(f"/recordings/{uploaded.pk}/analyze/").status_code == 404
    assert client.post(f"/api/recordings/{uploaded.pk}/analyze/").status_code == 404
    uploaded.refresh_from_db()
    assert uploaded.analysis_status == "pending" and not uploaded.beats.exists()


def test_it_shows_results_to_the_assigned_clinician_and_staff(
    client, other_clinician, staff_user, uploaded
):
    for user in (other_clinician, staff_user):
        client.force_login(user)
        response = client.get(f"/api/recordings/{uploaded.pk}/analysis/")
        assert response.status_code == 200
        assert response.json()["analysis_status"] == "pending"
        assert client.get(f"/recordings/{uploaded.pk}/").status_code == 200


def test_it_answers_409_for_results_not_there_yet(client, other_clinician, uploaded):
    client.force_login(other_clinician)
    for url in ("/api/recordings/{pk}/results.csv", "/api/recordings/{pk}/strip.png"):
        response = client.get(url.format(pk=uploaded.pk), HTTP_ACCEPT="image/png")
        assert response.status_code == 409
        assert "no analysis results yet" in response.json()["detail"]


def test_it_answers_anonymous_api_requests_401_and_pages_with_login(client, patient, uploaded):
    response = api_upload(client, patient.pk, {"ecg.csv": signal_csv(10)}, fs_hz=250)
    assert response.status_code == 401
    assert client.get(f"/api/recordings/{uploaded.pk}/analysis/").status_code == 401
    page = client.get(f"/patients/{patient.pk}/upload/")
    assert page.status_code == 302 and "/login/" in page["Location"]


def test_the_patient_page_links_to_the_upload_form(client, clinician, patient):
    client.force_login(clinician)
    page = client.get(f"/patients/{patient.pk}/").content.decode()
    assert f'href="/patients/{patient.pk}/upload/"' in page
    form = client.get(f"/patients/{patient.pk}/upload/").content.decode()
    assert 'name="files" multiple' in form and 'enctype="multipart/form-data"' in form
