"""The exports name the stored values' true unit: the Kaggle beat rows are normalized 0..1,
not millivolts, so their WFDB header says NU and their CSV column ends ``_nu``; every other
recording is in mV (``_mv``)."""

import io
import zipfile

import numpy as np
import pytest
import wfdb

from monitoring.uploads import parse_upload, store_upload

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]


@pytest.fixture
def api(client, clinician):
    client.force_login(clinician)
    return client


def rows_upload(patient, rng, width: int, scale: float):
    rows = scale * rng.random((20, width))
    text = "\n".join(",".join(f"{v:.5f}" for v in row) for row in rows) + "\n"
    parsed = parse_upload([("rows.csv", text.encode())])
    return store_upload(patient, parsed), rows


def exported(api, recording, tmp_path):
    response = api.get(f"/api/recordings/{recording.pk}/export.zip?format=wfdb")
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        archive.extractall(tmp_path)
    name = f"recording-{recording.pk}"
    header = (tmp_path / f"{name}.hea").read_text()
    record = wfdb.rdrecord(str(tmp_path / name))
    csv_lines = b"".join(api.get(f"/api/recordings/{recording.pk}/export.csv").streaming_content)
    return header, record, csv_lines.decode().splitlines()


def test_kaggle_rows_export_in_normalized_units(api, patient, rng, tmp_path):
    recording, rows = rows_upload(patient, rng, 187, 1.0)
    assert recording.upload_format == "kaggle187"
    header, record, lines = exported(api, recording, tmp_path)
    assert record.units == ["NU"]
    assert "/NU" in header and "/mV" not in header  # was "32000.0(0)/mV"
    # the values are the rows' own 0..1 values, in NU
    np.testing.assert_allclose(record.p_signal[:187, 0], rows[0], atol=1e-4)
    assert lines[0] == "time_s,sample,beat rows (0..1)_nu,lead_off"  # was "..._mv"
    assert float(lines[1].split(",")[2]) == pytest.approx(rows[0, 0], abs=1e-4)


def test_window216_rows_export_in_millivolts(api, patient, rng, tmp_path):
    recording, _ = rows_upload(patient, rng, 216, 3.0)
    assert recording.upload_format == "window216"
    header, record, lines = exported(api, recording, tmp_path)
    assert record.units == ["mV"]
    assert lines[0] == "time_s,sample,beat rows (mV)_mv,lead_off"


def test_a_device_recording_exports_in_millivolts(api, recording, tmp_path):
    from monitoring.models import SampleChunk

    SampleChunk.from_samples(recording, 0, 0, np.zeros(1000, dtype=np.int16)).save()
    _, record, lines = exported(api, recording, tmp_path)
    assert record.units == ["mV"]
    assert lines[0] == "time_s,sample,II_mv,lead_off"


def wfdb_export_files(api, recording) -> dict[str, bytes]:
    response = api.get(f"/api/recordings/{recording.pk}/export.zip?format=wfdb")
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_the_kaggle_rows_wfdb_export_does_not_upload_again_as_an_ecg(api, patient, rng):
    """In mV, it uploaded as an ECG of 0..1 mV beats laid end to end; in NU it is refused as
    not a voltage (docs/review.md says which exports upload again)."""
    from tests.upload_helpers import api_upload

    recording, _ = rows_upload(patient, rng, 187, 1.0)
    response = api_upload(api, patient.pk, wfdb_export_files(api, recording))
    assert response.status_code == 400, response.content
    assert response.json()["detail"] == (
        f"recording-{recording.pk}.hea: signal 1 (beat rows (0..1)) is in 'NU'; ECG channels "
        "must be in mV, uV or V"
    )
