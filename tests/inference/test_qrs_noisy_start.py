"""A recording that starts on a noisy flat line (a device streaming before its electrodes are
on) must show no beats until the real ones come, and then find them within 2 s.

Before the learning phase refused to learn from noise, the levels came from the first 2 s
whatever they held, and 10-50 uV of noise read as beats at 106-139 bpm for as long as the flat
line lasted: the monitor showed a heart rate instead of no beats. Real-record cases append
MIT-BIH DS1 records and skip when the data folder is absent.
"""

import numpy as np
import pytest

from inference.beat_match import match_beats
from inference.qrs import LEARNING_S, StreamingQrsDetector, detect_qrs
from inference.synthetic import generate
from tests.inference.qrs_signals import assert_every_beat_found, excerpt, flat_line
from tests.inference.qrs_streaming import streamed_beats

# Learning is judged on 2-s windows: the window in which the beats start learns from them.
FOUND_WITHIN_S = LEARNING_S


def assert_no_beat_then_every_beat(beats, reference, fs_hz: float, join: int) -> None:
    """No beat on the flat line; from FOUND_WITHIN_S after the join every reference beat is
    found and none is false."""
    assert np.sum(beats < join) == 0, beats[beats < join] / fs_hz
    after = beats[beats >= join] - join
    assert_every_beat_found(reference, after, fs_hz, FOUND_WITHIN_S * fs_hz)


@pytest.mark.parametrize("fs_hz", [128.0, 360.0, 1000.0])
@pytest.mark.parametrize("noise_mv", [0.01, 0.05])
@pytest.mark.parametrize("flat_s", [5.0, 30.0])
def test_a_noisy_flat_line_at_the_start_gives_no_beat(fs_hz, noise_mv, flat_s):
    strip = generate(30.0, fs=fs_hz, seed=2)
    flat = flat_line(round(flat_s * fs_hz), fs_hz, noise_mv, 0.03, seed=1)
    ecg = np.concatenate([flat, strip.signal_mv])  # a step to the strip's level, as electrodes
    beats = detect_qrs(ecg, fs_hz)
    assert_no_beat_then_every_beat(beats, strip.beats, fs_hz, len(flat))


def test_mains_hum_at_the_start_gives_no_beat():
    # unconnected inputs pick up hum; 1 mV of it passes the 5 mV/s height but fills the window
    fs_hz = 250.0
    strip = generate(20.0, fs=fs_hz, seed=3)
    flat = flat_line(round(20 * fs_hz), fs_hz, 0.02, 1.0, seed=2)
    beats = detect_qrs(np.concatenate([flat, strip.signal_mv]), fs_hz)
    assert_no_beat_then_every_beat(beats, strip.beats, fs_hz, len(flat))


@pytest.mark.parametrize(("rhythm", "hr_bpm"), [("VT", 170.0), ("VT", 200.0), ("AFIB", 160.0)])
def test_a_fast_rhythm_from_the_first_second_is_still_learnt(rhythm, hr_bpm):
    # ventricular tachycardia fills the window and stands only about 2 times above it: it is
    # learnt for its height
    fs_hz = 250.0
    strip = generate(30.0, fs=fs_hz, seed=1, rhythm=rhythm, hr_bpm=hr_bpm)
    beats = detect_qrs(strip.signal_mv, fs_hz)
    assert_no_beat_then_every_beat(beats, strip.beats, fs_hz, 0)
    flat = flat_line(round(10 * fs_hz), fs_hz, 0.03, 0.03, seed=3)
    beats = detect_qrs(np.concatenate([flat, strip.signal_mv]), fs_hz)
    assert_no_beat_then_every_beat(beats, strip.beats, fs_hz, len(flat))


@pytest.mark.parametrize("record", ["106", "119", "208"])
def test_real_beats_after_a_noisy_start_are_those_of_the_clean_record(mitdb, record):
    ecg, reference, fs_hz = excerpt(mitdb, record, 1)
    flat = ecg[0] + flat_line(round(20 * fs_hz), fs_hz, 0.03, 0.03, seed=int(record))
    beats = detect_qrs(np.concatenate([flat, ecg]), fs_hz)
    assert np.sum(beats < len(flat)) == 0
    # from 1 s on, the very beats of the record alone
    after = beats[beats >= len(flat)] - len(flat)
    clean = detect_qrs(ecg, fs_hz)
    np.testing.assert_array_equal(after[after > fs_hz], clean[clean > fs_hz])
    matched_reference, _ = match_beats(reference, after, fs_hz)
    assert len(matched_reference) >= len(reference) - 1


# --- streaming and saved states ---------------------------------------------------------------


def noisy_start_strip(fs_hz: float) -> np.ndarray:
    strip = generate(20.0, fs=fs_hz, seed=4)
    flat = flat_line(round(15 * fs_hz), fs_hz, 0.03, 0.03, seed=5)
    return np.concatenate([flat, strip.signal_mv])


# one sample at a time at 2000 Hz would be slow and add nothing to the 100 and 257.3 Hz cases
STREAM_CASES = [
    (fs_hz, sizes)
    for fs_hz in (100.0, 257.3, 2000.0)
    for sizes in ([1], [2, 3, 5, 7, 11, 13, 97, 1009], [499])
    if not (sizes == [1] and fs_hz == 2000.0)
]


@pytest.mark.parametrize(("fs_hz", "sizes"), STREAM_CASES)
def test_a_noisy_start_streams_the_offline_beats_through_saved_states(fs_hz, sizes):
    ecg = noisy_start_strip(fs_hz)
    offline = detect_qrs(ecg, fs_hz)
    assert len(offline) > 10 and offline[0] > 15 * fs_hz
    restore_every = 37 if sizes == [1] else 3
    np.testing.assert_array_equal(streamed_beats(ecg, fs_hz, sizes, restore_every), offline)


def test_a_state_saved_before_learning_could_be_refused_still_loads():
    # such a state has no learning window: it loads as the first 2 s, as it was learning then
    fs_hz = 250.0
    ecg = noisy_start_strip(fs_hz)
    detector = StreamingQrsDetector(fs_hz)
    first = detector.push(ecg[: round(1.5 * fs_hz)])
    state = detector.state_dict()
    old_state = {k: v for k, v in state.items() if k != "learning_start"}
    restored = StreamingQrsDetector.from_state_dict(old_state)
    assert restored.state_dict()["learning_start"] == 0
    rest = np.concatenate([restored.push(ecg[round(1.5 * fs_hz) :]), restored.flush()])
    np.testing.assert_array_equal(np.concatenate([first, rest]), detect_qrs(ecg, fs_hz))


def test_memory_stays_bounded_while_learning_waits():
    # ten minutes of noisy flat line: learning stays open all along, the history does not grow
    fs_hz = 360.0
    flat = flat_line(round(600 * fs_hz), fs_hz, 0.03, 0.03, seed=6)
    detector = StreamingQrsDetector(fs_hz)
    most = 0
    for start in range(0, len(flat), round(fs_hz)):
        assert len(detector.push(flat[start : start + round(fs_hz)])) == 0
        most = max(most, detector.buffered_samples)
    assert len(detector.flush()) == 0
    assert most < 10 * fs_hz
