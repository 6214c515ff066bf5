"""Signal quality: per 2-second segment, the probability that beat analysis is unreliable there.

Noise read as beats turns into false rhythm episodes (MIT-BIH nstdb 118e00: 99 false VT episodes
in 30 min; the pure muscle-noise record ``ma``: 112). A monitor suspends arrhythmia analysis
where the signal is too noisy and raises a technical "noisy signal" alarm instead. This module
gives the per-segment probability a later stage needs for that; it does not act on it.

Design: the segments are the VF detector's (``inference.vf``: segment k covers samples
``[k * round(2 fs), (k + 1) * round(2 fs))``) and the inputs are the 30 features the VF stage
already computes for each of them (``inference.vf.segment_features``: 15 of the 2-s segment, 15
of its 8-s context) and 8 organisation features of the same band-passed 2-s window
(``quality_features``), so the live stream can add it with no new state. The model is
the VF detector's kind (standardisation, 4 tanh units, logistic output; ``inference.vf.VfModel``),
and, as there, a flat segment (asystole, lead off) is never "noisy": flatness has its own rules.

Label (operational): a segment is unreliable when our own QRS detector (``inference.qrs``) has a
false positive or a false negative against the reference beats inside it (EC57 matching,
150 ms). Training signals: the 22 non-paced DS1 records of the MIT-BIH Arrhythmia Database
(MLII), clean, and with nstdb muscle (``ma``) and baseline-wander (``bw``) noise added as nstdb's
``nst`` adds it (after a 5-minute clean start, alternating 2-minute noisy and clean blocks; SNR
as ``nst`` defines it: ``add_noise_blocks``), at 18, 12, 6, 0 and -6 dB; and the pure noise
records (a segment where a beat is detected is unreliable); and synthetic sustained VT
(``synthetic_vt_strip``), so organised ventricular activity is not learnt as noise. DS2 is
never read.

    python -m inference.quality train --mitdb DIR/mitdb --nstdb DIR/nstdb --json OUT
    python -m inference.quality evaluate --mitdb DIR/mitdb --nstdb DIR/nstdb --vfdb DIR/vfdb \
        --json OUT [--plot PNG]

Model card: docs/models/signal-quality.md.
"""

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np

from inference.beat_match import match_beats
from inference.metrics import roc_auc
from inference.registry import add_output_options, make_run_dirs, run_dirs
from inference.vf import (
    _ORGANISATION_BASE,
    FEATURE_NAMES,
    SEGMENT_S,
    VfModel,
    _organisation_window,
    _reduced_band,
    _window_features,
    context_features,
    is_flat,
)

WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "signal-quality.npz"
# The training card lives with the model card, not beside the weights: every *.json in
# inference/weights is a product model's card for the registry (inference.registry), and this
# model is research only (docs/models/signal-quality.md).
CARD_PATH = Path(__file__).resolve().parent.parent / "docs" / "models" / "signal-quality.json"

# Organisation of the 2-s segment itself (``inference.vf._organisation_window`` on the same
# band-passed, reduced window the 2-s VF features use): organised ventricular activity repeats
# similar complexes at a steady rate, noise does not. Added because with the 30 VF features
# alone the model flagged 84 % of vfdb VT and 100 % of a synthetic VT as noise.
ORGANISATION_2S_NAMES = tuple(f"{name}_2s" for name in _ORGANISATION_BASE)
QUALITY_FEATURE_NAMES = FEATURE_NAMES + ORGANISATION_2S_NAMES

# MIT-BIH Arrhythmia Database, de Chazal's inter-patient split without the paced records.
# DS2 is the project's test set: nothing here may read it, not even to look.
DS1_RECORDS = (
    "101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122",
    "124", "201", "203", "205", "207", "208", "209", "215", "220", "223", "230",
)  # fmt: skip
DS2_RECORDS = frozenset(
    "100 103 105 111 113 117 121 123 200 202 210 212 213 214 219 221 222 228 231 232 233 "
    "234".split()
)
NOISE_RECORDS = ("ma", "bw")  # nstdb muscle artefact and baseline wander (em: held out)
SNRS_DB = (18.0, 12.0, 6.0, 0.0, -6.0)
# nst's standard protocol: 5 clean minutes ("learning period"), then 2-minute noisy and clean
# blocks alternately to the end (checked on 118e00 - 118: noise in minutes 5-7, 9-11, ..., 29-).
LEARNING_S = 300.0
BLOCK_S = 120.0
# nst's signal size: the peak-to-peak amplitude within +-50 ms of each of the first 300 normal
# QRS complexes, the largest and smallest 5 % dropped, the rest averaged (sigamp).
SIZE_BEATS = 300
SIZE_HALF_WINDOW_S = 0.05
TRIM_SHARE = 0.05
NOISE_SIZE_S = 300.0  # nst measures the noise RMS over the first 300 s, in 1-s chunks
QRS_SYMBOLS = frozenset("NLRBaVFJASEj/Qenfr?")
# A segment counts as inside a noisy block when more than half of it is.
DEFAULT_THRESHOLD = 0.5


class QualityModel(VfModel):
    """Noise probability per row of ``inference.vf.segment_features`` (0 for a flat segment):
    the VF model's arrays and arithmetic, other weights."""

    @classmethod
    def load(cls, path: Path = WEIGHTS_PATH) -> "QualityModel":
        # VfModel.load's default is the VF weights; this model's default is its own
        return super().load(path)


@lru_cache(maxsize=1)
def shipped_model() -> QualityModel:
    """The committed model (``inference/weights/signal-quality.npz``), loaded once per process."""
    if not WEIGHTS_PATH.is_file():
        raise FileNotFoundError(
            f"signal-quality weights {WEIGHTS_PATH} are missing; train them with "
            "python -m inference.quality train --mitdb DIR/mitdb --nstdb DIR/nstdb"
        )
    return QualityModel.load(WEIGHTS_PATH)


def quality_features(ecg_mv: np.ndarray, fs_hz: float) -> np.ndarray:
    """The model's inputs for each whole 2-s segment: ``inference.vf.segment_features``'s 30
    columns, then ``ORGANISATION_2S_NAMES`` of the same band-passed, reduced 2-s window.

    A stream (``inference.streaming._VfStage``) has them with no new state: it already cuts
    ``self.band[rows]`` for ``_window_features``; ``_organisation_window`` of those same rows
    at ``self._fs_reduced`` gives the extra 8 columns.
    """
    reduced, fs_reduced, n_segments = _reduced_band(ecg_mv, fs_hz)
    if n_segments == 0:
        return np.empty((0, len(QUALITY_FEATURE_NAMES)))
    n_short = int(SEGMENT_S * fs_reduced)
    starts = np.round(np.arange(n_segments) * SEGMENT_S * fs_reduced).astype(np.int64)
    starts = np.minimum(starts, len(reduced) - n_short)
    windows = reduced[starts[:, None] + np.arange(n_short)]
    vf_columns, _ = context_features(
        _window_features(windows, fs_reduced), np.zeros((1, len(FEATURE_NAMES) // 2))
    )
    return np.hstack([vf_columns, _organisation_window(windows, fs_reduced)])


def noise_probability(
    ecg_mv: np.ndarray, fs_hz: float, model: QualityModel | None = None
) -> np.ndarray:
    """Probability that beat analysis is unreliable, for each consecutive 2-second segment.

    Parameters
    ----------
    ecg_mv : 1-D array, millivolts (one lead)
    fs_hz : sampling rate in Hz, at least 100

    Returns
    -------
    float64 array with one value per whole 2-s segment, on ``inference.vf.vf_probability``'s
    grid (segment k: samples ``[k * round(2 fs_hz), (k + 1) * round(2 fs_hz))``); 0 for a
    flat segment. Raises ``ValueError`` for a signal that is not 1-D or not finite, or a
    rate under 100 Hz (``segment_features``'s checks).
    """
    features = quality_features(ecg_mv, fs_hz)
    if len(features) == 0:
        return np.empty(0)
    return (model or shipped_model()).probability(features)


def probability_from_features(
    features: np.ndarray, model: QualityModel | None = None
) -> np.ndarray:
    """The same from features the VF stage has already computed (a stream needs nothing else)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[1] != len(QUALITY_FEATURE_NAMES):
        raise ValueError(
            f"features must be (n_segments, {len(QUALITY_FEATURE_NAMES)}) rows of "
            f"quality_features, got shape {features.shape}"
        )
    if len(features) == 0:
        return np.empty(0)
    return (model or shipped_model()).probability(features)


# --- Building noisy signals as nst does ------------------------------------------------------


def _trimmed_mean(values: np.ndarray) -> float:
    """Mean of ``values`` without the largest and smallest ``TRIM_SHARE`` (sigamp's estimate)."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    cut = int(TRIM_SHARE * len(values))
    kept = values[cut : len(values) - cut] if len(values) > 2 * cut else values
    return float(kept.mean())


def qrs_size_mv(ecg_mv: np.ndarray, beat_samples: np.ndarray, fs_hz: float) -> float:
    """nst's signal size: the trimmed mean peak-to-peak amplitude (mV) within +-50 ms of the
    first ``SIZE_BEATS`` beats given (nst takes normal beats; ``build_signals`` passes the
    record's 'N' beats, or all its beats when it has too few, as in LBBB record 109)."""
    half = round(SIZE_HALF_WINDOW_S * fs_hz)
    spans = [
        np.ptp(ecg_mv[max(0, sample - half) : sample + half + 1])
        for sample in beat_samples[:SIZE_BEATS]
    ]
    if not spans:
        raise ValueError("no beats to measure the QRS amplitude on")
    return _trimmed_mean(np.asarray(spans))


def noise_rms_mv(noise_mv: np.ndarray, fs_hz: float) -> float:
    """nst's noise size: over the first 300 s, the RMS about the mean of each 1-s chunk, the
    trimmed mean of those."""
    n = round(fs_hz)
    n_chunks = min(int(NOISE_SIZE_S), len(noise_mv) // n)
    if n_chunks == 0:
        raise ValueError("the noise is shorter than 1 s")
    chunks = noise_mv[: n_chunks * n].reshape(n_chunks, n)
    rms = np.sqrt(((chunks - chunks.mean(axis=1, keepdims=True)) ** 2).mean(axis=1))
    return _trimmed_mean(rms)


def noisy_block_mask(n_samples: int, fs_hz: float) -> np.ndarray:
    """Which samples nst's standard protocol makes noisy: from 5 min, 2 min on, 2 min off."""
    t_s = np.arange(n_samples) / fs_hz
    after = t_s - LEARNING_S
    return (after >= 0) & (np.floor(after / BLOCK_S) % 2 == 0)


def add_noise_blocks(
    clean_mv: np.ndarray, noise_mv: np.ndarray, fs_hz: float, snr_db: float, size_mv: float
) -> tuple[np.ndarray, np.ndarray]:
    """``clean`` with ``noise`` added in nst's noisy blocks at ``snr_db``; and the block mask.

    SNR as nst defines it: ``SNR = 10 log10(S / (a^2 N))`` with ``S = size^2 / 8`` (the QRS
    peak-to-peak ``size_mv`` taken as a sinusoid's) and ``N`` the square of ``noise_rms_mv``, so
    the noise gain is ``a = size / sqrt(8 N 10^(SNR/10))``. The noise is read from its start
    and rewound when it runs out (nst's rule); each block starts at the noise's own level
    minus its first sample, so the gain switching on adds no step (nst's offsets ``b``).
    """
    n = len(clean_mv)
    gain = size_mv / np.sqrt(8.0 * noise_rms_mv(noise_mv, fs_hz) ** 2 * 10 ** (snr_db / 10.0))
    mask = noisy_block_mask(n, fs_hz)
    noisy = clean_mv.copy()
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    used = 0
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        piece = np.take(noise_mv, np.arange(used, used + end - start), mode="wrap")
        used += end - start
        noisy[start:end] += gain * (piece - piece[0])
    return noisy, mask


# --- Labels ------------------------------------------------------------------------------------


def segment_error_labels(
    n_segments: int,
    fs_hz: float,
    reference: np.ndarray,
    detected: np.ndarray,
    excluded: list[tuple[int, int]] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Per 2-s segment: 1 where the detector has a false positive or a false negative inside it
    (150-ms matching), and whether the segment is usable (not touching an ``excluded`` sample
    range: ventricular flutter/fibrillation, where there are no beats to count)."""
    n = round(SEGMENT_S * fs_hz)
    keep = np.ones(n_segments, dtype=bool)
    for start, end in excluded:
        keep[max(0, start // n) : min(n_segments, end // n + 1)] = False
    matched_reference, matched_detected = match_beats(reference, detected, fs_hz)
    missed = np.delete(np.asarray(reference, dtype=np.int64), matched_reference)
    extra = np.delete(np.asarray(detected, dtype=np.int64), matched_detected)
    errors = np.concatenate([missed, extra]) // n
    label = np.zeros(n_segments, dtype=np.int64)
    label[errors[errors < n_segments]] = 1
    return label, keep


def block_share(mask: np.ndarray, n_segments: int, fs_hz: float) -> np.ndarray:
    """Per segment, whether more than half of its samples are in a noisy block."""
    n = round(SEGMENT_S * fs_hz)
    return mask[: n_segments * n].reshape(n_segments, n).mean(axis=1) > 0.5


# --- Data sets -----------------------------------------------------------------------------------


def _check_not_ds2(name: str) -> None:
    if name in DS2_RECORDS:
        raise ValueError(f"record {name} is in DS2, the held-out test set: it is never read here")


def read_mitdb(folder: Path, name: str) -> dict:
    """MLII (``analysis_lead``) of a DS1 record in mV, its reference beats and VF episodes."""
    from inference.datasets.wfdb_record import (
        analysis_lead,
        read_annotation,
        read_header,
        read_record_mv,
    )
    from inference.evaluation.qrs import vf_episodes

    _check_not_ds2(name)
    path = Path(folder) / name
    channel = analysis_lead(read_header(path).sig_name)
    record = read_record_mv(path, [channel])
    annotation = read_annotation(path, "atr")
    symbols = list(annotation.symbol)
    samples = np.asarray(annotation.sample, dtype=np.int64)
    beats = np.array([s in QRS_SYMBOLS for s in symbols])
    normal = np.array([s == "N" for s in symbols])
    ecg = record.p_signal[:, 0].astype(np.float64)
    return {
        "ecg": ecg,
        "fs": float(record.fs),
        "beats": samples[beats],
        "normal": samples[normal] if normal.sum() >= 50 else samples[beats],
        "vf": vf_episodes(samples, symbols, len(ecg)),
        "vt": [
            (int(s), int(e))
            for s, e in _rhythm_spans(samples, symbols, list(annotation.aux_note), len(ecg), "(VT")
        ],
    }


def _rhythm_spans(samples, symbols, notes, n_samples, label) -> list[tuple[int, int]]:
    from inference.datasets.mitdb import rhythm_intervals

    return [
        (start, end)
        for start, end, name in rhythm_intervals(samples, symbols, notes, n_samples)
        if name == label
    ]


def read_noise(folder: Path, name: str) -> tuple[np.ndarray, float]:
    """Both channels of an nstdb noise record (mV) and its rate."""
    from inference.datasets.wfdb_record import read_record_mv

    record = read_record_mv(Path(folder) / name)
    return record.p_signal.astype(np.float64), float(record.fs)


def _signal_rows(ecg, fs, reference, excluded, **columns) -> dict:
    """Features and labels of every segment of one signal, and per-segment ``columns``."""
    from inference.qrs import detect_qrs

    features = quality_features(ecg, fs)
    detected = detect_qrs(ecg, fs)
    label, keep = segment_error_labels(len(features), fs, reference, detected, excluded)
    # a flat segment is never noisy (the model outputs 0 there): not a training example
    keep &= ~is_flat(features[:, FEATURE_NAMES.index("log_amplitude_mv_2s")])
    rows = {"x": features, "y": label, "keep": keep, "segment": np.arange(len(features))}
    rows["in_vt"] = np.zeros(len(features), dtype=bool)
    for key, value in columns.items():
        rows[key] = np.broadcast_to(np.asarray(value), (len(features),)).copy()
    return rows


def build_data(mitdb: Path, nstdb: Path, records=DS1_RECORDS, progress=print) -> dict:
    """Segments of the training signals, with what each is (see the module docstring).

    Each DS1 record gives its clean signal, and for each noise record, SNR and noise half a
    noisy copy: "train" built with noise from the first half of the noise record (for fitting),
    "val" from the second half (for scoring a record held out in cross-validation), so no noise
    sample is both fitted and scored. The first 5 minutes of a noisy copy are the clean record's
    (nst's learning period) and are not repeated. The record's position in ``records`` picks
    the noise channel and where in its half the noise starts, so records see different noise.
    """
    noises = {name: read_noise(nstdb, name) for name in NOISE_RECORDS}
    parts = []
    for index, name in enumerate(records):
        started = time.perf_counter()
        record = read_mitdb(mitdb, name)
        ecg, fs = record["ecg"], record["fs"]
        size_mv = qrs_size_mv(ecg, record["normal"], fs)
        common = {"record": name, "reference": record["beats"], "excluded": record["vf"]}
        parts.append(
            _signal_rows(
                ecg, fs, common["reference"], common["excluded"], record=name,
                source="clean", half="both", snr_db=np.inf, in_block=False,
            )
        )  # fmt: skip
        n_learning = int(LEARNING_S / SEGMENT_S)
        for noise_name, (noise, noise_fs) in noises.items():
            if noise_fs != fs:
                raise ValueError(f"{noise_name} is at {noise_fs:g} Hz, {name} at {fs:g} Hz")
            half_len = len(noise) // 2
            channel = index % noise.shape[1]
            for half, first in (("train", 0), ("val", half_len)):
                piece = noise[first : first + half_len, channel]
                # a different start in the half for each record (41 s apart, wrapped)
                piece = np.roll(piece, -round(41.0 * index * fs) % half_len)
                for snr_db in SNRS_DB:
                    noisy, mask = add_noise_blocks(ecg, piece, fs, snr_db, size_mv)
                    rows = _signal_rows(
                        noisy, fs, common["reference"], common["excluded"], record=name,
                        source=noise_name, half=half, snr_db=snr_db, in_block=False,
                    )  # fmt: skip
                    rows["in_block"] = block_share(mask, len(rows["y"]), fs)
                    parts.append({key: value[n_learning:] for key, value in rows.items()})
        in_vt = segments_in_spans(record["vt"], len(parts[-1 - 20]["y"]), fs)
        for part in parts[-21:]:
            part["in_vt"] = in_vt[-len(part["y"]) :] if len(part["y"]) < len(in_vt) else in_vt
        progress(
            f"  {name}: size {size_mv:.2f} mV, {len(parts[-1]['y'])} segments per noisy copy "
            f"({time.perf_counter() - started:.1f} s)"
        )
    for noise_name, (noise, fs) in noises.items():
        half_len = len(noise) // 2
        for half, first in (("train", 0), ("val", half_len)):
            for channel in range(noise.shape[1]):
                # pure noise: no beats, so any detection is a false positive
                parts.append(
                    _signal_rows(
                        noise[first : first + half_len, channel], fs, np.empty(0, np.int64), [],
                        record=f"{noise_name}{channel}", source=f"pure_{noise_name}",
                        half=half, snr_db=-np.inf, in_block=True,
                    )
                )  # fmt: skip
    parts.extend(synthetic_vt_rows(progress))
    data = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    progress(f"  {len(data['y'])} segments, {int(data['keep'].sum())} usable")
    return data


def segments_in_spans(spans, n_segments: int, fs_hz: float) -> np.ndarray:
    """Per 2-s segment, whether at least half of it lies inside one of the sample ``spans``."""
    n = round(SEGMENT_S * fs_hz)
    inside = np.zeros(n_segments * n, dtype=bool)
    for start, end in spans:
        inside[start:end] = True
    return inside.reshape(n_segments, n).mean(axis=1) >= 0.5


# Synthetic sustained VT (``inference.synthetic``, rhythm "VT"): organised ventricular activity
# that is not noise, which DS1 almost lacks. Strip s has seed s, a rate spread over
# 120-220 bpm, and one of the noise settings in turn (mV); labels by the same detector-error
# rule, so a VT the detector follows is reliable and one it loses in noise is not.
SYNTHETIC_VT_STRIPS = 66
SYNTHETIC_VT_S = 120.0
SYNTHETIC_VT_FS_HZ = (360.0, 250.0)
SYNTHETIC_VT_NOISE = (
    {},
    {"muscle": 0.05},
    {"baseline_wander": 0.3},
    {"muscle": 0.1, "baseline_wander": 0.15},
    {"electrode_motion": 0.1},
    {"muscle": 0.2},
)


# The generator has one VT complex; each strip is also scaled by one of these gains and, in
# every other group of six strips, inverted (the lead's view of the same focus), so the model
# cannot learn one shape and size as "not noise".
SYNTHETIC_VT_GAINS = (1.0, 0.5, 2.0)


def synthetic_vt_strip(seed: int) -> tuple[np.ndarray, float, np.ndarray]:
    """Synthetic VT strip ``seed`` (see ``SYNTHETIC_VT_*``): signal (mV), rate (Hz), beats."""
    from inference.synthetic import NoiseConfig, generate

    rate_bpm = 120.0 + (seed * 37) % 101
    noise = NoiseConfig(**SYNTHETIC_VT_NOISE[seed % len(SYNTHETIC_VT_NOISE)])
    fs_hz = SYNTHETIC_VT_FS_HZ[seed % len(SYNTHETIC_VT_FS_HZ)]
    strip = generate(SYNTHETIC_VT_S, fs=fs_hz, rhythm="VT", hr_bpm=rate_bpm, noise=noise, seed=seed)
    group = seed // len(SYNTHETIC_VT_NOISE)
    gain = SYNTHETIC_VT_GAINS[group % len(SYNTHETIC_VT_GAINS)] * (-1.0 if group % 2 else 1.0)
    return gain * strip.signal_mv, strip.fs, strip.beats


def synthetic_vt_rows(progress=print) -> list[dict]:
    parts = []
    for seed in range(SYNTHETIC_VT_STRIPS):
        ecg_mv, fs_hz, beats = synthetic_vt_strip(seed)
        rows = _signal_rows(
            ecg_mv, fs_hz, beats, [], record=f"synthvt{seed}",
            source="synthetic_vt", half="both", snr_db=np.inf, in_block=False,
        )  # fmt: skip
        rows["in_vt"][:] = True
        parts.append(rows)
    y = np.concatenate([part["y"][part["keep"]] for part in parts])
    progress(f"  synthetic VT: {len(parts)} strips, {len(y)} segments, {y.mean():.3f} unreliable")
    return parts


# --- Training and scoring ------------------------------------------------------------------------


def se_sp(y: np.ndarray, flagged: np.ndarray) -> dict:
    y = np.asarray(y).astype(bool)
    flagged = np.asarray(flagged).astype(bool)
    tp, fn = int((flagged & y).sum()), int((~flagged & y).sum())
    tn, fp = int((~flagged & ~y).sum()), int((flagged & ~y).sum())
    return {
        "n": int(len(y)),
        "n_unreliable": tp + fn,
        "se": tp / (tp + fn) if tp + fn else float("nan"),
        "sp": tn / (tn + fp) if tn + fp else float("nan"),
    }


def record_folds(n_folds: int, records=DS1_RECORDS) -> dict:
    """Record name -> fold (records dealt round-robin in their listed order; synthetic VT
    strip s in fold s mod ``n_folds``)."""
    if not 2 <= n_folds <= len(records):
        raise ValueError(f"folds must be 2 to {len(records)}, got {n_folds}")
    folds = {name: index % n_folds for index, name in enumerate(records)}
    folds.update({f"synthvt{seed}": seed % n_folds for seed in range(SYNTHETIC_VT_STRIPS)})
    return folds


def row_weights(data: dict, vt_weight: float, synthetic_weight: float) -> np.ndarray:
    """Fitting weight of each row: ``vt_weight`` for DS1 segments inside a reference VT
    episode (every copy), ``synthetic_weight`` for synthetic VT, 1 otherwise."""
    weight = np.ones(len(data["y"]))
    synthetic = data["source"] == "synthetic_vt"
    weight[data["in_vt"] & ~synthetic] = vt_weight
    weight[synthetic] = synthetic_weight
    return weight


def fit_weighted(
    x: np.ndarray,
    y: np.ndarray,
    weight: np.ndarray,
    hidden: int = 4,
    epochs: int = 300,
    seed: int = 0,
    weight_decay: float = 1e-3,
) -> QualityModel:
    """``inference.vf.fit_model`` with a weight per row: class-balanced (by weight) cross-entropy,
    full batch, Adam, weight decay."""
    import torch

    torch.manual_seed(seed)
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    inputs = torch.tensor((x - mean) / scale, dtype=torch.float32)
    targets = torch.tensor(y, dtype=torch.float32)
    positive = float(weight[y == 1].sum())
    negative = float(weight[y == 0].sum())
    # class balance: the positives' total weight made equal to the negatives'
    balanced = np.where(y == 1, weight * negative / max(positive, 1e-9), weight)
    balanced = torch.tensor(balanced / balanced.mean(), dtype=torch.float32)
    network = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)
    )
    loss_function = torch.nn.BCEWithLogitsLoss(weight=balanced)
    optimizer = torch.optim.Adam(network.parameters(), lr=0.01, weight_decay=weight_decay)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = loss_function(network(inputs).squeeze(1), targets)
        loss.backward()
        optimizer.step()
    first, last = network[0], network[2]
    return QualityModel(
        mean=mean,
        scale=scale,
        w1=first.weight.detach().numpy().T.astype(np.float64),
        b1=first.bias.detach().numpy().astype(np.float64),
        w2=last.weight.detach().numpy()[0].astype(np.float64),
        b2=float(last.bias.detach().numpy()[0]),
    )


def training_rows(data: dict, records) -> np.ndarray:
    """Rows to fit on: usable segments of ``records``' clean signals and train-half noisy
    copies, and the train half of the pure noise."""
    in_records = np.isin(data["record"], list(records))
    pure = np.char.startswith(data["source"].astype(str), "pure_")
    return data["keep"] & (data["half"] != "val") & (in_records | pure)


def scoring_rows(data: dict, records) -> np.ndarray:
    """Rows to score a model fitted without ``records`` on: their clean signals and
    validation-half noisy copies."""
    return data["keep"] & np.isin(data["record"], list(records)) & (data["half"] != "train")


def fit(data: dict, rows: np.ndarray, options: dict) -> QualityModel:
    options = dict(options)
    weight = row_weights(data, options.pop("vt_weight"), options.pop("synthetic_weight"))
    return fit_weighted(data["x"][rows], data["y"][rows], weight[rows], **options)


def cross_validate(data: dict, n_folds: int, options: dict, progress=print) -> dict:
    """Out-of-fold probabilities of every segment of the DS1 signals (NaN elsewhere), and of
    the validation half of the pure noise from each fold's model (averaged over folds)."""
    folds = record_folds(n_folds)
    probability = np.full(len(data["y"]), np.nan)
    pure_val = np.char.startswith(data["source"].astype(str), "pure_") & (data["half"] == "val")
    pure_sum = np.zeros(int(pure_val.sum()))
    for fold in range(n_folds):
        held = [name for name, f in folds.items() if f == fold]
        fitted = [name for name, f in folds.items() if f != fold]
        model = fit(data, training_rows(data, fitted), options)
        scored = np.isin(data["record"], held) & (data["half"] != "train")
        probability[scored] = model.probability(data["x"][scored])
        pure_sum += model.probability(data["x"][pure_val])
        progress(f"  fold {fold + 1}/{n_folds} ({', '.join(held)}) done")
    probability[pure_val] = pure_sum / n_folds
    return {"probability": probability, "folds": folds}


def fold_scores(data: dict, probability: np.ndarray, folds: dict, threshold: float) -> list:
    scores = []
    for fold in sorted(set(folds.values())):
        held = [name for name, f in folds.items() if f == fold]
        rows = scoring_rows(data, held)
        y, p = data["y"][rows], probability[rows]
        scores.append(
            {"fold": fold, "records": held, "auc": roc_auc(y, p), **se_sp(y, p >= threshold)}
        )
    return scores


def choose_threshold(
    by_threshold: dict,
    max_clean_flagged: float,
    max_vt_episodes: int,
    max_synthetic_flagged: float,
) -> dict:
    """The smallest threshold (steps of 0.05) at which, out of fold, at most
    ``max_clean_flagged`` of the clean DS1 segments are flagged, at most ``max_vt_episodes``
    DS1 reference VT episodes have a majority of their segments flagged, and at most
    ``max_synthetic_flagged`` of the synthetic VT segments (strips with the modest noise
    settings, ``synthetic_vt_modest``) are flagged.

    Why: a flag suspends arrhythmia analysis. On a clean recording it costs missed
    arrhythmias, and during real VT it would silence the most urgent alarm; under those caps,
    the lower the threshold the more noise is caught.
    """
    rule = (
        f"clean flagged <= {max_clean_flagged:g}, VT episodes mostly flagged <= "
        f"{max_vt_episodes}, synthetic VT flagged <= {max_synthetic_flagged:g}"
    )
    for key in sorted(by_threshold, key=float):
        point = by_threshold[key]
        if (
            point["clean_flagged"] <= max_clean_flagged
            and point["vt_episodes_majority_flagged"] <= max_vt_episodes
            and point["synthetic_vt_flagged"] <= max_synthetic_flagged
        ):
            return {"threshold": float(key), "rule": rule}
    return {"threshold": 0.95, "rule": rule + " (not reached: 0.95)"}


def synthetic_vt_modest(data: dict) -> np.ndarray:
    """Usable synthetic VT rows of the strips without the heaviest noise setting (muscle
    0.2 mV): the acceptance rule's "synthetic VT is not flagged" set."""
    names = data["record"].astype(str)
    synthetic = data["keep"] & (data["source"] == "synthetic_vt")
    seeds = np.array(
        [int(name[len("synthvt") :]) if name.startswith("synthvt") else -1 for name in names]
    )
    return synthetic & (seeds % len(SYNTHETIC_VT_NOISE) != len(SYNTHETIC_VT_NOISE) - 1)


def ds1_summary(data: dict, probability: np.ndarray, threshold: float) -> dict:
    """Out-of-fold figures on DS1: clean records, noisy blocks by noise and SNR, pure noise."""
    flagged = probability >= threshold
    clean = data["keep"] & (data["source"] == "clean")
    summary = {
        "clean_flagged": float(flagged[clean].mean()),
        "clean_flagged_reliable_only": float(flagged[clean & (data["y"] == 0)].mean()),
        "clean_unreliable_share": float(data["y"][clean].mean()),
        "by_noise": {},
    }
    synthetic = data["keep"] & (data["source"] == "synthetic_vt")
    summary["synthetic_vt"] = {
        "segments": int(synthetic.sum()),
        "unreliable_share": float(data["y"][synthetic].mean()),
        "flagged_all": float(flagged[synthetic].mean()),
        "flagged_modest_noise": float(flagged[synthetic_vt_modest(data)].mean()),
    }
    for source in NOISE_RECORDS:
        for snr_db in SNRS_DB:
            rows = data["keep"] & (data["source"] == source) & (data["snr_db"] == snr_db)
            rows &= data["half"] == "val"
            block = rows & data["in_block"]
            summary["by_noise"][f"{source} {snr_db:+g} dB"] = {
                "block_flagged": float(flagged[block].mean()),
                "block_unreliable": float(data["y"][block].mean()),
                "between_blocks_flagged": float(flagged[rows & ~data["in_block"]].mean()),
            }
    for source in NOISE_RECORDS:
        rows = (data["source"] == f"pure_{source}") & (data["half"] == "val")
        nonflat = rows & data["keep"]
        summary[f"pure_{source}_val"] = {
            "segments": int(rows.sum()),
            "flat": int((rows & ~data["keep"]).sum()),
            "flagged_of_nonflat": float(flagged[nonflat].mean()),
            "flagged_of_with_detections": float(flagged[nonflat & (data["y"] == 1)].mean()),
        }
    return summary


def vt_episode_scores(
    episodes: list[tuple[int, int]], flagged: np.ndarray, fs_hz: float
) -> list[dict]:
    """Per rhythm episode (sample range): its segments (those at least half inside it, else
    the one most inside it), how many are flagged."""
    n = round(SEGMENT_S * fs_hz)
    results = []
    for start, end in episodes:
        first, last = start // n, min(len(flagged) - 1, (end - 1) // n)
        if first > last:
            continue
        segments = np.arange(first, last + 1)
        overlap = np.minimum(end, (segments + 1) * n) - np.maximum(start, segments * n)
        inside = segments[overlap >= n / 2]
        if len(inside) == 0:
            inside = segments[[int(np.argmax(overlap))]]
        results.append(
            {
                "start_s": round(start / fs_hz, 1),
                "duration_s": round((end - start) / fs_hz, 1),
                "segments": int(len(inside)),
                "flagged": int(flagged[inside].sum()),
            }
        )
    return results


def ds1_vt_episodes(mitdb: Path) -> dict:
    """Reference VT episodes ("(VT" rhythm annotations) of each DS1 record that has any, and
    its rate: {name: (episodes, fs_hz)}."""
    found = {}
    for name in DS1_RECORDS:
        record = read_mitdb(mitdb, name)
        if record["vt"]:
            found[name] = (record["vt"], record["fs"])
    return found


def ds1_vt(vt_episodes: dict, data: dict, probability: np.ndarray, threshold: float) -> dict:
    """DS1 reference VT episodes on the clean records: how many have any flagged segment, and a
    majority flagged, from ``probability`` (out-of-fold)."""
    episodes = []
    for name, (spans, fs_hz) in vt_episodes.items():
        rows = (data["record"] == name) & (data["source"] == "clean")
        flagged = np.zeros(int(rows.sum()), dtype=bool)
        flagged[data["segment"][rows]] = probability[rows] >= threshold
        for episode in vt_episode_scores(spans, flagged, fs_hz):
            episodes.append({"record": name, **episode})
    return {
        "episodes": len(episodes),
        "any_flagged": sum(e["flagged"] > 0 for e in episodes),
        "majority_flagged": sum(e["flagged"] > e["segments"] / 2 for e in episodes),
        "segments": sum(e["segments"] for e in episodes),
        "segments_flagged": sum(e["flagged"] for e in episodes),
        "list": episodes,
    }


def train(args) -> int:
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    options = {
        "hidden": args.hidden,
        "epochs": args.epochs,
        "seed": args.seed,
        "weight_decay": args.weight_decay,
        "vt_weight": args.vt_weight,
        "synthetic_weight": args.synthetic_weight,
    }
    print("building DS1 signals (clean, + ma/bw noise at 18..-6 dB, pure noise)", flush=True)
    data = build_data(Path(args.mitdb), Path(args.nstdb), progress=lambda s: print(s, flush=True))
    print(f"cross-validating ({args.folds} record folds)", flush=True)
    cv = cross_validate(data, args.folds, options, progress=lambda s: print(s, flush=True))
    probability = cv["probability"]
    scored = scoring_rows(data, DS1_RECORDS)
    by_threshold = {}
    clean = data["keep"] & (data["source"] == "clean")
    synthetic = synthetic_vt_modest(data)
    vt_episodes = ds1_vt_episodes(Path(args.mitdb))
    for t in np.round(np.arange(0.1, 0.96, 0.05), 2):
        vt_t = ds1_vt(vt_episodes, data, probability, t)
        by_threshold[f"{t:.2f}"] = {
            **se_sp(data["y"][scored], probability[scored] >= t),
            "clean_flagged": float((probability[clean] >= t).mean()),
            "vt_episodes_majority_flagged": vt_t["majority_flagged"],
            "vt_segments_flagged": vt_t["segments_flagged"],
            "synthetic_vt_flagged": float((probability[synthetic] >= t).mean()),
        }
        print(f"  threshold {t:.2f}: {by_threshold[f'{t:.2f}']}")
    chosen = choose_threshold(
        by_threshold, args.max_clean_flagged, args.max_vt_episodes, args.max_synthetic_flagged
    )
    threshold = chosen["threshold"]
    overall = {
        "auc": roc_auc(data["y"][scored], probability[scored]),
        **se_sp(data["y"][scored], probability[scored] >= threshold),
    }
    folds = fold_scores(data, probability, cv["folds"], threshold)
    summary = ds1_summary(data, probability, threshold)
    vt = ds1_vt(vt_episodes, data, probability, threshold)
    if args.oof:
        np.savez_compressed(args.oof, probability=probability, **data)
    print(f"threshold {threshold} ({chosen['rule']}); out-of-fold: {overall}")
    for fold in folds:
        print(
            f"  fold {fold['fold']} {'+'.join(fold['records'])}: AUC {fold['auc']:.3f} "
            f"Se {fold['se']:.3f} Sp {fold['sp']:.3f}"
        )
    print(f"clean DS1 flagged: {summary['clean_flagged']:.4f}")
    print(
        f"DS1 VT episodes: {vt['episodes']}, any flagged {vt['any_flagged']}, majority "
        f"{vt['majority_flagged']}"
    )
    print("fitting the shipped model on all DS1 + first-half noise", flush=True)
    model = fit(data, training_rows(data, DS1_RECORDS), options)
    model.threshold = threshold
    out = Path(args.out)
    model.save(out)
    card = {
        "name": "signal-quality",
        "weights": out.name,
        "target": "QRS detector error (FP or FN, 150 ms) inside the 2-s segment",
        "features": list(QUALITY_FEATURE_NAMES),
        **options,
        "threshold": threshold,
        "threshold_rule": chosen["rule"],
        "folds": args.folds,
        "cross_validation": {
            "overall": overall,
            "per_fold": folds,
            "by_threshold": by_threshold,
        },
        "ds1_out_of_fold": summary,
        "ds1_vt": vt,
        "segments": {
            "total": int(len(data["y"])),
            "fitted_shipped": int(training_rows(data, DS1_RECORDS).sum()),
        },
        "date": datetime.now(UTC).date().isoformat(),
        "command": "python -m inference.quality train --mitdb DIR/mitdb --nstdb DIR/nstdb "
        f"--folds {args.folds} --hidden {args.hidden} --epochs {args.epochs} "
        f"--weight-decay {args.weight_decay:g} --seed {args.seed} --vt-weight {args.vt_weight:g} "
        f"--synthetic-weight {args.synthetic_weight:g} "
        f"--max-clean-flagged {args.max_clean_flagged:g} --max-vt-episodes {args.max_vt_episodes} "
        f"--max-synthetic-flagged {args.max_synthetic_flagged:g}",
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    text = json.dumps(_finite(card), indent=1)
    card_path = Path(args.json)
    card_path.write_text(text)
    print(f"wrote {out} and {card_path} ({card['train_seconds']} s)")
    return 0


def _finite(value):
    """JSON-ready: NaN and infinity as None, numpy scalars as Python ones."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


# --- Held-out evaluation -------------------------------------------------------------------------

# electrode-motion noise: a type not trained on
NSTDB_TEST = ("118e24", "118e12", "118e00", "118e_6")


def evaluate_nstdb(nstdb: Path, model: QualityModel, progress=print) -> dict:
    """118e24..118e_6: segments flagged in noisy and clean blocks, and the analysis's VT
    episodes that lie mostly (more than half their duration) in flagged segments."""
    from inference.analysis import analyze_signal
    from inference.datasets.wfdb_record import read_record_mv

    results = {}
    for name in NSTDB_TEST:
        record = read_record_mv(Path(nstdb) / name, [0])  # MLII
        ecg, fs = record.p_signal[:, 0].astype(np.float64), float(record.fs)
        flagged = noise_probability(ecg, fs, model) >= model.threshold
        in_block = block_share(noisy_block_mask(len(ecg), fs), len(flagged), fs)
        analysis = analyze_signal(ecg, fs)
        vt = [e for e in analysis.episodes if e.kind == "VT"]
        mostly = 0
        for episode in vt:
            # the share of the episode's time inside flagged segments
            t_s = np.arange(episode.start_s, episode.end_s, 0.05)
            segment = np.minimum((t_s / SEGMENT_S).astype(int), len(flagged) - 1)
            mostly += flagged[segment].mean() > 0.5 if len(t_s) else 0
        results[name] = {
            "noisy_block_flagged": float(flagged[in_block].mean()),
            "clean_block_flagged": float(flagged[~in_block].mean()),
            "clean_after_5min_flagged": float(flagged[~in_block][150:].mean()),
            "vt_episodes": len(vt),
            "vt_mostly_flagged": int(mostly),
        }
        progress(f"  {name}: {results[name]}")
    return results


def evaluate_pure_noise(nstdb: Path, model: QualityModel) -> dict:
    """Second half of ma and bw (never fitted): share of non-flat segments flagged."""
    results = {}
    for name in NOISE_RECORDS:
        noise, fs = read_noise(nstdb, name)
        half = noise[len(noise) // 2 :]
        flagged, nonflat = [], []
        for channel in range(noise.shape[1]):
            features = quality_features(half[:, channel], fs)
            flagged.append(model.probability(features) >= model.threshold)
            nonflat.append(~is_flat(features[:, FEATURE_NAMES.index("log_amplitude_mv_2s")]))
        flagged, nonflat = np.concatenate(flagged), np.concatenate(nonflat)
        results[f"{name}_second_half"] = {
            "segments": int(len(flagged)),
            "flagged_of_nonflat": float(flagged[nonflat].mean()),
        }
    return results


def evaluate_vfdb(vfdb: Path, model: QualityModel) -> dict:
    """vfdb (channel 0): share of segments flagged by rhythm annotation."""
    from inference.datasets.mitdb import rhythm_intervals
    from inference.datasets.wfdb_record import read_annotation, read_record_mv
    from inference.vf import segment_labels

    counts: dict[str, list[int]] = {}
    for path in sorted(Path(vfdb).glob("*.hea")):
        record = read_record_mv(path.with_suffix(""), [0])
        annotation = read_annotation(path.with_suffix(""), "atr")
        ecg, fs = record.p_signal[:, 0].astype(np.float64), float(record.fs)
        if not np.isfinite(ecg).all():
            ecg = np.nan_to_num(ecg)
        flagged = noise_probability(ecg, fs, model) >= model.threshold
        rhythms = rhythm_intervals(
            annotation.sample, list(annotation.symbol), list(annotation.aux_note), len(ecg)
        )
        _, label = segment_labels(len(flagged), fs, rhythms)
        for name in np.unique(label.astype(str)):
            group = {"(VF": "VF/VFL", "(VFL": "VF/VFL", "(VT": "VT", "(NOISE": "NOISE"}
            key = group.get(name, "other")
            total = counts.setdefault(key, [0, 0])
            total[0] += int((label == name).sum())
            total[1] += int(flagged[label == name].sum())
    return {
        key: {"segments": n, "flagged": k, "share": k / n if n else float("nan")}
        for key, (n, k) in counts.items()
    }


def plot_strip(nstdb: Path, model: QualityModel, out: Path, record: str = "118e00") -> None:
    """One minute of ``record`` around the end of the first noisy block, flagged segments shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from inference.datasets.wfdb_record import read_record_mv

    signal = read_record_mv(Path(nstdb) / record, [0])
    ecg, fs = signal.p_signal[:, 0].astype(np.float64), float(signal.fs)
    probability = noise_probability(ecg, fs, model)
    start_s, end_s = 400.0, 440.0  # 6:40-7:20: noise ends at 7:00
    t_s = np.arange(round(start_s * fs), round(end_s * fs)) / fs
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 4.5), sharex=True, height_ratios=[3, 1])
    top.plot(t_s, ecg[round(start_s * fs) : round(end_s * fs)], lw=0.6, color="k")
    segments = np.arange(int(start_s / SEGMENT_S), int(end_s / SEGMENT_S))
    for k in segments:
        if probability[k] >= model.threshold:
            top.axvspan(k * SEGMENT_S, (k + 1) * SEGMENT_S, color="tab:red", alpha=0.2, lw=0)
    top.axvline(420.0, color="tab:blue", ls="--", lw=1)
    top.set_ylabel("MLII (mV)")
    top.set_title(
        f"nstdb {record} (electrode motion, 0 dB, noise until 7:00, dashed): shaded = "
        f"flagged noisy (p >= {model.threshold:g})"
    )
    bottom.step(segments * SEGMENT_S, probability[segments], where="post", color="tab:red")
    bottom.axhline(model.threshold, color="grey", ls=":")
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("p(noisy)")
    bottom.set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def evaluate(args) -> int:
    model = QualityModel.load(Path(args.weights))
    started = time.perf_counter()
    result = {"threshold": model.threshold}
    if args.nstdb:
        print("nstdb 118 + em (held out):", flush=True)
        result["nstdb_em"] = evaluate_nstdb(Path(args.nstdb), model)
        result["pure_noise"] = evaluate_pure_noise(Path(args.nstdb), model)
        print(f"pure noise, second halves: {result['pure_noise']}", flush=True)
        if args.plot:
            plot_strip(Path(args.nstdb), model, Path(args.plot))
            print(f"wrote {args.plot}")
    if args.vfdb:
        result["vfdb"] = evaluate_vfdb(Path(args.vfdb), model)
        print(f"vfdb: {result['vfdb']}", flush=True)
    if args.mitdb:
        # the shipped model on the clean DS1 records it was fitted on (in-sample; the card's
        # out-of-fold figures come from train)
        flagged_clean, total = 0, 0
        for name in DS1_RECORDS:
            record = read_mitdb(Path(args.mitdb), name)
            flagged = noise_probability(record["ecg"], record["fs"], model) >= model.threshold
            flagged_clean += int(flagged.sum())
            total += len(flagged)
        result["ds1_clean_in_sample_flagged"] = flagged_clean / total
        print(f"DS1 clean, in-sample: {flagged_clean / total:.4f} flagged")
    result["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(_finite(result), indent=1))
        print(f"wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.quality", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="command", required=True)
    fitting = sub.add_parser("train", help="cross-validate on DS1 by record, then fit on all")
    fitting.add_argument("--mitdb", required=True, help="the mitdb folder (only DS1 is read)")
    fitting.add_argument("--nstdb", required=True, help="the nstdb folder (ma and bw)")
    fitting.add_argument("--folds", type=int, default=11)
    fitting.add_argument("--hidden", type=int, default=4)
    fitting.add_argument("--epochs", type=int, default=300)
    fitting.add_argument("--weight-decay", type=float, default=1e-3)
    fitting.add_argument("--seed", type=int, default=0)
    fitting.add_argument(
        "--max-clean-flagged",
        type=float,
        default=0.01,
        help="threshold rule: the smallest threshold flagging at most this share of the clean "
        "DS1 segments out of fold (default 0.01)",
    )
    fitting.add_argument(
        "--max-vt-episodes",
        type=int,
        default=1,
        help="threshold rule: at most this many DS1 reference VT episodes (of 39) with most "
        "of their segments flagged, out of fold (default 1)",
    )
    fitting.add_argument(
        "--max-synthetic-flagged",
        type=float,
        default=0.02,
        help="threshold rule: at most this share of the synthetic VT segments flagged, out of "
        "fold (default 0.02)",
    )
    fitting.add_argument("--vt-weight", type=float, default=30.0, help="DS1 VT segments' weight")
    fitting.add_argument(
        "--synthetic-weight", type=float, default=5.0, help="synthetic VT segments' weight"
    )
    # as every training command: a run writes to its own folder unless --replace-shipped
    outputs = add_output_options(fitting, "signal-quality")
    outputs.add_argument(
        "--out",
        help="the weights, a numpy .npz file (default: signal-quality.npz in --out-dir)",
    )
    fitting.add_argument(
        "--json",
        help="write the training card here (default: signal-quality.json beside the weights; "
        "with --replace-shipped docs/models/signal-quality.json)",
    )
    fitting.add_argument("--oof", help="save the segments and out-of-fold probabilities (.npz)")
    scoring = sub.add_parser("evaluate", help="the shipped model on the held-out data")
    scoring.add_argument("--mitdb", help="the mitdb folder (DS1 clean, in-sample)")
    scoring.add_argument("--nstdb", help="the nstdb folder (118e24..118e_6, ma/bw second halves)")
    scoring.add_argument("--vfdb", help="the vfdb folder")
    scoring.add_argument("--weights", default=str(WEIGHTS_PATH))
    scoring.add_argument("--plot", help="write the 118e00 strip PNG here (needs --nstdb)")
    scoring.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    if args.command == "train":
        if args.out:
            out = Path(args.out)
        else:
            weights_dir, _ = run_dirs(args.out_dir, args.replace_shipped, "signal-quality")
            out = weights_dir / WEIGHTS_PATH.name
        if out.suffix != ".npz":
            parser.error("--out must end in .npz")
        make_run_dirs(out.parent)
        args.out = str(out)
        if not args.json:
            # not beside the shipped weights: every *.json there is a product model's card
            args.json = str(CARD_PATH if args.replace_shipped else out.with_suffix(".json"))
        return train(args)
    return evaluate(args)


if __name__ == "__main__":
    sys.exit(main())
