"""CSV files that are not what the upload reads get a message that says what they are: a
file separated by semicolons or tabs, and our own exports, which do not upload again as they
are (docs/review.md says which do)."""

import io
import zipfile

import numpy as np
import pytest

from monitoring.models import Recording, SampleChunk
from tests.upload_helpers import api_upload

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]


@pytest.fixture
def api(client, clinician):
    client.force_login(clinician)
    return client


def refused(response) -> str:
    assert response.status_code == 400, response.content
    assert Recording.objects.filter(source=Recording.Source.UPLOAD).count() == 0
    return response.json()["detail"]


def strip_values(n: int = 2000) -> list[str]:
    return [f"{0.8 * np.sin(i / 10):.4f}" for i in range(n)]


def test_a_semicolon_separated_csv_is_refused_naming_the_separator(api, patient):
    # as a European spreadsheet writes it: a trailing separator, decimal commas
    text = "ecg_mv;\n" + "".join(f"{v.replace('.', ',')};\n" for v in strip_values())
    message = refused(api_upload(api, patient.pk, {"ecg.csv": text.encode()}, fs_hz=250))
    assert message == (
        "ecg.csv line 1 is separated by ';' (semicolons): CardioSpike reads comma-separated "
        "CSV with a decimal point (0.25, not 0,25); save it as comma-separated CSV (CSV UTF-8) "
        "and upload it again"
    )
    # it used to say: header cell 'ecg_mv;' names the unit 'mv;'
    assert "unit" not in message


def test_a_semicolon_separated_csv_without_a_header_is_refused_so(api, patient):
    text = "".join(f"{v};{v}\n" for v in strip_values())
    message = refused(api_upload(api, patient.pk, {"ecg.csv": text.encode()}, fs_hz=250))
    assert message.startswith("ecg.csv line 1 is separated by ';' (semicolons)")


def test_a_tab_separated_file_is_refused_naming_the_separator(api, patient):
    text = "".join(f"{v}\t{v}\n" for v in strip_values())
    message = refused(api_upload(api, patient.pk, {"ecg.txt": text.encode()}, fs_hz=250))
    assert message.startswith("ecg.txt line 1 is separated by tabs")


def test_whitespace_after_a_comma_is_no_tab_separator(api, patient, rng):
    # a comma-separated beat-row file with a tab after some commas is read as before
    rows = ["0.1,\t" + ",".join(f"{v:.4f}" for v in rng.random(186)) for _ in range(5)]
    response = api_upload(api, patient.pk, {"rows.csv": "\n".join(rows).encode()})
    assert response.status_code == 201, response.content


@pytest.fixture
def device_recording_with_gap(recording):
    """The conftest device recording (250 Hz, 200 ADC/mV, lead II): 3 s, a 1-s gap, 3 s."""
    ecg = (200 * 0.8 * np.sin(np.arange(1750) / 10)).astype(np.int16)
    SampleChunk.from_samples(recording, 0, 0, ecg[:750]).save()
    SampleChunk.from_samples(recording, 1, 1000, ecg[1000:]).save()
    return recording


def test_our_csv_export_is_refused_naming_it(api, patient, device_recording_with_gap):
    pk = device_recording_with_gap.pk
    export = b"".join(api.get(f"/api/recordings/{pk}/export.csv").streaming_content)
    assert export.startswith(b"time_s,sample,II_mv,lead_off\n")
    message = refused(api_upload(api, patient.pk, {"recording.csv": export}, fs_hz=250))
    assert message == (
        "recording.csv is a CardioSpike signal CSV export (time_s, sample, a column per lead, "
        "lead_off), which does not upload again as it is: upload the recording's WFDB export "
        "(.hea + .dat, and its .atr), or one lead's column alone (such as II_mv) as a "
        "one-column signal CSV with its sampling rate"
    )


def test_our_wfdb_export_with_a_gap_is_refused_saying_why(api, patient, device_recording_with_gap):
    pk = device_recording_with_gap.pk
    response = api.get(f"/api/recordings/{pk}/export.zip?format=wfdb")
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    message = refused(api_upload(api, patient.pk, files))
    assert message == (
        f"recording-{pk}.hea: signal 1 (II) has 250 missing samples (first at sample 750, the "
        "value -32768 that WFDB reads as missing; a CardioSpike WFDB export writes a device "
        "recording's gaps so); an upload cannot hold gaps: fill or cut them before uploading"
    )
