"""Ventricular fibrillation and flutter (VF/VFL) on the ECG signal itself, per 2-second segment.

Inside VF there are no trustworthy beats, so this detector never looks at R peaks. The signal is
cut into consecutive 2-second segments; each segment gets classic VF features, and a small
neural network (4 tanh units, trained on the MIT-BIH Malignant Ventricular Ectopy Database,
``vfdb``) turns them and their mean over the last 8 seconds into a VF probability. A flat
segment (standard deviation under ``MIN_VF_STD_MV``) is never VF, nor counts in the 8-s means
of the others (``context_features``).

Features (all computed in physical units, so they hold at any sampling rate from 100 Hz):

- threshold crossing sample count, TCSC, and mean absolute value, MAV, of the segment scaled to
  its largest absolute value (Arafat MA, Chowdhury AW, Hasan MK. A simple time domain algorithm
  for the detection of ventricular fibrillation in electrocardiogram. Signal Image Video Process
  5:1-10 (2011); Anas EMA, Lee SY, Hasan MK. Sequential algorithm for life threatening cardiac
  pathologies detection based on mean signal strength and EMD functions. Biomed Eng Online
  9:43 (2010));
- the same count on the slope (QRS complexes are steep and short, VF waves broad);
- VF filter leakage (Kuo S, Dillman R. Computer detection of ventricular fibrillation.
  Computers in Cardiology 2747-2750 (1978));
- spectral measures after Barro S, et al. Algorithmic sequential decision-making in the
  frequency domain for life threatening ventricular arrhythmias and imitative artefacts: a
  diagnostic system. J Biomed Eng 11:320-328 (1989): dominant frequency, the share of power
  around it (0.7-1.4 times), around its double (1.7-2.3 times) and above 12 Hz, the first
  spectral moment, and spectral entropy;
- kurtosis, zero crossings per second, amplitude, its variation from half second to half
  second, and the strongest autocorrelation at a lag of 0.2-1.5 s (regular beats repeat; VF
  does not repeat exactly).

Amann A, Tratnig R, Unterkofler K. Reliability of old and new ventricular fibrillation detection
algorithms for automated external defibrillators. Biomed Eng Online 4:60 (2005) compares these
single features; none of them alone reaches the sensitivity and specificity a monitor needs,
which is why they are combined here.

Train and cross-validate: ``python -m inference.vf train --data DIR/vfdb --threshold 0.7``
(writes ``runs/rhythm-vf-<UTC time>/rhythm-vf.npz`` and ``.json``; ``--replace-shipped`` writes
over the shipped weights; model card: docs/models/rhythm-vf.md; fast VT is the main source of
false VF calls).
"""

import argparse
import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import signal as sps

from inference.metrics import roc_auc
from inference.signal import validate_fs, validate_signal

SEGMENT_S = 2.0
MIN_FS_HZ = 100.0
BAND_HZ = (1.0, 30.0)
VF_LABELS = ("(VF", "(VFL", "(VFIB")
WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "rhythm-vf.npz"
# Below this standard deviation (band-passed, mV) a 2-s segment is a flat line: asystole or a
# loose electrode, never VF. On vfdb, 99.9 % of VF segments lie above it and half of the
# asystole segments below; without it a flat line looks like VF to the features (no QRS peaks).
MIN_VF_STD_MV = 0.03

WINDOW_FEATURES = (
    "tcsc",
    "mav",
    "slope_tcsc",
    "vf_leakage",
    "dominant_hz",
    "dominant_power_share",
    "harmonic_ratio",
    "high_power_share",
    "spectral_moment_hz",
    "spectral_entropy",
    "kurtosis",
    "zero_crossings_per_s",
    "log_amplitude_mv",
    "amplitude_variation",
    "autocorrelation_peak",
)
# Each feature of the 2-second segment itself, and its mean over the segment and the three
# before it: VF lasts, and over 8 s a stray QRS-like wave in VF or a VF-like wave in another
# rhythm weighs less. Only past segments, so a detector on a stream needs no look-ahead; flat
# ones left out (context_features).
CONTEXT_SEGMENTS = 4
FEATURE_NAMES = tuple(f"{name}_2s" for name in WINDOW_FEATURES) + tuple(
    f"{name}_8s_mean" for name in WINDOW_FEATURES
)


_AMPLITUDE_COLUMN = FEATURE_NAMES.index("log_amplitude_mv_2s")


def _band_sos(fs: float) -> np.ndarray:
    high = min(BAND_HZ[1], 0.45 * fs)
    return sps.butter(2, [BAND_HZ[0], high], btype="bandpass", fs=fs, output="sos")


@lru_cache(maxsize=16)
def _band_sos_cached(fs: float) -> np.ndarray:
    return _band_sos(fs)


@lru_cache(maxsize=16)
def _hann(n: int) -> np.ndarray:
    return np.hanning(n)


def _window_features(x: np.ndarray, fs: float) -> np.ndarray:
    """``WINDOW_FEATURES`` of each row of ``x`` (windows of a band-passed ECG, mV)."""
    n_windows, n = x.shape
    x = x - x.mean(axis=1, keepdims=True)
    eps = 1e-9

    peak = np.abs(x).max(axis=1, keepdims=True) + eps
    scaled = np.abs(x) / peak
    tcsc = (scaled > 0.2).mean(axis=1)
    mav = scaled.mean(axis=1)
    slope = np.abs(np.diff(x, axis=1))
    slope_tcsc = (slope / (slope.max(axis=1, keepdims=True) + eps) > 0.2).mean(axis=1)

    # VF filter leakage: a notch at the window's mean frequency leaks little of a sinusoid-like
    # VF wave and much of a spiky QRS train. The half period N comes from the mean slope.
    half_period = np.clip(
        np.round(np.pi * np.abs(x).sum(axis=1) / (slope.sum(axis=1) + eps) / 2), 1, n // 2
    ).astype(int)
    leakage = np.empty(n_windows)
    for m in np.unique(half_period):
        rows = half_period == m
        current, delayed = x[rows, m:], x[rows, :-m]
        leakage[rows] = np.abs(current + delayed).sum(axis=1) / (
            np.abs(current).sum(axis=1) + np.abs(delayed).sum(axis=1) + eps
        )

    # One FFT serves the spectrum and the autocorrelation (its inverse): zero-padded to at least
    # twice the window, so the autocorrelation does not wrap around, and to 0.25 Hz bins.
    n_fft = 1 << int(np.ceil(np.log2(max(4 * fs, 2 * n))))
    spectrum = np.abs(np.fft.rfft(x * _hann(n), n=n_fft, axis=1)) ** 2
    freqs = np.fft.rfftfreq(n_fft, 1.0 / fs)
    band = (freqs >= 0.5) & (freqs <= min(30.0, 0.45 * fs))
    power = spectrum[:, band]
    f_band = freqs[band]
    total = power.sum(axis=1) + eps
    low = f_band <= 12.0
    dominant = f_band[np.argmax(np.where(low, power, -1.0), axis=1)]
    around = (f_band >= 0.7 * dominant[:, None]) & (f_band <= 1.4 * dominant[:, None])
    dominant_share = (power * around).sum(axis=1) / total
    # A sine-like VF wave has little power at twice its frequency; a QRS train has much.
    second = (f_band >= 1.7 * dominant[:, None]) & (f_band <= 2.3 * dominant[:, None])
    harmonic_ratio = (power * second).sum(axis=1) / ((power * around).sum(axis=1) + eps)
    high_share = power[:, ~low].sum(axis=1) / total
    moment = (power * f_band).sum(axis=1) / total
    p = power / total[:, None]
    entropy = -(p * np.log(p + eps)).sum(axis=1) / np.log(power.shape[1])

    variance = np.einsum("ij,ij->i", x, x) / n + eps
    squared = x * x
    kurtosis = (squared * squared).mean(axis=1) / variance**2
    signs = np.signbit(x)
    zero_crossings = (signs[:, 1:] != signs[:, :-1]).sum(axis=1) / (n / fs)
    log_amplitude = np.log10(np.sqrt(variance) + 1e-3)
    # Peak-to-peak amplitude per half second: VF waxes and wanes, VT and sinus rhythm repeat.
    piece = max(1, round(0.5 * fs))
    n_pieces = n // piece
    pieces = x[:, : n_pieces * piece].reshape(n_windows, n_pieces, piece)
    spans = pieces.max(axis=2) - pieces.min(axis=2)
    amplitude_variation = spans.std(axis=1) / (spans.mean(axis=1) + eps)

    # autocorrelation of the Hann-tapered window (the taper favours short lags alike in every
    # rhythm, so it shifts the feature, not its ranking)
    autocorrelation = np.fft.irfft(spectrum, n=n_fft, axis=1)[:, :n]
    autocorrelation /= autocorrelation[:, :1] + eps
    lags = slice(round(0.2 * fs), min(round(1.5 * fs), n - 1))
    autocorrelation_peak = autocorrelation[:, lags].max(axis=1)

    return np.column_stack(
        [
            tcsc,
            mav,
            slope_tcsc,
            leakage,
            dominant,
            dominant_share,
            harmonic_ratio,
            high_share,
            moment,
            entropy,
            kurtosis,
            zero_crossings,
            log_amplitude,
            amplitude_variation,
            autocorrelation_peak,
        ]
    )


def _reduced_band(ecg_mv: np.ndarray, fs: float) -> tuple[np.ndarray, float, int]:
    """The lead at 100-200 Hz, band-passed 1-30 Hz, its rate in Hz, and its whole 2-s segments."""
    ecg = validate_signal(ecg_mv, name="ecg", min_samples=1)
    if ecg.ndim != 1:
        raise ValueError("the VF detector takes one lead (a 1-D signal)")
    fs = validate_fs(fs)
    if fs < MIN_FS_HZ:
        raise ValueError(
            f"the VF detector needs fs >= {MIN_FS_HZ:g} Hz, got {fs:g}: resample the signal, "
            "or leave VF out with RhythmConfig(detect_vf=False)"
        )
    n = round(SEGMENT_S * fs)
    n_segments = len(ecg) // n
    if n_segments == 0:
        return np.empty(0), fs, 0
    # The features need nothing above 30 Hz, so the signal is first brought to 100-200 Hz by
    # averaging each k samples (a boxcar: cheap, and enough against aliasing of an ECG whose
    # power above 50 Hz is small), then band-passed once, causally: phase does not matter to
    # these features, and a single pass costs half of a forward-backward one.
    step = max(1, int(fs // MIN_FS_HZ))
    usable = (n_segments * n // step) * step
    reduced = ecg[:usable].reshape(-1, step).mean(axis=1)
    fs_reduced = fs / step
    reduced = sps.sosfilt(_band_sos_cached(fs_reduced), reduced - reduced[0])
    return reduced, fs_reduced, n_segments


def segment_features(ecg_mv: np.ndarray, fs: float) -> np.ndarray:
    """VF features of each consecutive 2-second segment of one ECG lead.

    Parameters
    ----------
    ecg_mv : 1-D array, millivolts
    fs : sampling rate in Hz, at least 100

    Returns
    -------
    float64 array (n_segments, len(FEATURE_NAMES)); segment k covers samples
    ``[k * n, (k + 1) * n)`` with ``n = round(2 * fs)``; the ``_8s_mean`` features average
    it and the three segments before it (fewer at the start). A final piece shorter than 2 s
    is left out. Units: frequencies in Hz, amplitude as
    log10 of the standard deviation in mV, the rest dimensionless.
    """
    reduced, fs_reduced, n_segments = _reduced_band(ecg_mv, fs)
    if n_segments == 0:
        return np.empty((0, len(FEATURE_NAMES)))
    n_short = int(SEGMENT_S * fs_reduced)
    starts = np.round(np.arange(n_segments) * SEGMENT_S * fs_reduced).astype(np.int64)
    starts = np.minimum(starts, len(reduced) - n_short)
    short = _window_features(reduced[starts[:, None] + np.arange(n_short)], fs_reduced)
    features, _ = context_features(short, np.zeros((1, short.shape[1])))
    return features


def context_features(short: np.ndarray, cumulative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add the ``_8s_mean`` columns to the ``_2s`` features of consecutive segments.

    The 8-s mean of a segment averages it and the three segments before it, leaving out the
    flat ones among them (``is_flat``) unless all are. A flat stretch's features are
    no signal's (an exactly flat line's are those of rounding residue), and averaged with the
    beats that come back after an asystole they made the first seconds of sinus rhythm look
    like VF (until 2026-12-07: a VF alarm after every exactly flat pause).

    Parameters
    ----------
    short : (m, len(WINDOW_FEATURES)) features of segments k .. k + m - 1
    cumulative : running sums of the features of all segments before each of the segments
        k - h .. k (h = min(k, CONTEXT_SEGMENTS - 1)), oldest first; one row of zeros when
        k = 0. Sums carried this way are the very numbers one pass over a whole recording
        gives (a running sum is a left fold), so a stream matches it exactly; so do the
        features of segments k - h .. k - 1 read back from them as differences, from which
        their flatness is judged.

    Returns
    -------
    features : (m, len(FEATURE_NAMES))
    cumulative : the rows to pass with the next segments
    """
    sums = np.vstack([cumulative[:-1], np.cumsum(np.vstack([cumulative[-1:], short]), axis=0)])
    ends = np.arange(len(cumulative), len(sums))
    first = np.maximum(ends - CONTEXT_SEGMENTS, 0)
    context = (sums[ends] - sums[first]) / (ends - first)[:, None]
    # Each segment's features as the difference of consecutive sums (row j: the segment after
    # sums[j]), and the segments of each 8-s window, oldest first, padded with "no segment".
    each = np.diff(sums, axis=0)
    rows = ends[:, None] - CONTEXT_SEGMENTS + np.arange(CONTEXT_SEGMENTS)
    inside = rows >= first[:, None]
    counted = inside & ~is_flat(each[:, _AMPLITUDE_COLUMN])[np.maximum(rows, 0)]
    n_counted = counted.sum(axis=1)
    mixed = (n_counted > 0) & (n_counted < inside.sum(axis=1))
    if mixed.any():
        # a fixed order of four terms (zeros for those left out): the same sum in a stream
        weighted = np.where(counted[mixed, :, None], each[np.maximum(rows[mixed], 0)], 0.0)
        context[mixed] = weighted.sum(axis=1) / n_counted[mixed, None]
    return np.hstack([short, context]), sums[-CONTEXT_SEGMENTS:]


def is_flat(log_amplitude_mv: np.ndarray) -> np.ndarray:
    """Whether segments are flat (standard deviation under ``MIN_VF_STD_MV``), from their
    ``log_amplitude_mv`` feature: never VF, and left out of the 8-s means of the others."""
    return np.asarray(log_amplitude_mv) < np.log10(MIN_VF_STD_MV + 1e-3)


# --- Organisation features (tried against fast VT; not in the shipped model) ------------------
# Fast VT repeats similar complexes at a stable rate; VF does not. These features measure that
# over the 4 s and 8 s ending at each segment. Cross-validated on vfdb they did not separate VT
# from VF/VFL better than the shipped features (``python -m inference.vf compare``; figures in
# docs/models/rhythm-vf.md), so the shipped detector does not use them.
ORGANISATION_WINDOWS_S = (4.0, 8.0)
_ORGANISATION_BASE = (
    "autocorrelation_peak",
    "autocorrelation_twice_lag",
    "period_s",
    "phase_space_boxes",
    "peak_interval_cv",
    "peak_height_cv",
    "peaks_per_s",
    "cycle_similarity",
)
ORGANISATION_FEATURES = tuple(
    f"{name}_{window_s:g}s" for window_s in ORGANISATION_WINDOWS_S for name in _ORGANISATION_BASE
)


def _organisation_window(w: np.ndarray, fs: float) -> np.ndarray:
    """``_ORGANISATION_BASE`` features of each row of ``w`` (band-passed windows, mV)."""
    n_windows, n = w.shape
    w = w - w.mean(axis=1, keepdims=True)
    rows = np.arange(n_windows)
    n_fft = 1 << int(np.ceil(np.log2(2 * n)))
    autocorrelation = np.fft.irfft(np.abs(np.fft.rfft(w, n=n_fft, axis=1)) ** 2, n=n_fft)[:, :n]
    # unbiased (divided by the overlap) so that long and short lags compare
    autocorrelation = autocorrelation / (n - np.arange(n))
    autocorrelation /= autocorrelation[:, :1] + 1e-12
    first, last = round(0.15 * fs), round(1.5 * fs)
    # the period: the shortest local maximum within 90 % of the highest (a repeating signal
    # peaks about equally at every multiple of its period); the highest when there is none
    in_range = autocorrelation[:, first - 1 : last + 1]
    middle = in_range[:, 1:-1]
    local = (middle >= in_range[:, :-2]) & (middle >= in_range[:, 2:])
    near_top = local & (middle >= 0.9 * middle.max(axis=1, keepdims=True))
    lag = first + np.where(
        near_top.any(axis=1), np.argmax(near_top, axis=1), np.argmax(middle, axis=1)
    )
    peak = autocorrelation[rows, lag]
    twice = autocorrelation[rows, np.minimum(2 * lag, n - 1)]

    # Phase-space reconstruction after Amann A, Tratnig R, Unterkofler K. Detecting ventricular
    # fibrillation by time-delay methods. IEEE Trans Biomed Eng 54:174-177 (2007): x(t) against
    # x(t - 0.5 s) on a 40 x 40 grid; VF visits more boxes than a repeating complex.
    delay = round(0.5 * fs)
    low, high = w.min(axis=1, keepdims=True), w.max(axis=1, keepdims=True)
    grid = np.clip(((w - low) / (high - low + 1e-12) * 40).astype(int), 0, 39)
    boxes = grid[:, delay:] * 40 + grid[:, :-delay]
    visited = np.zeros((n_windows, 1600), dtype=bool)
    visited[np.repeat(rows, boxes.shape[1]), boxes.ravel()] = True
    phase_space = visited.mean(axis=1)

    interval_cv = np.ones(n_windows)
    height_cv = np.ones(n_windows)
    peaks_per_s = np.empty(n_windows)
    similarity = np.zeros(n_windows)
    magnitude = np.abs(w)
    for row in range(n_windows):
        # peaks of |x| above 40 % of the largest, at least 0.18 s apart (330 bpm)
        found, properties = sps.find_peaks(
            magnitude[row], height=0.4 * magnitude[row].max(), distance=max(1, round(0.18 * fs))
        )
        peaks_per_s[row] = len(found) / (n / fs)
        if len(found) >= 3:
            intervals = np.diff(found)
            interval_cv[row] = intervals.std() / intervals.mean()
            heights = properties["peak_heights"]
            height_cv[row] = heights.std() / heights.mean()
        # median correlation of consecutive cycles cut at the autocorrelation's period
        period = lag[row]
        n_cycles = n // period
        if n_cycles >= 2:
            cycles = w[row, n - n_cycles * period :].reshape(n_cycles, period)
            cycles = cycles - cycles.mean(axis=1, keepdims=True)
            norms = np.linalg.norm(cycles, axis=1) + 1e-12
            similarity[row] = np.median(
                (cycles[1:] * cycles[:-1]).sum(axis=1) / (norms[1:] * norms[:-1])
            )
    return np.column_stack(
        [
            peak,
            twice,
            lag / fs,
            phase_space,
            interval_cv,
            height_cv,
            peaks_per_s,
            similarity,
        ]
    )


def organisation_features(ecg_mv: np.ndarray, fs: float) -> np.ndarray:
    """Organisation (VT-against-VF) features over the 4 s and 8 s ending at each 2-s segment.

    Parameters
    ----------
    ecg_mv : 1-D array, millivolts
    fs : sampling rate in Hz, at least 100

    Returns
    -------
    float64 array (n_segments, len(ORGANISATION_FEATURES)), rows aligned with
    ``segment_features``. Before the start of the signal the window is padded with zeros.
    ``period_s`` in seconds, ``peaks_per_s`` per second, the rest dimensionless.
    """
    reduced, fs_reduced, n_segments = _reduced_band(ecg_mv, fs)
    if n_segments == 0:
        return np.empty((0, len(ORGANISATION_FEATURES)))
    n_short = int(SEGMENT_S * fs_reduced)
    ends = (np.arange(n_segments) + 1) * n_short
    columns = []
    for window_s in ORGANISATION_WINDOWS_S:
        m = int(window_s * fs_reduced)
        padded = np.concatenate([np.zeros(m), reduced])
        columns.append(_organisation_window(padded[ends[:, None] + np.arange(m)], fs_reduced))
    return np.hstack(columns)


@dataclass
class VfModel:
    """Standardization + one hidden layer (tanh) + logistic output, as plain arrays."""

    mean: np.ndarray
    scale: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: float
    threshold: float = 0.5

    def probability(self, inputs: np.ndarray) -> np.ndarray:
        """VF probability of each row of ``segment_features`` (0 for a flat segment)."""
        z = (inputs - self.mean) / self.scale
        hidden = np.tanh(z @ self.w1 + self.b1)
        logits = hidden @ self.w2 + self.b2
        probability = 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))
        probability[is_flat(inputs[:, _AMPLITUDE_COLUMN])] = 0.0
        return probability

    def save(self, path: Path) -> None:
        np.savez(
            path,
            mean=self.mean,
            scale=self.scale,
            w1=self.w1,
            b1=self.b1,
            w2=self.w2,
            b2=np.array(self.b2),
            threshold=np.array(self.threshold),
        )

    @classmethod
    def load(cls, path: Path = WEIGHTS_PATH) -> "VfModel":
        with np.load(path) as data:
            return cls(
                mean=data["mean"],
                scale=data["scale"],
                w1=data["w1"],
                b1=data["b1"],
                w2=data["w2"],
                b2=float(data["b2"]),
                threshold=float(data["threshold"]),
            )


@lru_cache(maxsize=1)
def shipped_model() -> VfModel:
    """The committed detector (``inference/weights/rhythm-vf.npz``), loaded once per process."""
    if not WEIGHTS_PATH.is_file():
        raise FileNotFoundError(
            f"VF detector weights {WEIGHTS_PATH} are missing; train them with "
            "python -m inference.vf train --data DIR/vfdb"
        )
    return VfModel.load(WEIGHTS_PATH)


def vf_probability(ecg_mv: np.ndarray, fs: float, model: VfModel | None = None) -> np.ndarray:
    """VF/VFL probability of each consecutive 2-second segment (see ``segment_features``)."""
    features = segment_features(ecg_mv, fs)
    if len(features) == 0:
        return np.empty(0)
    return (model or shipped_model()).probability(features)


# --- Training on vfdb ------------------------------------------------------------------------


def segment_labels(
    n_segments: int, fs: float, rhythms: list[tuple[int, int, str]]
) -> tuple[np.ndarray, np.ndarray]:
    """Per 2-second segment: 1 where more than half lies in VF/VFL/VFIB, and the rhythm label.

    ``rhythms`` are ``(start, end, label)`` sample ranges (``mitdb.rhythm_intervals``).
    """
    n = round(SEGMENT_S * fs)
    vf_samples = np.zeros(n_segments * n, dtype=bool)
    label = np.full(n_segments, "", dtype=object)
    mids = np.arange(n_segments) * n + n // 2
    for start, end, name in rhythms:
        if name in VF_LABELS:
            vf_samples[start : min(end, len(vf_samples))] = True
        inside = (mids >= start) & (mids < end)
        label[inside] = name
    positive = vf_samples.reshape(n_segments, n).mean(axis=1) > 0.5
    return positive.astype(np.int64), label


def load_vfdb(
    folder: Path,
    channels: tuple[int, ...] = (0,),
    progress=None,
    organisation: bool = False,
    names: list[str] | None = None,
    annotator: str = "atr",
    record_channels: dict[str, list[int]] | None = None,
    headers: dict | None = None,
) -> dict:
    """Features, labels and record names of every 2-s segment of the records ``names`` of
    ``folder`` (default: every record with a header), on each of ``channels`` the record has.

    Only the named records are read: cross-validating two records of a MIT-BIH folder must
    not read the other 46 (DS2 among them), nor fail on a record of the folder that has no
    ``.atr`` (nstdb's noise records). A single-lead record gives its one channel. A record
    that cannot be read ends the command with its name and the problem. With
    ``organisation`` the dict also holds ``organisation_features`` under ``"organisation"``.

    The reference is the ``annotator`` files (``evaluate rhythm --annotator``). With
    ``record_channels`` (record name: channel indices) each record is read on its own
    channels instead of ``channels``, and a segment's ``channel`` is the position in that
    list: 0 for the first, the one ``cross_validate`` scores (``evaluate rhythm --lead``
    names an ECG that need not be the first channel). ``headers`` (record name: its
    ``read_header``) are the headers the caller has read already, so that they are not read
    again (``evaluate rhythm`` reads each once); a record without one has its header read here.
    """
    from inference.datasets.mitdb import rhythm_intervals
    from inference.datasets.wfdb_record import read_annotation, read_record_mv

    if names is None:
        names = sorted(path.stem for path in Path(folder).glob("*.hea"))
    if not names:
        raise SystemExit(f"no WFDB records in {folder}")
    rows: dict[str, list] = {"x": [], "y": [], "record": [], "channel": [], "rhythm": []}
    if organisation:
        rows["organisation"] = []
    for name in progress(names, desc="vfdb records") if progress else names:
        try:
            # in mV whatever the header's voltage unit, as every other reader
            read = None if record_channels is None else list(record_channels[name])
            record = read_record_mv(Path(folder) / name, read, (headers or {}).get(name))
            annotation = read_annotation(Path(folder) / name, annotator)
        except (ValueError, OSError) as exc:
            raise SystemExit(f"{name}: {exc}") from None
        rhythms = rhythm_intervals(
            annotation.sample, list(annotation.symbol), list(annotation.aux_note), record.sig_len
        )
        if record_channels is None:
            positions = [channel for channel in channels if channel < record.n_sig]
        else:
            positions = list(range(record.n_sig))  # the channels read, the scored one first
        for channel in positions:
            features = segment_features(record.p_signal[:, channel], record.fs)
            labels, rhythm = segment_labels(len(features), record.fs, rhythms)
            rows["x"].append(features)
            rows["y"].append(labels)
            rows["record"].append(np.full(len(labels), name))
            rows["channel"].append(np.full(len(labels), channel))
            rows["rhythm"].append(rhythm)
            if organisation:
                rows["organisation"].append(
                    organisation_features(record.p_signal[:, channel], record.fs)
                )
    return {key: np.concatenate(value) for key, value in rows.items()}


def fit_model(
    x: np.ndarray,
    y: np.ndarray,
    hidden: int = 4,
    epochs: int = 300,
    seed: int = 0,
    weight_decay: float = 1e-3,
) -> VfModel:
    """Fit the network with class-balanced cross-entropy (full batch, Adam, weight decay)."""
    import torch

    torch.manual_seed(seed)
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    inputs = torch.tensor((x - mean) / scale, dtype=torch.float32)
    targets = torch.tensor(y, dtype=torch.float32)
    network = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)
    )
    positive_weight = torch.tensor((len(y) - y.sum()) / max(y.sum(), 1), dtype=torch.float32)
    loss_function = torch.nn.BCEWithLogitsLoss(pos_weight=positive_weight)
    optimizer = torch.optim.Adam(network.parameters(), lr=0.01, weight_decay=weight_decay)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = loss_function(network(inputs).squeeze(1), targets)
        loss.backward()
        optimizer.step()
    first, last = network[0], network[2]
    return VfModel(
        mean=mean,
        scale=scale,
        w1=first.weight.detach().numpy().T.astype(np.float64),
        b1=first.bias.detach().numpy().astype(np.float64),
        w2=last.weight.detach().numpy()[0].astype(np.float64),
        b2=float(last.bias.detach().numpy()[0]),
    )


def se_sp(y: np.ndarray, predicted: np.ndarray) -> dict:
    tp = int((predicted & (y == 1)).sum())
    fn = int((~predicted & (y == 1)).sum())
    tn = int((~predicted & (y == 0)).sum())
    fp = int((predicted & (y == 0)).sum())
    return {
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
        "se": tp / (tp + fn) if tp + fn else float("nan"),
        "sp": tn / (tn + fp) if tn + fp else float("nan"),
    }


def check_folds(n_folds: int, n_records: int) -> None:
    """Raise ``ValueError`` unless ``n_folds`` record folds can cross-validate ``n_records``
    records: one fold leaves no training data (a model fit on nothing scores Se 0, Sp 100),
    and more folds than records leaves folds without a test record."""
    if n_records < 2:
        raise ValueError(f"cross-validation needs at least 2 records; there are {n_records}")
    if n_folds < 2:
        raise ValueError(
            f"{n_folds} record fold(s) leave no record to train on: give 2 to {n_records}"
        )
    if n_folds > n_records:
        raise ValueError(
            f"{n_folds} record folds for {n_records} records leave folds without a record: "
            f"give 2 to {n_records}"
        )


def cross_validate(data: dict, n_folds: int, threshold: float, **fit_options) -> dict:
    """Leave-records-out: records are dealt into folds; each fold is scored by a model fitted on
    the other folds (both channels of a record stay on the same side). Scored on channel 0.
    Raises ``ValueError`` when the folds cannot be made (``check_folds``)."""
    records = np.unique(data["record"])
    check_folds(n_folds, len(records))
    fold_of = {name: index % n_folds for index, name in enumerate(records)}
    folds = np.array([fold_of[name] for name in data["record"]])
    probability = np.empty(len(folds))
    for fold in range(n_folds):
        test = folds == fold
        model = fit_model(data["x"][~test], data["y"][~test], **fit_options)
        probability[test] = model.probability(data["x"][test])
    scored = data["channel"] == 0
    return {
        "probability": probability,
        "gross": se_sp(data["y"][scored], probability[scored] >= threshold),
    }


def operating_points(y: np.ndarray, probability: np.ndarray) -> dict:
    """AUC; best Sp with Se >= 85 % and best Se with Sp >= 95 % over thresholds 0.01-0.99."""
    best_sp = {"threshold": float("nan"), "se": float("nan"), "sp": float("nan")}
    best_se = dict(best_sp)
    for threshold in np.arange(0.01, 0.995, 0.005):
        scores = se_sp(y, probability >= threshold)
        point = {"threshold": round(float(threshold), 3), "se": scores["se"], "sp": scores["sp"]}
        # "not <=" so that the first point replaces the NaN placeholder
        if scores["se"] >= 0.85 and not scores["sp"] <= best_sp["sp"]:
            best_sp = point
        if scores["sp"] >= 0.95 and not scores["se"] <= best_se["se"]:
            best_se = point
    return {"auc": roc_auc(y, probability), "sp_at_se85": best_sp, "se_at_sp95": best_se}


def compare(data: dict, n_folds: int, recipe: dict) -> dict:
    """Cross-validated operating points of the shipped features against the shipped features plus
    ``organisation_features`` (same recipe, and with 16 hidden units), scored on channel 0."""
    variants = {
        "shipped features": (data["x"], recipe),
        "shipped + organisation": (np.hstack([data["x"], data["organisation"]]), recipe),
        "shipped + organisation, 16 hidden": (
            np.hstack([data["x"], data["organisation"]]),
            {**recipe, "hidden": 16},
        ),
    }
    scored = data["channel"] == 0
    results = {}
    for name, (x, options) in variants.items():
        cv = cross_validate({**data, "x": x}, n_folds, 0.5, **options)
        results[name] = operating_points(data["y"][scored], cv["probability"][scored])
        print(f"{name}: {results[name]}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    from inference.registry import add_output_options, make_run_dirs, run_dirs

    parser = argparse.ArgumentParser(prog="python -m inference.vf", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="cross-validate on vfdb, then fit on all of it")
    train.add_argument("--data", required=True, help="the vfdb folder")
    train.add_argument("--folds", type=int, default=11, help="record folds (default 11)")
    train.add_argument("--threshold", type=float, default=0.5)
    train.add_argument("--hidden", type=int, default=4)
    train.add_argument("--epochs", type=int, default=300)
    train.add_argument("--weight-decay", type=float, default=1e-3)
    train.add_argument("--seed", type=int, default=0)
    # the default used to be the shipped weights: following the card's reproduce line
    # silently changed the detector the server loads
    outputs = add_output_options(train, "rhythm-vf")
    outputs.add_argument(
        "--out",
        help="the weights, a numpy .npz file (default: rhythm-vf.npz in --out-dir); the card "
        "is written beside it with .json",
    )
    ablation = sub.add_parser(
        "compare",
        help="cross-validate the shipped recipe with and without the organisation features",
    )
    ablation.add_argument("--data", required=True, help="the vfdb folder")
    ablation.add_argument("--folds", type=int, default=11, help="record folds (default 11)")
    ablation.add_argument("--json", help="write the operating points here")
    args = parser.parse_args(argv)
    # the training tools, imported here: the served detector above needs none of them
    from inference.evaluation.common import json_text, writable_output

    # outputs checked before the minutes of feature extraction and fitting, not after them
    if args.command == "train":
        if args.out:
            out = Path(args.out)
        else:
            weights_dir, _ = run_dirs(args.out_dir, args.replace_shipped, "rhythm-vf")
            out = weights_dir / WEIGHTS_PATH.name
        if out.suffix != ".npz":
            # numpy would write OUT.npz while the card named OUT: the names must agree
            parser.error(f"--out {args.out}: the weights are a numpy archive; give a .npz path")
        make_run_dirs(out.parent)
        writable_output(out)
        writable_output(out.with_suffix(".json"))
    else:
        writable_output(args.json)
    if not Path(args.data).is_dir():
        raise SystemExit(f"data folder {args.data} not found")

    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)
    started = time.perf_counter()
    n_records = len(list(Path(args.data).glob("*.hea")))
    try:
        check_folds(args.folds, n_records)
    except ValueError as exc:
        raise SystemExit(f"--folds: {exc} (records in {args.data})") from None
    if args.command == "compare":
        data = load_vfdb(Path(args.data), channels=(0, 1), progress=tqdm, organisation=True)
        card = json.loads(WEIGHTS_PATH.with_suffix(".json").read_text())
        recipe = {key: card[key] for key in ("hidden", "epochs", "seed", "weight_decay")}
        results = compare(data, args.folds, recipe)
        if args.json:
            Path(args.json).write_text(
                json_text({"folds": args.folds, "recipe": recipe, "results": results})
            )
        return 0
    data = load_vfdb(Path(args.data), channels=(0, 1), progress=tqdm)
    options = {
        "hidden": args.hidden,
        "epochs": args.epochs,
        "seed": args.seed,
        "weight_decay": args.weight_decay,
    }
    cv = cross_validate(data, args.folds, args.threshold, **options)
    print(f"cross-validated ({args.folds} record folds), channel 0: {cv['gross']}")
    scored = data["channel"] == 0
    curve = {
        f"{threshold:.2f}": se_sp(data["y"][scored], cv["probability"][scored] >= threshold)
        for threshold in np.arange(0.3, 0.96, 0.05)
    }
    for threshold, scores in curve.items():
        print(f"  threshold {threshold}: Se {scores['se']:.3f} Sp {scores['sp']:.3f}")
    from inference.train import git_commit, training_environment

    model = fit_model(data["x"], data["y"], **options)
    model.threshold = args.threshold
    model.save(out)
    card = {
        "name": "rhythm-vf",
        "version": "1.0.0",
        "weights": out.name,
        "task": "rhythm-vf",
        "target": "VF/VFL/VFIB vs everything else, per 2-second segment",
        "data": "MIT-BIH Malignant Ventricular Ectopy Database (vfdb), 22 records, both leads",
        "features": list(FEATURE_NAMES),
        "hidden": args.hidden,
        "epochs": args.epochs,
        "seed": args.seed,
        "threshold": args.threshold,
        "min_vf_std_mv": MIN_VF_STD_MV,
        "weight_decay": args.weight_decay,
        "cross_validation": {"folds": args.folds, "scored_on": "channel 0", **cv["gross"]},
        "cross_validation_by_threshold": curve,
        "date": datetime.now(UTC).date().isoformat(),
        "command": "python -m inference.vf train --data DIR/vfdb "
        f"--folds {args.folds} --hidden {args.hidden} --epochs {args.epochs} "
        f"--weight-decay {args.weight_decay:g} --seed {args.seed} --threshold {args.threshold:g}",
        "train_seconds": round(time.perf_counter() - started, 1),
        "code_commit": git_commit(),
        "environment": training_environment(),
    }
    out.with_suffix(".json").write_text(json_text(card))
    print(f"wrote {out} and {out.with_suffix('.json')}")
    if out.resolve() != WEIGHTS_PATH:
        print("the shipped VF weights are unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
