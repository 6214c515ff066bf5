"""The simulator's synthetic sources show what their names promise to the shipped analysis.

The ``vt`` source must be read as ventricular tachycardia by the MIT-BIH-trained beat
classifier: with the isolated PVC's waves, two strips in three were labelled all N and the
demo's VT source raised no VT alarm (inference/synthetic.py, ``VT_WAVES``).
"""

import collections

import numpy as np
import pytest

from inference.analysis import analyze_signal
from monitoring.models import Alarm, Recording
from monitoring.protocol import Chunk
from monitoring.simulator import load_source, to_adc
from tests.test_streaming_analysis import deliver

FS_HZ = 250.0
GAIN_ADC_PER_MV = 200.0


# seeds 0 and 2 drew a downward focus, which the isolated PVC's waves made "N" throughout
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_vt_source_is_labelled_ventricular_and_is_one_long_vt_episode(seed):
    signal_mv = load_source("vt", FS_HZ, duration_s=60.0, seed=seed)
    analysis = analyze_signal(signal_mv, FS_HZ)
    labels = collections.Counter(analysis.labels)
    assert len(analysis.labels) >= 150  # about 170 bpm for a minute
    assert labels["V"] / len(analysis.labels) >= 0.9
    vt_s = sum(e.end_s - e.start_s for e in analysis.episodes if e.kind == "VT")
    assert vt_s >= 50.0  # most of the minute, not a few short runs


@pytest.mark.django_db
def test_the_vt_source_streamed_by_a_device_raises_the_vt_alarm(
    device, eager_celery, django_capture_on_commit_callbacks
):
    # what the demo does: the device's ADC samples through the ingest path and the live
    # analysis, in 1-s chunks as the simulator sends them (seed 1: a 40-s strip whose focus
    # the isolated PVC's waves drew downward, all N and no alarm)
    adc = to_adc(load_source("vt", FS_HZ, duration_s=40.0, seed=1), GAIN_ADC_PER_MV)
    chunk_n = round(FS_HZ)
    for seq, start in enumerate(range(0, len(adc), chunk_n)):
        chunk = Chunk(
            seq=seq,
            first_sample=start,
            fs_hz=FS_HZ,
            gain_adc_per_mv=GAIN_ADC_PER_MV,
            baseline_adc=0,
            n_channels=1,
            samples=adc[start : start + chunk_n, np.newaxis],
            session="vtsource",
        )
        deliver(device, chunk, django_capture_on_commit_callbacks)
    recording = Recording.objects.get()
    assert recording.episodes.filter(kind="VT").exists()
    assert Alarm.objects.filter(patient=device.patient, kind="VT").exists()
