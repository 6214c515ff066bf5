"""Non-ASCII lead names in the exports: a WFDB header is ASCII (wfdb reads it so and drops
any other byte), so the WFDB export writes each name in ASCII by a stable rule and keeps the
names unique; the CSV exports keep them as they are (docs/review.md)."""

import io
import zipfile

import numpy as np
import pytest
import wfdb

from monitoring.models import Recording, SampleChunk
from monitoring.review import ascii_lead_name, export_lead_names

pytestmark = pytest.mark.django_db

LEADS = ["Ableitung Ⅱ", "導程", "II", "Ⅱ", "Dérivation  V1"]


@pytest.mark.parametrize(
    ("name", "ascii"),
    [
        ("MLII", "MLII"),
        ("Ableitung Ⅱ", "Ableitung II"),  # the Roman numeral's compatibility form
        ("Dérivation  V1", "Derivation V1"),  # the accent dropped, spaces made one
        ("Ä", "A"),
        ("導程", "ch3"),  # nothing left: the channel's number
        ("導程 II", "II"),
    ],
)
def test_ascii_lead_name(name, ascii):
    assert ascii_lead_name(name, 2) == ascii
    assert ascii_lead_name(name, 2) == ascii_lead_name(name, 2)  # stable


def test_names_made_ascii_stay_unique():
    recording = Recording(lead_names=LEADS, n_channels=len(LEADS))
    assert export_lead_names(recording, ascii_only=True) == [
        "Ableitung II",
        "ch2",
        "II",
        "II-ch4",  # Ⅱ became II, which lead 3 holds
        "Derivation V1",
    ]
    assert export_lead_names(recording) == LEADS  # the CSV's names, unchanged


def test_a_wfdb_export_of_non_ascii_lead_names_reads_back_with_wfdb(
    client, clinician, patient, tmp_path
):
    recording = Recording.objects.create(
        patient=patient,
        sampling_rate_hz=250.0,
        gain_adc_per_mv=200.0,
        n_channels=len(LEADS),
        lead_names=LEADS,
    )
    adc = np.random.default_rng(1).integers(-300, 300, size=(1000, len(LEADS))).astype(np.int16)
    SampleChunk.from_samples(recording, 0, 0, adc).save()
    client.force_login(clinician)

    response = client.get(f"/api/recordings/{recording.pk}/export.zip?format=wfdb")
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        archive.extractall(tmp_path)
    header = (tmp_path / f"recording-{recording.pk}.hea").read_bytes()
    assert header.isascii()
    record = wfdb.rdrecord(str(tmp_path / f"recording-{recording.pk}"), physical=False)
    # before, wfdb read back "Ableitung", None, "II", None, "Drivation  V1"
    assert record.sig_name == ["Ableitung II", "ch2", "II", "II-ch4", "Derivation V1"]
    assert np.array_equal(record.d_signal, adc)

    lines = b"".join(client.get(f"/api/recordings/{recording.pk}/export.csv").streaming_content)
    assert lines.decode().splitlines()[0] == (
        "time_s,sample,Ableitung Ⅱ_mv,導程_mv,II_mv,Ⅱ_mv,Dérivation  V1_mv,lead_off"
    )
