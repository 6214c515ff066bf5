"""A strip centred on a beat keeps its length near either end of the recording: it is moved
to fit, not cut (monitoring.strips.strip_request), as the alarm e-mail's strip is
(monitoring.notifications.alarm_strip_window).

Before the fix a 10 s strip centred on a beat 0.8 s before the end of a 30 s recording was cut
at the end: 5.8 s long.
"""

import numpy as np
import pytest

from monitoring.models import AnalysisStatus, Beat, SampleChunk
from monitoring.strips import strip_request

pytestmark = pytest.mark.django_db

FS_HZ = 250.0  # the conftest recording's rate
N_SAMPLES = round(30 * FS_HZ)
BEAT_SAMPLES = list(range(100, N_SAMPLES, 200))  # every 0.8 s from 0.4 s to 29.2 s
TEN_S = round(10 * FS_HZ)


@pytest.fixture
def analysed(recording, rng):
    """30 s of stored signal with a beat every 0.8 s, analysed."""
    adc = rng.integers(-300, 300, size=N_SAMPLES).astype(np.int16)
    SampleChunk.from_samples(recording, 0, 0, adc).save()
    Beat.objects.bulk_create(
        Beat(
            recording=recording,
            index=i,
            sample=sample,
            label="N",
            confidence=0.9,
            probabilities={"N": 0.9, "S": 0.1, "V": 0.0, "F": 0.0, "Q": 0.0},
        )
        for i, sample in enumerate(BEAT_SAMPLES)
    )
    recording.end_sample = N_SAMPLES
    recording.analysis_status = AnalysisStatus.DONE
    recording.save()
    return recording


def test_a_beat_near_the_end_gets_a_strip_of_full_length_moved_back(analysed):
    last = len(BEAT_SAMPLES)
    strip = strip_request(analysed, None, "10", str(last))
    assert (strip.start, strip.end) == (N_SAMPLES - TEN_S, N_SAMPLES)
    assert strip.start <= BEAT_SAMPLES[-1] < strip.end


def test_a_beat_near_the_start_gets_a_strip_of_full_length(analysed):
    strip = strip_request(analysed, None, "10", "1")
    assert (strip.start, strip.end) == (0, TEN_S)


def test_a_beat_in_the_middle_stays_centred(analysed):
    strip = strip_request(analysed, None, "10", "20")
    beat = BEAT_SAMPLES[19]
    assert (strip.start, strip.end) == (beat - TEN_S // 2, beat + TEN_S // 2)


def test_only_a_recording_shorter_than_the_strip_gives_a_shorter_one(analysed):
    strip = strip_request(analysed, None, "60", str(len(BEAT_SAMPLES)))
    assert (strip.start, strip.end) == (0, N_SAMPLES)


def test_a_typed_start_is_still_cut_at_the_end(analysed):
    # a start the user gave is kept as typed (and the strip cut at the recording's end)
    strip = strip_request(analysed, "25", "10", str(len(BEAT_SAMPLES)))
    assert (strip.start, strip.end) == (round(25 * FS_HZ), N_SAMPLES)
