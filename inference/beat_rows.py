"""Isolated beat rows: the seeds' one-beat-per-row layouts, and a morphology-only classifier.

Users upload CSV files that hold one heartbeat per row and no rhythm context. Two layouts are
supported (see ``docs/models/beat-rows.md`` for why these two):

``"kaggle187"``
    187 values, the layout of the Kaggle "ECG Heartbeat Categorization" data set (Kachuee M,
    Fazeli S, Sarrafzadeh M. ECG heartbeat classification: a deep transferable
    representation. IEEE ICHI 2018): the signal resampled to 125 Hz and cut into 10-s
    windows, each window min-max normalized to 0..1, each beat taken from its R peak for
    1.2 x the window's median RR interval and zero-padded to 187 samples (1.496 s).
``"window216"``
    216 values, 0.6 s at 360 Hz in millivolts: 90 samples (250 ms) before the R peak and
    126 samples (350 ms) after it, the R peak at index 90.

Labels, when a file has them, are the AAMI EC57 classes as 0-4 = N, S, V, F, Q.

Without the RR intervals around a beat, an atrial premature beat (S) has nearly the same
morphology as a normal one: the classifier here sees the row only, and its S class is weak
(figures in the model cards). Records analysed as continuous signals go through
``inference.analysis`` instead, which uses rhythm features.

    rows = rows_from_record(ecg_mv, fs, r_peaks, "window216")   # (n_beats, 216)
    probabilities = classify_rows(rows, "window216")            # (n_beats, 5), rows sum to 1
    explanation = row_saliency(rows, "window216", row_index=0)  # gradient x input, 0..1
"""

import json
import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from inference.aami import AAMI_CLASSES
from inference.beats import validate_r_peaks
from inference.registry import WEIGHTS_DIR
from inference.signal import resample, resample_indices, validate_fs, validate_signal


@dataclass(frozen=True)
class RowLayout:
    """How one beat is laid out in a row.

    ``n_samples`` values at ``fs_hz``; the R peak is at index ``r_index``; ``units`` says
    what the values are.
    """

    name: str
    n_samples: int
    fs_hz: float
    r_index: int
    units: str
    description: str


ROW_LAYOUTS: dict[str, RowLayout] = {
    "kaggle187": RowLayout(
        name="kaggle187",
        n_samples=187,
        fs_hz=125.0,
        r_index=0,
        units="unitless 0..1 (min-max over the beat's 10-s window), zero-padded",
        description=(
            "Kachuee et al. 2018 / Kaggle: 125 Hz, from the R peak for 1.2 x the 10-s "
            "window's median RR, zero-padded to 187 samples"
        ),
    ),
    "window216": RowLayout(
        name="window216",
        n_samples=216,
        fs_hz=360.0,
        r_index=90,
        units="mV",
        description="0.6 s at 360 Hz: 90 samples before the R peak, 126 after, in mV",
    ),
}

# Kachuee et al. 2018, steps 1 and 6: 10-s windows, beats of 1.2 x the median RR.
KAGGLE_WINDOW_S = 10.0
KAGGLE_BEAT_RR_FACTOR = 1.2

# Rows of window216 are scaled by their largest deviation from the median, but never by less
# than this: a flat row (lead off) would otherwise turn its noise into a full-scale beat.
MIN_ROW_AMPLITUDE_MV = 0.05

# Saliency is smoothed over this many seconds so that one noisy gradient sample does not
# dominate the map; 24 ms is narrower than a QRS complex, so the map still localizes it.
SALIENCY_SMOOTHING_S = 0.024


def _layout(layout: object) -> RowLayout:
    if not isinstance(layout, str) or layout not in ROW_LAYOUTS:
        raise ValueError(
            f"unknown beat-row layout {layout!r}; valid layouts: {', '.join(ROW_LAYOUTS)}"
        )
    return ROW_LAYOUTS[layout]


def layout_for_width(n_columns: int) -> tuple[str, bool]:
    """The layout of a table with ``n_columns`` columns, and whether its last is a label.

    187 or 216 columns are rows without labels; 188 or 217 carry a label in the last column
    (as the Kaggle CSV files do). Raises ``ValueError`` for any other width.
    """
    for name, layout in ROW_LAYOUTS.items():
        if n_columns == layout.n_samples:
            return name, False
        if n_columns == layout.n_samples + 1:
            return name, True
    widths = ", ".join(
        f"{layout.n_samples} or {layout.n_samples + 1} ({name})"
        for name, layout in ROW_LAYOUTS.items()
    )
    raise ValueError(
        f"a beat row has {n_columns} values; expected {widths}, the last one being an "
        "optional label"
    )


# --- Building rows from a record ----------------------------------------------------------


def rows_from_record(ecg_mv: np.ndarray, fs: float, r_peaks: np.ndarray, layout: str) -> np.ndarray:
    """One row per beat of a record, built the way the seed's data set was built.

    Parameters
    ----------
    ecg_mv : array (n_samples,), one lead in millivolts
    fs : sampling rate of ``ecg_mv`` in Hz; the signal is resampled (polyphase) to the
        layout's rate when it differs
    r_peaks : sample indices (at ``fs``) of the R peaks, increasing, within the signal
    layout : ``"kaggle187"`` or ``"window216"`` (see ``ROW_LAYOUTS``)

    Returns
    -------
    float64 array (n_beats, layout length), one row per R peak in the order given; an empty
    (0, layout length) array when there are no R peaks.

    Notes
    -----
    ``kaggle187`` follows Kachuee et al. (2018) with one change: the R peaks are the ones
    given (reference or detected beats) instead of their 0.9-threshold peak picking, which
    misses beats whose R wave is smaller than 90 % of the window's largest. A beat belongs to
    the 10-s window holding its R peak and is scaled with that window's minimum and maximum;
    where it runs past the window's end its values are clipped to 0..1. A window with fewer
    than two beats uses the record's median RR (1 s for a record of one beat). Beats longer
    than 187 samples are truncated.

    ``window216`` rows that reach past either end of the signal repeat the signal's first or
    last value there, so every R peak gets a row.
    """
    spec = _layout(layout)
    signal = validate_signal(ecg_mv, name="ecg", min_samples=2)
    if signal.ndim != 1:
        raise ValueError("ecg must be a single lead (a 1-D array of millivolts)")
    fs = validate_fs(fs)
    peaks = validate_r_peaks(r_peaks, len(signal))
    if fs != spec.fs_hz:
        n_out = round(len(signal) * spec.fs_hz / fs)
        signal = resample(signal, fs, spec.fs_hz)
        peaks = np.minimum(resample_indices(peaks, fs, spec.fs_hz), n_out - 1)
    if len(peaks) == 0:
        return np.zeros((0, spec.n_samples))
    if spec.name == "kaggle187":
        return _kaggle_rows(signal, peaks, spec)
    return _window_rows(signal, peaks, spec)


def _kaggle_rows(signal: np.ndarray, peaks: np.ndarray, spec: RowLayout) -> np.ndarray:
    window_len = round(KAGGLE_WINDOW_S * spec.fs_hz)
    record_rr = float(np.median(np.diff(peaks))) if len(peaks) > 1 else spec.fs_hz
    rows = np.zeros((len(peaks), spec.n_samples))
    window_of_beat = peaks // window_len
    for window in np.unique(window_of_beat):
        start = int(window) * window_len
        values = signal[start : start + window_len]
        low, span = values.min(), values.max() - values.min()
        beats = np.flatnonzero(window_of_beat == window)
        rr = float(np.median(np.diff(peaks[beats]))) if len(beats) > 1 else record_rr
        length = min(round(KAGGLE_BEAT_RR_FACTOR * rr), spec.n_samples)
        for beat in beats:
            piece = signal[peaks[beat] : peaks[beat] + length]
            # a flat window (disconnected lead) has no shape to scale: its rows stay zero
            if span > 0:
                rows[beat, : len(piece)] = np.clip((piece - low) / span, 0.0, 1.0)
    return rows


def _window_rows(signal: np.ndarray, peaks: np.ndarray, spec: RowLayout) -> np.ndarray:
    after = spec.n_samples - spec.r_index
    padded = np.pad(signal, (spec.r_index, after), mode="edge")
    # padded[i] is signal[i - r_index], so a row starting at padded[r] starts r_index
    # samples before the R peak r
    return padded[peaks[:, np.newaxis] + np.arange(spec.n_samples)]


# --- The model ----------------------------------------------------------------------------


class BeatRowCNN(nn.Module):
    """A small 1-D CNN over one beat row: three convolution blocks, then two dense layers.

    Conv(1->16, 7) -> ReLU -> MaxPool 2 -> Conv(16->32, 5) -> ReLU -> MaxPool 2 ->
    Conv(32->32, 5) -> ReLU -> average pool to 12 steps -> FC 64 -> ReLU -> dropout -> FC 5.
    Convolutions are padded ("same") and the last pool keeps 12 positions, so the same code
    serves both layouts and the dense layers still know where in the row a wave is (the R
    peak sits at a fixed index in each layout).
    """

    def __init__(self, n_classes: int = len(AAMI_CLASSES), dropout: float = 0.3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 16, kernel_size=7, padding=3),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(16, 32, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(32, 32, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(12),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 12, 64),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(64, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of shape (batch, n_samples) or (batch, 1, n_samples)."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.classifier(self.features(x))


def validate_rows(rows: object, layout: str) -> np.ndarray:
    """Check beat rows against a layout and return them as a float64 (n_rows, length) array.

    A single row may be given as a 1-D array. Raises ``ValueError`` naming the problem, and
    the row (counted from 0) when one row is at fault: not numbers, no rows, the wrong
    number of values for the layout, NaN or infinity.
    """
    spec = _layout(layout)
    try:
        array = np.asarray(rows)
    except ValueError:  # numpy refuses ragged nested lists
        array = None
    if array is None or array.dtype.kind == "O":
        # ragged lists: find the first row of the wrong length, to name it
        for index, row in enumerate(rows):
            length = np.size(row)
            if length != spec.n_samples:
                raise ValueError(
                    f"row {index} has {length} values; layout {spec.name} needs {spec.n_samples}"
                ) from None
        raise ValueError("rows must contain only numbers")
    if array.ndim == 1 and array.size:
        array = array[np.newaxis, :]
    if array.size == 0:
        raise ValueError(f"no beat rows given; layout {spec.name} needs rows of {spec.n_samples}")
    if array.ndim != 2:
        raise ValueError(f"rows must be a 2-D array (n_rows, {spec.n_samples}), got {array.ndim}-D")
    if array.shape[1] != spec.n_samples:
        raise ValueError(
            f"rows have {array.shape[1]} values each; layout {spec.name} needs {spec.n_samples}"
        )
    if array.dtype.kind not in "biuf":
        raise ValueError(f"rows must contain only numbers, got {array.dtype}")
    array = array.astype(np.float64, copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        row, column = np.unravel_index(int(np.argmin(finite)), array.shape)
        value = array[row, column]
        what = "NaN" if np.isnan(value) else ("inf" if value > 0 else "-inf")
        raise ValueError(f"row {row} contains {what} at value {column}")
    return array


def prepare_rows(rows: np.ndarray, layout: str) -> np.ndarray:
    """Model input from validated rows: float32 (n_rows, length).

    ``window216`` rows are in mV with whatever baseline and gain the recording had: the row's
    median is subtracted (baseline) and the row divided by its largest absolute value (at
    least ``MIN_ROW_AMPLITUDE_MV``, so that a flat row is not blown up into noise). Between
    patients, QRS amplitude differs more than between one patient's normal and ectopic
    beats; on the held-out DS1 patients the scaled rows classified better (see
    ``docs/models/beat-rows.md``). ``kaggle187`` rows are already scaled 0..1 by their
    layout and go in as they are.
    """
    array = validate_rows(rows, layout)
    if layout == "window216":
        array = array - np.median(array, axis=1, keepdims=True)
        amplitude = np.maximum(np.abs(array).max(axis=1, keepdims=True), MIN_ROW_AMPLITUDE_MV)
        array = array / amplitude
    return np.ascontiguousarray(array, dtype=np.float32)


# --- Serving ------------------------------------------------------------------------------

_lock = threading.Lock()
_models: dict[str, tuple[BeatRowCNN, dict]] = {}


def model_name(layout: str) -> str:
    """The shipped model's name for a layout: ``beat-rows-<layout>``."""
    return f"beat-rows-{_layout(layout).name}"


def load_model(layout: str) -> tuple[BeatRowCNN, dict]:
    """The trained model for ``layout`` and its card, loaded once per process.

    Raises ``FileNotFoundError`` naming the training command when the weights are not there.
    """
    name = model_name(layout)
    loaded = _models.get(name)
    if loaded is not None:
        return loaded
    with _lock:
        if name not in _models:
            card_path = WEIGHTS_DIR / f"{name}.json"
            if not card_path.is_file():
                raise FileNotFoundError(
                    f"model {name} is not shipped ({card_path} is missing); train it with "
                    f"`python -m inference.beat_rows_training --layout {layout}`"
                )
            card = json.loads(card_path.read_text())
            model = BeatRowCNN(n_classes=len(card["classes"]))
            state = torch.load(WEIGHTS_DIR / card["weights"], map_location="cpu", weights_only=True)
            model.load_state_dict(state)
            model.eval()
            _models[name] = (model, card)
        return _models[name]


def classify_rows(rows: np.ndarray, layout: str) -> np.ndarray:
    """AAMI class probabilities of isolated beat rows.

    Parameters
    ----------
    rows : array (n_rows, layout length) or one row (layout length,), in the layout's units
    layout : ``"kaggle187"`` or ``"window216"``

    Returns
    -------
    float64 array (n_rows, 5): probabilities of N, S, V, F, Q (``inference.aami``); each
    row sums to 1.
    """
    prepared = prepare_rows(rows, layout)
    model, _ = load_model(layout)
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(prepared), 4096):
            logits = model(torch.from_numpy(prepared[start : start + 4096]))
            outputs.append(torch.softmax(logits, dim=1).numpy().astype(np.float64))
    return np.concatenate(outputs)


def row_saliency(rows: np.ndarray, layout: str, row_index: int) -> dict:
    """Which samples of one row drove its classification.

    Gradient x input (Shrikumar A, Greenside P, Shcherbina A, Kundaje A. Not just a black
    box: learning important features through propagating activation differences. arXiv
    1605.01713, 2016) of the predicted class's logit with respect to the prepared row,
    absolute value, smoothed over 24 ms and scaled to 0..1. Deterministic: the model runs in
    evaluation mode on one row, so the same row gives the same map on every run.

    Returns
    -------
    dict with ``start`` (0: the map covers the whole row), ``fs`` (the layout's Hz),
    ``r_index``, ``values`` (one number in 0..1 per sample of the row), ``label`` (the
    predicted AAMI class) and ``probability`` (its probability).
    """
    spec = _layout(layout)
    prepared = prepare_rows(rows, layout)
    if isinstance(row_index, bool) or not isinstance(row_index, int | np.integer):
        raise ValueError(f"row_index must be a whole number, got {row_index!r}")
    if not 0 <= row_index < len(prepared):
        raise ValueError(
            f"row_index {row_index} is out of range: there are {len(prepared)} rows "
            f"(0 to {len(prepared) - 1})"
        )
    model, _ = load_model(layout)
    inputs = torch.from_numpy(prepared[row_index : row_index + 1].copy()).requires_grad_(True)
    logits = model(inputs)[0]
    probabilities = torch.softmax(logits.detach(), dim=0).numpy()
    predicted = int(np.argmax(probabilities))
    logits[predicted].backward()
    contribution = (inputs.grad[0] * inputs.detach()[0]).abs().numpy().astype(np.float64)
    width = max(1, round(SALIENCY_SMOOTHING_S * spec.fs_hz))
    smooth = np.convolve(contribution, np.ones(width) / width, mode="same")
    top = smooth.max()
    values = smooth / top if top > 0 else np.zeros_like(smooth)
    return {
        "start": 0,
        "fs": spec.fs_hz,
        "r_index": spec.r_index,
        "values": np.round(values, 4).tolist(),
        "label": AAMI_CLASSES[predicted],
        "probability": float(probabilities[predicted]),
    }
