"""A device sample of -32768 reads the same in every format: WFDB format 16 reserves -32768
for a missing sample, so the WFDB export writes a stored -32768 as -32767 (one ADC unit) and
only gaps read back as missing; the CSV and the signal API give the stored value
(docs/review.md, Gaps)."""

import csv
import io
import zipfile

import numpy as np
import pytest
import wfdb
from rest_framework.test import APIClient

from monitoring.models import Recording
from monitoring.protocol import Chunk, encode_json_chunk

pytestmark = pytest.mark.django_db

FS_HZ = 250.0
GAIN_ADC_PER_MV = 1000.0
N_FIRST, GAP_END, N_SAMPLES = 500, 750, 1000  # stored [0, 500) and [750, 1000): a gap between
RAIL_SAMPLE, TOP_SAMPLE = 100, 101


@pytest.fixture
def recording_at_the_rail(device_token, clinician):
    """A device recording posted as a device posts it: -32768 at sample 100, 32767 at 101,
    and a 250-sample gap (chunk seq 1 starts at 750)."""
    adc = (np.arange(N_SAMPLES) % 200 - 100).astype(np.int16)
    adc[RAIL_SAMPLE], adc[TOP_SAMPLE] = -32768, 32767
    device = APIClient()
    device.credentials(HTTP_AUTHORIZATION=f"Device {device_token}")
    for seq, (start, end) in enumerate([(0, N_FIRST), (GAP_END, N_SAMPLES)]):
        chunk = Chunk(
            seq=seq,
            first_sample=start,
            fs_hz=FS_HZ,
            gain_adc_per_mv=GAIN_ADC_PER_MV,
            n_channels=1,
            samples=adc[start:end, np.newaxis],
            session="rail0001",
        )
        response = device.post(
            "/api/device/v1/chunks/", encode_json_chunk(chunk), content_type="application/json"
        )
        assert response.status_code == 201, response.content
    recording = Recording.objects.get()
    recording.test_adc = adc
    return recording


def test_a_stored_minus_32768_is_a_value_in_every_format_and_only_the_gap_is_missing(
    client, clinician, recording_at_the_rail, tmp_path
):
    recording, adc = recording_at_the_rail, recording_at_the_rail.test_adc
    client.force_login(clinician)
    stored = np.r_[0:N_FIRST, GAP_END:N_SAMPLES]

    response = client.get(f"/api/recordings/{recording.pk}/export.zip?format=wfdb")
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        archive.extractall(tmp_path)
    name = str(tmp_path / f"recording-{recording.pk}")
    d_signal = wfdb.rdrecord(name, physical=False).d_signal[:, 0]
    record = wfdb.rdrecord(name)
    physical_mv = record.p_signal[:, 0]
    # the gap, and only the gap, reads as missing
    assert np.isnan(physical_mv[N_FIRST:GAP_END]).all()
    assert np.isfinite(physical_mv[stored]).all()
    # the rail sample one ADC unit up, said in the header; every other sample as stored
    assert d_signal[RAIL_SAMPLE] == -32767
    assert physical_mv[RAIL_SAMPLE] == pytest.approx(-32.767)
    others = stored[stored != RAIL_SAMPLE]
    np.testing.assert_array_equal(d_signal[others], adc[others])
    assert d_signal[TOP_SAMPLE] == 32767
    assert (
        "1 stored samples of -32768 written as -32767: format 16 reads -32768 as missing, "
        "which marks only the gaps here"
    ) in record.comments

    lines = b"".join(client.get(f"/api/recordings/{recording.pk}/export.csv").streaming_content)
    rows = list(csv.DictReader(io.StringIO(lines.decode())))
    assert len(rows) == N_SAMPLES
    assert float(rows[RAIL_SAMPLE]["II_mv"]) == pytest.approx(-32.768)
    assert float(rows[TOP_SAMPLE]["II_mv"]) == pytest.approx(32.767)
    assert all(row["II_mv"] == "" for row in rows[N_FIRST:GAP_END])
    csv_mv = np.array([float(rows[i]["II_mv"]) for i in stored])
    # the formats agree to the one ADC unit at the rail sample and exactly elsewhere
    assert np.abs(csv_mv - physical_mv[stored]).max() == pytest.approx(0.001)
    np.testing.assert_allclose(csv_mv[stored != RAIL_SAMPLE], physical_mv[others], atol=1e-9)

    window = client.get(
        f"/api/recordings/{recording.pk}/signal/?start_s=0&length_s=4&max_points=2000"
    ).json()
    assert window["step"] == 1
    assert window["values"][RAIL_SAMPLE] == pytest.approx(-32.768)
    assert all(value is None for value in window["values"][N_FIRST:GAP_END])
