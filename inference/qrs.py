"""QRS detection: where the beats are.

The method is Pan J, Tompkins WJ. A real-time QRS detection algorithm. IEEE Trans Biomed Eng
32(3):230-236 (1985), with Hamilton PS, Tompkins WJ. Quantitative investigation of QRS
detection rules using the MIT/BIH arrhythmia database. IEEE Trans Biomed Eng 33(12):1157-1165
(1986): causal band-pass (5-15 Hz), derivative, squaring, 150 ms moving-window integration;
adaptive signal and noise levels; a 200 ms refractory period; T-wave discrimination by slope
for candidates within 360 ms of a beat; search-back at half threshold when no beat came for
1.66 mean RR intervals. Every filter is causal, so the same steps can run on a stream.
"""

import numpy as np
from scipy import signal as sps

from inference.signal import validate_fs, validate_signal

MIN_FS_HZ, MAX_FS_HZ = 100.0, 2000.0

REFRACTORY_S = 0.200
T_WAVE_WINDOW_S = 0.360
INTEGRATION_S = 0.150
SEARCH_BACK_RR = 1.66
LOCATE_BACK_S = 0.250
THRESHOLD_COEFFICIENT = 0.3125  # Hamilton & Tompkins' best, between noise and QRS levels


class _Levels:
    """Signal and noise peak levels as medians of the last 8 of each (Hamilton & Tompkins
    1986): one tall ectopic beat or artefact cannot lift the threshold over the next beats."""

    def __init__(self, first_peaks: np.ndarray) -> None:
        self.signal = [0.5 * float(first_peaks.max())]
        self.noise = [0.5 * float(first_peaks.mean())]

    def add_signal(self, height: float) -> None:
        self.signal = (self.signal + [height])[-8:]

    def add_noise(self, height: float) -> None:
        self.noise = (self.noise + [height])[-8:]

    @property
    def threshold(self) -> float:
        noise = float(np.median(self.noise))
        return noise + THRESHOLD_COEFFICIENT * (float(np.median(self.signal)) - noise)


def _features(ecg: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """The band-passed signal and its integrated squared slope (both causal)."""
    sos = sps.butter(2, [5.0, 15.0], btype="bandpass", fs=fs, output="sos")
    band = sps.sosfilt(sos, ecg - ecg[0])
    slope = np.gradient(band) * fs
    width = max(1, round(INTEGRATION_S * fs))
    squared = slope * slope
    cumulative = np.concatenate([[0.0], np.cumsum(squared)])
    integrated = np.empty_like(squared)
    integrated[:width] = cumulative[1 : width + 1] / width
    integrated[width:] = (cumulative[width + 1 :] - cumulative[1:-width]) / width
    return band, integrated


def detect_qrs(ecg_mv: np.ndarray, fs: float) -> np.ndarray:
    """Sample indices of the R peaks of a single-lead ECG.

    Parameters
    ----------
    ecg_mv : 1-D array, millivolts (any offset; baseline wander is filtered out)
    fs : sampling rate in Hz, 100-2000

    Returns
    -------
    int64 array of R-peak sample indices, increasing.
    """
    ecg = validate_signal(ecg_mv, name="ecg", min_samples=1)
    if ecg.ndim != 1:
        raise ValueError("detect_qrs takes one lead (a 1-D signal)")
    fs = validate_fs(fs)
    if not MIN_FS_HZ <= fs <= MAX_FS_HZ:
        raise ValueError(f"fs must be between {MIN_FS_HZ:g} and {MAX_FS_HZ:g} Hz, got {fs:g}")
    if len(ecg) < 2 * fs:
        return np.empty(0, dtype=np.int64)
    band, integrated = _features(ecg, fs)
    refractory = round(REFRACTORY_S * fs)
    candidates, _ = sps.find_peaks(integrated, distance=refractory)
    if len(candidates) == 0:
        return np.empty(0, dtype=np.int64)
    # Thresholds compare square roots: the integrated squared slope grows with amplitude
    # squared, so a tall, wide PVC would otherwise lift the levels over the normal beats
    # between PVCs (ventricular bigeminy in record 228 lost four beats in five).
    heights = np.sqrt(integrated[candidates])
    slopes = _max_slopes(band, candidates, fs)

    # Learning phase (first 2 s): signal level from the largest peak, noise from the mean.
    learning = candidates < 2 * fs
    first = heights[learning] if learning.any() else heights[:1]
    levels = _Levels(first)
    beats: list[int] = []  # indices into candidates
    beat_slopes: list[float] = []
    rr: list[int] = []
    regular_rr: list[int] = []  # RR intervals within 92-116 % of their own mean (Pan-Tompkins)
    t_wave = round(T_WAVE_WINDOW_S * fs)
    last_checked = -1

    for index, position in enumerate(candidates):
        height = heights[index]
        if beats and rr:
            mean_rr = float(np.mean(regular_rr[-8:] if regular_rr else rr[-8:]))
            gap = position - candidates[beats[-1]]
            if gap > SEARCH_BACK_RR * mean_rr:
                # a beat was probably missed: take the highest candidate above half threshold
                lo = max(beats[-1] + 1, last_checked + 1)
                window = [
                    i
                    for i in range(lo, index)
                    if heights[i] > 0.5 * levels.threshold
                    and candidates[i] - candidates[beats[-1]] > refractory
                ]
                if window:
                    found = max(window, key=lambda i: heights[i])
                    _accept(found, candidates, slopes, beats, beat_slopes, rr, regular_rr)
                    levels.add_signal(float(heights[found]))
        last_checked = index
        if height > levels.threshold:
            if beats and position - candidates[beats[-1]] < t_wave:
                # a T wave has a gentler slope than the QRS before it
                if slopes[index] < 0.5 * beat_slopes[-1]:
                    levels.add_noise(float(height))
                    continue
            _accept(index, candidates, slopes, beats, beat_slopes, rr, regular_rr)
            levels.add_signal(float(height))
        else:
            levels.add_noise(float(height))

    return _locate_r(ecg, candidates[beats], fs)


def _accept(index, candidates, slopes, beats, beat_slopes, rr, regular_rr) -> None:
    if beats:
        interval = int(candidates[index] - candidates[beats[-1]])
        rr.append(interval)
        reference = np.mean(regular_rr[-8:]) if regular_rr else np.mean(rr[-8:])
        if 0.92 * reference <= interval <= 1.16 * reference or len(regular_rr) < 2:
            regular_rr.append(interval)
    beats.append(index)
    beat_slopes.append(float(slopes[index]))


def _max_slopes(band: np.ndarray, candidates: np.ndarray, fs: float) -> np.ndarray:
    """Steepest slope of the band-passed signal in the 150 ms before each candidate."""
    width = round(INTEGRATION_S * fs)
    slope = np.abs(np.diff(band, prepend=band[0]))
    starts = np.maximum(candidates - width, 0)
    return np.array([slope[s : c + 1].max() for s, c in zip(starts, candidates, strict=True)])


def _locate_r(ecg: np.ndarray, positions: np.ndarray, fs: float) -> np.ndarray:
    """The R peak of each beat: the largest deflection from the local baseline in the
    250 ms up to the integrated-signal peak."""
    back = round(LOCATE_BACK_S * fs)
    located = np.empty(len(positions), dtype=np.int64)
    for i, position in enumerate(positions):
        lo = max(0, position - back)
        segment = ecg[lo : position + 1]
        located[i] = lo + int(np.argmax(np.abs(segment - np.median(segment))))
    # two beats can locate onto one R peak at the edge of a search-back; keep one
    return np.unique(located)
