"""A signal whose size is not an ECG's in millivolts (volts, microvolts, a wrong WFDB gain) is
refused naming its amplitude and the unit it suggests; nothing is stored. A flat lead, or a
lead that was off beside one with ECG, may be real: it is stored and analysed, with a note."""

import io

import numpy as np
import pytest
import wfdb

from inference.synthetic import generate
from monitoring.models import AnalysisStatus, Beat, Recording, SampleChunk
from tests.upload_helpers import api_upload, files_payload

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]

STRIP_MV = generate(30.0, fs=250.0, seed=7).signal_mv


@pytest.fixture
def api(client, clinician):
    client.force_login(clinician)
    return client


def refused(response) -> str:
    """The error message of a refused upload, after checking that nothing was stored."""
    assert response.status_code == 400, response.content
    assert Recording.objects.count() == 0
    assert SampleChunk.objects.count() == 0
    assert Beat.objects.count() == 0
    return response.json()["detail"]


def csv_of(values: np.ndarray) -> bytes:
    buffer = io.StringIO()
    np.savetxt(buffer, values)
    return buffer.getvalue().encode()


def wfdb_files(folder, leads: dict[str, np.ndarray], units: str = "mV", gain: float = 200.0):
    """Record ``rec`` at 250 Hz whose header gives ``units`` and ``gain`` (ADC units per unit)
    for ``leads`` (name: values in those units)."""
    wfdb.wrsamp(
        "rec",
        fs=250,
        units=[units] * len(leads),
        sig_name=list(leads),
        p_signal=np.column_stack(list(leads.values())),
        fmt=["16"] * len(leads),
        adc_gain=[gain] * len(leads),
        baseline=[0] * len(leads),
        write_dir=str(folder),
    )
    return {name: (folder / name).read_bytes() for name in ("rec.hea", "rec.dat")}


def test_a_signal_csv_in_volts_is_refused_naming_its_amplitude(api, patient):
    # it was stored and analysed: 0 beats and one PAUSE over the whole strip
    content = csv_of(STRIP_MV / 1000.0)
    message = refused(api_upload(api, patient.pk, {"ecg.csv": content}, fs_hz=250))
    assert message.startswith("ecg.csv: the signal's amplitude (the 99th percentile of")
    assert "it looks like volts" in message and "convert it first" in message


def test_the_upload_page_shows_the_amplitude_refusal(client, clinician, patient):
    client.force_login(clinician)
    response = client.post(
        f"/patients/{patient.pk}/upload/",
        {"files": files_payload({"ecg.csv": csv_of(STRIP_MV / 1000.0)}), "fs_hz": "250"},
    )
    assert response.status_code == 400
    assert b"it looks like volts" in response.content
    assert Recording.objects.count() == 0


def test_a_wfdb_gain_that_makes_the_signal_tiny_is_refused(api, patient, tmp_path):
    # the values are volts but the header says mV (at a gain that keeps their digits)
    files = wfdb_files(tmp_path, {"MLII": STRIP_MV / 1000.0}, units="mV", gain=200_000.0)
    message = refused(api_upload(api, patient.pk, files))
    assert message.startswith("rec.hea: signal 1 (MLII)'s amplitude")
    assert "it looks like volts" in message and "check the header's units and gain" in message


def test_a_wfdb_header_in_volts_over_millivolt_values_is_refused(api, patient, tmp_path):
    # millivolt values under a header that says V: read as 1000 times too large
    files = wfdb_files(tmp_path, {"MLII": STRIP_MV}, units="V", gain=200.0)
    message = refused(api_upload(api, patient.pk, files))
    assert "above the 50 mV no surface ECG reaches: it looks like microvolts" in message


def test_a_wfdb_record_in_microvolts_labelled_mv_is_refused(api, patient, tmp_path):
    files = wfdb_files(tmp_path, {"MLII": STRIP_MV * 1000.0}, units="mV", gain=0.2)
    message = refused(api_upload(api, patient.pk, files))
    assert "it looks like microvolts" in message


def test_a_flat_signal_csv_is_stored_with_a_note(api, patient, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_upload(api, patient.pk, {"ecg.csv": csv_of(np.zeros(7500))}, fs_hz=250)
    assert response.status_code == 201, response.content
    recording = Recording.objects.get()
    assert recording.analysis_status == AnalysisStatus.DONE
    assert "the signal is flat" in recording.analysis_summary["note"]


def test_a_lead_that_was_off_beside_an_ecg_lead_is_stored(
    api, patient, tmp_path, django_capture_on_commit_callbacks
):
    # the analysed lead carries noise only (a lead off); V1 shows the ECG is in mV
    noise_mv = np.random.default_rng(2).normal(0.0, 0.003, len(STRIP_MV))
    files = wfdb_files(tmp_path, {"MLII": noise_mv, "V1": STRIP_MV}, gain=1000.0)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_upload(api, patient.pk, files)
    assert response.status_code == 201, response.content
    recording = Recording.objects.get()
    assert recording.analysis_status == AnalysisStatus.DONE
    assert recording.analysis_summary["n_beats"] == 0 and recording.analysis_summary["note"]
    # the same lead alone is refused: nothing says it is in mV
    Recording.objects.all().delete()
    (tmp_path / "alone").mkdir()
    alone = wfdb_files(tmp_path / "alone", {"MLII": noise_mv}, gain=1000.0)
    assert "it looks like volts" in refused(api_upload(api, patient.pk, alone))
