"""ECG signal toolkit: validation, resampling, filtering, normalization and windowing.

Every function is pure: it takes numpy arrays and returns new ones, never modifying its input.
Signals are 1-D arrays of shape ``(n_samples,)`` or 2-D arrays of shape
``(n_samples, n_channels)``; time runs along axis 0 and every channel is processed alike.
Sampling rates are passed explicitly as ``fs`` in Hz. Amplitudes keep the unit of the input
(millivolts throughout CardioSpike); filters are linear, so they do not care.

Bad input raises ``ValueError`` with a message that names the argument and the problem
(``"signal contains NaN at sample 17"``), so that the API, uploads and the CLI can pass it on
to a user unchanged.

References
----------
Crochiere RE, Rabiner LR. Multirate Digital Signal Processing. Prentice-Hall (1983):
    polyphase resampling.
Butterworth S. On the theory of filter amplifiers. Wireless Engineer 7:536-541 (1930).
Oppenheim AV, Schafer RW. Discrete-Time Signal Processing, 3rd ed. Prentice-Hall (2010):
    zero-phase forward-backward filtering.
Orfanidis SJ. Introduction to Signal Processing. Prentice-Hall (1996): second-order IIR notch.
de Chazal P, O'Dwyer M, Reilly RB. Automatic classification of heartbeats using ECG
    morphology and heartbeat interval features. IEEE Trans Biomed Eng 51(7):1196-1206 (2004):
    median-filter baseline removal.
Kligfield P, et al. Recommendations for the standardization and interpretation of the
    electrocardiogram, part I. Circulation 115(10):1306-1324 (2007): ECG filter bandwidths.
"""

import math
import numbers
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import ndimage
from scipy import signal as sps

__all__ = [
    "bandpass",
    "ecg_amplitude_mv",
    "ecg_amplitude_problem",
    "ecg_record_amplitude_problem",
    "fit_length",
    "minmax_normalize",
    "notch",
    "remove_baseline",
    "resample",
    "resample_indices",
    "sliding_windows",
    "validate_fs",
    "validate_signal",
]

# No sample of an ECG in millivolts reaches this. Real records reach 30.6 mV (nstdb 118e_6,
# record 118 with noise at -6 dB SNR; mitdb 5.12 mV, the ADC's limit; vfdb 9.2; PTB-XL subset
# 11.1), and the amplitude check below accepts amplitudes up to 50 mV, whose peaks may be
# twice that: 100 mV refuses neither, while a value such as 1e10 (ADC counts, a header read
# as data) is refused naming it before it can set an int16 gain that loses the signal (at
# 100 mV, 320 ADC units per mV: 3 uV steps). Volts and microvolts are the amplitude check's
# to name. The served diagnosis, /predict, signal uploads and WFDB uploads' analysed lead
# all apply it (docs/upload.md, "Signal amplitude").
MAX_ECG_ABS_MV = 100.0


def first_beyond_ecg_range(values) -> int | None:
    """Index of the first value beyond +-``MAX_ECG_ABS_MV`` (so not millivolts), or None."""
    beyond = np.flatnonzero(np.abs(np.asarray(values, dtype=np.float64)) > MAX_ECG_ABS_MV)
    return int(beyond[0]) if len(beyond) else None


# The size of a surface ECG in millivolts, to catch a signal in the wrong unit before it is
# analysed: in volts a QRS of 0.001 is under the QRS detector's slope floor, so no beat is
# found and the whole record reads as one pause (docs/upload.md, "Signal amplitude").
# The amplitude is the 99th percentile of |x - median(x)|: the size of the QRS complexes,
# unmoved by a rare artefact, and still the ECG's size when most of a record is flat (a VF or
# asystole stretch). Over every channel of the 48 mitdb records, nstdb, vfdb and 500 PTB-XL
# records it is 0.080 mV (PTB-XL aVL) to 20.8 mV (nstdb 118e_6); the analysed leads 0.17 to
# 20.8 mV. In volts those records would measure 0.00008 to 0.008; in microvolts 80 to 20,800.
ECG_AMPLITUDE_PERCENTILE = 99.0
MIN_ECG_AMPLITUDE_MV = 0.02
MAX_ECG_AMPLITUDE_MV = 50.0
# A deviation this large somewhere in the record is ECG-sized, though the amplitude is under
# MIN_ECG_AMPLITUDE_MV: a record flat for over 99 % of its length (a lead off, asystole) with
# some signal, not a record in volts (whose largest artefact stays near 0.01).
MIN_ECG_PEAK_MV = 0.1


def ecg_amplitude_mv(values) -> float:
    """The robust amplitude of one lead: the 99th percentile of ``|x - median(x)|``."""
    signal = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # inf or NaN near the float limit
        deviation = np.abs(signal - np.median(signal))
        return float(np.percentile(deviation, ECG_AMPLITUDE_PERCENTILE))


def ecg_amplitude_problem(values, what: str = "the signal") -> str | None:
    """Why one lead in "millivolts" cannot be an ECG in millivolts, or None when it can be.

    Refused: an amplitude (:func:`ecg_amplitude_mv`) under ``MIN_ECG_AMPLITUDE_MV`` with no
    deviation anywhere of ``MIN_ECG_PEAK_MV`` (volts, or a lead with no signal but noise), or
    over ``MAX_ECG_AMPLITUDE_MV`` (microvolts or ADC counts). A constant signal (a flat lead)
    and a mostly flat one with some ECG-sized signal pass: they may be real, and the analysis
    says that it found no beats and why. ``what`` names the lead in the message.
    """
    signal = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        deviation = np.abs(signal - np.median(signal))
        peak_mv = float(deviation.max())
        amplitude_mv = float(np.percentile(deviation, ECG_AMPLITUDE_PERCENTILE))
    if not (math.isfinite(peak_mv) and math.isfinite(amplitude_mv)):
        # values near the float limit overflow these sums: no unit explains them, and the
        # callers' sample limit (MAX_ECG_ABS_MV) names the first
        return None
    measure = (
        f"{what}'s amplitude (the {ECG_AMPLITUDE_PERCENTILE:g}th percentile of |x - median|) "
        f"is {amplitude_mv:.3g} mV"
    )
    if amplitude_mv > MAX_ECG_AMPLITUDE_MV:
        return (
            f"{measure}, above the {MAX_ECG_AMPLITUDE_MV:g} mV no surface ECG reaches: it looks "
            f"like microvolts ({amplitude_mv / 1000:.3g} mV if so) or raw ADC counts"
        )
    if peak_mv != 0.0 and amplitude_mv < MIN_ECG_AMPLITUDE_MV and peak_mv < MIN_ECG_PEAK_MV:
        return (
            f"{measure}, under the {MIN_ECG_AMPLITUDE_MV:g} mV of any surface ECG in "
            f"millivolts, and no sample is {MIN_ECG_PEAK_MV:g} mV from the median: it looks like "
            f"volts ({amplitude_mv * 1000:.3g} mV if so), or a lead that carries no signal"
        )
    return None


def ecg_record_amplitude_problem(leads_mv, lead_names) -> str | None:
    """Why a record of several leads in one unit cannot be in millivolts, or None.

    ``leads_mv`` is (n_samples, n_leads). A wrong unit scales every lead alike, so the
    record is judged by its largest lead (:func:`ecg_amplitude_mv`): refused, with
    :func:`ecg_amplitude_problem`'s message for that lead, when it is over
    ``MAX_ECG_AMPLITUDE_MV`` (microvolts, ADC counts) or when even it is under
    ``MIN_ECG_AMPLITUDE_MV`` and looks like volts. A small lead beside one of ECG size is a
    lead that was off, not a unit: it passes, as an upload's does (the caller's flat-lead
    check still applies).
    """
    leads = np.asarray(leads_mv, dtype=np.float64)
    amplitudes = [ecg_amplitude_mv(leads[:, lead]) for lead in range(leads.shape[1])]
    largest = int(np.argmax(amplitudes))
    if MIN_ECG_AMPLITUDE_MV <= amplitudes[largest] <= MAX_ECG_AMPLITUDE_MV:
        return None
    return ecg_amplitude_problem(leads[:, largest], f"lead {lead_names[largest]}")


# Largest denominator of the rational approximation of fs_out / fs_in. At 10,000 the ratio
# of rates with one decimal (257.3 Hz) is exact, others are off by far less than a crystal's
# 20-50 ppm, and the anti-aliasing filter (20 * max(up, down) + 1 taps) designs in ms.
RESAMPLE_MAX_DENOMINATOR = 10_000
# Beyond this, the polyphase filter would need hundreds of thousands of taps.
_RESAMPLE_MAX_FACTOR = 100_000

# Below 3 samples there is nothing a forward-backward IIR filter can sensibly do.
MIN_FILTER_SAMPLES = 3
_HIGHPASS_ORDER = 2

# de Chazal et al. (2004): a 200 ms median removes QRS complexes and P waves, the 600 ms
# median that follows removes T waves, leaving the baseline.
_MEDIAN_WINDOWS_S = (0.2, 0.6)

BASELINE_METHODS = ("highpass", "median")
PAD_POLICIES = ("edge", "zeros", "reflect")
CROP_POLICIES = ("center", "start", "end")
TAIL_POLICIES = ("drop", "pad")

_KIND_NAMES = {"U": "text", "S": "bytes", "M": "dates", "m": "time spans", "V": "records"}


# --- Validation ---------------------------------------------------------------------------


def validate_signal(x: object, name: str = "signal", min_samples: int = 1) -> np.ndarray:
    """Check a signal at the boundary and return it as a float64 array.

    Parameters
    ----------
    x : array-like, shape (n_samples,) or (n_samples, n_channels)
        The signal; any unit (mV in CardioSpike). Time runs along axis 0.
    name : str
        What to call the signal in error messages (``"ecg"``, ``"window"``).
    min_samples : int
        Fewest samples (rows) accepted.

    Returns
    -------
    np.ndarray of float64, same shape as ``x``. It may share memory with ``x`` when ``x``
    already is a float64 array; callers must not write into it.

    Raises
    ------
    ValueError
        When ``x`` is not numeric (text, None, complex numbers, ragged rows), is empty, has
        fewer than ``min_samples`` samples, is not 1-D or 2-D, or holds NaN or infinity (the
        message names the first such sample, and its channel for 2-D signals).
    """
    min_samples = _positive_int(min_samples, "min_samples")
    try:
        array = np.asarray(x)
    except ValueError:  # numpy refuses ragged nested lists
        raise ValueError(
            f"{name} must be a rectangular array of numbers (every row the same length)"
        ) from None
    if array.dtype.kind == "O":
        # numpy would quietly turn None (a JSON null) into NaN; name it for what it is.
        missing = np.equal(array, None)
        if missing.any():
            position = np.unravel_index(int(np.argmax(missing)), array.shape)
            raise ValueError(f"{name} has a missing value (None) at sample {position[0]}")
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must contain only numbers") from None
    if array.dtype.kind == "c":
        raise ValueError(f"{name} must be real-valued, got complex numbers")
    if array.dtype.kind not in "biuf":
        kind = _KIND_NAMES.get(array.dtype.kind, str(array.dtype))
        raise ValueError(f"{name} must contain only numbers, got {kind}")
    if array.ndim not in (1, 2):
        shape = "a single number" if array.ndim == 0 else f"a {array.ndim}-D array {array.shape}"
        raise ValueError(
            f"{name} must be 1-D (n_samples,) or 2-D (n_samples, n_channels), got {shape}"
        )
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); it needs at least one sample")
    if array.shape[0] < min_samples:
        raise ValueError(f"{name} has {array.shape[0]} samples; at least {min_samples} are needed")
    array = array.astype(np.float64, copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        position = np.unravel_index(int(np.argmin(finite)), array.shape)
        value = array[position]
        what = "NaN" if np.isnan(value) else ("inf" if value > 0 else "-inf")
        where = f"sample {position[0]}"
        if array.ndim == 2:
            where += f", channel {position[1]}"
        raise ValueError(f"{name} contains {what} at {where}")
    return array


def validate_fs(fs: object, name: str = "fs") -> float:
    """Check a sampling rate and return it as a float (Hz).

    Raises
    ------
    ValueError
        Unless ``fs`` is a real number, finite and above zero. Text such as ``"250"`` and
        booleans are refused rather than guessed at.
    """
    return _positive_finite(fs, name, what="a positive finite number of Hz")


def _positive_finite(value: object, name: str, what: str = "a positive finite number") -> float:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be {what}, got {number:g}")
    return number


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive whole number, got {value}")
    return int(value)


def _choice(value: object, name: str, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, valid))}; got {value!r}")
    return value


def _cutoff(value: object, name: str, fs: float) -> float:
    hz = _positive_finite(value, name, what="a positive finite frequency in Hz")
    if hz >= fs / 2:
        raise ValueError(
            f"{name} = {hz:g} Hz must be below the Nyquist frequency fs/2 = {fs / 2:g} Hz"
        )
    return hz


# --- Resampling ---------------------------------------------------------------------------


def resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Change a signal's sampling rate by polyphase filtering (Crochiere & Rabiner 1983).

    The rate ratio ``fs_out / fs_in`` is written as a fraction ``up / down``: exact for rates
    such as 360 -> 250 (25/36) or a device's 257.3 -> 250 (2500/2573); otherwise the nearest
    fraction with ``down`` <= 10,000, off by at most 1 / (``down`` * 10,000). The
    signal is upsampled by ``up``, low-pass filtered with a Kaiser-windowed FIR (cutoff at
    the lower of the two Nyquist frequencies) and downsampled by ``down``
    (``scipy.signal.resample_poly``). Beyond the ends the signal is taken to continue at its
    edge values, so a DC offset (an ECG baseline) does not ring at the edges.

    Output sample ``k`` is the signal at time ``k / fs_out`` s; sample ``i`` of the input
    maps to ``i * fs_out / fs_in`` (see ``resample_indices``).

    Parameters
    ----------
    x : array, shape (n_samples,) or (n_samples, n_channels), any unit (mV)
    fs_in, fs_out : sampling rates in Hz

    Returns
    -------
    float64 array of ``round(n_samples * fs_out / fs_in)`` samples (at least one), same
    number of channels. A copy of ``x`` when the rates are equal.
    """
    signal = validate_signal(x)
    fs_in = validate_fs(fs_in, "fs_in")
    fs_out = validate_fs(fs_out, "fs_out")
    if fs_in == fs_out:
        return signal.copy()
    n_out = max(1, round(signal.shape[0] * fs_out / fs_in))
    ratio = (Fraction(fs_out) / Fraction(fs_in)).limit_denominator(RESAMPLE_MAX_DENOMINATOR)
    up, down = ratio.numerator, ratio.denominator
    if up == 0 or max(up, down) > _RESAMPLE_MAX_FACTOR:
        raise ValueError(
            f"cannot resample from {fs_in:g} Hz to {fs_out:g} Hz: the rates differ by too large "
            f"a factor (at most {_RESAMPLE_MAX_FACTOR} either way)"
        )
    resampled = sps.resample_poly(
        signal, up, down, axis=0, window=_polyphase_filter(up, down), padtype="edge"
    )
    # resample_poly returns ceil(n * up / down) samples; an approximated ratio can drift by
    # a sample more. Trim, or continue the last value, so the length is the documented one.
    if resampled.shape[0] >= n_out:
        return np.ascontiguousarray(resampled[:n_out])
    missing = n_out - resampled.shape[0]
    return np.pad(resampled, [(0, missing)] + [(0, 0)] * (resampled.ndim - 1), mode="edge")


@lru_cache(maxsize=8)
def _polyphase_filter(up: int, down: int) -> np.ndarray:
    # The same anti-aliasing FIR resample_poly would design, cached: the models resample
    # every 2-s window separately, and at odd rates the design dominates the cost.
    max_rate = max(up, down)
    taps = sps.firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))
    taps.flags.writeable = False
    return taps


def resample_indices(indices: object, fs_in: float, fs_out: float) -> np.ndarray:
    """Map sample indices (R-peak positions, episode bounds) from ``fs_in`` to ``fs_out``.

    Index ``i`` (samples at ``fs_in``) becomes ``i * fs_out / fs_in`` rounded to the nearest
    sample (ties to even), consistent with ``resample``'s time alignment. The caller clips to
    the resampled length if an index at the very end must stay inside the signal.

    Parameters
    ----------
    indices : array-like of numbers (samples at ``fs_in``); may be empty
    fs_in, fs_out : sampling rates in Hz

    Returns
    -------
    int64 array of the same shape (samples at ``fs_out``).
    """
    fs_in = validate_fs(fs_in, "fs_in")
    fs_out = validate_fs(fs_out, "fs_out")
    array = np.asarray(indices)
    if array.size == 0:
        return np.zeros(array.shape, dtype=np.int64)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"indices must be sample numbers, got values of type {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        first = int(np.argmin(np.isfinite(array).ravel()))
        raise ValueError(f"indices contains {array.ravel()[first]} at position {first}")
    return np.rint(array.astype(np.float64) * (fs_out / fs_in)).astype(np.int64)


# --- Filters ------------------------------------------------------------------------------


def bandpass(
    x: np.ndarray, fs: float, low_hz: float = 0.5, high_hz: float = 40.0, order: int = 2
) -> np.ndarray:
    """Zero-phase Butterworth band-pass (Butterworth 1930), run forward and backward.

    Forward-backward filtering (``scipy.signal.sosfiltfilt``, second-order sections) cancels
    the phase shift, so R peaks stay where they are; it also squares the magnitude response,
    so ``low_hz`` and ``high_hz`` are the -6 dB points and the roll-off is twice the
    prototype's. The default 0.5-40 Hz band is a monitoring band: it removes baseline wander
    and most muscle and powerline noise but, being above the 0.05 Hz diagnostic limit
    (Kligfield et al. 2007), is not meant for ST-segment measurement.

    Signals shorter than scipy's default edge padding are still filtered, with the padding
    cut to ``n_samples - 1``; expect edge transients on them.

    Parameters
    ----------
    x : array, shape (n_samples,) or (n_samples, n_channels), any unit (mV); at least
        3 samples
    fs : sampling rate in Hz
    low_hz, high_hz : pass-band edges in Hz, ``0 < low_hz < high_hz < fs / 2``
    order : Butterworth prototype order N (the band-pass has 2N poles)

    Returns
    -------
    float64 array of the same shape and unit.
    """
    signal = validate_signal(x, min_samples=MIN_FILTER_SAMPLES)
    fs = validate_fs(fs)
    low = _cutoff(low_hz, "low_hz", fs)
    high = _cutoff(high_hz, "high_hz", fs)
    if low >= high:
        raise ValueError(f"low_hz ({low:g} Hz) must be below high_hz ({high:g} Hz)")
    order = _positive_int(order, "order")
    return _sosfiltfilt(_butter_sos(order, (low, high), "bandpass", fs), signal)


def remove_baseline(
    x: np.ndarray, fs: float, method: str = "highpass", cutoff_hz: float = 0.5
) -> np.ndarray:
    """Remove baseline wander (respiration, electrode motion) from an ECG.

    Methods
    -------
    ``"highpass"``
        Zero-phase second-order Butterworth high-pass at ``cutoff_hz`` (-6 dB, run forward
        and backward). Linear and fast; 0.5 Hz keeps heart rates down to 30 bpm intact, and
        zero-phase filtering permits cutoffs up to 0.67 Hz without ST distortion (Kligfield
        et al. 2007). The roll-off is gentle: at 0.5 Hz, respiratory wander at 0.3 Hz is
        reduced about ten-fold (-19 dB); choose ``"median"`` for stronger removal.
    ``"median"``
        de Chazal et al. (2004): the baseline is the signal through a 200 ms median filter
        (removes QRS and P waves) and then a 600 ms one (removes T waves); it is subtracted.
        Nonlinear, follows wander of any shape, does not round QRS complexes; edges are
        handled by mirroring the signal. ``cutoff_hz`` is not used.

    Parameters
    ----------
    x : array, shape (n_samples,) or (n_samples, n_channels), any unit (mV); at least
        3 samples
    fs : sampling rate in Hz
    method : ``"highpass"`` or ``"median"``
    cutoff_hz : high-pass cutoff in Hz (``"highpass"`` only), below ``fs / 2``

    Returns
    -------
    float64 array of the same shape and unit, baseline near 0.
    """
    method = _choice(method, "method", BASELINE_METHODS)
    signal = validate_signal(x, min_samples=MIN_FILTER_SAMPLES)
    fs = validate_fs(fs)
    if method == "highpass":
        cutoff = _cutoff(cutoff_hz, "cutoff_hz", fs)
        return _sosfiltfilt(_butter_sos(_HIGHPASS_ORDER, (cutoff,), "highpass", fs), signal)
    baseline = signal
    for window_s in _MEDIAN_WINDOWS_S:
        baseline = _median_filter(baseline, _odd_width(window_s, fs))
    return signal - baseline


def notch(x: np.ndarray, fs: float, freq_hz: float = 50.0, quality: float = 30.0) -> np.ndarray:
    """Remove powerline interference with a zero-phase IIR notch (Orfanidis 1996).

    A second-order notch (``scipy.signal.iirnotch``) centred on ``freq_hz`` with -3 dB
    bandwidth ``freq_hz / quality``, run forward and backward (``filtfilt``) so it adds no
    phase shift. Choose 50 Hz (Europe, Asia, Africa, Australia) or 60 Hz (the Americas,
    parts of Asia). A sinusoid at exactly ``freq_hz`` is removed; the filter rings for about
    ``quality / (pi * freq_hz)`` s (0.2 s at the defaults) at each end of the signal, where
    the interference is removed less well.

    Parameters
    ----------
    x : array, shape (n_samples,) or (n_samples, n_channels), any unit (mV); at least
        3 samples
    fs : sampling rate in Hz
    freq_hz : frequency to remove in Hz, below ``fs / 2``
    quality : quality factor Q (centre frequency / bandwidth); higher is narrower

    Returns
    -------
    float64 array of the same shape and unit.
    """
    signal = validate_signal(x, min_samples=MIN_FILTER_SAMPLES)
    fs = validate_fs(fs)
    freq = _cutoff(freq_hz, "freq_hz", fs)
    quality = _positive_finite(quality, "quality")
    b, a = sps.iirnotch(freq, quality, fs=fs)
    padlen = min(3 * max(len(a), len(b)), signal.shape[0] - 1)
    return sps.filtfilt(b, a, signal, axis=0, padlen=padlen)


def _butter_sos(order: int, cutoffs: tuple[float, ...], btype: str, fs: float) -> np.ndarray:
    # A copy, because scipy's sosfiltfilt needs a writeable array and the cache must stay intact.
    return _butter_sos_cached(order, cutoffs, btype, fs).copy()


@lru_cache(maxsize=64)
def _butter_sos_cached(order: int, cutoffs: tuple[float, ...], btype: str, fs: float) -> np.ndarray:
    # Cached: the models band-pass every 2-s window with the same design.
    cutoff = cutoffs[0] if len(cutoffs) == 1 else list(cutoffs)
    return sps.butter(order, cutoff, btype=btype, fs=fs, output="sos")


def _sosfiltfilt(sos: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """scipy.signal.sosfiltfilt along axis 0 (odd extension, steady-state initial
    conditions), with the initial-condition solve cached per filter: scipy redoes it on
    every call, which was a tenth of the time of serving one 2-s window."""
    # scipy's default edge padding, shortened for signals that are not longer than it
    # (sosfiltfilt would otherwise refuse them).
    n_taps = 2 * len(sos) + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    padlen = min(3 * n_taps, signal.shape[0] - 1)
    zi = _sosfilt_zi_cached(sos.tobytes(), len(sos))
    zi = zi.reshape(zi.shape + (1,) * (signal.ndim - 1))
    if padlen > 0:
        left = 2 * signal[0] - signal[padlen:0:-1]
        right = 2 * signal[-1] - signal[-2 : -padlen - 2 : -1]
        extended = np.concatenate([left, signal, right], axis=0)
    else:
        extended = signal
    forward, _ = sps.sosfilt(sos, extended, axis=0, zi=zi * extended[:1])
    backward, _ = sps.sosfilt(sos, forward[::-1], axis=0, zi=zi * forward[-1:])
    result = backward[::-1]
    return result[padlen : len(result) - padlen] if padlen > 0 else result


@lru_cache(maxsize=64)
def _sosfilt_zi_cached(sos_bytes: bytes, n_sections: int) -> np.ndarray:
    zi = sps.sosfilt_zi(np.frombuffer(sos_bytes, dtype=np.float64).reshape(n_sections, 6))
    zi.setflags(write=False)
    return zi


def _odd_width(window_s: float, fs: float) -> int:
    # A median filter needs an odd width to have a centre sample.
    width = max(1, round(window_s * fs))
    return width if width % 2 else width + 1


def _median_filter(signal: np.ndarray, width: int) -> np.ndarray:
    # Channel by channel: scipy's 1-D median filter is much faster than the N-D one.
    if signal.ndim == 1:
        return ndimage.median_filter(signal, size=width, mode="reflect")
    return np.stack(
        [ndimage.median_filter(column, size=width, mode="reflect") for column in signal.T],
        axis=1,
    )


# --- Shaping for models -------------------------------------------------------------------


def minmax_normalize(x: np.ndarray) -> np.ndarray:
    """Scale a signal to [0, 1]: ``(x - min) / (max - min)``, the seed model's normalization.

    Per signal for 1-D input, per channel (column) for 2-D input. A flat signal or channel
    (``max == min``: a disconnected lead, a saturated amplifier) carries no shape, and is
    returned as all zeros rather than dividing by zero.

    Parameters
    ----------
    x : array, shape (n_samples,) or (n_samples, n_channels), any unit

    Returns
    -------
    float64 array of the same shape, unitless, minimum 0 and maximum 1 (or all 0 if flat).
    """
    signal = validate_signal(x)
    low = signal.min(axis=0)
    span = signal.max(axis=0) - low
    flat = span == 0
    return np.where(flat, 0.0, (signal - low) / np.where(flat, 1.0, span))


def fit_length(
    x: np.ndarray, n_samples: int, pad: str = "edge", crop: str = "center"
) -> np.ndarray:
    """Bring a signal to exactly ``n_samples`` samples with an explicit policy.

    A short signal is padded at its END only, because the window models expect a window to
    start at its left edge (a 2-s window of a 1.6-s signal holds the 1.6 s, then padding).
    A long signal is cropped.

    Parameters
    ----------
    x : array, shape (n, ) or (n, n_channels), any unit
    n_samples : length wanted, in samples (>= 1)
    pad : how to fill the missing samples at the end
        ``"edge"``: repeat the last sample; ``"zeros"``: append 0; ``"reflect"``: mirror the
        signal about its last sample without repeating it (``[1, 2, 3]`` -> ``[1, 2, 3, 2,
        1]``), as ``numpy.pad(mode="reflect")`` does.
    crop : which part of a long signal to keep
        ``"center"``: the middle (when the excess is odd, one more sample goes from the end
        than from the start); ``"start"``: the first ``n_samples``; ``"end"``: the last.

    Returns
    -------
    float64 array of shape (n_samples,) or (n_samples, n_channels); always a new array.
    """
    n_samples = _positive_int(n_samples, "n_samples")
    pad = _choice(pad, "pad", PAD_POLICIES)
    crop = _choice(crop, "crop", CROP_POLICIES)
    signal = validate_signal(x)
    n = signal.shape[0]
    if n > n_samples:
        start = {"start": 0, "end": n - n_samples, "center": (n - n_samples) // 2}[crop]
        return signal[start : start + n_samples].copy()
    if n == n_samples:
        return signal.copy()
    widths = [(0, n_samples - n)] + [(0, 0)] * (signal.ndim - 1)
    if pad == "zeros":
        return np.pad(signal, widths, mode="constant", constant_values=0.0)
    return np.pad(signal, widths, mode=pad)


def sliding_windows(
    x: np.ndarray, fs: float, window_s: float = 2.0, step_s: float = 2.0, tail: str = "drop"
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a long signal into fixed-length windows.

    Windows hold ``round(window_s * fs)`` samples and start every ``round(step_s * fs)``
    samples from sample 0 (``step_s < window_s`` overlaps them, ``step_s > window_s``
    leaves gaps).

    Parameters
    ----------
    x : array, shape (n_samples,) or (n_samples, n_channels), any unit
    fs : sampling rate in Hz
    window_s : window length in seconds
    step_s : distance between window starts in seconds
    tail : what to do with samples after the last whole window
        ``"drop"``: leave them out (a signal shorter than one window gives no windows);
        ``"pad"``: add one more window at the next start, filled up with the signal's last
        value, so every sample up to the end is in some window.

    Returns
    -------
    windows : float64 array (n_windows, window_len) or (n_windows, window_len, n_channels)
    starts : int64 array (n_windows,), the first sample of each window (at ``fs``);
        divide by ``fs`` for seconds.
    """
    tail = _choice(tail, "tail", TAIL_POLICIES)
    signal = validate_signal(x)
    fs = validate_fs(fs)
    window_len = round(_positive_finite(window_s, "window_s", "a positive number of seconds") * fs)
    step = round(_positive_finite(step_s, "step_s", "a positive number of seconds") * fs)
    for name, length, seconds in (("window_s", window_len, window_s), ("step_s", step, step_s)):
        if length < 1:
            raise ValueError(
                f"{name} = {seconds:g} s is less than one sample at {fs:g} Hz; "
                f"use at least {1 / fs:g} s"
            )
    n = signal.shape[0]
    n_full = (n - window_len) // step + 1 if n >= window_len else 0
    starts = np.arange(n_full, dtype=np.int64) * step
    covered = (n_full - 1) * step + window_len if n_full else 0
    next_start = n_full * step
    # Samples past the last whole window that a next window would reach (not ones that
    # fall in a gap between windows) get one padded window; n_full being the number of
    # whole windows, a window at next_start overruns the end.
    if tail == "pad" and covered < n and next_start < n:
        starts = np.append(starts, np.int64(next_start))
        end = next_start + window_len
        signal = np.pad(signal, [(0, end - n)] + [(0, 0)] * (signal.ndim - 1), mode="edge")
    windows = signal[starts[:, np.newaxis] + np.arange(window_len)]
    return windows, starts
