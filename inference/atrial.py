"""Atrial activity: how consistent each beat's P wave is, and when a rhythm looks like AF.

Atrial fibrillation has two signs on a single lead: the RR intervals are irregular, and there
is no P wave (the atria fibrillate instead of contracting once per beat). RR irregularity
alone also fires on sinus arrhythmia, frequent ectopy and long pauses, whose beats keep a
P wave; combining both cues is the classic remedy (Babaeizadeh S, Gregg RE, Helfenbein ED,
Lindauer JM, Zhou SH. Improvements in atrial fibrillation detection for real-time
monitoring. J Electrocardiol 42(6):522-526 (2009); Ladavich S, Ghoraani B. Rate-independent
detection of atrial fibrillation by statistical modeling of atrial activity. Biomed Signal
Process Control 18:274-281 (2015)).

- ``p_wave_correlation``: per beat, the correlation of the ECG from 250 to 80 ms before the R
  peak (where a P wave lies) with the same stretch of the patient's dominant beat
  (``inference.beats.dominant_beats``). A consistent P wave gives values near 1; the random
  fibrillatory baseline of AF gives values near 0. Beats whose QRS does not look like the
  dominant one (ventricular ectopy, artefacts) get NaN: their P region means nothing.
- ``p_wave_presence``: the median of that correlation over the last ``CONTEXT_BEATS`` beats,
  leaving out beats labelled V.
- ``rr_irregularity``: per beat, the median over the last ``CONTEXT_BEATS`` beats of the
  smaller of the differences between its RR interval and the one and two before it, relative
  to the median RR (bigeminy repeats with period 2 and scores low; fibrillation never
  repeats). Causal, unlike ``inference.rhythm.af_irregularity``, whose centred windows look
  48 beats ahead: the beat classifier must not wait that long.
- ``af_context``: irregular (``IRREGULAR_ABOVE``) and no consistent P wave
  (``P_WAVE_PRESENT_AT``). The beat classifier calls no beat S there (``fold_s_into_n``):
  in AF every beat comes early or late at random and has no P wave, and the MIT-BIH
  annotators, following AAMI, label such beats N; a classifier that has learnt "early = S"
  otherwise calls a good share of them S.

Everything here looks only backwards (at most ``HISTORY_BEATS`` beats), so a stream that keeps
that many beats gets the values of one offline pass. The thresholds were chosen on MIT-BIH
DS1, the paced records and vfdb, never on DS2 (docs/rhythm.md).
"""

from __future__ import annotations

import numpy as np

P_WAVE_START_S = -0.25  # relative to the R peak: the P wave of a normal PR interval
P_WAVE_END_S = -0.08  # before the QRS onset
QRS_MATCH_MIN = 0.8  # below this correlation with the dominant beat, the beat is not "normal"
# Below this RMS (mV) the dominant beat's P-wave stretch is flat: no P wave, whatever the
# beats' stretches correlate with it (a noise-free or heavily filtered signal can repeat a
# few microvolts of filter ringing exactly). MIT-BIH P waves in MLII are mostly 20-100 uV
# RMS over the stretch; in AF the median of the fibrillatory waves is flatter than 10 uV.
P_WAVE_MIN_RMS_MV = 0.01
CONTEXT_BEATS = 64
RR_MEDIAN_BEATS = 64
IRREGULAR_ABOVE = 0.05  # share of the median RR
P_WAVE_PRESENT_AT = 0.85  # median P-wave correlation at or above which the P wave is there
# beats of history a stream keeps so that every value equals the offline pass's: the
# irregularity window, over differences reaching two intervals back, each relative to a
# median over RR_MEDIAN_BEATS intervals, each needing the beat before it
HISTORY_BEATS = CONTEXT_BEATS + RR_MEDIAN_BEATS + 3


def p_wave_correlation(
    windows: np.ndarray,
    templates: np.ndarray,
    qrs_correlation: np.ndarray,
    window_fs_hz: float,
    window_before_s: float,
) -> np.ndarray:
    """Correlation of each beat's P-wave stretch with its dominant beat's (NaN where the beat's
    whole window correlates with the dominant beat below ``QRS_MATCH_MIN``).

    Parameters
    ----------
    windows, templates : (n_beats, n_samples) beat windows and their dominant beats
        (``inference.beats.beat_features``), mV
    qrs_correlation : (n_beats,) correlation of each window with its dominant beat (the
        ``correlation_with_dominant`` rhythm feature)
    window_fs_hz : the windows' sampling rate in Hz
    window_before_s : seconds from a window's first sample to its R peak

    Returns
    -------
    float64 array (n_beats,), in [-1, 1] or NaN; 0 (no P wave) where the dominant beat's
    stretch is flat (RMS below ``P_WAVE_MIN_RMS_MV``). Each stretch has its mean and linear
    trend removed first, so baseline drift does not pass for a P wave.
    """
    first = round((window_before_s + P_WAVE_START_S) * window_fs_hz)
    last = round((window_before_s + P_WAVE_END_S) * window_fs_hz)
    beat = _detrended(np.asarray(windows, dtype=np.float64)[:, first:last])
    dominant = _detrended(np.asarray(templates, dtype=np.float64)[:, first:last])
    norms = np.sqrt((beat * beat).sum(axis=1) * (dominant * dominant).sum(axis=1))
    correlation = (beat * dominant).sum(axis=1) / np.maximum(norms, 1e-12)
    flat = np.sqrt((dominant * dominant).mean(axis=1)) < P_WAVE_MIN_RMS_MV
    correlation = np.where(flat, 0.0, correlation)
    return np.where(np.asarray(qrs_correlation) >= QRS_MATCH_MIN, correlation, np.nan)


def _detrended(rows: np.ndarray) -> np.ndarray:
    x = np.arange(rows.shape[1]) - (rows.shape[1] - 1) / 2
    rows = rows - rows.mean(axis=1, keepdims=True)
    slope = (rows * x).sum(axis=1, keepdims=True) / (x * x).sum()
    return rows - slope * x


def running_nanmedian(values: np.ndarray, n: int) -> np.ndarray:
    """Median of ``values[i - n + 1 : i + 1]`` for each ``i``, NaN left out (NaN when all are).

    Sorting puts NaN last, so the median of the finite values is read by position: several
    times faster than ``np.nanmedian`` along an axis, and silent on all-NaN windows.
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return np.empty(0)
    padded = np.concatenate([np.full(n - 1, np.nan), values])
    ordered = np.sort(np.lib.stride_tricks.sliding_window_view(padded, n), axis=1)
    valid = np.isfinite(ordered).sum(axis=1)
    rows = np.arange(len(values))
    low = ordered[rows, np.maximum(valid - 1, 0) // 2]
    high = ordered[rows, np.maximum(valid, 1) // 2 - (valid == 0)]
    return np.where(valid > 0, (low + high) / 2, np.nan)


def p_wave_presence(p_wave: np.ndarray, is_ventricular: np.ndarray) -> np.ndarray:
    """Median P-wave correlation over the last ``CONTEXT_BEATS`` beats, V beats left out
    (NaN when none of them has one)."""
    masked = np.where(np.asarray(is_ventricular, dtype=bool), np.nan, p_wave)
    return running_nanmedian(masked, CONTEXT_BEATS)


def rr_irregularity(times_s: np.ndarray) -> np.ndarray:
    """Causal RR irregularity of each beat (see the module notes; NaN for the first beat)."""
    times_s = np.asarray(times_s, dtype=np.float64)
    if len(times_s) == 0:
        return np.empty(0)
    rr_s = np.concatenate([[np.nan], np.diff(times_s)])  # pre-RR of each beat
    difference = np.full(len(rr_s), np.nan)
    for lag in (1, 2):
        lagged = np.abs(rr_s[lag:] - rr_s[:-lag])
        difference[lag:] = np.fmin(difference[lag:], lagged)
    relative = difference / running_nanmedian(rr_s, RR_MEDIAN_BEATS)
    return running_nanmedian(relative, CONTEXT_BEATS)


def af_context(times_s: np.ndarray, p_wave: np.ndarray, is_ventricular: np.ndarray) -> np.ndarray:
    """True for each beat whose recent rhythm is irregular without a consistent P wave.

    Parameters
    ----------
    times_s : beat times in seconds, increasing
    p_wave : ``p_wave_correlation`` of each beat
    is_ventricular : whether each beat is labelled V
    """
    irregular = rr_irregularity(times_s) > IRREGULAR_ABOVE  # NaN compares False
    present = p_wave_presence(p_wave, is_ventricular) >= P_WAVE_PRESENT_AT
    return irregular & ~present


def fold_s_into_n(
    probabilities: np.ndarray, in_af: np.ndarray, n_index: int, s_index: int
) -> np.ndarray:
    """Class probabilities (n_beats, n_classes) with the S column's probability moved to the
    N column for the beats where ``in_af`` (``af_context``) is true. Returns a new array.

    A beat whose largest probability was V stays V (N + S >= S), so the V labels that
    ``af_context`` read are the same before and after.
    """
    probabilities = np.array(probabilities, dtype=np.float64)
    in_af = np.asarray(in_af, dtype=bool)
    probabilities[in_af, n_index] += probabilities[in_af, s_index]
    probabilities[in_af, s_index] = 0.0
    return probabilities
