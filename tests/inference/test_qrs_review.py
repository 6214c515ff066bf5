"""Regression tests from a review of the QRS detector's recovery and learning rules.

- The standstill guard (recovery refuses peaks under 0.4 of the real beats' reference height)
  could stop recovery for good: motion artefact whose peaks grow slowly enters the reference
  (each peak under 3 times its median), and QRS complexes that come back smaller after an
  artefact (electrodes placed again) never reach 0.4 of it. It now lapses after
  STANDSTILL_GUARD_S without a beat.
- A quantized flat line (no noise above the converter's step) is exactly flat between steps:
  the prominence test's 25th percentile is 0, and every step "stood out", so an asystole with
  slow baseline wander read as 46-117 beats a minute. Prominent peaks must now also reach
  MIN_PROMINENT_MV_S.
- One finite but huge sample (1e160) overflowed the running sum: no beat after it.

Real-record cases use MIT-BIH 119 (DS1) and skip when the data folder is absent.
"""

import numpy as np
import pytest

from inference.qrs import STANDSTILL_GUARD_S, StreamingQrsDetector, detect_qrs
from inference.synthetic import generate
from tests.inference.qrs_signals import (
    assert_every_beat_found,
    excerpt,
    p_waves_alone,
    with_motion,
)
from tests.inference.qrs_streaming import streamed_beats

# Every beat is found again from this long after the end of an artefact when the guard must
# lapse first: STANDSTILL_GUARD_S after the last artefact peak taken as a beat, the next
# candidate, and the 0.3 s a beat waits (the recovery then decides the 4 s before afresh).
RECOVERED_AFTER_GUARD_S = STANDSTILL_GUARD_S + 2.0


# --- the standstill guard lapses ----------------------------------------------------------


@pytest.mark.parametrize("fs_hz", [128.0, 360.0, 1000.0])
@pytest.mark.parametrize("seed", [1, 2])
def test_beats_come_back_after_motion_that_lifted_the_reference(fs_hz, seed):
    # 20 s of 8 Hz motion growing from 0.2 to 3 mV: its peaks, taken as beats, lift the
    # guard's reference to about 5 times the QRS height. Before the lapse: no beat for the
    # remaining 90 s.
    strip = generate(130.0, fs=fs_hz, seed=seed)
    ecg, end_s = with_motion(strip.signal_mv, fs_hz, 20.0, 20.0, (0.2, 3.0))
    beats = detect_qrs(ecg, fs_hz)
    start = (end_s + RECOVERED_AFTER_GUARD_S) * fs_hz
    assert_every_beat_found(strip.beats, beats, fs_hz, start)
    assert np.sum(strip.beats > start) > 20


@pytest.mark.parametrize("fs_hz", [250.0, 360.0])
@pytest.mark.parametrize("scale", [0.3, 0.35])
def test_smaller_beats_after_an_artefact_come_back(fs_hz, scale):
    # 5 s of 5 mV motion, then beats at a third of their old height (electrodes placed again):
    # under 0.4 of the reference, so before the lapse the guard refused them for good.
    before = generate(30.0, fs=fs_hz, seed=1)
    after = generate(90.0, fs=fs_hz, seed=2)
    ecg = np.concatenate([before.signal_mv, scale * after.signal_mv])
    join = len(before.signal_mv)
    motion = np.arange(join - round(5 * fs_hz), join)
    ecg[motion] += 5.0 * np.sin(2 * np.pi * 8.0 * motion / fs_hz)
    beats = detect_qrs(ecg, fs_hz)
    start = join + RECOVERED_AFTER_GUARD_S * fs_hz
    assert_every_beat_found(after.beats + join, beats, fs_hz, start)
    assert np.sum(after.beats + join > start) > 20


@pytest.mark.parametrize(("record", "motion_mv"), [("119", (0.3, 5.0)), ("208", (0.2, 3.0))])
def test_a_real_record_comes_back_after_motion_that_lifted_the_reference(mitdb, record, motion_mv):
    # 208: tall PVCs still cross the threshold the artefact left, one every 15-25 s; the
    # guard lapses all the same, 60 s after the last two beats less than 5 s apart
    ecg, _, fs_hz = excerpt(mitdb, record, 8)
    noisy, end_s = with_motion(ecg, fs_hz, 300.0, 20.0, motion_mv)
    beats = detect_qrs(noisy, fs_hz)
    clean = detect_qrs(ecg, fs_hz)
    start = (end_s + RECOVERED_AFTER_GUARD_S) * fs_hz
    # from then on the very beats of the clean record (before the lapse: none at all)
    assert np.sum(clean > start) > 50
    np.testing.assert_array_equal(beats[beats > start], clean[clean > start])


def test_the_guard_still_holds_a_standstill_until_it_lapses():
    # 20 s of beats, then 55 s of P waves alone (0.2 mV) on a quiet baseline: a pause for as
    # long as the guard holds
    fs_hz = 360.0
    strip = generate(20.0, fs=fs_hz, seed=21)
    standstill = strip.signal_mv[-1] + p_waves_alone(55.0, fs_hz, 0.2, seed=21)
    ecg = np.concatenate([strip.signal_mv, standstill])
    beats = detect_qrs(ecg, fs_hz)
    assert np.sum(beats < len(strip.signal_mv)) > 15
    assert np.sum(beats > len(strip.signal_mv) + 0.7 * fs_hz) == 0


@pytest.mark.parametrize("fs_hz", [128.0, 360.0])
def test_the_lapse_streams_the_offline_beats_through_saved_states(fs_hz):
    strip = generate(110.0, fs=fs_hz, seed=3)
    ecg, _ = with_motion(strip.signal_mv, fs_hz, 10.0, 20.0, (0.2, 3.0))
    offline = detect_qrs(ecg, fs_hz)
    assert np.sum(offline > 95 * fs_hz) >= 10  # the lapse happened and found the beats
    sizes = [7, 97, 1009, 4001]
    np.testing.assert_array_equal(streamed_beats(ecg, fs_hz, sizes), offline)


# --- quantized flat lines -------------------------------------------------------------------


def quantized(ecg_mv: np.ndarray, lsb_mv: float) -> np.ndarray:
    return np.round(ecg_mv / lsb_mv) * lsb_mv


@pytest.mark.parametrize("fs_hz", [250.0, 360.0])
@pytest.mark.parametrize("lsb_mv", [0.02, 0.025, 0.05])
@pytest.mark.parametrize(("wander_mv", "wander_hz"), [(0.1, 0.1), (0.5, 0.3)])
def test_a_quantized_asystole_after_a_few_beats_gives_no_beat(fs_hz, lsb_mv, wander_mv, wander_hz):
    # 3 beats (too few for the standstill guard), then a flat line with slow baseline wander
    # and no noise above the converter's step: 46-117 false beats a minute before the floor
    strip = generate(3.0, fs=fs_hz, seed=1)
    t_s = np.arange(round(60 * fs_hz)) / fs_hz
    flat = strip.signal_mv[-1] + wander_mv * np.sin(2 * np.pi * wander_hz * t_s)
    beats = detect_qrs(quantized(np.concatenate([strip.signal_mv, flat]), lsb_mv), fs_hz)
    assert np.sum(beats > len(strip.signal_mv) + 0.5 * fs_hz) == 0


@pytest.mark.parametrize("fs_hz", [250.0, 360.0])
@pytest.mark.parametrize("lsb_mv", [0.02, 0.025, 0.05])
@pytest.mark.parametrize(("wander_mv", "wander_hz"), [(0.1, 0.1), (0.3, 0.2), (0.5, 0.3)])
def test_a_recording_that_starts_on_a_quantized_flat_line_gives_no_beat(
    fs_hz, lsb_mv, wander_mv, wander_hz
):
    t_s = np.arange(round(60 * fs_hz)) / fs_hz
    flat = quantized(wander_mv * np.sin(2 * np.pi * wander_hz * t_s), lsb_mv)
    assert len(detect_qrs(flat, fs_hz)) == 0


def test_quantized_beats_after_a_quantized_flat_start_are_found():
    # the floor must not keep real beats from being learnt: 50 uV steps on both
    fs_hz = 250.0
    t_s = np.arange(round(20 * fs_hz)) / fs_hz
    flat = 0.1 * np.sin(2 * np.pi * 0.1 * t_s)
    strip = generate(30.0, fs=fs_hz, seed=4)
    ecg = quantized(np.concatenate([flat, flat[-1] - strip.signal_mv[0] + strip.signal_mv]), 0.05)
    beats = detect_qrs(ecg, fs_hz)
    assert np.sum(beats < len(flat)) == 0
    reference = strip.beats + len(flat)
    assert_every_beat_found(reference, beats, fs_hz, len(flat) + 2 * fs_hz)


# --- a huge sample -----------------------------------------------------------------------------


@pytest.mark.parametrize("huge_mv", [1e160, -1e300, 1e8])
def test_one_huge_sample_does_not_blind_the_detector(huge_mv):
    fs_hz = 250.0
    lead_in = np.random.default_rng(1).normal(0.0, 0.01, round(10 * fs_hz))
    lead_in[100] = huge_mv
    strip = generate(90.0, fs=fs_hz, seed=1)
    ecg = np.concatenate([lead_in, strip.signal_mv])
    beats = detect_qrs(ecg, fs_hz)
    assert np.all(np.diff(beats) > 0)
    # the beats are found again within the recovery rule's bound after the spike
    assert_every_beat_found(strip.beats + len(lead_in), beats, fs_hz, 20 * fs_hz)


def test_a_state_saved_before_the_guard_could_lapse_still_loads():
    fs_hz = 250.0
    strip = generate(110.0, fs=fs_hz, seed=3)
    ecg, _ = with_motion(strip.signal_mv, fs_hz, 10.0, 20.0, (0.2, 3.0))
    offline = detect_qrs(ecg, fs_hz)
    detector = StreamingQrsDetector(fs_hz)
    cut = round(5 * fs_hz)  # in the sinus rhythm before the artefact
    first = detector.push(ecg[:cut])
    state = detector.state_dict()
    assert "last_rhythm_beat" in state
    del state["last_rhythm_beat"]
    restored = StreamingQrsDetector.from_state_dict(state)
    rest = np.concatenate([restored.push(ecg[cut:]), restored.flush()])
    # the next beat of the rhythm sets it again: the same beats, the lapse included
    np.testing.assert_array_equal(np.concatenate([first, rest]), offline)
