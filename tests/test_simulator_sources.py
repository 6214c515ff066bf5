"""The simulator's synthetic sources show what their names promise to the shipped analysis.

The ``vt`` source must be read as ventricular tachycardia by the MIT-BIH-trained beat
classifier: with the isolated PVC's waves, two strips in three were labelled all N and the
demo's VT source raised no VT alarm (inference/synthetic.py, ``VT_WAVES``). The ``pause``
and ``tachy`` sources must be over the default alarm limits (3 s, 120 bpm): they drew pauses of
2.5-3.5 s and 118 bpm, and two strips in three showed no pause, none a tachycardia.
"""

import collections

import numpy as np
import pytest

from inference.analysis import analyze_signal
from inference.rhythm import RhythmConfig
from monitoring.models import Alarm, Patient, Recording
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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_pause_source_pauses_longer_than_the_default_limit(seed):
    default_pause_limit_s = Patient._meta.get_field("pause_limit_s").default
    signal_mv = load_source("pause", FS_HZ, duration_s=60.0, seed=seed)
    analysis = analyze_signal(signal_mv, FS_HZ, RhythmConfig(pause_s=float(default_pause_limit_s)))
    pauses_s = [e.end_s - e.start_s for e in analysis.episodes if e.kind == "PAUSE"]
    assert len(pauses_s) == 1  # one a minute
    assert pauses_s[0] >= default_pause_limit_s + 0.4  # not a borderline pause


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_tachy_source_is_faster_than_the_default_high_limit(seed):
    high_limit_bpm = Patient._meta.get_field("hr_high_limit_bpm").default
    signal_mv = load_source("tachy", FS_HZ, duration_s=60.0, seed=seed)
    analysis = analyze_signal(signal_mv, FS_HZ)
    rate_bpm = 60.0 / np.diff(analysis.r_peaks / FS_HZ)
    assert np.median(rate_bpm) >= high_limit_bpm + 10
    assert [e.kind for e in analysis.episodes] == ["TACHY"]
