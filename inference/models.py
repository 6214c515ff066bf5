"""PyTorch models and the preprocessing that belongs to each.

The seed's 2-second window CNN ("CardioSpike"): 500 samples of lead II at 250 Hz, min-max
normalized, through Conv1 (32 filters, kernel 7) → ReLU → MaxPool → Conv2 (64 filters,
kernel 5) → ReLU → MaxPool → FC 128 → FC 2, softmax over (normal, arrhythmia).

The seed does not say how convolutions pad or how far the pools reduce; we take the library
defaults, which its description implies: no padding ("valid") and pools of 2. That gives
500 → 494 → 247 → 243 → 121 time steps, 64 × 121 = 7744 features into FC 128 and
1,002,178 parameters. A ReLU follows FC 128 (a hidden layer without one would collapse
into the output layer).
"""

import numpy as np
import torch
from torch import nn

from inference.signal import bandpass, fit_length, minmax_normalize, resample

WINDOW_FS_HZ = 250.0
WINDOW_SAMPLES = 500
WINDOW_CLASSES = ("normal", "arrhythmia")

# Band-pass before min-max: without it, baseline wander and high-frequency noise set the
# min and max of a real-ECG window instead of the QRS complex. Applied per window, the same
# way in training and serving, so a served window is processed exactly like a trained one.
BANDPASS_HZ = (0.5, 40.0)


class SeedCNN(nn.Module):
    def __init__(self, n_samples: int = WINDOW_SAMPLES, n_classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 32, kernel_size=7),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(32, 64, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool1d(2),
        )
        n_steps = ((n_samples - 6) // 2 - 4) // 2
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * n_steps, 128),
            nn.ReLU(),
            nn.Linear(128, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of shape (batch, 1, n_samples) or (batch, n_samples)."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.classifier(self.features(x))


def prepare_windows(windows: np.ndarray, fs: float = WINDOW_FS_HZ) -> np.ndarray:
    """Model input from raw windows in mV: resample to 250 Hz, fit to 500 samples
    (edge-padded at the end, centre-cropped), band-pass 0.5-40 Hz, min-max to [0, 1].

    Parameters
    ----------
    windows : array (n_windows, n_samples) or (n_samples,), millivolts
    fs : sampling rate of ``windows`` in Hz

    Returns
    -------
    float32 array (n_windows, 500)
    """
    array = np.asarray(windows, dtype=np.float64)
    if array.ndim == 1:
        array = array[np.newaxis, :]
    if array.ndim != 2:
        raise ValueError(f"windows must be 1-D or 2-D (n_windows, n_samples), got {array.ndim}-D")
    # The toolkit works along axis 0 on (n_samples, n_channels) arrays: treating each window
    # as a channel processes a whole batch in one call per step.
    columns = array.T
    if fs != WINDOW_FS_HZ:
        columns = resample(columns, fs, WINDOW_FS_HZ)
    columns = fit_length(columns, WINDOW_SAMPLES, pad="edge", crop="center")
    columns = bandpass(columns, WINDOW_FS_HZ, *BANDPASS_HZ)
    return np.ascontiguousarray(minmax_normalize(columns).T, dtype=np.float32)


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
