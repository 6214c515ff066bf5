"""The QRS detector after a tall artefact: it must find the beats again within a bounded time,
and still find none in the noise of a flat line (asystole), also on a stream whose state is
saved and restored between chunks.

Only accepted beats lower the QRS level, so before the recovery rule one electrode pop in the
first 2 s, or seconds of motion artefact, left the threshold above every later beat for the
rest of the recording. Real-record cases use MIT-BIH 119 (DS1) and skip when the data folder is
absent.
"""

import numpy as np
import pytest

from inference.qrs import RECOVERY_AFTER_S, StreamingQrsDetector, detect_qrs
from inference.synthetic import generate
from tests.inference.qrs_signals import assert_every_beat_found, excerpt, flat_line, with_motion
from tests.inference.qrs_streaming import streamed_beats

# The bound the recovery rule keeps: from this many seconds after the end of the artefact
# every beat is found again (the rule resets the levels RECOVERY_AFTER_S after the last
# artefact peak taken as a beat, and then decides the 4 s before afresh).
RECOVERED_WITHIN_S = 6.0
MOTION_MV = (3.0, 10.0)  # the motion artefact grows from 3 to 10 mV
HUM_MV = 0.03  # mains hum on the flat lines


def with_spike(ecg_mv: np.ndarray, fs_hz: float, at_s: float) -> tuple[np.ndarray, float]:
    """A 10 mV, 30 ms electrode pop at ``at_s``; the signal and the artefact's end (s)."""
    ecg = ecg_mv.copy()
    ecg[round(at_s * fs_hz) : round((at_s + 0.03) * fs_hz)] += 10.0
    return ecg, at_s + 0.03


def assert_recovered(reference, beats, fs_hz: float, artefact_end_s: float) -> None:
    """Every reference beat from RECOVERED_WITHIN_S after the artefact is found, no false one."""
    start = (artefact_end_s + RECOVERED_WITHIN_S) * fs_hz
    assert_every_beat_found(reference, beats, fs_hz, start)


# --- synthetic strips ---------------------------------------------------------------------


@pytest.mark.parametrize("fs_hz", [128.0, 360.0, 1000.0])
@pytest.mark.parametrize("artefact", ["10 mV spike at 1 s", "2 s of 8 Hz motion at 0 s"])
def test_it_finds_the_beats_again_after_a_tall_artefact_in_the_first_2_s(fs_hz, artefact):
    strip = generate(60.0, fs=fs_hz, seed=1)
    if artefact.startswith("10 mV"):
        ecg, end_s = with_spike(strip.signal_mv, fs_hz, 1.0)
    else:
        ecg, end_s = with_motion(strip.signal_mv, fs_hz, 0.0, 2.0, MOTION_MV)
    beats = detect_qrs(ecg, fs_hz)
    assert_recovered(strip.beats, beats, fs_hz, end_s)


def test_it_finds_the_beats_again_after_a_long_motion_artefact():
    fs_hz = 250.0
    strip = generate(90.0, fs=fs_hz, seed=2)
    ecg, end_s = with_motion(strip.signal_mv, fs_hz, 20.0, 30.0, MOTION_MV)
    assert_recovered(strip.beats, detect_qrs(ecg, fs_hz), fs_hz, end_s)


def test_a_stream_shows_beats_again_soon_after_the_artefact():
    # What a monitor sees: chunks of 1 s; the first beat after the artefact is returned
    # RECOVERY_AFTER_S after the last artefact peak, then the next candidate and the 0.3 s
    # every beat waits, and the chunk's second.
    fs_hz = 250.0
    strip = generate(60.0, fs=fs_hz, seed=3)
    ecg, end_s = with_motion(strip.signal_mv, fs_hz, 10.0, 20.0, MOTION_MV)
    detector = StreamingQrsDetector(fs_hz)
    chunk = round(fs_hz)
    for start in range(0, len(ecg), chunk):
        beats = detector.push(ecg[start : start + chunk])
        if np.any(beats > end_s * fs_hz):
            returned_s = (start + chunk) / fs_hz
            break
    else:
        pytest.fail("no beat after the artefact")
    assert returned_s - end_s <= RECOVERY_AFTER_S + 2.0


# --- flat lines: asystole must stay without beats --------------------------------------------


@pytest.mark.parametrize("fs_hz", [128.0, 360.0, 1000.0])
@pytest.mark.parametrize("noise_mv", [0.01, 0.02, 0.05])
def test_ten_minutes_of_noisy_flat_line_after_beats_give_no_beat(fs_hz, noise_mv):
    # the recovery rule looks for beats after every 5 s without one: the noise, wander and
    # hum of a flat line must never pass its test
    strip = generate(10.0, fs=fs_hz, seed=1)
    flat = strip.signal_mv[-1] + flat_line(round(600 * fs_hz), fs_hz, noise_mv, HUM_MV, seed=4)
    beats = detect_qrs(np.concatenate([strip.signal_mv, flat]), fs_hz)
    assert np.sum(beats > len(strip.signal_mv) + 0.3 * fs_hz) == 0


def test_a_recovered_detector_still_shows_asystole():
    # artefact, recovery, beats, then a flat line: the levels learnt again must not let the
    # flat line's noise through either
    fs_hz = 360.0
    strip = generate(40.0, fs=fs_hz, seed=5)
    ecg, end_s = with_spike(strip.signal_mv, fs_hz, 1.0)
    flat = ecg[-1] + flat_line(round(120 * fs_hz), fs_hz, 0.03, HUM_MV, seed=6)
    beats = detect_qrs(np.concatenate([ecg, flat]), fs_hz)
    assert_recovered(strip.beats, beats[beats < len(ecg)], fs_hz, end_s)
    assert np.sum(beats > len(ecg) + 0.3 * fs_hz) == 0


# --- a real record: MIT-BIH 119 --------------------------------------------------------------


@pytest.mark.parametrize(
    "artefact",
    ["10 mV spike at 1 s", "10 mV spike at 5 min", "30 s of 8 Hz motion at 5 min"],
)
def test_a_real_record_finds_its_beats_again_after_an_artefact(mitdb, artefact):
    fs_hz = 360.0
    ecg, reference, _ = excerpt(mitdb, "119", 7)
    if artefact == "10 mV spike at 1 s":
        noisy, end_s = with_spike(ecg, fs_hz, 1.0)
    elif artefact == "10 mV spike at 5 min":
        noisy, end_s = with_spike(ecg, fs_hz, 300.0)
    else:
        noisy, end_s = with_motion(ecg, fs_hz, 300.0, 30.0, MOTION_MV)
    beats = detect_qrs(noisy, fs_hz)
    assert_recovered(reference, beats, fs_hz, end_s)
    # from then on the very beats of the clean record
    start = (end_s + RECOVERED_WITHIN_S) * fs_hz
    clean = detect_qrs(ecg, fs_hz)
    np.testing.assert_array_equal(beats[beats > start], clean[clean > start])


@pytest.mark.parametrize("noise_mv", [0.0, 0.01, 0.05])
def test_a_real_record_then_asystole_gives_no_beat(mitdb, noise_mv):
    fs_hz = 360.0
    ecg, _, _ = excerpt(mitdb, "119", 1)
    flat = ecg[-1] + flat_line(round(180 * fs_hz), fs_hz, noise_mv, HUM_MV, seed=7)
    if noise_mv == 0.0:
        flat = np.full(round(180 * fs_hz), ecg[-1])  # a perfectly flat line
    beats = detect_qrs(np.concatenate([ecg, flat]), fs_hz)
    assert np.sum(beats > len(ecg) + 0.3 * fs_hz) == 0


# --- streaming and saved states ---------------------------------------------------------------


def artefact_strip(fs_hz: float) -> np.ndarray:
    """A spike in the first 2 s, beats, 20 s of motion artefact, beats, a noisy flat line."""
    strip = generate(70.0, fs=fs_hz, seed=8)
    ecg, _ = with_spike(strip.signal_mv, fs_hz, 0.8)
    ecg, _ = with_motion(ecg, fs_hz, 20.0, 20.0, MOTION_MV)
    flat = ecg[-1] + flat_line(round(15 * fs_hz), fs_hz, 0.03, HUM_MV, seed=9)
    return np.concatenate([ecg, flat])


CHUNKS = {"one sample": [1], "primes": [2, 3, 5, 7, 11, 13, 97, 1009], "499": [499]}


@pytest.mark.parametrize(
    ("fs_hz", "chunks"),
    # one sample at a time only at the lower rates: at 2000 Hz it is slow and adds nothing
    [(100.0, "one sample"), (257.3, "one sample")]
    + [(fs_hz, chunks) for fs_hz in (100.0, 257.3, 2000.0) for chunks in ("primes", "499")],
)
def test_recovery_streams_the_offline_beats_through_saved_states(fs_hz, chunks):
    sizes = CHUNKS[chunks]
    ecg = artefact_strip(fs_hz)
    offline = detect_qrs(ecg, fs_hz)
    # saved and restored as the server does between a device's messages: also while the
    # detector is blinded, and between its recoveries
    states: list[dict] = []
    restore_every = 37 if sizes == [1] else 3
    beats = streamed_beats(ecg, fs_hz, sizes, restore_every, saved_states=states)
    np.testing.assert_array_equal(beats, offline)
    resets = {state["last_reset"] for state in states}
    assert len({reset for reset in resets if reset >= 0}) == 2  # the spike, the motion


def test_a_state_saved_before_the_recovery_rule_still_loads():
    fs_hz = 250.0
    ecg = artefact_strip(fs_hz)
    offline = detect_qrs(ecg, fs_hz)
    detector = StreamingQrsDetector(fs_hz)
    half = len(ecg) // 2
    first = detector.push(ecg[:half])
    state = detector.state_dict()
    assert state["last_reset"] >= 0  # the spike at 0.8 s was recovered from
    old_state = {key: value for key, value in state.items() if key != "last_reset"}
    restored = StreamingQrsDetector.from_state_dict(old_state)
    assert restored.state_dict()["last_reset"] == -1
    rest = np.concatenate([restored.push(ecg[half:]), restored.flush()])
    # the same beats: the last recovery's position only matters until the next beat, and
    # here the cut lies in the motion artefact, long after the spike's recovery
    np.testing.assert_array_equal(np.concatenate([first, rest]), offline)
