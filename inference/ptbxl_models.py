"""The three PTB-XL diagnosis models of issue 7 and ``predict``, which serves them.

Five diagnostic superclasses (NORM, MI, STTC, CD, HYP), multi-label: one sigmoid per class.

- ``ptbxl-model01``, ``MetadataNet``: the eleven metadata inputs alone (seven standardized
  features and four missing flags, ``inference.datasets.ptbxl.MetadataScaler``). The baseline,
  and the model used when no waveform is given.
- ``ptbxl-model02``, ``DualInputNet``: a 1D CNN over the 12 leads (10 s at 100 Hz) and a dense
  branch over the metadata, concatenated before the output layer.
- ``ptbxl-model03``: the same network trained with augmentation (random 7.5 s crops, Gaussian
  noise); it reads a record as three overlapping 7.5 s windows and averages their
  probabilities.

ECG normalization, the same in training and serving: each lead's median over the record is
subtracted (the baseline offset, which says nothing about the diagnosis), then each lead is
divided by that lead's standard deviation over the training records (stored in the card), so
relative amplitudes between records and leads are kept.

Training: ``python -m inference.ptbxl_training`` (see docs/models/ptbxl-models.md).
Research software, not a medical device.
"""

import json
import math
import numbers
import reprlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from inference.datasets.ptbxl import (
    FEATURE_COLUMNS,
    HEART_AXIS_DEVIATION,
    LEADS,
    PLAUSIBLE_RANGES,
    RAW_FEATURES,
    RECORD_S,
    SUPERCLASSES,
    MetadataScaler,
    check_feature_layout,
)
from inference.registry import WEIGHTS_DIR, list_models
from inference.signal import (
    MAX_ECG_ABS_MV,
    ecg_record_amplitude_problem,
    resample,
    validate_fs,
    validate_signal,
)

TASK = "ptbxl"
MODEL_NAMES = ("ptbxl-model01", "ptbxl-model02", "ptbxl-model03")
FS_HZ = 100.0
N_SAMPLES = round(RECORD_S * FS_HZ)
N_LEADS = len(LEADS)
# The leads as the API, the page and clinicians write them (PTB-XL's headers spell aVR "AVR"):
# messages about a served record name its leads so.
DISPLAY_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
N_FEATURES = len(FEATURE_COLUMNS)
N_CLASSES = len(SUPERCLASSES)

# Rates a served record may have: below 100 Hz the model's band is not there to recover;
# PTB-XL itself is 100 and 500 Hz, and devices rarely exceed 2 kHz.
MIN_FS_HZ, MAX_FS_HZ = FS_HZ, 2000.0
# Amplitude checks on served leads: a record whose amplitude says volts or microvolts
# (inference.signal.ecg_record_amplitude_problem) or a value above this is not in millivolts;
# a lead that moves less than this over 10 s is not connected.
MAX_ABS_MV = MAX_ECG_ABS_MV
MIN_LEAD_RANGE_MV = 0.01
# PTB-XL writes every age over 89 as 90 (de-identification), so the models never saw more.
MAX_TRAINED_AGE_YEARS = 90.0
# 0/1 features of the metadata, and the heart-axis deviations the loader produces.
BINARY_FEATURES = ("sex_female", "pacemaker", "device_cs")
HEART_AXIS_VALUES = (-2.0, -1.0, 0.0, 1.0, 2.0)


class MetadataNet(nn.Module):
    """Model01: metadata features (batch, N_FEATURES) -> five superclass logits."""

    def __init__(self, hidden: int = 32, dropout: float = 0.2) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(N_FEATURES, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, N_CLASSES),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def _conv_block(n_in: int, n_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(n_in, n_out, kernel_size=kernel, padding=kernel // 2),
        nn.BatchNorm1d(n_out),
        nn.ReLU(),
    )


class DualInputNet(nn.Module):
    """Model02 and Model03: ECG (batch, n_samples, 12) and metadata (batch, N_FEATURES) -> five
    logits.

    The ECG branch is four convolution blocks (pooling by 2 after the first three: 1000 ->
    125 steps, a receptive field of about 0.5 s at the last block) and a global average and
    max pool, so any record length works; the metadata branch is a small dense network.
    """

    def __init__(self, channels: int = 32, meta_hidden: int = 32, dropout: float = 0.3) -> None:
        super().__init__()
        self.ecg = nn.Sequential(
            _conv_block(N_LEADS, channels, 7),
            nn.MaxPool1d(2),
            _conv_block(channels, channels, 5),
            nn.MaxPool1d(2),
            _conv_block(channels, 2 * channels, 5),
            nn.MaxPool1d(2),
            _conv_block(2 * channels, 2 * channels, 3),
        )
        self.metadata = nn.Sequential(nn.Linear(N_FEATURES, meta_hidden), nn.ReLU())
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(4 * channels + meta_hidden, 64),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(64, N_CLASSES),
        )

    def forward(self, ecg: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        steps = self.ecg(ecg.transpose(1, 2))
        pooled = torch.cat([steps.mean(dim=2), steps.amax(dim=2)], dim=1)
        return self.head(torch.cat([pooled, self.metadata(features)], dim=1))


ARCHITECTURES = {"MetadataNet": MetadataNet, "DualInputNet": DualInputNet}


# --- Preprocessing, shared by training and serving -------------------------------------------


def lead_scales_mv(signals_mv: np.ndarray) -> np.ndarray:
    """Per-lead standard deviation (12,) of baseline-removed training signals (n, T, 12)."""
    centred = signals_mv - np.median(signals_mv, axis=1, keepdims=True)
    scales = centred.std(axis=(0, 1))
    return np.where(scales > 0, scales, 1.0).astype(np.float32)


def normalize_ecg(signals_mv: np.ndarray, scales_mv: np.ndarray) -> np.ndarray:
    """(n, T, 12) mV -> float32 model input: minus each record's per-lead median, divided by
    the training per-lead scale."""
    signals = np.asarray(signals_mv, dtype=np.float32)
    centred = signals - np.median(signals, axis=1, keepdims=True)
    return (centred / np.asarray(scales_mv, dtype=np.float32)).astype(np.float32)


def window_starts(n_samples: int, window_samples: int, stride_samples: int) -> list[int]:
    """Starts of the sliding windows that cover a record, the last one ending at its end."""
    if window_samples >= n_samples:
        return [0]
    starts = list(range(0, n_samples - window_samples + 1, stride_samples))
    if starts[-1] != n_samples - window_samples:
        starts.append(n_samples - window_samples)
    return starts


def predict_probabilities(
    model: nn.Module,
    features: np.ndarray,
    ecg: np.ndarray | None = None,
    window_samples: int = N_SAMPLES,
    stride_samples: int = N_SAMPLES,
    batch_size: int = 256,
) -> np.ndarray:
    """Sigmoid probabilities (n, 5) for prepared inputs: metadata features (n, N_FEATURES) and, for
    the dual-input models, normalized ECG (n, T, 12). Windows shorter than the record are slid
    over it and their probabilities averaged."""
    model.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            meta = torch.from_numpy(np.ascontiguousarray(features[start : start + batch_size]))
            if ecg is None:
                outputs.append(torch.sigmoid(model(meta)).numpy())
                continue
            batch = ecg[start : start + batch_size]
            windows = [
                torch.sigmoid(
                    model(
                        torch.from_numpy(np.ascontiguousarray(batch[:, s : s + window_samples])),
                        meta,
                    )
                ).numpy()
                for s in window_starts(batch.shape[1], window_samples, stride_samples)
            ]
            outputs.append(np.mean(windows, axis=0))
    if not outputs:
        return np.zeros((0, N_CLASSES), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32)


# --- Loading the shipped models ---------------------------------------------------------------


def scaler_from_card(card: dict) -> MetadataScaler:
    """The metadata transform of a card that ``load_model`` returned. Its layout is not
    checked again here: ``load_model`` checked it once when it read the card, and this runs
    on every request."""
    data = card["metadata_scaler"]
    return MetadataScaler(fill_values=data["fill_values"], means=data["means"], stds=data["stds"])


@lru_cache(maxsize=8)
def load_model(name: str, weights_dir: str = str(WEIGHTS_DIR)) -> tuple[nn.Module, dict]:
    """The network and model card of a shipped PTB-XL model (cached)."""
    cards = {card["name"]: card for card in list_models(Path(weights_dir), task=TASK)}
    if name not in cards:
        raise ValueError(f"no PTB-XL model {name!r} in {weights_dir}; have {sorted(cards)}")
    card = cards[name]
    # weights of another input layout would fail on a tensor shape; say which instead. The
    # only check of the layout: the card is cached with the network, and scaler_from_card
    # trusts it.
    check_feature_layout(card["metadata_scaler"], f"model card {name}")
    model = ARCHITECTURES[card["architecture"]](**card.get("architecture_args", {}))
    state = torch.load(Path(weights_dir) / card["weights"], map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    return model, card


@lru_cache(maxsize=16)
def best_model_name(with_ecg: bool, weights_dir: str = str(WEIGHTS_DIR)) -> str:
    """The shipped model to use: among those taking an ECG (or only metadata), the one with
    the highest validation macro ROC AUC in its card (validation, never test, picks).

    Cached per folder, as ``load_model`` is: the cards are read once, not per request. A
    process that installs new weights in the same folder calls ``clear_model_caches()``."""
    cards = [
        card
        for card in list_models(Path(weights_dir), task=TASK)
        if card["input"]["ecg"] == with_ecg
    ]
    if not cards:
        kind = "ECG + metadata" if with_ecg else "metadata-only"
        raise ValueError(f"no {kind} PTB-XL model is installed in {weights_dir}")
    best = max(cards, key=lambda card: (card["metrics"]["validation"]["macro_auc"], card["name"]))
    return best["name"]


def clear_model_caches() -> None:
    """Forget the cached networks, cards and choice of model (after new weights are written)."""
    load_model.cache_clear()
    best_model_name.cache_clear()


# --- Validation of served inputs --------------------------------------------------------------


def _number(value: object, name: str) -> float:
    if isinstance(value, bool | np.bool_):
        # true/false read naturally as 1/0 for a yes-or-no feature; for the others (an age of
        # true read as 1 year) they are a caller's mistake
        if name in BINARY_FEATURES:
            return float(value)
        raise ValueError(
            f"metadata {name} must be a number, got {str(value).lower()} (only "
            f"{', '.join(BINARY_FEATURES)} may be true or false)"
        )
    if isinstance(value, numbers.Real):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float range
            number = math.inf
        if math.isfinite(number):
            return number
    raise ValueError(f"metadata {name} must be a finite number, got {reprlib.repr(value)}")


def metadata_row(metadata: dict | None) -> tuple[np.ndarray, list[str]]:
    """Raw metadata (7,) in ``RAW_FEATURES`` order, NaN where not given, and the names given.

    Keys are ``RAW_FEATURES`` (age_years, sex_female, height_cm, weight_kg, pacemaker,
    device_cs, heart_axis); a missing key or None means unknown (imputed as in training).
    ``heart_axis`` is a deviation -2..2 or a PTB-XL code (LAD, ALAD, MID, RAD, ...). Values
    out of range raise ``ValueError`` (the training data treated them as entry errors).
    """
    row = np.full(len(RAW_FEATURES), np.nan)
    if metadata is None:
        return row, []
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be a mapping of feature names to values, got {metadata!r}")
    unknown = sorted(set(metadata) - set(RAW_FEATURES))
    if unknown:
        raise ValueError(
            f"unknown metadata {', '.join(map(str, unknown))}; expected {', '.join(RAW_FEATURES)}"
        )
    given = []
    for name, value in metadata.items():
        if value is None:
            continue
        if name == "heart_axis" and isinstance(value, str):
            code = value.strip().upper()
            if code not in HEART_AXIS_DEVIATION:
                raise ValueError(
                    f"metadata heart_axis {value!r} is not one of {', '.join(HEART_AXIS_DEVIATION)}"
                )
            number = HEART_AXIS_DEVIATION[code]
            if math.isnan(number):  # SAG: indeterminate, as unknown
                continue
        else:
            number = _number(value, name)
        if name in PLAUSIBLE_RANGES:
            low, high = PLAUSIBLE_RANGES[name]
            if not low <= number <= high:
                raise ValueError(f"metadata {name} {number:g} is outside {low:g}-{high:g}")
        if name == "age_years":
            number = min(number, MAX_TRAINED_AGE_YEARS)
        if name in BINARY_FEATURES and number not in (0.0, 1.0):
            raise ValueError(f"metadata {name} must be 0 or 1, got {value!r}")
        if name == "heart_axis" and number not in HEART_AXIS_VALUES:
            raise ValueError(f"metadata heart_axis must be -2, -1, 0, 1 or 2, got {value!r}")
        row[RAW_FEATURES.index(name)] = number
        given.append(name)
    return row, given


def length_tolerance_samples(fs_hz: float) -> int:
    """How many samples a served record may be off 10 s at ``fs_hz``: one sample of the
    models' 100 Hz (10 ms), at least one at the record's rate. A tolerance of one sample at
    any rate refused a 500 Hz record of 5002 samples (10.004 s), which reads as the same
    1000 samples at 100 Hz as one of 5000."""
    return max(1, math.floor(fs_hz / FS_HZ))


def prepare_leads(leads_mv: object, fs_hz: object) -> np.ndarray:
    """A served 12-lead record as (1000, 12) mV at 100 Hz, or ``ValueError`` saying why not.

    ``leads_mv`` is (n_samples, 12), time along axis 0, leads in PTB-XL order (I, II, III,
    aVR, aVL, aVF, V1-V6), 10 s long at ``fs_hz`` (100-2000 Hz; resampled to 100 Hz), give
    or take ``length_tolerance_samples`` (10 ms): the last sample is cut or repeated.
    """
    signal = validate_signal(leads_mv, name="leads")
    if signal.ndim != 2 or signal.shape[1] != N_LEADS:
        hint = ""
        if signal.ndim == 2 and signal.shape[0] == N_LEADS:
            hint = " (it looks like leads x samples: transpose it)"
        raise ValueError(
            f"leads must be (n_samples, {N_LEADS}) in the order {', '.join(DISPLAY_LEADS)}, "
            f"got shape {signal.shape}{hint}"
        )
    fs_hz = validate_fs(fs_hz, "fs_hz")
    if not MIN_FS_HZ <= fs_hz <= MAX_FS_HZ:
        raise ValueError(
            f"fs_hz {fs_hz:g} is outside {MIN_FS_HZ:g}-{MAX_FS_HZ:g} Hz: the models read 100 Hz"
        )
    expected = round(RECORD_S * fs_hz)
    tolerance = length_tolerance_samples(fs_hz)
    if abs(signal.shape[0] - expected) > tolerance:
        raise ValueError(
            f"leads hold {signal.shape[0]} samples = {signal.shape[0] / fs_hz:.2f} s at "
            f"{fs_hz:g} Hz; the models read {RECORD_S:g} s records ({expected} samples at "
            f"this rate, give or take {tolerance})"
        )
    # the unit first: a record in volts would otherwise read as twelve flat leads, and one in
    # microvolts as a value too large, neither naming the unit
    problem = ecg_record_amplitude_problem(signal, DISPLAY_LEADS)
    if problem is not None:
        raise ValueError(f"{problem}; leads must be in millivolts")
    largest = float(np.abs(signal).max())
    if largest > MAX_ABS_MV:
        raise ValueError(
            f"leads reach {largest:g}; they must be in millivolts (at most {MAX_ABS_MV:g} mV)"
        )
    flat = [
        lead
        for lead, span in zip(DISPLAY_LEADS, np.ptp(signal, axis=0), strict=True)
        if span < MIN_LEAD_RANGE_MV
    ]
    if flat:
        raise ValueError(f"lead {', '.join(flat)} is flat (missing or disconnected)")
    if fs_hz != FS_HZ:
        signal = resample(signal, fs_hz, FS_HZ)
    fitted = np.empty((N_SAMPLES, N_LEADS), dtype=np.float32)
    length = min(N_SAMPLES, signal.shape[0])
    fitted[:length] = signal[:length]
    fitted[length:] = signal[length - 1]  # a sample short after rounding: repeat the last
    return fitted


def predict(
    leads_mv: object | None,
    fs_hz: object | None = None,
    metadata: dict | None = None,
    weights_dir: str | Path = WEIGHTS_DIR,
) -> dict:
    """Superclass probabilities from a 10 s 12-lead record and/or patient metadata.

    With leads, the best ECG + metadata model (missing metadata is imputed as in training);
    without, the metadata-only model. Returns ``probabilities`` {superclass: p}, ``model``,
    ``mode`` ("ecg+metadata" or "metadata-only"), ``thresholds`` (chosen on validation),
    ``positive`` (classes at or above their threshold), ``imputed`` (features not given) and
    ``imputed_values`` ({feature: the raw value the model read instead}, from the card's
    training fill values). Age, height, weight and heart axis also set their ``*_missing``
    input, so the model reads "unknown"; sex, pacemaker and device have none, so for them
    ``imputed_values`` is the only place the substitution shows.
    Raises ``ValueError`` with a message fit for the user on any bad input.
    """
    weights_dir = str(weights_dir)
    raw, given = metadata_row(metadata)
    if leads_mv is None and not given:
        raise ValueError(
            "give a 12-lead record, metadata, or both: there is nothing to predict from"
        )
    ecg = prepare_leads(leads_mv, fs_hz) if leads_mv is not None else None
    name = best_model_name(ecg is not None, weights_dir)
    model, card = load_model(name, weights_dir)
    scaler = scaler_from_card(card)
    features = scaler.transform(raw[np.newaxis, :])
    prepared = None
    if ecg is not None:
        prepared = normalize_ecg(
            ecg[np.newaxis], np.array(card["ecg_normalization"]["lead_scales_mv"])
        )
    probabilities = predict_probabilities(
        model,
        features,
        prepared,
        window_samples=card["input"].get("window_samples", N_SAMPLES),
        stride_samples=card["input"].get("stride_samples", N_SAMPLES),
    )[0]
    thresholds = card["thresholds"]
    return {
        "probabilities": {
            superclass: float(p) for superclass, p in zip(SUPERCLASSES, probabilities, strict=True)
        },
        "model": name,
        "mode": "ecg+metadata" if ecg is not None else "metadata-only",
        "thresholds": thresholds,
        "positive": [
            superclass
            for superclass, p in zip(SUPERCLASSES, probabilities, strict=True)
            if p >= thresholds[superclass]
        ],
        "imputed": [feature for feature in RAW_FEATURES if feature not in given],
        "imputed_values": {
            feature: float(scaler.fill_values[feature])
            for feature in RAW_FEATURES
            if feature not in given
        },
    }


def read_card(name: str, weights_dir: str | Path = WEIGHTS_DIR) -> dict:
    """A PTB-XL model card as stored (for docs and tests)."""
    return json.loads((Path(weights_dir) / f"{name}.json").read_text(encoding="utf-8"))
