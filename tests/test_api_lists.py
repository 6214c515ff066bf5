"""The REST API as a researcher's script uses it: lists that stay cheap per row on long
recordings, filters that filter, and refusals that name the mistake."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from monitoring.models import AnalysisStatus, ApiToken, Beat, Recording, UploadFormat

pytestmark = pytest.mark.django_db

# An upload's reference annotations, as long as a 24-hour record's are (one per beat).
N_REFERENCE = 100_000


def analysed_upload(patient, n_beats: int) -> Recording:
    recording = Recording.objects.create(
        patient=patient,
        source=Recording.Source.UPLOAD,
        upload_format=UploadFormat.WFDB,
        sampling_rate_hz=360.0,
        gain_adc_per_mv=200.0,
        n_channels=1,
        lead_names=["MLII"],
        analysis_status=AnalysisStatus.DONE,
        reference_annotations={
            "samples": list(range(0, 360 * N_REFERENCE, 360)),
            "labels": ["N"] * N_REFERENCE,
        },
    )
    Beat.objects.bulk_create(
        Beat(
            recording=recording,
            index=index,
            sample=100 + 300 * index,
            label="N",
            confidence=0.9,
            probabilities={"N": 0.9, "S": 0.1},
        )
        for index in range(n_beats)
    )
    return recording


def selects_of(queries) -> list[str]:
    return [query["sql"] for query in queries if query["sql"].lstrip().startswith("SELECT")]


def test_a_page_of_beats_reads_no_recording_row_per_beat(client, clinician, patient):
    # The beats were read with select_related("recording"): every beat carried the recording's
    # row, its reference annotations decoded again for each (a 1,000-beat page of record 208,
    # 2,955 annotations, took 1.0 s; 60 ms without).
    recording = analysed_upload(patient, n_beats=150)
    client.force_login(clinician)
    with CaptureQueriesContext(connection) as queries:
        page = client.get(f"/api/recordings/{recording.pk}/beats/?limit=120").json()
    assert page["count"] == 150 and len(page["results"]) == 120
    assert page["results"][1] == {
        "number": 2,
        "sample": 400,
        "time_s": round(400 / 360, 4),
        "label": "N",
        "confidence": 0.9,
        "probabilities": {"N": 0.9, "S": 0.1},
        "reference_label": "",
        "row": None,
        "provisional": False,
    }
    beat_selects = [sql for sql in selects_of(queries) if '"monitoring_beat"."index"' in sql]
    assert beat_selects, selects_of(queries)
    for sql in beat_selects:
        assert "reference_annotations" not in sql, sql
    # the recording itself once: the beats' query and the count are the others
    recording_selects = [sql for sql in selects_of(queries) if "reference_annotations" in sql]
    assert len(recording_selects) == 1, recording_selects


def test_a_page_of_recordings_leaves_out_what_it_does_not_answer(client, staff_user, patient):
    # every row decoded its reference annotations (and summary, agreement, stream state)
    # although the list shows none of them
    for _ in range(3):
        analysed_upload(patient, n_beats=0)
    client.force_login(staff_user)
    with CaptureQueriesContext(connection) as queries:
        page = client.get("/api/recordings/").json()
        one = client.get(f"/api/recordings/{page['results'][0]['id']}/").json()
    assert page["count"] == 3 and one["lead_names"] == ["MLII"]
    for sql in selects_of(queries):
        for column in ("reference_annotations", "analysis_summary", "stream_state"):
            assert column not in sql, sql


def test_recordings_are_filtered_by_patient(client, staff_user, patient, other_patient):
    # ?patient= was ignored: a script asking for one patient's recordings got everyone's
    mine = analysed_upload(patient, n_beats=0)
    theirs = analysed_upload(other_patient, n_beats=0)
    client.force_login(staff_user)
    assert client.get("/api/recordings/").json()["count"] == 2
    page = client.get(f"/api/recordings/?patient={patient.pk}").json()
    assert [row["id"] for row in page["results"]] == [mine.pk]
    page = client.get(f"/api/recordings/?patient={other_patient.pk}").json()
    assert [row["id"] for row in page["results"]] == [theirs.pk]
    assert client.get("/api/recordings/?patient=999999").json()["count"] == 0
    for bad in ("abc", "-1", "1.5", "9" * 40):
        response = client.get(f"/api/recordings/?patient={bad}")
        assert response.status_code == 400, bad
        assert response.json() == {"detail": "patient must be a patient id (a whole number)"}


def test_a_clinician_filtering_by_an_unassigned_patient_gets_nothing(
    client, clinician, patient, other_patient
):
    analysed_upload(other_patient, n_beats=0)
    _, key = ApiToken.issue(clinician)
    response = client.get(
        f"/api/recordings/?patient={other_patient.pk}", HTTP_AUTHORIZATION=f"Token {key}"
    )
    assert response.status_code == 200 and response.json()["count"] == 0


def test_a_device_token_on_a_user_endpoint_is_told_what_it_opens(client, device_token):
    # it was "Authentication credentials were not provided.", as if no header had been sent
    for path in ("/api/patients/", "/api/me/", "/api/recordings/"):
        response = client.get(path, HTTP_AUTHORIZATION=f"Device {device_token}")
        assert response.status_code == 401, path
        assert response.json() == {
            "detail": "A device token opens only the device endpoints (/api/device/v1/); "
            "send a user's API key as 'Authorization: Token <key>'."
        }
    # and it still opens its own
    response = client.get("/api/device/v1/self/", HTTP_AUTHORIZATION=f"Device {device_token}")
    assert response.status_code == 200
