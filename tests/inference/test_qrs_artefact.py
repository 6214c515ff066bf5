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

from inference.beat_match import match_beats
from inference.evaluation.qrs import QRS_SYMBOLS
from inference.qrs import RECOVERY_AFTER_S, StreamingQrsDetector, detect_qrs
from inference.synthetic import generate

# The bound the recovery rule keeps: from this many seconds after the end of the artefact
# every beat is found again (the rule resets the levels RECOVERY_AFTER_S after the last
# artefact peak taken as a beat, and then decides the 4 s before afresh).
RECOVERED_WITHIN_S = 6.0


def with_spike(ecg_mv: np.ndarray, fs_hz: float, at_s: float) -> tuple[np.ndarray, float]:
    """A 10 mV, 30 ms electrode pop at ``at_s``; the signal and the artefact's end (s)."""
    ecg = ecg_mv.copy()
    ecg[round(at_s * fs_hz) : round((at_s + 0.03) * fs_hz)] += 10.0
    return ecg, at_s + 0.03


def with_motion(
    ecg_mv: np.ndarray, fs_hz: float, at_s: float, duration_s: float
) -> tuple[np.ndarray, float]:
    """8 Hz motion artefact growing from 3 to 10 mV over ``duration_s`` from ``at_s``."""
    ecg = ecg_mv.copy()
    samples = np.arange(round(at_s * fs_hz), round((at_s + duration_s) * fs_hz))
    amplitude_mv = np.linspace(3.0, 10.0, len(samples))
    ecg[samples] += amplitude_mv * np.sin(2 * np.pi * 8.0 * samples / fs_hz)
    return ecg, at_s + duration_s


def flat_line_noise(n_samples: int, fs_hz: float, noise_mv: float, seed: int) -> np.ndarray:
    """What a flat line carries: white noise, a little baseline wander and mains hum."""
    t_s = np.arange(n_samples) / fs_hz
    noise = np.random.default_rng(seed).normal(0.0, noise_mv, n_samples)
    return noise + 0.2 * np.sin(2 * np.pi * 0.15 * t_s) + 0.03 * np.sin(2 * np.pi * 50.0 * t_s)


def assert_recovered(reference, beats, fs_hz: float, artefact_end_s: float) -> None:
    """Every reference beat from RECOVERED_WITHIN_S after the artefact is found, no false one."""
    start = (artefact_end_s + RECOVERED_WITHIN_S) * fs_hz
    reference = np.asarray(reference)
    matched_reference, matched_beats = match_beats(reference, beats, fs_hz)
    missed = np.setdiff1d(reference, reference[matched_reference])
    false = np.setdiff1d(beats, beats[matched_beats])
    assert len(missed[missed > start]) == 0 and len(false[false > start]) == 0, (missed, false)


# --- synthetic strips ---------------------------------------------------------------------


@pytest.mark.parametrize("fs_hz", [128.0, 360.0, 1000.0])
@pytest.mark.parametrize("artefact", ["10 mV spike at 1 s", "2 s of 8 Hz motion at 0 s"])
def test_it_finds_the_beats_again_after_a_tall_artefact_in_the_first_2_s(fs_hz, artefact):
    strip = generate(60.0, fs=fs_hz, seed=1)
    if artefact.startswith("10 mV"):
        ecg, end_s = with_spike(strip.signal_mv, fs_hz, 1.0)
    else:
        ecg, end_s = with_motion(strip.signal_mv, fs_hz, 0.0, 2.0)
    beats = detect_qrs(ecg, fs_hz)
    assert_recovered(strip.beats, beats, fs_hz, end_s)


def test_it_finds_the_beats_again_after_a_long_motion_artefact():
    fs_hz = 250.0
    strip = generate(90.0, fs=fs_hz, seed=2)
    ecg, end_s = with_motion(strip.signal_mv, fs_hz, 20.0, 30.0)
    assert_recovered(strip.beats, detect_qrs(ecg, fs_hz), fs_hz, end_s)


def test_a_stream_shows_beats_again_soon_after_the_artefact():
    # What a monitor sees: chunks of 1 s; the first beat after the artefact is returned
    # RECOVERY_AFTER_S after the last artefact peak, then the next candidate and the 0.3 s
    # every beat waits, and the chunk's second.
    fs_hz = 250.0
    strip = generate(60.0, fs=fs_hz, seed=3)
    ecg, end_s = with_motion(strip.signal_mv, fs_hz, 10.0, 20.0)
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
    flat = strip.signal_mv[-1] + flat_line_noise(round(600 * fs_hz), fs_hz, noise_mv, seed=4)
    beats = detect_qrs(np.concatenate([strip.signal_mv, flat]), fs_hz)
    assert np.sum(beats > len(strip.signal_mv) + 0.3 * fs_hz) == 0


def test_a_recovered_detector_still_shows_asystole():
    # artefact, recovery, beats, then a flat line: the levels learnt again must not let the
    # flat line's noise through either
    fs_hz = 360.0
    strip = generate(40.0, fs=fs_hz, seed=5)
    ecg, end_s = with_spike(strip.signal_mv, fs_hz, 1.0)
    flat = ecg[-1] + flat_line_noise(round(120 * fs_hz), fs_hz, 0.03, seed=6)
    beats = detect_qrs(np.concatenate([ecg, flat]), fs_hz)
    assert_recovered(strip.beats, beats[beats < len(ecg)], fs_hz, end_s)
    assert np.sum(beats > len(ecg) + 0.3 * fs_hz) == 0


# --- a real record: MIT-BIH 119 --------------------------------------------------------------


def read_119(mitdb, minutes: float) -> tuple[np.ndarray, np.ndarray]:
    wfdb = pytest.importorskip("wfdb")
    n_samples = round(minutes * 60 * 360)
    path = str(mitdb / "119")
    record = wfdb.rdrecord(path, channels=[0], sampto=n_samples)
    annotation = wfdb.rdann(path, "atr", sampto=n_samples)
    reference = np.array(
        [s for s, y in zip(annotation.sample, annotation.symbol, strict=True) if y in QRS_SYMBOLS]
    )
    return record.p_signal[:, 0], reference


@pytest.mark.parametrize(
    "artefact",
    ["10 mV spike at 1 s", "10 mV spike at 5 min", "30 s of 8 Hz motion at 5 min"],
)
def test_a_real_record_finds_its_beats_again_after_an_artefact(mitdb, artefact):
    fs_hz = 360.0
    ecg, reference = read_119(mitdb, 7)
    if artefact == "10 mV spike at 1 s":
        noisy, end_s = with_spike(ecg, fs_hz, 1.0)
    elif artefact == "10 mV spike at 5 min":
        noisy, end_s = with_spike(ecg, fs_hz, 300.0)
    else:
        noisy, end_s = with_motion(ecg, fs_hz, 300.0, 30.0)
    beats = detect_qrs(noisy, fs_hz)
    assert_recovered(reference, beats, fs_hz, end_s)
    # from then on the very beats of the clean record
    start = (end_s + RECOVERED_WITHIN_S) * fs_hz
    clean = detect_qrs(ecg, fs_hz)
    np.testing.assert_array_equal(beats[beats > start], clean[clean > start])


@pytest.mark.parametrize("noise_mv", [0.0, 0.01, 0.05])
def test_a_real_record_then_asystole_gives_no_beat(mitdb, noise_mv):
    fs_hz = 360.0
    ecg, _ = read_119(mitdb, 1)
    flat = ecg[-1] + flat_line_noise(round(180 * fs_hz), fs_hz, noise_mv, seed=7)
    if noise_mv == 0.0:
        flat = np.full(round(180 * fs_hz), ecg[-1])  # a perfectly flat line
    beats = detect_qrs(np.concatenate([ecg, flat]), fs_hz)
    assert np.sum(beats > len(ecg) + 0.3 * fs_hz) == 0


# --- streaming and saved states ---------------------------------------------------------------


def artefact_strip(fs_hz: float) -> np.ndarray:
    """A spike in the first 2 s, beats, 20 s of motion artefact, beats, a noisy flat line."""
    strip = generate(70.0, fs=fs_hz, seed=8)
    ecg, _ = with_spike(strip.signal_mv, fs_hz, 0.8)
    ecg, _ = with_motion(ecg, fs_hz, 20.0, 20.0)
    flat = ecg[-1] + flat_line_noise(round(15 * fs_hz), fs_hz, 0.03, seed=9)
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
    detector = StreamingQrsDetector(fs_hz)
    found, start, index, resets = [], 0, 0, set()
    while start < len(ecg):
        size = sizes[index % len(sizes)]
        found.append(detector.push(ecg[start : start + size]))
        start, index = start + size, index + 1
        if index % (37 if sizes == [1] else 3) == 0:
            # as the server does between a device's messages: also while the detector is
            # blinded, and between its recoveries
            state = detector.state_dict()
            resets.add(state["last_reset"])
            detector = StreamingQrsDetector.from_state_dict(state)
    found.append(detector.flush())
    np.testing.assert_array_equal(np.concatenate(found), offline)
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
