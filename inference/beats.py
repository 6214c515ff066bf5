"""AAMI beat classification: per-beat features, the beat CNN and its serving class.

    classifier = get_beat_classifier()              # the shipped model (beat-cnn-mitdb)
    probabilities = classifier.classify(ecg_mv, fs, r_peaks)   # (n_beats, 5), BEAT_CLASSES

Each beat is described by two things, as in de Chazal P, O'Dwyer M, Reilly RB. Automatic
classification of heartbeats using ECG morphology and heartbeat interval features. IEEE Trans
Biomed Eng 51(7):1196-1206 (2004), and Mar T, et al. Optimization of ECG classification by
means of feature selection. IEEE Trans Biomed Eng 58(8):2168-2177 (2011):

- its morphology: 0.7 s of the band-passed ECG around the R peak, at 180 Hz, and the same
  window minus the patient's dominant beat (a running median of the preceding beats); both are
  divided by the dominant beat's peak-to-peak amplitude. Comparing each beat with the
  patient's own usual beat, rather than with other patients' beats, is what carries a
  morphology model across patients (inter-patient split);
- its rhythm: the preceding and following RR intervals in seconds and their ratios to the
  patient's own average RR (the mean of the last 5 minutes, as de Chazal's), to the local RR
  (median of the last 10 intervals) and to each other (``rr_features``). A premature
  supraventricular beat looks normal and is told apart mainly by its timing, and only
  relative to the patient's own rhythm does timing carry from one patient to another.

Everything is causal except the following RR interval (one beat of lookahead), the zero-phase
band-pass (local) and the first dominant beat of a recording (its first beats), so the same
features can be computed on a stream.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import torch
from torch import nn

from inference import atrial
from inference.aami import AAMI_CLASSES
from inference.registry import REQUIRED_CARD_KEYS, WEIGHTS_DIR
from inference.signal import bandpass, validate_fs, validate_signal

BEAT_CLASSES = AAMI_CLASSES
DEFAULT_BEAT_MODEL = "beat-cnn-mitdb"

BEAT_FS_HZ = 180.0
WINDOW_BEFORE_S = 0.28  # covers the P wave of a premature beat
WINDOW_AFTER_S = 0.42  # covers the ST segment and most of the T wave
WINDOW_SAMPLES = round((WINDOW_BEFORE_S + WINDOW_AFTER_S) * BEAT_FS_HZ)  # 126
BANDPASS_HZ = (0.5, 40.0)
MIN_FS_HZ, MAX_FS_HZ = 100.0, 2000.0

TEMPLATE_BEATS = 64  # the dominant beat is the median of this many preceding beats
TEMPLATE_UPDATE_BEATS = 32  # ... recomputed every this many beats (a median costs)
TEMPLATE_START_BEATS = 16  # the first beats of a recording are compared with the first 16
LOCAL_RR_BEATS = 10
LONG_RR_S = 300.0
LONG_RR_UPDATE_BEATS = 32  # the long-term RR changes slowly; recompute it every this many beats
MIN_AMPLITUDE_MV = 0.1  # below this, a dominant beat's amplitude is noise; do not divide by it
MAX_RATIO = 5.0
PAUSE_RATIO = 2.0  # an RR longer than twice the usual one is a pause, not the rhythm
# Signal read on each side of the beats a saliency map depends on (saliency_excerpt)
SALIENCY_MARGIN_S = 60.0

RR_FEATURES = (
    "pre_rr_s",
    "post_rr_s",
    "pre_over_average",
    "post_over_average",
    "local_over_average",
    "pre_over_local",
    "post_over_local",
    "pre_over_post",
    "local_irregularity",
    "correlation_with_dominant",
    "amplitude_over_dominant",
)


# --- Features -----------------------------------------------------------------------------


def validate_r_peaks(r_peaks: object, n_samples: int) -> np.ndarray:
    """Check R-peak positions (sample indices) and return them as int64.

    Raises
    ------
    ValueError
        Unless ``r_peaks`` is a 1-D sequence of whole sample numbers inside the signal
        (0 to ``n_samples - 1``), strictly increasing.
    """
    array = np.asarray(r_peaks)
    if array.ndim != 1:
        raise ValueError(f"r_peaks must be a 1-D list of sample indices, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or not np.all(array == np.round(array)):
            raise ValueError("r_peaks must be whole sample numbers (indices into the signal)")
    elif array.dtype.kind not in "iu":
        raise ValueError(f"r_peaks must be sample indices (numbers), got {array.dtype}")
    peaks = array.astype(np.int64)
    outside = (peaks < 0) | (peaks >= n_samples)
    if outside.any():
        first = int(np.argmax(outside))
        raise ValueError(
            f"r_peaks[{first}] = {peaks[first]} is outside the signal (0 to {n_samples - 1})"
        )
    not_increasing = np.diff(peaks) <= 0
    if not_increasing.any():
        first = int(np.argmax(not_increasing)) + 1
        raise ValueError(
            f"r_peaks must be strictly increasing: r_peaks[{first}] = {peaks[first]} follows "
            f"{peaks[first - 1]}"
        )
    return peaks


def rr_features(r_peaks: np.ndarray, fs: float) -> np.ndarray:
    """Rhythm features of each beat (the first 9 columns of ``RR_FEATURES``).

    De Chazal et al. (2004)'s interval features (pre-RR, post-RR, average RR, local average
    RR), expressed as ratios to the patient's own average RR: the normalisation is what
    makes a premature beat separable between patients whose heart rates differ (Mar et al.
    2011; Lin CC, Yang CM. Heartbeat classification using normalized RR intervals and
    morphological features. Math Probl Eng 2014:712474).

    - average RR (``avg``): the mean of the pre-RR intervals of the 5 minutes before the
      beat, pauses included (refreshed every 32 beats; the first block looks a few beats
      ahead): de Chazal's average RR, the patient's beats per time;
    - local RR (``local``): the median of the 10 pre-RR intervals before this beat, this one
      excluded (a premature beat does not dilute its own reference) and pauses longer than
      twice ``avg`` ignored; a median rather than de Chazal's mean, so one premature beat
      and its compensatory pause do not move it.

    Parameters
    ----------
    r_peaks : increasing R-peak sample indices at ``fs``
    fs : sampling rate in Hz

    Returns
    -------
    float32 array (n_beats, 9): pre-RR and post-RR in seconds; pre/avg, post/avg,
    local/avg, pre/local, post/local, pre/post; and the local irregularity, the mean
    absolute difference of successive RR intervals over the last 10 beats over ``avg``
    (high in atrial fibrillation, where an early beat is not a premature supraventricular
    beat; cf. Tateno K, Glass L. Med Biol Eng Comput 39:664-671, 2001). Ratios are clipped to
    0-5. The first beat takes its post-RR as pre-RR and the last its pre-RR as post-RR; a
    single beat gets 1 s for both.
    """
    fs = validate_fs(fs)
    peaks = np.asarray(r_peaks, dtype=np.float64)
    n = len(peaks)
    if n == 0:
        return np.zeros((0, 9), dtype=np.float32)
    if n == 1:
        pre = np.ones(1)
    else:
        rr_s = np.diff(peaks) / fs
        pre = np.concatenate([[rr_s[0]], rr_s])
    post = np.concatenate([pre[1:], pre[-1:]]) if n > 1 else pre.copy()

    # average: mean of the last 5 minutes, refreshed every few beats (as the stream does)
    average = np.empty(n)
    times_s = peaks / fs
    step = LONG_RR_UPDATE_BEATS
    for block in range(0, n, step):
        end = max(block, min(n, step))  # the first block looks a few beats ahead
        average[block : block + step] = long_term_rr(pre, times_s, end)
    successive = np.abs(np.diff(pre, prepend=pre[0]))
    cumulative_change = np.concatenate([[0.0], np.cumsum(successive)])
    return rr_columns(pre, post, average, cumulative_change[:n], n_history=0)


def long_term_rr(pre_rr_s: np.ndarray, times_s: np.ndarray, end: int) -> float:
    """The patient's average RR (s) for a block of beats: the mean pre-RR of the beats before
    ``end`` within 5 minutes of beat ``end - 1``, pauses included (de Chazal et al. 2004).
    ``pre_rr_s`` and ``times_s`` (beat times, s) may start anywhere at least 5 minutes before
    beat ``end - 1`` (a stream keeps only that much).

    Why the mean and not a median without pauses (model 2.0's choice): when premature beats
    outnumber the patient's sinus beats, as in a slow sinus rhythm with frequent atrial
    premature beats and runs, the median RR is the premature beats' own interval and nothing
    looks early; the mean counts the long sinus intervals too. DS1 cross-validation could not
    tell the two apart (docs/models/beat-cnn-mitdb.md says how the choice was made).
    """
    begin = int(np.searchsorted(times_s, times_s[end - 1] - LONG_RR_S))
    return float(np.mean(pre_rr_s[begin:end]))


def rr_columns(
    pre: np.ndarray,
    post: np.ndarray,
    average: np.ndarray,
    cumulative_change: np.ndarray,
    n_history: int,
) -> np.ndarray:
    """The 9 ``rr_features`` columns of the beats after the first ``n_history`` of these arrays.

    The arrays are per beat (pre-RR and post-RR in s, the average RR of each beat's block,
    and the running sum of absolute pre-RR changes since the first beat of the recording up
    to each beat); the first ``n_history`` beats are history, at least ``LOCAL_RR_BEATS`` of
    them unless the arrays start at the recording's first beat. One code path for the whole
    recording (``n_history=0``) and for a stream's next beats.
    """
    n = len(pre)
    # local: median of the previous LOCAL_RR_BEATS pre-RRs, pauses masked out
    masked = np.where(pre <= PAUSE_RATIO * average, pre, np.nan)
    padded = np.concatenate([np.full(LOCAL_RR_BEATS, np.nan), masked])
    history = np.lib.stride_tricks.sliding_window_view(padded, LOCAL_RR_BEATS)[:n]
    # a NaN-aware median by sorting (NaN sorts last), several times faster than np.nanmedian
    ordered = np.sort(history, axis=1)
    valid = np.isfinite(history).sum(axis=1)
    rows = np.arange(n)
    low = ordered[rows, np.maximum(valid - 1, 0) // 2]
    high = ordered[rows, np.maximum(valid, 1) // 2 - (valid == 0)]
    local = np.where(valid > 0, (low + high) / 2, average)

    index = np.arange(n)
    lo = np.maximum(0, index - LOCAL_RR_BEATS)
    count = index - lo
    irregularity = np.where(
        count > 0, (cumulative_change[index] - cumulative_change[lo]) / np.maximum(count, 1), 0.0
    ) / np.maximum(average, 1e-3)

    def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.clip(a / np.maximum(b, 1e-3), 0.0, MAX_RATIO)

    pre, post, average, local, irregularity = (
        column[n_history:] for column in (pre, post, average, local, irregularity)
    )
    return np.stack(
        [
            pre,
            post,
            ratio(pre, average),
            ratio(post, average),
            ratio(local, average),
            ratio(pre, local),
            ratio(post, local),
            ratio(pre, post),
            np.clip(irregularity, 0.0, MAX_RATIO),
        ],
        axis=1,
    ).astype(np.float32)


def beat_windows(ecg_mv: np.ndarray, fs: float, r_peaks: np.ndarray) -> np.ndarray:
    """The band-passed ECG around each R peak, at ``BEAT_FS_HZ`` (mV).

    The signal is band-passed 0.5-40 Hz at its own rate (zero-phase Butterworth; removes
    baseline wander and is the anti-aliasing filter for 180 Hz), then read at
    ``WINDOW_SAMPLES`` instants from 0.28 s before to 0.42 s after each R peak by linear
    interpolation, so any rate from 100 to 2000 Hz gives the same grid. Beyond the ends of
    the signal the edge value is repeated. Each window has its median subtracted.

    Returns
    -------
    float32 array (n_beats, WINDOW_SAMPLES).
    """
    return windows_from_filtered(bandpass(ecg_mv, fs, *BANDPASS_HZ), fs, r_peaks)


def windows_from_filtered(
    filtered: np.ndarray, fs: float, r_peaks: np.ndarray, first_sample: int = 0
) -> np.ndarray:
    """``beat_windows`` read from a band-passed excerpt that starts at sample
    ``first_sample`` of the recording (``r_peaks`` are indices into the recording, so a
    stream's excerpt reads exactly the instants the whole recording would)."""
    last = first_sample + len(filtered) - 1
    offsets = (np.arange(WINDOW_SAMPLES) / BEAT_FS_HZ - WINDOW_BEFORE_S) * fs
    positions = np.asarray(r_peaks, dtype=np.float64)[:, np.newaxis] + offsets
    positions = np.clip(positions, first_sample, last)
    low = np.floor(positions).astype(np.int64)
    high = np.minimum(low + 1, last)
    fraction = positions - low
    windows = (
        filtered[low - first_sample] * (1 - fraction) + filtered[high - first_sample] * fraction
    )
    windows -= np.median(windows, axis=1, keepdims=True)
    return windows.astype(np.float32)


def dominant_beats(windows: np.ndarray) -> np.ndarray:
    """The patient's dominant beat before each beat: the sample-wise median of the preceding
    ``TEMPLATE_BEATS`` (64) windows, refreshed every ``TEMPLATE_UPDATE_BEATS`` (32) beats.

    The median ignores a minority of ectopic beats (Holter practice: beats are compared with
    the dominant template). The first block of beats, having none before it, uses the median
    of the first ``TEMPLATE_START_BEATS`` beats (the only lookahead, at the start of a
    recording); later blocks use whatever preceding beats there are, up to 64.

    Returns
    -------
    float32 array of the shape of ``windows``.
    """
    n = len(windows)
    step = TEMPLATE_UPDATE_BEATS
    spans = np.array([template_span(block, n) for block in range(0, n, step)], dtype=np.int64)
    begins, ends = spans[:, 0], spans[:, 1]
    medians = np.empty((len(spans), windows.shape[1]), dtype=windows.dtype)
    full = ends - begins == TEMPLATE_BEATS
    # blocks with a full history: one vectorised median over (blocks, beats, samples)
    if full.any():
        history = begins[full, np.newaxis] + np.arange(TEMPLATE_BEATS)
        medians[full] = np.median(windows[history], axis=1)
    # the first blocks of a recording, with fewer beats behind them
    for block_index in np.flatnonzero(~full):
        medians[block_index] = np.median(windows[: ends[block_index]], axis=0)
    templates = np.repeat(medians, step, axis=0)[:n]
    return templates


def template_span(block_start: int, n_beats: int) -> tuple[int, int]:
    """The beats [begin, end) whose median is the dominant beat of the block of
    ``TEMPLATE_UPDATE_BEATS`` beats starting at beat ``block_start``, in a recording of
    ``n_beats`` beats (which only matters to the first block: a stream that has seen
    ``TEMPLATE_START_BEATS`` beats may pass any larger number)."""
    end = max(block_start, min(n_beats, TEMPLATE_START_BEATS))
    return (end - TEMPLATE_BEATS, end) if end >= TEMPLATE_BEATS else (0, end)


def validate_lead(ecg_mv: object, fs: object) -> tuple[np.ndarray, float]:
    """One lead in mV (a finite 1-D array of 3 samples or more) and its rate, within the
    model's ``MIN_FS_HZ``..``MAX_FS_HZ``; ValueError naming the problem otherwise."""
    ecg = validate_signal(ecg_mv, name="ecg", min_samples=3)
    if ecg.ndim != 1:
        raise ValueError("ecg must be a single lead (a 1-D signal)")
    fs = validate_fs(fs)
    if not MIN_FS_HZ <= fs <= MAX_FS_HZ:
        raise ValueError(f"fs must be between {MIN_FS_HZ:g} and {MAX_FS_HZ:g} Hz, got {fs:g}")
    return ecg, fs


def beat_features(
    ecg_mv: np.ndarray, fs: float, r_peaks: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Everything the beat model reads, for every beat of one recording.

    Parameters
    ----------
    ecg_mv : 1-D array, one lead in millivolts (lead II / MLII is what the model was trained on)
    fs : sampling rate in Hz, 100-2000
    r_peaks : increasing R-peak sample indices at ``fs``

    Returns
    -------
    windows : float32 (n_beats, WINDOW_SAMPLES), mV, see ``beat_windows``
    templates : float32 (n_beats, WINDOW_SAMPLES), mV, the dominant beat before each beat
    rhythm : float32 (n_beats, len(RR_FEATURES)): ``rr_features`` plus the correlation of the
        beat with its dominant beat and the ratio of their peak-to-peak amplitudes
    """
    ecg, fs = validate_lead(ecg_mv, fs)
    peaks = validate_r_peaks(r_peaks, len(ecg))
    if len(peaks) == 0:
        empty = np.zeros((0, WINDOW_SAMPLES), dtype=np.float32)
        return empty, empty.copy(), np.zeros((0, len(RR_FEATURES)), dtype=np.float32)
    windows = beat_windows(ecg, fs, peaks)
    templates = dominant_beats(windows)
    return windows, templates, rhythm_features(rr_features(peaks, fs), windows, templates)


def saliency_beats(beat_index: int, n_beats: int) -> tuple[int, int]:
    """The beats ``[first, end)`` whose windows the saliency of beat ``beat_index`` reads, in
    a recording of ``n_beats`` beats: the beats the classifier's AF rule looks back at
    (``atrial.HISTORY_BEATS``, the label it explains depends on them) and the beats each of
    their dominant beats is the median of (``template_span``)."""
    history = max(0, beat_index - atrial.HISTORY_BEATS)
    first, end = history, beat_index + 1
    for block in range(history // TEMPLATE_UPDATE_BEATS, beat_index // TEMPLATE_UPDATE_BEATS + 1):
        begin, stop = template_span(block * TEMPLATE_UPDATE_BEATS, n_beats)
        first, end = min(first, begin), max(end, stop)
    return first, end


def saliency_excerpt(
    r_peaks: np.ndarray, fs: float, beat_index: int, n_samples: int
) -> tuple[int, int]:
    """The samples ``[start, end)`` of a recording of ``n_samples`` samples that
    ``BeatClassifier.saliency`` reads to explain beat ``beat_index`` (``r_peaks``: every
    beat of the recording, sample indices at ``fs`` Hz).

    The windows of the beats ``saliency_beats`` names, and ``SALIENCY_MARGIN_S`` on each
    side: the zero-phase band-pass starts and ends at the excerpt's ends, and its transient
    decays about tenfold per second (the 0.5 Hz high-pass, ``inference.streaming``), so after
    60 s it is far below float64 precision and the features equal the whole recording's.
    Some 230 beats and two minutes: a few minutes of signal, however long the recording.
    """
    fs = validate_fs(fs)
    peaks = np.asarray(r_peaks, dtype=np.int64)
    if not 0 <= beat_index < len(peaks):
        raise ValueError(f"beat_index {beat_index} is out of range: there are {len(peaks)} beats")
    first, end = saliency_beats(beat_index, len(peaks))
    # a window's reach (with the interpolation's next sample) and the margin
    before = math.ceil(WINDOW_BEFORE_S * fs) + 1 + math.ceil(SALIENCY_MARGIN_S * fs)
    after = math.ceil(WINDOW_AFTER_S * fs) + 2 + math.ceil(SALIENCY_MARGIN_S * fs)
    return max(0, int(peaks[first]) - before), min(n_samples, int(peaks[end - 1]) + after)


def rhythm_features(rr: np.ndarray, windows: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """The model's rhythm input: ``rr_features`` columns plus the correlation of each beat's
    window with its dominant beat and the ratio of their peak-to-peak amplitudes (float32,
    (n_beats, len(RR_FEATURES)))."""
    amplitude = np.ptp(windows, axis=1)
    template_amplitude = np.maximum(np.ptp(templates, axis=1), MIN_AMPLITUDE_MV)
    centred_w = windows - windows.mean(axis=1, keepdims=True)
    centred_t = templates - templates.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred_w, axis=1) * np.linalg.norm(centred_t, axis=1)
    correlation = np.sum(centred_w * centred_t, axis=1) / np.maximum(norms, 1e-9)
    return np.concatenate(
        [
            rr,
            correlation[:, np.newaxis],
            np.clip(amplitude / template_amplitude, 0, MAX_RATIO)[:, np.newaxis],
        ],
        axis=1,
    ).astype(np.float32)


def beat_p_waves(windows: np.ndarray, templates: np.ndarray, rhythm: np.ndarray) -> np.ndarray:
    """Each beat's P-wave correlation with its dominant beat (``inference.atrial``), from
    ``beat_features``' output (NaN for beats that do not look like the dominant beat)."""
    return atrial.p_wave_correlation(
        windows,
        templates,
        rhythm[:, RR_FEATURES.index("correlation_with_dominant")],
        window_fs_hz=BEAT_FS_HZ,
        window_before_s=WINDOW_BEFORE_S,
    )


def fold_s_in_af(
    probabilities: np.ndarray,
    times_s: np.ndarray,
    p_wave: np.ndarray,
    earlier_ventricular: np.ndarray | None = None,
) -> np.ndarray:
    """Class probabilities (``BEAT_CLASSES`` columns, beats in time order) with S moved to N
    where the rhythm looks like atrial fibrillation (``inference.atrial``).

    ``times_s`` (s) and ``p_wave`` (``beat_p_waves``) cover the earlier beats the rule looks
    back at (up to ``atrial.HISTORY_BEATS``; a stream keeps that many), whose V labels
    ``earlier_ventricular`` gives, then one beat per row of ``probabilities``; the V labels of
    those are read from ``probabilities`` (the fold never changes V).
    """
    earlier = np.zeros(0, dtype=bool) if earlier_ventricular is None else earlier_ventricular
    if len(probabilities) == 0:
        return probabilities
    is_ventricular = np.concatenate(
        [np.asarray(earlier, dtype=bool), probabilities.argmax(axis=1) == BEAT_CLASSES.index("V")]
    )
    in_af = atrial.af_context(times_s, p_wave, is_ventricular)[len(earlier) :]
    return atrial.fold_s_into_n(
        probabilities, in_af, BEAT_CLASSES.index("N"), BEAT_CLASSES.index("S")
    )


# --- Model --------------------------------------------------------------------------------


class BeatNet(nn.Module):
    """A small CNN on the beat's morphology fused with an MLP on its rhythm features.

    The morphology branch sees two channels, the beat and the beat minus the dominant beat
    (``difference_channel``; without it, the beat alone), both divided by the dominant beat's
    peak-to-peak amplitude (done inside the model, so a
    saliency gradient reaches the raw window). Three convolutions (8, 16, 32 filters), max
    pooled to 8 positions; the rhythm branch is one hidden layer of 32; a 64-unit layer fuses
    them into 5 logits.
    """

    def __init__(
        self,
        n_rhythm: int = len(RR_FEATURES),
        n_classes: int = len(BEAT_CLASSES),
        morphology_dropout: float = 0.0,
        difference_channel: bool = True,
    ):
        super().__init__()
        self.difference_channel = difference_channel
        self.morphology = nn.Sequential(
            nn.Conv1d(2 if difference_channel else 1, 8, kernel_size=7, padding=3),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(8, 16, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(16, 32, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.AdaptiveMaxPool1d(8),
            nn.Flatten(),
            # training only: dropping morphology features makes the head lean on the rhythm
            # features, which carry over between patients better than shapes do
            nn.Dropout(morphology_dropout),
        )
        self.rhythm = nn.Sequential(nn.Linear(n_rhythm, 32), nn.ReLU())
        self.head = nn.Sequential(
            nn.Linear(32 * 8 + 32, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, n_classes)
        )

    def forward(
        self, windows: torch.Tensor, templates: torch.Tensor, rhythm: torch.Tensor
    ) -> torch.Tensor:
        scale = (templates.amax(dim=1) - templates.amin(dim=1)).clamp(min=MIN_AMPLITUDE_MV)
        scale = scale.unsqueeze(1)
        if self.difference_channel:
            channels = torch.stack([windows / scale, (windows - templates) / scale], dim=1)
        else:
            channels = (windows / scale).unsqueeze(1)
        return self.head(torch.cat([self.morphology(channels), self.rhythm(rhythm)], dim=1))


class BeatEnsemble(nn.Module):
    """Several ``BeatNet`` trained with different seeds; their class probabilities averaged.

    ``forward`` returns the log of the mean probability, so that a softmax of it is that mean
    and a saliency gradient is taken of the same quantity the classifier reports.
    """

    def __init__(self, n_members: int, difference_channel: bool = True):
        super().__init__()
        if n_members < 1:
            raise ValueError(f"an ensemble needs at least one member, got {n_members}")
        self.members = nn.ModuleList(
            BeatNet(difference_channel=difference_channel) for _ in range(n_members)
        )

    def forward(
        self, windows: torch.Tensor, templates: torch.Tensor, rhythm: torch.Tensor
    ) -> torch.Tensor:
        probabilities = torch.stack(
            [torch.softmax(member(windows, templates, rhythm), dim=1) for member in self.members]
        ).mean(dim=0)
        return torch.log(probabilities.clamp(min=1e-12))


# --- Serving ------------------------------------------------------------------------------

_lock = threading.Lock()
_classifiers: dict[str, BeatClassifier] = {}


class BeatClassifier:
    """A loaded beat model. Thread-safe for inference (no state changes after loading)."""

    def __init__(self, card: dict, state: dict | None = None) -> None:
        self.card = card
        self.name: str = card["name"]
        self.version: str = str(card["version"])
        if state is None:
            state = torch.load(WEIGHTS_DIR / card["weights"], map_location="cpu", weights_only=True)
        # the card says which variant of the network its weights are for; the weights say
        # whether they are one network or a seed ensemble ("members.<i>." keys)
        difference_channel = bool(card.get("difference_channel", True))
        members = {key.split(".")[1] for key in state if key.startswith("members.")}
        if members:
            model: nn.Module = BeatEnsemble(len(members), difference_channel=difference_channel)
        else:
            model = BeatNet(difference_channel=difference_channel)
        model.load_state_dict(state)
        model.eval()
        self.model = model

    def classify(self, ecg_mv: np.ndarray, fs: float, r_peaks: np.ndarray) -> np.ndarray:
        """Class probabilities of each beat.

        Parameters
        ----------
        ecg_mv : 1-D array, one lead (lead II / MLII) in millivolts
        fs : sampling rate in Hz, 100-2000 (windows are read at 180 Hz whatever the rate)
        r_peaks : increasing R-peak sample indices at ``fs`` (e.g. from ``detect_qrs``)

        Returns
        -------
        float64 array (n_beats, 5), rows summing to 1, columns in ``BEAT_CLASSES`` order.
        """
        return self.classify_beats(ecg_mv, fs, r_peaks)[0]

    def classify_beats(
        self, ecg_mv: np.ndarray, fs: float, r_peaks: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``classify``'s probabilities and each beat's P-wave correlation
        (``beat_p_waves``), which the AF detector reads."""
        windows, templates, rhythm = beat_features(ecg_mv, fs, r_peaks)
        if len(windows) == 0:
            return np.zeros((0, len(BEAT_CLASSES))), np.empty(0)
        p_wave = beat_p_waves(windows, templates, rhythm)
        probabilities = self.probabilities(windows, templates, rhythm)
        times_s = np.asarray(r_peaks, dtype=np.float64) / float(fs)
        return self.in_context(probabilities, times_s, p_wave), p_wave

    def in_context(
        self, probabilities: np.ndarray, times_s: np.ndarray, p_wave: np.ndarray
    ) -> np.ndarray:
        """The model's probabilities with the rhythm rules its card asks for: with
        ``"fold_s_in_af"``, no beat is S where the rhythm looks like atrial fibrillation
        (``inference.atrial.fold_s_into_n``). Rows are beats in time order; the rule looks
        back ``atrial.HISTORY_BEATS`` beats, so a caller passes that much history."""
        if not self.card.get("fold_s_in_af"):
            return probabilities
        return fold_s_in_af(probabilities, times_s, p_wave)

    def probabilities(
        self, windows: np.ndarray, templates: np.ndarray, rhythm: np.ndarray
    ) -> np.ndarray:
        """Class probabilities for features already computed (``beat_features``)."""
        with torch.inference_mode():
            logits = self.model(
                torch.from_numpy(windows), torch.from_numpy(templates), torch.from_numpy(rhythm)
            )
            return torch.softmax(logits, dim=1).numpy().astype(np.float64)

    def saliency(
        self,
        ecg_mv: np.ndarray,
        fs: float,
        r_peaks: np.ndarray,
        beat_index: int,
        first_sample: int = 0,
    ) -> dict:
        """Which samples of a beat's window drove the class the model gave it.

        Gradient x input (Shrikumar A, et al. Not just a black box. arXiv:1605.01713, 2016):
        the gradient of the predicted class's logit (for a seed ensemble, the log of its
        mean probability) with respect to the beat's window (mV,
        at 180 Hz), times the window, absolute value, read back at the caller's rate for the
        window's samples and scaled to 0..1. The model is in eval mode (no dropout), so the
        same input always gives the same map.

        ``ecg_mv`` is the whole recording, or an excerpt of it that starts at its sample
        ``first_sample`` and holds at least the samples ``saliency_excerpt`` names (a long
        recording need not be read whole). ``r_peaks`` are every beat of the recording, in
        its samples, wherever the excerpt ends: the RR features are computed from all of
        them and the dominant beats from the same blocks of beats, so every feature is the
        whole recording's except the band-pass, which runs over the excerpt;
        ``saliency_excerpt``'s margin leaves nothing of its edge transient.

        Returns
        -------
        dict with ``start`` (first sample of the window in the recording, at ``fs``), ``fs``,
        ``values`` (one value in [0, 1] per sample of the window at ``fs``), ``label`` and
        ``probability``.
        """
        ecg, fs = validate_lead(ecg_mv, fs)
        if isinstance(first_sample, bool) or not isinstance(first_sample, int | np.integer):
            raise ValueError(f"first_sample must be a whole number, got {first_sample!r}")
        if first_sample < 0:
            raise ValueError(f"first_sample must be 0 or more, got {first_sample}")
        end_sample = first_sample + len(ecg)
        # beats after the excerpt only lend their RR intervals: any sample index will do
        last_peak = int(np.max(r_peaks)) if np.size(r_peaks) else 0
        peaks = validate_r_peaks(r_peaks, max(end_sample, last_peak + 1))
        if isinstance(beat_index, bool) or not isinstance(beat_index, int | np.integer):
            raise ValueError(f"beat_index must be a whole number, got {beat_index!r}")
        if not 0 <= beat_index < len(peaks):
            raise ValueError(
                f"beat_index {beat_index} is out of range: there are {len(peaks)} beats"
            )
        first, end = saliency_beats(int(beat_index), len(peaks))
        if peaks[first] < first_sample or peaks[end - 1] >= end_sample:
            raise ValueError(
                f"the excerpt (samples {first_sample}-{end_sample - 1}) must hold the R peaks of "
                f"beats {first}-{end - 1} ({peaks[first]}-{peaks[end - 1]}): see saliency_excerpt"
            )
        # the features of the beats the label depends on (rows), as beat_features gives them
        # for the whole recording; windows of beats first..end, the dominant beats' history
        history = max(0, int(beat_index) - atrial.HISTORY_BEATS)
        rows = np.arange(history, int(beat_index) + 1)
        filtered = bandpass(ecg, fs, *BANDPASS_HZ)
        all_windows = windows_from_filtered(filtered, fs, peaks[first:end], first_sample)
        windows = all_windows[rows - first]
        templates = np.empty_like(windows)
        for block_start in range(
            history // TEMPLATE_UPDATE_BEATS * TEMPLATE_UPDATE_BEATS,
            int(beat_index) + 1,
            TEMPLATE_UPDATE_BEATS,
        ):
            begin, stop = template_span(block_start, len(peaks))
            in_block = (rows >= block_start) & (rows < block_start + TEMPLATE_UPDATE_BEATS)
            templates[in_block] = np.median(all_windows[begin - first : stop - first], axis=0)
        rhythm = rhythm_features(rr_features(peaks, fs)[rows], windows, templates)
        last = slice(len(rows) - 1, len(rows))  # the explained beat's row
        window = torch.from_numpy(windows[last].copy()).requires_grad_(True)
        logits = self.model(
            window, torch.from_numpy(templates[last]), torch.from_numpy(rhythm[last])
        )
        # the label the classifier reports, after its rhythm rules (which read the beats
        # before this one, ``rows``): a beat folded from S to N is explained as N
        probabilities = self.in_context(
            self.probabilities(windows, templates, rhythm),
            peaks[rows].astype(np.float64) / fs,
            beat_p_waves(windows, templates, rhythm),
        )[-1]
        label = int(np.argmax(probabilities))
        logits[0, label].backward()
        contribution = (window.grad[0] * window.detach()[0]).abs().numpy().astype(np.float64)

        r_peak = int(peaks[rows[-1]])
        start = max(first_sample, int(np.ceil(r_peak - WINDOW_BEFORE_S * fs)))
        stop = min(end_sample - 1, int(np.floor(r_peak + WINDOW_AFTER_S * fs)))
        times_s = (np.arange(start, stop + 1) - r_peak) / fs + WINDOW_BEFORE_S
        grid_s = np.arange(WINDOW_SAMPLES) / BEAT_FS_HZ
        values = np.interp(times_s, grid_s, contribution)
        top = values.max() if len(values) else 0.0
        values = values / top if top > 0 else np.zeros_like(values)
        return {
            "start": start,
            "fs": fs,
            "values": np.round(values, 4).tolist(),
            "label": BEAT_CLASSES[label],
            "probability": float(probabilities[label]),
        }


def get_beat_classifier(name: str | None = None) -> BeatClassifier:
    """The loaded beat model ``name`` (default ``beat-cnn-mitdb``), loaded once per process.

    Raises ``LookupError`` naming the shipped beat models when ``name`` is not one of them.
    """
    key = name or DEFAULT_BEAT_MODEL
    classifier = _classifiers.get(key)
    if classifier is not None:
        return classifier
    with _lock:
        if key not in _classifiers:
            _classifiers[key] = BeatClassifier(_beat_card(key))
        return _classifiers[key]


def beat_model_names(weights_dir: Path = WEIGHTS_DIR) -> list[str]:
    """Names of the shipped beat models (cards with ``"task": "beats"``)."""
    names = []
    for path in sorted(Path(weights_dir).glob("*.json")):
        try:
            card = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # another model's broken card is the registry's error, not ours
        if isinstance(card, dict) and card.get("task") == "beats":
            names.append(str(card.get("name", path.stem)))
    return names


def _beat_card(name: str, weights_dir: Path = WEIGHTS_DIR) -> dict:
    # Read only this model's card: one broken card of another model must not stop beats.
    path = Path(weights_dir) / f"{name}.json"
    card = None
    if path.is_file():
        try:
            card = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"model card {path.name} is unreadable: {exc}") from exc
    if not isinstance(card, dict) or card.get("task") != "beats":
        available = ", ".join(beat_model_names(weights_dir)) or "none"
        raise LookupError(f"unknown beat model {name!r}; available: {available}")
    missing = [key for key in REQUIRED_CARD_KEYS if key not in card]
    if missing:
        raise ValueError(f"model card {path.name} lacks {', '.join(missing)}")
    if not (Path(weights_dir) / card["weights"]).is_file():
        raise ValueError(f"model card {path.name}: weights {card['weights']} not found")
    return card
