"""A strip that explains a beat must show that beat (monitoring.strips.strip_request).

Before the fix ``strip.png?start_s=10&length_s=5&beat=2`` drew 10-15 s titled "saliency of
beat 2 (V)" with neither beat 2 (at 1.2 s) nor its overlay in it.

A strip centred on a beat keeps its length near either end of the recording: it is moved to
fit, not cut, as the alarm e-mail's strip is (monitoring.notifications.alarm_strip_window).
Before that fix a 10 s strip centred on a beat 0.8 s before the end of a 30 s recording was
cut at the end: 5.8 s long.
"""

import numpy as np
import pytest
from django.utils.html import escape

from monitoring.models import AnalysisStatus, Beat, SampleChunk
from monitoring.strips import strip_request

pytestmark = pytest.mark.django_db

FS_HZ = 250.0  # the conftest recording's rate
N_SAMPLES = round(30 * FS_HZ)
BEAT_SAMPLES = list(range(100, N_SAMPLES, 200))  # every 0.8 s from 0.4 s; beat 2 at 1.2 s
OUTSIDE = "beat 2 (at 1.20 s) is not in the strip 10.00-15.00 s"
TEN_S = round(10 * FS_HZ)


@pytest.fixture
def analysed(recording, rng):
    """30 s of stored signal with a beat every 0.8 s (beat 2 a V), analysed."""
    adc = rng.integers(-300, 300, size=N_SAMPLES).astype(np.int16)
    SampleChunk.from_samples(recording, 0, 0, adc).save()
    Beat.objects.bulk_create(
        Beat(
            recording=recording,
            index=i,
            sample=sample,
            label="V" if i == 1 else "N",
            confidence=0.9,
            probabilities={"N": 0.1, "S": 0.0, "V": 0.9, "F": 0.0, "Q": 0.0},
        )
        for i, sample in enumerate(BEAT_SAMPLES)
    )
    recording.end_sample = N_SAMPLES
    recording.analysis_status = AnalysisStatus.DONE
    recording.save()
    return recording


@pytest.fixture
def api(client, clinician):
    client.force_login(clinician)
    return client


def test_a_beat_outside_the_strip_is_refused_naming_both(api, analysed):
    response = api.get(
        f"/api/recordings/{analysed.pk}/strip.png",
        {"start_s": "10", "length_s": "5", "beat": "2"},
    )
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert OUTSIDE in detail and "leave the start (start_s) empty" in detail


def test_a_beat_just_past_the_strips_end_is_refused(analysed):
    # the strip is [start, end): a beat on its end sample is not drawn
    beat_20_s = BEAT_SAMPLES[19] / FS_HZ  # 15.6 s
    with pytest.raises(ValueError, match=r"beat 20 \(at 15.60 s\) is not in the strip"):
        strip_request(analysed, beat_20_s - 2.0, 2.0, 20)
    inside = strip_request(analysed, beat_20_s - 2.0 + 1 / FS_HZ, 2.0, 20)
    assert inside.start <= BEAT_SAMPLES[19] < inside.end


def test_without_a_start_the_strip_is_centred_on_the_beat(analysed):
    strip = strip_request(analysed, None, "5", "20")
    beat = BEAT_SAMPLES[19]
    assert strip.beat.sample == beat
    assert (strip.start, strip.end) == (beat - round(2.5 * FS_HZ), beat + round(2.5 * FS_HZ))
    # a start that holds the beat is kept as typed
    kept = strip_request(analysed, "14", "5", "20")
    assert (kept.start, kept.end) == (round(14 * FS_HZ), round(19 * FS_HZ))


def test_the_results_page_form_says_why_and_draws_no_strip(api, analysed):
    # the form keeps the start of the strip looked at before: typing a beat elsewhere in
    # "Explain beat #" sends both
    page = api.get(
        f"/recordings/{analysed.pk}/", {"start_s": "10", "length_s": "5", "beat": "2"}
    ).content.decode()
    assert 'id="strip-error"' in page and escape(OUTSIDE) in page
    assert 'id="strip"' not in page


# --- A strip centred on a beat -------------------------------------------------------


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
