"""An upload whose annotations do not fit its signal gets a warning with its agreement.

An annotation file carries no record name or checksum: MIT-BIH 208.atr renamed 119.atr and
uploaded with 119.hea/.dat is accepted, and the agreement (beat-detection Se 0.34) was all that
showed it, with nothing saying so. Synthetic records (inference.synthetic) stand in for it here:
annotations shifted by half a beat, or those of another strip.
"""

import numpy as np
import pytest
import wfdb

from inference.synthetic import generate
from monitoring.analysis import poor_agreement_warning
from monitoring.models import Recording
from tests.upload_helpers import api_upload, synthetic_wfdb

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]

SECONDS = 60.0
FS_HZ = 250  # synthetic_wfdb's rate


@pytest.fixture
def api(client, clinician):
    client.force_login(clinician)
    return client


def upload_with_annotations(api, patient, tmp_path, capture, samples: np.ndarray) -> Recording:
    files = synthetic_wfdb(tmp_path, "syn", seconds=SECONDS)
    samples = samples[(samples >= 0) & (samples < SECONDS * FS_HZ)]
    wfdb.wrann("syn", "atr", samples, np.array(["N"] * len(samples)), write_dir=str(tmp_path))
    files["syn.atr"] = (tmp_path / "syn.atr").read_bytes()
    with capture(execute=True):
        response = api_upload(api, patient.pk, files)
    assert response.status_code == 201, response.content
    return Recording.objects.get(pk=response.json()["id"])


def own_beats() -> np.ndarray:
    # synthetic_wfdb's signal: the same duration, rate and seed
    return np.asarray(generate(SECONDS, fs=FS_HZ, seed=3).beats, dtype=np.int64)


def test_the_records_own_annotations_give_no_warning(
    api, patient, tmp_path, django_capture_on_commit_callbacks
):
    recording = upload_with_annotations(
        api, patient, tmp_path, django_capture_on_commit_callbacks, own_beats()
    )
    agreement = recording.analysis_agreement
    assert agreement["qrs"]["se"] > 0.95 and agreement["qrs"]["ppv"] > 0.95
    assert "warning" not in agreement
    page = api.get(f"/recordings/{recording.pk}/").content.decode()
    assert 'id="agreement-classes"' in page and 'id="agreement-warning"' not in page


@pytest.mark.parametrize(
    "annotations",
    [
        # another time base: every beat half a beat late (about 0.4 s at 75 bpm)
        lambda: own_beats() + int(0.4 * FS_HZ),
        # another strip's annotations with the same rate and length
        lambda: np.asarray(generate(SECONDS, fs=FS_HZ, seed=11, hr_bpm=47).beats),
    ],
    ids=["shifted", "another-strip"],
)
def test_annotations_that_do_not_fit_get_a_warning_on_the_api_and_the_page(
    api, patient, tmp_path, django_capture_on_commit_callbacks, annotations
):
    recording = upload_with_annotations(
        api, patient, tmp_path, django_capture_on_commit_callbacks, annotations()
    )
    qrs = recording.analysis_agreement["qrs"]
    assert min(qrs["se"], qrs["ppv"]) < 0.5
    expected = (
        f"our beats and the annotations match poorly (Se {qrs['se']:.2f}, +P {qrs['ppv']:.2f}): "
        "the annotations may belong to another record or another time base"
    )
    api_agreement = api.get(f"/api/recordings/{recording.pk}/analysis/").json()[
        "analysis_agreement"
    ]
    assert api_agreement["warning"] == expected
    page = api.get(f"/recordings/{recording.pk}/").content.decode()
    assert 'id="agreement-warning"' in page
    assert f"match poorly (Se {qrs['se']:.2f}, +P {qrs['ppv']:.2f})" in page


def test_the_warning_threshold_and_a_signal_without_beats():
    assert poor_agreement_warning({"se": 0.5, "ppv": 0.5}) is None
    assert poor_agreement_warning({"se": 0.99, "ppv": 0.49}).startswith(
        "our beats and the annotations match poorly (Se 0.99, +P 0.49)"
    )
    assert "(Se 0.34, +P 0.35)" in poor_agreement_warning({"se": 0.34, "ppv": 0.35})
    # no beat found: the summary's no-beats note says why; no +P to judge the annotations by
    assert poor_agreement_warning({"se": 0.0, "ppv": None}) is None
