"""The storage format of ECG samples: little-endian int16, channels interleaved.

A chunk of ``n_samples`` frames from ``n_channels`` leads is stored as
``n_samples * n_channels`` int16 values, frame by frame (ch0, ch1, …, ch0, ch1, …): the same
layout as WFDB format 16 and as a device's ADC loop produces it. Two bytes per value keep a
30-minute 12-lead recording at 500 Hz near 21 MB.
"""

import numpy as np

INT16_MIN = -32768
INT16_MAX = 32767
# The gains (ADC units per mV) a recording can keep: the model's limits, a device chunk's and
# an upload's. Below 1e-3 a mV would be less than a thousandth of an ADC step.
MIN_GAIN_ADC_PER_MV = 1e-3
MAX_GAIN_ADC_PER_MV = 1e6
_DTYPE = np.dtype("<i2")


def encode_int16(samples: np.ndarray) -> bytes:
    """Pack ADC samples of shape (n_samples, n_channels) into interleaved int16 bytes.

    A 1-D array is taken as one channel. Values must be integers within int16 range;
    anything else raises ``ValueError`` rather than being clipped or rounded silently.
    """
    array = np.asarray(samples)
    if array.ndim == 1:
        array = array[:, np.newaxis]
    if array.ndim != 2:
        raise ValueError(f"samples must be 1-D or 2-D (n_samples, n_channels), got {array.ndim}-D")
    if array.size == 0:
        raise ValueError("samples are empty")
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)):
            raise ValueError("samples contain NaN or infinite values")
        if not np.all(array == np.round(array)):
            raise ValueError("samples must be integer ADC units")
    low, high = array.min(), array.max()
    if low < INT16_MIN or high > INT16_MAX:
        raise ValueError(
            f"samples out of int16 range [{INT16_MIN}, {INT16_MAX}]: min {low}, max {high}"
        )
    return np.ascontiguousarray(array, dtype=_DTYPE).tobytes()


def decode_int16(data: bytes, n_channels: int) -> np.ndarray:
    """Unpack interleaved int16 bytes into an int16 array of shape (n_samples, n_channels)."""
    if n_channels < 1:
        raise ValueError(f"n_channels must be >= 1, got {n_channels}")
    frame_bytes = _DTYPE.itemsize * n_channels
    if len(data) % frame_bytes:
        raise ValueError(
            f"{len(data)} bytes is not a whole number of {n_channels}-channel int16 frames"
        )
    return np.frombuffer(bytes(data), dtype=_DTYPE).reshape(-1, n_channels).copy()
