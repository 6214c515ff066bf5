"""QRS detection: where the beats are, offline or on a stream.

The method is Pan J, Tompkins WJ. A real-time QRS detection algorithm. IEEE Trans Biomed Eng
32(3):230-236 (1985), with the decision rules of Hamilton PS, Tompkins WJ. Quantitative
investigation of QRS detection rules using the MIT/BIH arrhythmia database. IEEE Trans Biomed
Eng 33(12):1157-1165 (1986): causal band-pass (5-15 Hz), derivative, squaring, 150 ms
moving-window integration; peak levels as medians of the last 8 QRS and noise peaks; a 200 ms
refractory period; T-wave discrimination by slope for candidates within 360 ms of a beat;
search-back at half threshold when no beat came for 1.66 mean RR intervals (here never under
0.3 of the height of the real beats: P waves alone are no beats). The departures
from the papers, and why, are in docs/qrs.md; one of them learns the levels again after 5 s
without a beat, from candidates that stand out of the signal around them, so that a tall
artefact cannot blind the detector for good while the noise of a flat line stays no beat (its
guard that keeps a ventricular standstill a pause lapses after 60 s without a rhythm); and
the learning phase learns only from a 2-s window whose largest peak stands out (or is tall),
so that a recording that starts on a noisy flat line shows no beats until the real ones come.

The features run at 150-300 Hz (means of k consecutive samples at higher rates: a 5-15 Hz band
needs no more); the R peak is then located on the signal at its own rate.

There is one implementation, ``StreamingQrsDetector``: every filter is causal and carries its
state between chunks, and a peak is decided as soon as the 150 ms after it have arrived, so the
detector never holds more than a few seconds of signal. ``detect_qrs`` is that detector fed
the whole signal as one chunk, so streaming in chunks of any size gives exactly the same beats.
"""

from bisect import insort

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal as sps
from scipy.ndimage import maximum_filter1d

from inference.signal import MAX_ECG_ABS_MV, validate_fs, validate_signal

MIN_FS_HZ, MAX_FS_HZ = 100.0, 2000.0
MIN_DURATION_S = 2.0  # the learning phase: levels start from a 2-s window (the first, usually)
# Features are computed at fs / k for the largest whole k that keeps this rate or more
MIN_FEATURE_RATE_HZ = 150.0

BAND_HZ = (5.0, 15.0)
REFRACTORY_S = 0.200
PEAK_HALF_S = 0.150
T_WAVE_WINDOW_S = 0.360
INTEGRATION_S = 0.150
SEARCH_BACK_RR = 1.66
LOCATE_BACK_S = 0.250
LEARNING_S = MIN_DURATION_S
# Candidates older than this are forgotten: search-back never reaches further back, which
# bounds the detector's memory during asystole or lead-off.
MAX_PENDING_S = 4.0
T_WAVE_SLOPE_RATIO = 0.5
# Search-back looks for beats missed at half threshold, where T waves are the main risk:
# long pauses (record 232) otherwise yield the T wave after the last beat.
SEARCH_BACK_T_WAVE_RATIO = 0.3
# Root-mean-square slope (mV/s) of the band-passed ECG over 150 ms below which a peak is no
# QRS. MIT-BIH QRS complexes give about 5-50, the faintest (atrial fibrillation in record
# 201) 0.3; a floor of 0.5 already lost 8 of them. It keeps a flat line with a recorder's
# quantization noise (a few uV) from being read as beats; it is no lead-off detector.
MIN_QRS_SLOPE_MV_S = 0.2
# Recovery from a tall artefact. Only accepted beats lower the QRS level, so an artefact much
# taller than the QRS complexes (an electrode pop in the first 2 s, seconds of motion artefact)
# can leave the threshold above every later beat for good. After RECOVERY_AFTER_S without a
# beat the levels are learnt again from the last MAX_PENDING_S, but only when at least
# RECOVERY_MIN_PEAKS candidates there stand out: RMS slope at least RECOVERY_PROMINENCE times
# the root of the 25th percentile of the integrated signal over those seconds. QRS complexes
# do (MIT-BIH DS1: 99 % of beats above 5, median 8-73 per record); the noise of a flat line
# never does (white noise: at most 3.4 in an hour, whatever its amplitude), nor does motion
# artefact or anything that fills the seconds evenly. A reset without this test (Hamilton's
# OSEA) read the noise of an asystole as beats.
RECOVERY_AFTER_S = 5.0
RECOVERY_PROMINENCE = 4.0
RECOVERY_BASELINE_PERCENTILE = 25.0
RECOVERY_MIN_PEAKS = 2
# ... and at least this RMS slope (mV/s), here and in the learning phase. A recorder's
# quantization makes a flat line exactly flat between its steps: the 25th percentile is then 0
# and every step "stands out" infinitely (one step of q mV gives 12 q mV/s at 100-2000 Hz:
# 20 uV 0.24, 50 uV 0.6), so an asystole with slow baseline wander read as 46-117 bpm. The
# smallest tallest peak of a 2-s window that the test above lets learn is 0.91 mV/s (DS1, both
# leads, every 2-s window of the 22 records: only V1 of 101 goes under 1.5; vfdb, both leads:
# 1.24), so 0.75 refuses the steps of a converter up to about 60 uV and no learning window of
# those records. QRS complexes fainter than this (201's in atrial fibrillation, about 0.3) are
# still detected once the levels are set, but are neither learnt from nor recovered.
MIN_PROMINENT_MV_S = 0.75
# Ventricular standstill with P waves going on (complete heart block) must stay a pause: on a
# flat baseline the P waves stand out as well as QRS complexes do. So once the detector has
# seen N_LEVELS real beats, the levels are learnt again only from peaks whose median is at
# least RECOVERY_MIN_RATIO of the height of those beats (their median). P waves of MIT-BIH
# DS1's own beats, placed on their baseline, give 0.02-0.16 (median P peak over median QRS,
# 22 records); QRS complexes after an artefact give about 1. Beats more than
# REFERENCE_OUTLIER_RATIO times taller than that median (an artefact taken as a beat) do not
# enter it, so an artefact that blinds the detector does not raise the bar its recovery meets
# (one whose peaks grow slowly does: STANDSTILL_GUARD_S below).
RECOVERY_MIN_RATIO = 0.4
REFERENCE_OUTLIER_RATIO = 3.0
# Motion artefact taken as beats can still lift that reference (peaks that grow slowly are each
# under 3 times its median), and QRS complexes may come back far smaller after an artefact
# (electrodes placed again): the guard would then refuse them for good. So it lapses once
# STANDSTILL_GUARD_S have passed without a rhythm (two beats less than RECOVERY_AFTER_S apart),
# and the peaks that stand out are learnt again whatever their height. Not "without a beat":
# tall PVCs now and then, still over the threshold the artefact left (MIT-BIH 208 with 20 s of
# motion growing 0.2 -> 3 mV: one every 15-25 s), would keep the guard up for minutes. A true
# standstill has raised the pause alarm (critical, latched until acknowledged:
# monitoring/alarms.py) long before; after this, its P waves may be read as beats.
STANDSTILL_GUARD_S = 60.0
# The same standstill, before any recovery: search-back at half the threshold took the tallest
# P wave once 1.66 RR had passed, the QRS level fell, the threshold followed and the P waves
# became beats (DS1's own P waves: 114, 203 and 207 in 40 s of standstill). So once the
# reference holds N_LEVELS beats, search-back takes nothing under SEARCH_BACK_MIN_RATIO of it.
# On DS1 the beats search-back finds correctly measure 0.18-1.9 of the reference (5th
# percentile 0.245, median 0.36), the P waves it took 0.17-0.67: they overlap, and 0.3 is the
# smallest step of 0.05 that left no run of P-wave beats in the DS1 standstills at 360 and
# 128 Hz (0.25 left 11 in 207). It cost 23 of DS1's 51,021 beats (MIT-BIH, all 48: 154 -> 183
# FN, 193 -> 175 FP; docs/qrs.md).
SEARCH_BACK_MIN_RATIO = 0.3
# The learning phase refuses to learn from noise. A device may stream a flat line before its
# electrodes are on (10-50 uV of noise, mains hum, baseline wander); levels learnt from that
# read its noise as beats at 106-139 bpm for as long as it lasted. So a 2-s learning window
# gives the levels only when its largest candidate stands out of the window (RMS slope more
# than RECOVERY_PROMINENCE times the root of its 25th-percentile integrated signal, the
# recovery rule's test), or is at least LEARNING_MIN_HEIGHT_MV_S tall and
# LEARNING_MIN_PROMINENCE times that root: ventricular tachycardia and flutter fill the
# window and stand only about 1.5-3 times above it (vfdb: 98 % of the 2-s VT windows at
# 5 mV/s or more reach 1.5; synthetic VT at 170-200 bpm: 1.7-3), but they are tall. Otherwise
# learning goes on over the next 2 s. White noise never stood out 4 times (at most 3.6 in
# 2-s windows, 10-100 uV at 128-1000 Hz, 20 hours) and reaches 5 mV/s only from about 65 uV
# at 128 Hz (about 100 uV at 250 Hz: the feature band holds less of it at higher rates);
# mains hum fills the window evenly: where 1 mV of it reaches 5 mV/s (250-360 Hz) it stands
# at most 1.25 times above it.
LEARNING_MIN_HEIGHT_MV_S = 5.0
LEARNING_MIN_PROMINENCE = 1.5
THRESHOLD_COEFFICIENT = 0.3125  # Hamilton & Tompkins' best, between noise and QRS levels
MAX_THRESHOLD_RATIO = 0.6
N_LEVELS = 8  # peaks in each median level
N_RR = 8  # intervals in the mean RR
BLOCK_SAMPLES = 65536  # a long push is processed in blocks of this many samples


def detect_qrs(ecg_mv: np.ndarray, fs: float) -> np.ndarray:
    """Sample indices of the R peaks of a single-lead ECG.

    Parameters
    ----------
    ecg_mv : 1-D array, millivolts (any offset; baseline wander is filtered out), at least
        2 s long
    fs : sampling rate in Hz, 100-2000

    Returns
    -------
    int64 array of R-peak sample indices, strictly increasing.

    Raises
    ------
    ValueError
        For a signal that is not 1-D, holds NaN or infinity, or is shorter than 2 s, and for a
        sampling rate outside 100-2000 Hz.
    """
    fs = _check_fs(fs)
    ecg = validate_signal(ecg_mv, name="ecg", min_samples=1)
    if ecg.ndim != 1:
        raise ValueError(
            f"detect_qrs takes one lead (a 1-D signal), got shape {ecg.shape}; "
            "pass one column, e.g. ecg[:, 0]"
        )
    if len(ecg) < MIN_DURATION_S * fs:
        raise ValueError(
            f"ecg is {len(ecg) / fs:.2f} s long ({len(ecg)} samples at {fs:g} Hz); QRS "
            f"detection needs at least {MIN_DURATION_S:g} s"
        )
    detector = StreamingQrsDetector(fs)
    return np.concatenate([detector.push(ecg), detector.flush()])


def _check_fs(fs: float) -> float:
    fs = validate_fs(fs)
    if not MIN_FS_HZ <= fs <= MAX_FS_HZ:
        raise ValueError(f"fs must be between {MIN_FS_HZ:g} and {MAX_FS_HZ:g} Hz, got {fs:g}")
    return fs


class StreamingQrsDetector:
    """QRS detection on a signal that arrives in chunks.

    Feed the samples in order with ``push``; each call returns the R peaks that became final
    (absolute sample indices, counted from the first sample pushed). ``flush`` ends the
    signal and returns the rest. The concatenated output equals ``detect_qrs`` on the whole
    signal exactly, whatever the chunk sizes. A beat is final about 0.3 s after its R peak,
    later when search-back finds it (up to 1.66 RR) or while a 2-s learning window sets the
    levels.
    Memory is bounded: a few seconds of history (``buffered_samples``).

    Parameters
    ----------
    fs : sampling rate in Hz, 100-2000
    """

    def __init__(self, fs: float) -> None:
        self.fs_hz = _check_fs(fs)
        # Features run at fs / factor, 150-300 Hz: the means of `factor` consecutive samples.
        # A 5-15 Hz band needs no more, and every per-sample step costs factor times less.
        self._factor = max(1, int(self.fs_hz // MIN_FEATURE_RATE_HZ))
        fs = self.fs_hz / self._factor  # the features' rate; the R peaks use the full rate
        self._feature_fs = fs
        self._carry = np.zeros(0)  # samples of an incomplete block (fewer than factor)
        self._sos = sps.butter(2, BAND_HZ, btype="bandpass", fs=fs, output="sos")
        self._zi = np.zeros((self._sos.shape[0], 2))
        self._first_sample: float | None = None
        self._last_band = 0.0
        self._last_cumulative = 0.0
        self._width = max(1, round(INTEGRATION_S * fs))  # moving-window integration, samples
        self._half = max(1, round(PEAK_HALF_S * fs))  # a candidate tops its neighbourhood
        self._refractory = round(REFRACTORY_S * fs)
        self._t_wave = round(T_WAVE_WINDOW_S * fs)
        self._back = round(LOCATE_BACK_S * self.fs_hz)  # full-rate samples
        # the refractory period between two R peaks, full-rate samples (_locate)
        self._peak_refractory = round(REFRACTORY_S * self.fs_hz)
        self._learning_window = round(LEARNING_S * fs)
        # the learning window now open, feature samples: the first 2 s, then the next 2 s
        # while the windows before held nothing that stands out
        self._learning_start = 0
        self._max_pending = round(MAX_PENDING_S * fs)
        self._recovery_after = round(RECOVERY_AFTER_S * fs)
        self._standstill_guard = round(STANDSTILL_GUARD_S * fs)
        self._n_seen = 0  # feature samples
        self._next = 0  # first feature position not yet examined as a candidate
        # Recent history: the signal at the full rate from sample self._raw_start (to locate
        # R peaks); the integrated squared slope (candidates) and the slope of the
        # band-passed signal (T-wave test) at the feature rate from self._start. Before the
        # first sample: the first sample's level, -inf integrated (no candidate can lean on
        # it), zero slope.
        keep = max(self._half + 1, self._width + 1)
        self._start = -keep
        self._integrated = np.full(keep, -np.inf)
        self._slope = np.zeros(keep)
        self._raw_start = -(self._back + 1)
        self._raw = np.zeros(self._back + 1)
        self._cumulative_tail = np.zeros(self._width)  # running sums of the last width samples
        self._flushed = False
        # decision state
        self._learning: list[tuple[int, float, float]] | None = []
        self._signal = _RunningMedian(0.0)  # QRS peak level
        self._noise = _RunningMedian(0.0)  # noise peak level
        self._threshold = 0.0
        self._pending: list[tuple[int, float, float]] = []  # candidates since the last beat
        # integrated-signal position of the last beat (feature rate); -1 before the first
        self._last_beat = -1
        self._last_slope = 0.0
        self._search_back_after = float("inf")  # samples without a beat before search-back
        self._last_located = -1  # full-rate sample of the last beat's integrated peak
        self._last_peak = -1  # full-rate sample of the last R peak returned; -1 before
        self._last_reset = -1  # integrated-signal position of the last recovery; -1 before
        # the last beat that came within RECOVERY_AFTER_S of the one before; -1 before
        self._last_rhythm_beat = -1
        # the height of the real beats (median of the last N_LEVELS, artefact-tall ones left
        # out), the bar a recovery must meet; None until a first beat, and after a recovery
        self._reference: _RunningMedian | None = None
        self._rr: list[int] = []  # the last N_RR intervals, feature samples
        self._rr_sum = 0
        self._regular_rr: list[int] = []
        self._regular_sum = 0

    @property
    def buffered_samples(self) -> int:
        """Samples of signal history held (a few seconds, whatever the stream's length)."""
        return len(self._raw)

    @property
    def oldest_sample(self) -> int:
        """Absolute index of the oldest sample held: every R peak still to come lies at or after
        it (a peak is located inside the history), so a caller may forget what lies before."""
        return max(0, self._raw_start)

    @property
    def peaks_final_through(self) -> int:
        """Absolute sample index before which every R peak of the stream has been returned: a
        peak still to come lies at or after it (``oldest_sample`` bounds the same, loosely:
        it trails the signal by about 4.5-9 s, the history kept). About 0.4 s behind the last
        sample pushed (the 150 ms a candidate waits for, and the 250 ms before it where its R
        peak is looked for); further while a candidate since the last beat may still be taken
        by search-back or a recovery (up to ``MAX_PENDING_S``) or a learning window is open.
        After ``flush``: every sample pushed. The streaming analysis reads a pause from it.
        """
        n_pushed = self._raw_start + len(self._raw)
        if self._flushed:
            return n_pushed
        # the first feature position that may still hold a beat: one not yet examined, ...
        earliest = self._next
        # ... a candidate kept for search-back or a recovery: any later candidate (at _next or
        # after) first drops those more than MAX_PENDING_S before it (_decide), ...
        kept = [c[0] for c in self._pending if c[0] >= self._next - self._max_pending]
        if kept:
            earliest = min(earliest, kept[0])
        # ... or a candidate of the open learning window, decided when it ends
        if self._learning is not None:
            earliest = min(earliest, self._learning_start)
        # an R peak lies in the LOCATE_BACK_S up to its candidate's last full-rate sample
        return max(0, min(n_pushed, earliest * self._factor + self._factor - 1 - self._back))

    # --- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The detector's state as numpy arrays and plain numbers (no objects), for saving
        between pushes; ``from_state_dict`` rebuilds a detector that goes on exactly as this
        one would. Filter designs and sizes are not saved: they follow from ``fs_hz``."""

        def rows(candidates: list[tuple[int, float, float]]) -> np.ndarray:
            # positions are whole numbers far below 2**53: exact as float64
            return np.array(candidates, dtype=np.float64).reshape(-1, 3)

        return {
            "fs_hz": self.fs_hz,
            "carry": self._carry.copy(),
            "zi": self._zi.copy(),
            "first_sample": self._first_sample,
            "last_band": self._last_band,
            "last_cumulative": self._last_cumulative,
            "n_seen": self._n_seen,
            "next": self._next,
            "start": self._start,
            "integrated": self._integrated.copy(),
            "slope": self._slope.copy(),
            "raw_start": self._raw_start,
            "raw": self._raw.copy(),
            "cumulative_tail": self._cumulative_tail.copy(),
            "flushed": self._flushed,
            "learning": None if self._learning is None else rows(self._learning),
            "learning_start": self._learning_start,
            "signal_levels": np.array(self._signal._recent),
            "signal_median": self._signal.median,
            "noise_levels": np.array(self._noise._recent),
            "noise_median": self._noise.median,
            "threshold": self._threshold,
            "pending": rows(self._pending),
            "last_beat": self._last_beat,
            "last_slope": self._last_slope,
            "search_back_after": self._search_back_after,
            "last_located": self._last_located,
            "last_peak": self._last_peak,
            "last_reset": self._last_reset,
            "last_rhythm_beat": self._last_rhythm_beat,
            "reference_levels": np.array(
                [] if self._reference is None else self._reference._recent
            ),
            "reference_median": 0.0 if self._reference is None else self._reference.median,
            "rr": np.array(self._rr, dtype=np.int64),
            "regular_rr": np.array(self._regular_rr, dtype=np.int64),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> "StreamingQrsDetector":
        """A detector in the state ``state_dict`` returned. Raises ``KeyError`` or
        ``ValueError`` when ``state`` is not such a state."""

        def candidates(array: np.ndarray) -> list[tuple[int, float, float]]:
            return [(int(p), float(h), float(s)) for p, h, s in np.asarray(array).reshape(-1, 3)]

        def levels(recent: np.ndarray, median: float) -> _RunningMedian:
            level = _RunningMedian(0.0)
            level._recent = [float(value) for value in np.asarray(recent, dtype=np.float64)]
            if not 1 <= len(level._recent) <= N_LEVELS:
                raise ValueError("a QRS level holds 1 to 8 peaks")
            # insort keeps the ordered copy sorted, so sorting rebuilds it exactly
            level._ordered = sorted(level._recent)
            level.median = float(median)
            return level

        detector = cls(float(state["fs_hz"]))
        zi = np.asarray(state["zi"], dtype=np.float64)
        if zi.shape != detector._zi.shape:
            raise ValueError(
                f"QRS filter state has shape {zi.shape}, expected {detector._zi.shape}"
            )
        detector._carry = np.asarray(state["carry"], dtype=np.float64)
        detector._zi = zi
        first = state["first_sample"]
        detector._first_sample = None if first is None else float(first)
        detector._last_band = float(state["last_band"])
        detector._last_cumulative = float(state["last_cumulative"])
        detector._n_seen = int(state["n_seen"])
        detector._next = int(state["next"])
        detector._start = int(state["start"])
        detector._integrated = np.asarray(state["integrated"], dtype=np.float64)
        detector._slope = np.asarray(state["slope"], dtype=np.float64)
        detector._raw_start = int(state["raw_start"])
        detector._raw = np.asarray(state["raw"], dtype=np.float64)
        tail = np.asarray(state["cumulative_tail"], dtype=np.float64)
        if tail.shape != detector._cumulative_tail.shape:
            raise ValueError("QRS integration state does not match the sampling rate")
        detector._cumulative_tail = tail
        detector._flushed = bool(state["flushed"])
        learning = state["learning"]
        detector._learning = None if learning is None else candidates(learning)
        # states saved before learning could be refused learnt from the first 2 s
        detector._learning_start = int(state.get("learning_start", 0))
        detector._signal = levels(state["signal_levels"], state["signal_median"])
        detector._noise = levels(state["noise_levels"], state["noise_median"])
        detector._threshold = float(state["threshold"])
        detector._pending = candidates(state["pending"])
        detector._last_beat = int(state["last_beat"])
        detector._last_slope = float(state["last_slope"])
        detector._search_back_after = float(state["search_back_after"])
        detector._last_located = int(state["last_located"])
        # states saved before R peaks kept the refractory period know no last R peak: the next
        # one is placed as before (after the last beat's integrated peak only)
        detector._last_peak = int(state.get("last_peak", -1))
        # states saved before the recovery rule have no recovery yet
        detector._last_reset = int(state.get("last_reset", -1))
        # ... and states saved before the guard could lapse take the last beat for the last
        # beat of a rhythm: the guard lapses no earlier than it would have
        detector._last_rhythm_beat = int(state.get("last_rhythm_beat", detector._last_beat))
        # ... and states saved before the standstill guard no reference height: the guard
        # holds again after N_LEVELS beats
        reference = np.asarray(state.get("reference_levels", []), dtype=np.float64)
        if len(reference):
            detector._reference = levels(reference, state["reference_median"])
        detector._rr = [int(value) for value in np.asarray(state["rr"])]
        detector._rr_sum = sum(detector._rr)
        detector._regular_rr = [int(value) for value in np.asarray(state["regular_rr"])]
        detector._regular_sum = sum(detector._regular_rr)
        return detector

    def push(self, chunk_mv: np.ndarray) -> np.ndarray:
        """Add the next samples (1-D, millivolts); return the R peaks that became final.

        Returns
        -------
        int64 array of absolute sample indices, increasing, after every index returned before.
        """
        if self._flushed:
            raise ValueError("this detector was flushed; start a new StreamingQrsDetector")
        if isinstance(chunk_mv, np.ndarray | list | tuple) and len(chunk_mv) == 0:
            return np.empty(0, dtype=np.int64)
        chunk = validate_signal(chunk_mv, name="chunk", min_samples=1)
        if chunk.ndim != 1:
            raise ValueError(f"push takes one lead (a 1-D chunk), got shape {chunk.shape}")
        # Samples beyond the product's limit (MAX_ECG_ABS_MV, refused at its boundaries) are
        # clipped to it: the running sum of squared slopes is carried for the whole stream and
        # must stay finite and precise (one corrupt sample of 1e160 overflowed it, and no beat
        # was found after it). Clipping keeps a stream going where an error would stop it.
        if np.abs(chunk).max() > MAX_ECG_ABS_MV:
            chunk = np.clip(chunk, -MAX_ECG_ABS_MV, MAX_ECG_ABS_MV)
        # Blocks of a few seconds keep every temporary array small and in cache: one pass over
        # a 30-minute record as a whole would spend more time faulting in fresh memory than
        # computing. The output does not depend on the blocking.
        found = []
        for start in range(0, len(chunk), BLOCK_SAMPLES):
            self._append_features(chunk[start : start + BLOCK_SAMPLES])
            found.append(self._examine(self._n_seen - self._half))
        return found[0] if len(found) == 1 else np.concatenate(found)

    def flush(self) -> np.ndarray:
        """End of the signal: return the R peaks still pending."""
        if self._flushed:
            return np.empty(0, dtype=np.int64)
        self._flushed = True
        # past the end there are no peaks: the last 150 ms are examined against -inf (and
        # the last few samples of an incomplete block are not examined at all)
        self._integrated = np.concatenate((self._integrated, np.full(self._half, -np.inf)))
        beats = self._examine(self._n_seen)
        # the signal ended inside a learning window: judge what there is of it
        if self._learning and self._stands_out(min(self._learning_end, self._n_seen)):
            beats = np.concatenate((beats, self._locate(self._end_learning())))
        return beats

    # --- features --------------------------------------------------------------------

    def _append_features(self, chunk: np.ndarray) -> None:
        if self._first_sample is None:
            # start the causal filter in its steady state for the first sample's level, as if
            # the signal had always been there: no step response at the start
            self._first_sample = float(chunk[0])
            self._zi = sps.sosfilt_zi(self._sos) * self._first_sample
            self._raw[:] = self._first_sample
        self._raw = np.concatenate((self._raw, chunk))
        factor = self._factor
        if factor > 1:
            # blocks aligned on multiples of factor from the first sample, whatever the chunks
            if len(self._carry):
                chunk = np.concatenate((self._carry, chunk))
            n_blocks = len(chunk) // factor
            self._carry = chunk[n_blocks * factor :]
            if n_blocks == 0:
                return
            chunk = chunk[: n_blocks * factor].reshape(n_blocks, factor).mean(axis=1)
        band, self._zi = sps.sosfilt(self._sos, chunk, zi=self._zi)
        slope = np.diff(band, prepend=self._last_band) * self._feature_fs  # mV/s
        self._last_band = float(band[-1])
        squared = slope * slope
        # A running sum carried as its last value (cumsum is a left fold, so the chunked sums
        # are bit-identical to one pass over the whole signal).
        cumulative = np.cumsum(np.concatenate(([self._last_cumulative], squared)))[1:]
        self._last_cumulative = float(cumulative[-1])
        both = np.concatenate((self._cumulative_tail, cumulative))
        integrated = (both[self._width :] - both[: -self._width]) / self._width
        self._cumulative_tail = both[-self._width :]
        self._n_seen += len(chunk)
        self._integrated = np.concatenate((self._integrated, integrated))
        self._slope = np.concatenate((self._slope, slope))

    def _trim(self) -> None:
        """Forget what no candidate, search-back or R location can need again."""
        oldest = self._next - self._max_pending - self._half - self._width
        if self._pending:
            oldest = min(oldest, self._pending[0][0])
        if self._learning is not None:  # the learning window's test needs all of it
            oldest = min(oldest, self._learning_start)
        cut = oldest - self._start
        if cut > 4 * self._feature_fs:  # trim in blocks, not on every push
            self._integrated = self._integrated[cut:]
            self._slope = self._slope[cut:]
            self._start += cut
            # the R-peak search reaches back from a candidate's last full-rate sample
            raw_cut = oldest * self._factor - self._back - self._raw_start
            if raw_cut > 0:
                self._raw = self._raw[raw_cut:]
                self._raw_start += raw_cut

    # --- candidates ------------------------------------------------------------------

    def _examine(self, stop: int) -> np.ndarray:
        """Find the candidate peaks in [next, stop) and run the decision rules on them."""
        start, half, width = self._next, self._half, self._width
        if stop <= start:
            return np.empty(0, dtype=np.int64)
        base = self._start
        segment = self._integrated[start - half - base : stop + half - base]
        positions = _neighbourhood_tops(segment, half) + (start - half)
        # no QRS is this faint: without a floor, the levels would adapt down to the noise of
        # a flat line (lead off, asystole) and call it beats
        positions = positions[self._integrated[positions - base] >= MIN_QRS_SLOPE_MV_S**2]
        self._next = stop
        if len(positions) == 0:
            # a learning window may end here without a candidate after it
            beats = self._close_learning(stop)
            located = self._locate(beats)
            self._trim()
            return located
        # Thresholds compare square roots: the integrated squared slope grows with amplitude
        # squared, so a tall, wide PVC would otherwise lift the levels over the normal beats
        # between PVCs (ventricular bigeminy in record 228 lost four beats in five).
        heights = np.sqrt(self._integrated[positions - base])
        # steepest band-passed slope in the integration window up to each candidate
        windows = sliding_window_view(self._slope, width + 1)[positions - base - width]
        slopes = np.maximum(windows.max(axis=1), -windows.min(axis=1))
        beats = self._decide(positions.tolist(), heights.tolist(), slopes.tolist())
        # A learning window is judged as soon as all of its candidates are known (the signal
        # examined has reached its end), with or without a candidate after it: the beats do
        # not depend on the chunks.
        beats += self._close_learning(stop)
        located = self._locate(beats)
        self._trim()
        return located

    @property
    def _learning_end(self) -> int:
        """End of the open learning window (feature samples): it lasts LEARNING_S."""
        return self._learning_start + self._learning_window

    def _close_learning(self, stop: int) -> list[int]:
        """Judge every learning window that ends at or before ``stop``: the first whose
        candidates stand out starts the levels (its beats are returned); the others are
        forgotten, and learning goes on over the next window."""
        accepted: list[int] = []
        while self._learning is not None and self._learning_end <= stop:
            if self._learning and self._stands_out(self._learning_end):
                accepted.extend(self._end_learning())
            else:
                self._learning = []
                self._learning_start = self._learning_end
        return accepted

    def _stands_out(self, end: int) -> bool:
        """Whether the largest candidate of the learning window (up to ``end``) stands out as
        a QRS complex does, and the noise of a flat line does not (LEARNING_MIN_HEIGHT_MV_S)."""
        window = self._integrated[self._learning_start - self._start : end - self._start]
        baseline = float(np.percentile(window, RECOVERY_BASELINE_PERCENTILE))
        root = float(np.sqrt(max(baseline, 0.0)))
        tallest = max(h for _, h, _ in self._learning)
        if tallest > max(RECOVERY_PROMINENCE * root, MIN_PROMINENT_MV_S):
            return True
        return tallest >= LEARNING_MIN_HEIGHT_MV_S and tallest > LEARNING_MIN_PROMINENCE * root

    def _end_learning(self) -> list[int]:
        """Start the levels from the learning window (signal: half the largest peak; noise:
        half the mean peak) and decide the candidates held back until then."""
        learning, self._learning = self._learning, None
        heights = [h for _, h, _ in learning]
        self._signal = _RunningMedian(0.5 * max(heights))
        self._noise = _RunningMedian(0.5 * sum(heights) / len(heights))
        self._update_threshold()
        positions, heights, slopes = (list(column) for column in zip(*learning, strict=True))
        return self._decide(positions, heights, slopes)

    def _update_threshold(self) -> None:
        noise, signal = self._noise.median, self._signal.median
        # Capped at 0.6 of the QRS level: when missed beats fill the noise level (bigeminy
        # with small normal beats, record 223 at 250 Hz), the threshold would otherwise
        # stay above them for good, since nothing then lowers the noise level.
        self._threshold = min(
            noise + THRESHOLD_COEFFICIENT * (signal - noise), MAX_THRESHOLD_RATIO * signal
        )

    def _decide(self, positions: list, heights: list, slopes: list) -> list[int]:
        """Hamilton & Tompkins' rules over candidates in order; the accepted positions."""
        accepted: list[int] = []
        t_wave, refractory, max_pending = self._t_wave, self._refractory, self._max_pending
        for position, height, slope in zip(positions, heights, slopes, strict=True):
            if self._learning is not None:
                accepted.extend(self._close_learning(position))
                if self._learning is not None:  # position lies in the open window
                    self._learning.append((position, height, slope))
                    continue
            pending = self._pending
            if pending and pending[0][0] < position - max_pending:
                pending = self._pending = [c for c in pending if c[0] >= position - max_pending]
            # 5 s without a beat since the last beat, recovery or learnt window (which may
            # start long after the start of the signal)
            since = max(self._last_beat, self._last_reset, self._learning_start)
            if position - since > self._recovery_after:
                recovered = self._recover(position, height, slope)
                if recovered is not None:
                    accepted.extend(recovered)
                    continue
            gap = self._gap(position)
            if gap > self._search_back_after and pending:
                found = self._search_back()
                if found is not None:
                    accepted.append(found)
                    gap = self._gap(position)
            if height > self._threshold and gap > refractory:
                if gap < t_wave and slope < T_WAVE_SLOPE_RATIO * self._last_slope:
                    # a T wave has a gentler slope than the QRS before it
                    self._noise.add(height)
                    self._update_threshold()
                    self._pending.append((position, height, slope))
                    continue
                self._accept(position, height, slope)
                self._pending = []
                accepted.append(position)
            elif height <= self._threshold:
                self._noise.add(height)
                self._update_threshold()
                self._pending.append((position, height, slope))
        return accepted

    def _recover(self, position: int, height: float, slope: float) -> list[int] | None:
        """After RECOVERY_AFTER_S without a beat: when the candidates of the last
        MAX_PENDING_S (this one included) hold at least RECOVERY_MIN_PEAKS prominent peaks,
        learn the levels again from them as at the start and decide those candidates afresh;
        the beats found. None (nothing changed) when they do not: a flat line's noise, an
        asystole, an artefact still going on."""
        candidates = [*self._pending, (position, height, slope)]
        first = max(0, position - self._max_pending) - self._start
        window = self._integrated[first : position + 1 - self._start]
        baseline = float(np.percentile(window, RECOVERY_BASELINE_PERCENTILE))
        least = max(RECOVERY_PROMINENCE * float(np.sqrt(max(baseline, 0.0))), MIN_PROMINENT_MV_S)
        prominent = [h for _, h, _ in candidates if h > least]
        if len(prominent) < RECOVERY_MIN_PEAKS:
            return None
        reference = self._reference
        if (
            reference is not None
            and len(reference._recent) == N_LEVELS
            and position - self._last_rhythm_beat <= self._standstill_guard
            and float(np.median(prominent)) < RECOVERY_MIN_RATIO * reference.median
        ):
            # far smaller than the real beats before the pause: P waves of a ventricular
            # standstill, not QRS complexes (until the guard lapses)
            return None
        heights = [h for _, h, _ in candidates]
        # QRS level: the median prominent peak (not the largest: what is left of an artefact
        # must not blind the detector again); noise level as at the start
        self._signal = _RunningMedian(float(np.median(prominent)))
        self._noise = _RunningMedian(0.5 * sum(heights) / len(heights))
        self._update_threshold()
        # start afresh, as at the start of the signal: the RR intervals before the gap (those
        # of the artefact) mean nothing now, and the first beat needs no beat before it
        self._last_reset = position
        self._reference = None  # the beats found from here on set it again
        self._last_beat = -1
        self._last_rhythm_beat = -1
        self._last_slope = 0.0
        self._pending = []
        self._rr, self._rr_sum = [], 0
        self._regular_rr, self._regular_sum = [], 0
        self._search_back_after = float("inf")
        positions, heights, slopes = (list(column) for column in zip(*candidates, strict=True))
        return self._decide(positions, heights, slopes)

    def _gap(self, position: int) -> float:
        """Feature samples from the last beat to ``position``; infinite before the first beat,
        so that no refractory period or T-wave test applies to it (a beat in the first 200 ms
        of the signal was otherwise dropped as if a beat had come at sample -1)."""
        return position - self._last_beat if self._last_beat >= 0 else float("inf")

    def _search_back(self) -> int | None:
        """Accept the highest candidate since the last beat above half the threshold (and, once
        the reference holds N_LEVELS beats, above SEARCH_BACK_MIN_RATIO of it), unless it looks
        like a T wave (within 360 ms of the beat and much gentler); its position."""
        best = None
        floor = 0.5 * self._threshold
        reference = self._reference
        if reference is not None and len(reference._recent) == N_LEVELS:
            # far smaller than the real beats: a P wave of a ventricular standstill
            floor = max(floor, SEARCH_BACK_MIN_RATIO * reference.median)
        for candidate in self._pending:
            position, height, slope = candidate
            gap = self._gap(position)
            if gap <= self._refractory or height <= floor:
                continue
            if gap < self._t_wave and slope < SEARCH_BACK_T_WAVE_RATIO * self._last_slope:
                continue
            if best is None or height > best[1]:
                best = candidate
        if best is None:
            return None
        position, height, slope = best
        self._pending = [c for c in self._pending if c[0] > position]
        self._accept(position, height, slope)
        return position

    def _accept(self, position: int, height: float, slope: float) -> None:
        """A beat: update the signal level, the reference height, the RR averages and the
        search-back limit."""
        self._signal.add(height)
        reference = self._reference
        if reference is None:
            self._reference = _RunningMedian(height)
        elif height <= REFERENCE_OUTLIER_RATIO * reference.median:
            reference.add(height)
        self._update_threshold()
        if self._last_beat >= 0:
            interval = position - self._last_beat
            if interval <= self._recovery_after:
                self._last_rhythm_beat = position
            rr = self._rr
            rr.append(interval)
            self._rr_sum += interval  # integer sums: exact, however long the stream
            if len(rr) > N_RR:
                self._rr_sum -= rr.pop(0)
            regular = self._regular_rr
            if regular:
                reference = self._regular_sum / len(regular)
            else:
                reference = self._rr_sum / len(rr)
            # Pan & Tompkins' "regular" intervals: within 92-116 % of their own mean
            if 0.92 * reference <= interval <= 1.16 * reference or len(regular) < 2:
                regular.append(interval)
                self._regular_sum += interval
                if len(regular) > N_RR:
                    self._regular_sum -= regular.pop(0)
            # Search back after 1.66 mean RR, the shorter of the recent and the regular
            # mean: in bigeminy the regular mean drifts to the long intervals and would
            # never call for a search.
            mean_rr = self._rr_sum / len(rr)
            if regular:
                mean_rr = min(mean_rr, self._regular_sum / len(regular))
            self._search_back_after = SEARCH_BACK_RR * mean_rr
        self._last_beat = position
        self._last_slope = slope

    # --- R peaks ---------------------------------------------------------------------

    def _locate(self, positions: list[int]) -> np.ndarray:
        """The R peak of each beat: the largest deflection from the local baseline (median)
        in the 250 ms up to its integrated-signal peak, after the previous beat's integrated
        peak and at least the refractory period after the previous R peak."""
        if not positions:
            return np.empty(0, dtype=np.int64)
        back = self._back
        # the last full-rate sample of each candidate's block
        tops = np.asarray(positions, dtype=np.int64) * self._factor + (self._factor - 1)
        segments = sliding_window_view(self._raw, back + 1)[tops - back - self._raw_start]
        middle = back // 2  # the median of back + 1 samples
        baseline = np.partition(segments, middle, axis=1)[:, middle : middle + 1]
        deviation = np.abs(segments - baseline)
        # only after the previous beat's integrated peak, so the output stays increasing
        previous = np.concatenate(([self._last_located], tops[:-1]))
        skip = previous + 1 - (tops - back)
        deviation[np.arange(back + 1) < skip[:, None]] = -1.0
        self._last_located = int(tops[-1])
        peaks = tops - back + np.argmax(deviation, axis=1)
        # The decisions keep the integrated peaks 200 ms apart, but the R peaks are looked for
        # in the 250 ms before them: in ventricular flutter, whose waves have no sharp peak,
        # the largest deflection fell at the end of one window and at the start of the next,
        # and two R peaks came 39-81 ms apart (MIT-BIH 207 at 59.3 s: 744.8 bpm, one wave
        # late and the next early). So an R peak is taken no earlier than the refractory
        # period after the one before. There is always room: the previous R peak lies at or
        # before its integrated peak, which lies more than 200 ms before this one's.
        last = self._last_peak
        for index in range(len(peaks)):
            if last >= 0 and peaks[index] - last < self._peak_refractory:
                first = min(last + self._peak_refractory - (tops[index] - back), back)
                peaks[index] = tops[index] - back + first + np.argmax(deviation[index, first:])
            last = int(peaks[index])
        self._last_peak = last
        return peaks


class _RunningMedian:
    """Median of the last N_LEVELS values added (Hamilton & Tompkins 1986): one tall ectopic
    beat or artefact cannot lift the threshold over the next beats."""

    def __init__(self, first: float) -> None:
        self._recent = [first]
        self._ordered = [first]
        self.median = first

    def add(self, value: float) -> None:
        recent, ordered = self._recent, self._ordered
        recent.append(value)
        insort(ordered, value)
        if len(recent) > N_LEVELS:
            ordered.remove(recent.pop(0))
        middle = len(ordered) // 2
        if len(ordered) % 2:
            self.median = ordered[middle]
        else:
            self.median = 0.5 * (ordered[middle - 1] + ordered[middle])


def _neighbourhood_tops(values: np.ndarray, half: int) -> np.ndarray:
    """Indices i in [half, len - half) where values[i] rises from values[i - 1], is positive
    and is the maximum of values[i - half : i + half + 1]."""
    n = len(values)
    if n <= 2 * half:
        return np.empty(0, dtype=np.int64)
    # windows wholly inside the array: the filter's edge mode never matters here
    window_max = maximum_filter1d(values, 2 * half + 1)[half : n - half]
    centre = values[half : n - half]
    tops = (centre >= window_max) & (centre > values[half - 1 : n - half - 1]) & (centre > 0.0)
    return np.flatnonzero(tops) + half
