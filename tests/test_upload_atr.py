"""An uploaded .atr must be a whole WFDB annotation file: one cut short (or with bytes after
its end) is refused naming the file, and nothing is stored.

wfdb.rdann reads whatever words a file holds and never looks for the end-of-file marker, so
the first 100 bytes of MIT-BIH 119.atr were taken as a reference of 37 beats (of 1987): the
agreement then counted 1951 of our beats as extra (+P 0.019), which read as a broken detector.
"""

import glob
from pathlib import Path

import numpy as np
import pytest
import wfdb

from monitoring.models import Beat, Recording, SampleChunk
from monitoring.uploads import UploadError, annotation_file_problem, parse_upload
from tests.upload_helpers import api_upload, mitdb_folder, synthetic_wfdb

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]


@pytest.fixture
def api(client, clinician):
    client.force_login(clinician)
    return client


def mitdb_119() -> dict[str, bytes]:
    folder = mitdb_folder()
    return {f"119.{ext}": (folder / f"119.{ext}").read_bytes() for ext in ("hea", "dat", "atr")}


def test_a_truncated_atr_is_refused_and_nothing_is_stored(api, patient):
    files = mitdb_119()
    files["119.atr"] = files["119.atr"][:100]
    response = api_upload(api, patient.pk, files)
    assert response.status_code == 400, response.content
    message = response.json()["detail"]
    assert message.startswith("119.atr is cut short")
    assert "end-of-file marker (two zero bytes)" in message
    assert Recording.objects.count() == 0
    assert SampleChunk.objects.count() == 0
    assert Beat.objects.count() == 0


def test_every_cut_of_a_real_atr_is_refused():
    """Not only the 100-byte cut: whatever byte the file is cut at, the marker is missing
    (a cut inside a SKIP interval or an AUX note too, whose bytes may be zero)."""
    data = (mitdb_folder() / "119.atr").read_bytes()
    accepted = [n for n in range(len(data)) if annotation_file_problem("119.atr", data[:n]) is None]
    assert accepted == []
    assert annotation_file_problem("119.atr", data) is None


def test_bytes_after_the_end_of_file_marker_are_refused(tmp_path):
    files = synthetic_wfdb(tmp_path, "syn", seconds=10.0)
    wfdb.wrann("syn", "atr", np.array([100, 300]), np.array(["N", "V"]), write_dir=str(tmp_path))
    whole = (tmp_path / "syn.atr").read_bytes()
    files["syn.atr"] = whole + whole  # two files joined: wfdb.rdann read both, for 4 beats
    with pytest.raises(UploadError, match=r"syn\.atr .*bytes follow its end-of-file marker"):
        parse_upload(list(files.items()))
    # zero padding after the marker (some writers round files up) ends it all the same
    assert annotation_file_problem("syn.atr", whole + bytes(4)) is None
    files["syn.atr"] = whole
    parsed = parse_upload(list(files.items()))
    assert parsed.reference == {"samples": [100, 300], "labels": ["N", "V"]}


def test_every_atr_of_the_data_folder_is_whole():
    """The check refuses no real file: every .atr of mitdb, nstdb and vfdb ends with the
    marker, as does every file wfdb.wrann writes (the WFDB export's)."""
    folder = mitdb_folder().parent
    paths = sorted(glob.glob(str(folder / "*" / "*.atr")))
    assert len(paths) >= 48
    problems = [annotation_file_problem(p, Path(p).read_bytes()) for p in paths]
    assert [p for p in problems if p is not None] == []
