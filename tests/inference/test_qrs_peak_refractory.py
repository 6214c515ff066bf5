"""R peaks keep the 200 ms refractory period (docs/qrs.md, step 6).

The decisions kept the integrated-signal peaks more than 200 ms apart, but each R peak is
looked for in the 250 ms before its integrated peak. In ventricular flutter, whose waves have
no sharp peak, the largest deflection fell at the end of one window and at the start of the
next: R peaks 39-81 ms apart in MIT-BIH 207 (at 59.3 s: "744.8 bpm" in a VT episode).
"""

import numpy as np
import pytest
from scipy import signal as sps

from inference.qrs import REFRACTORY_S, StreamingQrsDetector, detect_qrs
from tests.inference.qrs_signals import excerpt

FLUTTER_HZ = 4.0  # 240 waves a minute
FLUTTER_S = 30.0


def flutter(fs_hz: float, seed: int) -> np.ndarray:
    """Ventricular flutter-like waves (mV): a rounded sawtooth at about 4 Hz whose rate wanders
    by a few per cent, its amplitude by 30 %; one wave per R peak expected."""
    rng = np.random.default_rng(seed)
    n_samples = round(FLUTTER_S * fs_hz)
    t_s = np.arange(n_samples) / fs_hz
    rate_hz = FLUTTER_HZ * (1 + 0.05 * rng.standard_normal(n_samples))
    phase = 2 * np.pi * np.cumsum(rate_hz) / fs_hz
    return sps.sawtooth(phase, 0.3) * (1 + 0.3 * np.sin(2 * np.pi * 0.2 * t_s))


def min_interval(fs_hz: float) -> int:
    return round(REFRACTORY_S * fs_hz)


@pytest.mark.parametrize("fs_hz", [128.0, 250.0, 360.0, 500.0, 1000.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_r_peaks_in_flutter_are_no_closer_than_the_refractory_period(fs_hz, seed):
    peaks = detect_qrs(flutter(fs_hz, seed), fs_hz)
    assert np.diff(peaks).min() >= min_interval(fs_hz)
    # one R peak a wave: the peaks moved, none was lost or added
    assert abs(len(peaks) - FLUTTER_HZ * FLUTTER_S) <= 1


def test_r_peaks_of_mitdb_207_flutter_keep_the_refractory_period(mitdb):
    ecg, _, fs_hz = excerpt(mitdb, "207", 1.2)  # MLII; flutter waves around 59 s
    peaks = detect_qrs(ecg, fs_hz)
    assert np.diff(peaks).min() >= min_interval(fs_hz)


def test_streaming_through_saved_states_gives_the_same_r_peaks():
    fs_hz = 250.0
    ecg = flutter(fs_hz, 2)
    rng = np.random.default_rng(5)
    detector, found, start = StreamingQrsDetector(fs_hz), [], 0
    while start < len(ecg):
        size = int(rng.integers(1, 400))
        found.append(detector.push(ecg[start : start + size]))
        start += size
        # the last R peak travels with the state: the next one keeps its distance
        detector = StreamingQrsDetector.from_state_dict(detector.state_dict())
    found.append(detector.flush())
    assert np.array_equal(np.concatenate(found), detect_qrs(ecg, fs_hz))


def test_a_state_saved_before_the_rule_still_loads():
    fs_hz = 250.0
    ecg = flutter(fs_hz, 3)
    detector = StreamingQrsDetector(fs_hz)
    first = detector.push(ecg[: len(ecg) // 2])
    state = detector.state_dict()
    del state["last_peak"]
    restored = StreamingQrsDetector.from_state_dict(state)
    rest = np.concatenate([restored.push(ecg[len(ecg) // 2 :]), restored.flush()])
    assert len(rest) and rest[0] > first[-1] and np.all(np.diff(rest) >= min_interval(fs_hz))
