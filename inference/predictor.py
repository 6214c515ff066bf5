"""Serving: load each shipped window model once per process and classify signals with it.

    predictor = get_predictor()            # the default model (real-data when shipped)
    result = predictor.predict(signal_mv, fs=360.0)

A signal of any length from 1 s up is cut into 2-second windows (after resampling to 250 Hz);
each window gets a verdict, and the whole signal gets an overall one: arrhythmia when any
window is, with the highest window probability.
"""

import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from inference.models import WINDOW_CLASSES, WINDOW_FS_HZ, WINDOW_SAMPLES, SeedCNN, prepare_windows
from inference.registry import WEIGHTS_DIR, list_models
from inference.signal import resample, validate_fs, validate_signal

DEFAULT_MODEL = "window-cnn-mitdb"
FALLBACK_MODEL = "window-cnn-synthetic"
MIN_SIGNAL_S = 1.0  # shorter than this, a 2-s window would be mostly padding
# A trailing piece shorter than this is not analysed on its own (it would be mostly padding);
# pieces at least this long are edge-padded to a full window.
MIN_TAIL_S = 1.0

_lock = threading.Lock()
_predictors: dict[str, "WindowPredictor"] = {}


@dataclass
class WindowVerdict:
    start_s: float
    end_s: float
    label: str
    probabilities: dict[str, float]
    saliency: list[float] | None = None


class WindowPredictor:
    """A loaded window CNN. Thread-safe for inference (no state changes after loading)."""

    def __init__(self, card: dict) -> None:
        self.card = card
        self.name: str = card["name"]
        self.version: str = str(card["version"])
        self.classes: tuple[str, ...] = tuple(card.get("classes", WINDOW_CLASSES))
        model = SeedCNN(n_samples=WINDOW_SAMPLES, n_classes=len(self.classes))
        state = torch.load(WEIGHTS_DIR / card["weights"], map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        model.eval()
        self.model = model

    def probabilities(self, prepared: np.ndarray) -> np.ndarray:
        """Class probabilities (n_windows, n_classes) for windows already prepared."""
        with torch.inference_mode():
            logits = self.model(torch.from_numpy(np.ascontiguousarray(prepared)))
            return torch.softmax(logits, dim=1).numpy().astype(np.float64)

    def split(self, signal_mv: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
        """2-second windows at 250 Hz of a signal, and their start times in seconds."""
        signal = validate_signal(signal_mv, name="ecg", min_samples=1)
        if signal.ndim != 1:
            raise ValueError("ecg must be a single lead (a flat list of numbers)")
        fs = validate_fs(fs)
        if len(signal) < MIN_SIGNAL_S * fs:
            raise ValueError(
                f"ecg has {len(signal)} samples ({len(signal) / fs:.2f} s at {fs:g} Hz); "
                f"at least {MIN_SIGNAL_S:g} s ({int(np.ceil(MIN_SIGNAL_S * fs))} samples) is needed"
            )
        if fs != WINDOW_FS_HZ:
            signal = resample(signal, fs, WINDOW_FS_HZ)
        n_full = len(signal) // WINDOW_SAMPLES
        pieces = [signal[i * WINDOW_SAMPLES : (i + 1) * WINDOW_SAMPLES] for i in range(n_full)]
        starts = [i * WINDOW_SAMPLES for i in range(n_full)]
        tail = signal[n_full * WINDOW_SAMPLES :]
        if len(tail) >= MIN_TAIL_S * WINDOW_FS_HZ or n_full == 0:
            pieces.append(np.pad(tail, (0, WINDOW_SAMPLES - len(tail)), mode="edge"))
            starts.append(n_full * WINDOW_SAMPLES)
        return np.stack(pieces), np.asarray(starts, dtype=np.float64) / WINDOW_FS_HZ

    def predict(
        self, signal_mv: np.ndarray, fs: float = WINDOW_FS_HZ, explain: bool = False
    ) -> dict:
        """Verdicts per 2-second window and overall, with the time the model took.

        With ``explain``, each window also carries ``saliency``: 500 values in [0, 1] at
        250 Hz saying how much each sample drove its arrhythmia score (see ``saliency``).
        """
        started = time.perf_counter()
        windows, starts_s = self.split(signal_mv, fs)
        duration_s = len(signal_mv) / float(fs)
        prepared = prepare_windows(windows, WINDOW_FS_HZ)
        probabilities = self.probabilities(prepared)
        maps = self.saliency(prepared) if explain else [None] * len(prepared)
        verdicts = [
            WindowVerdict(
                start_s=round(float(start), 3),
                end_s=round(float(min(start + WINDOW_SAMPLES / WINDOW_FS_HZ, duration_s)), 3),
                label=self.classes[int(np.argmax(row))],
                probabilities={name: float(p) for name, p in zip(self.classes, row, strict=True)},
                saliency=None if saliency is None else np.round(saliency, 3).tolist(),
            )
            for start, row, saliency in zip(starts_s, probabilities, maps, strict=True)
        ]
        worst = int(np.argmax(probabilities[:, 1]))
        overall = probabilities[worst]
        return {
            "label": self.classes[int(np.argmax(overall))],
            "probabilities": {
                name: float(p) for name, p in zip(self.classes, overall, strict=True)
            },
            "windows": verdicts,
            "model": {"name": self.name, "version": self.version},
            "processing_ms": (time.perf_counter() - started) * 1000.0,
        }

    def saliency(self, prepared: np.ndarray) -> np.ndarray:
        """Which samples of each prepared window drove its arrhythmia score.

        Plain input gradient of the arrhythmia logit (Simonyan K, Vedaldi A, Zisserman A.
        Deep inside convolutional networks. ICLR workshop 2014), absolute value, smoothed
        over 40 ms and scaled to [0, 1] per window. Deterministic: the same window gives the
        same map on every run. Returns an array of the shape of ``prepared``.
        """
        inputs = torch.from_numpy(np.ascontiguousarray(prepared)).requires_grad_(True)
        # windows do not interact, so one backward pass of the summed logits gives each
        # window's own gradient
        self.model(inputs)[:, 1].sum().backward()
        gradient = inputs.grad.abs().numpy().astype(np.float64)
        width = max(1, round(0.04 * WINDOW_FS_HZ))
        kernel = np.ones(width) / width
        smooth = np.stack([np.convolve(row, kernel, mode="same") for row in gradient])
        top = smooth.max(axis=1, keepdims=True)
        return np.divide(smooth, top, out=np.zeros_like(smooth), where=top > 0)


def available_models() -> list[str]:
    """Names of the shipped 2-second window models (beat and rhythm models are not served here)."""
    return [card["name"] for card in list_models(task="window")]


def get_predictor(name: str | None = None) -> WindowPredictor:
    """The loaded model ``name`` (default: the real-data model, else the synthetic one).

    Loads each model once per process; later calls do no I/O. Raises ``LookupError`` naming
    the available models when ``name`` is not shipped.
    """
    key = name or "default"
    predictor = _predictors.get(key)
    if predictor is not None:
        return predictor
    with _lock:
        cards = {card["name"]: card for card in list_models(task="window")}
        resolved = name or (DEFAULT_MODEL if DEFAULT_MODEL in cards else FALLBACK_MODEL)
        if resolved not in cards:
            available = ", ".join(sorted(cards)) or "none"
            raise LookupError(f"unknown model {resolved!r}; available: {available}")
        if resolved not in _predictors:
            _predictors[resolved] = WindowPredictor(cards[resolved])
        _predictors[key] = _predictors[resolved]
        return _predictors[key]
