"""The signal toolkit: resampling, filters, normalization, length fitting, windowing and the
input checks they share. Plain numpy; no Django."""

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from inference.signal import (
    bandpass,
    fit_length,
    minmax_normalize,
    notch,
    remove_baseline,
    resample,
    resample_indices,
    sliding_windows,
    validate_fs,
    validate_signal,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("CARDIOSPIKE_DATA_DIR", PROJECT_ROOT.parent / "shared" / "data"))
MITDB_BEAT_SYMBOLS = set("NLRejAaJSVEFfQ/")


def sine(freq_hz: float, fs: float, duration_s: float, amplitude: float = 1.0, phase=0.0):
    t = np.arange(round(duration_s * fs)) / fs
    return amplitude * np.sin(2 * np.pi * freq_hz * t + phase)


def amplitudes(y: np.ndarray, fs: float, freqs: list[float], start_s: float, stop_s: float):
    """Amplitude of each sinusoid in y[start:stop], by a joint least-squares fit of a sine and
    a cosine per frequency plus an offset (exact for sums of sinusoids, any segment length)."""
    start, stop = round(start_s * fs), round(stop_s * fs)
    t = np.arange(start, stop) / fs
    columns = [np.ones_like(t)]
    for freq in freqs:
        columns += [np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)]
    coefficients, *_ = np.linalg.lstsq(np.column_stack(columns), y[start:stop], rcond=None)
    return {
        freq: float(np.hypot(coefficients[1 + 2 * i], coefficients[2 + 2 * i]))
        for i, freq in enumerate(freqs)
    }


# --- validate_signal / validate_fs --------------------------------------------------------


def test_it_converts_a_list_of_ints_to_float64():
    signal = validate_signal([1, 2, 3])
    assert signal.dtype == np.float64
    assert signal.tolist() == [1.0, 2.0, 3.0]


def test_it_accepts_a_multichannel_signal():
    assert validate_signal(np.zeros((10, 12), dtype=np.int16)).shape == (10, 12)


def test_it_names_the_first_nan_sample():
    x = np.zeros(40)
    x[17] = np.nan
    x[30] = np.nan
    with pytest.raises(ValueError, match=r"^signal contains NaN at sample 17$"):
        validate_signal(x)


@pytest.mark.parametrize(("value", "word"), [(np.inf, "inf"), (-np.inf, "-inf")])
def test_it_names_the_first_infinite_sample(value, word):
    x = np.ones(10)
    x[4] = value
    with pytest.raises(ValueError, match=rf"^ecg contains {word} at sample 4$"):
        validate_signal(x, name="ecg")


def test_it_names_sample_and_channel_of_a_nan_in_a_multichannel_signal():
    x = np.zeros((20, 3))
    x[9, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN at sample 9, channel 2"):
        validate_signal(x)


def test_it_names_a_missing_value():
    with pytest.raises(ValueError, match=r"missing value \(None\) at sample 2"):
        validate_signal([0.1, 0.2, None, 0.4])


@pytest.mark.parametrize(
    ("x", "message"),
    [
        ([], r"signal is empty"),
        (np.zeros((0, 2)), r"signal is empty"),
        (np.zeros((2, 3, 4)), r"1-D \(n_samples,\) or 2-D \(n_samples, n_channels\), got a 3-D"),
        (5.0, r"got a single number"),
        (["0.1", "0.2"], r"must contain only numbers, got text"),
        ([[1.0, 2.0], [3.0]], r"rectangular array"),
        ([1 + 2j, 3], r"real-valued"),
    ],
)
def test_it_refuses_a_malformed_signal(x, message):
    with pytest.raises(ValueError, match=message):
        validate_signal(x)


def test_it_refuses_too_few_samples():
    with pytest.raises(ValueError, match=r"signal has 2 samples; at least 3 are needed"):
        validate_signal([1.0, 2.0], min_samples=3)


@pytest.mark.parametrize("fs", [-3, 0, 0.0, float("nan"), float("inf"), "250", None, True])
def test_it_refuses_a_bad_sampling_rate(fs):
    with pytest.raises(ValueError, match=r"fs must be a positive finite number of Hz, got"):
        validate_fs(fs)


def test_it_says_what_sampling_rate_it_got():
    with pytest.raises(ValueError, match=r"^fs must be a positive finite number of Hz, got -3$"):
        validate_fs(-3)


@pytest.mark.parametrize("fs", [250, 257.3, np.float32(360.0), np.int64(1000), np.array(128)])
def test_it_accepts_numeric_sampling_rates(fs):
    assert validate_fs(fs) == pytest.approx(float(fs))
    assert type(validate_fs(fs)) is float


@pytest.mark.parametrize(
    "call",
    [
        lambda x: resample(x, 360, 250),
        lambda x: bandpass(x, 250),
        lambda x: notch(x, 250),
        lambda x: remove_baseline(x, 250, method="highpass"),
        lambda x: remove_baseline(x, 250, method="median"),
        lambda x: minmax_normalize(x),
        lambda x: fit_length(x, 50),
        lambda x: sliding_windows(x, 250, window_s=0.1),
    ],
)
def test_it_leaves_the_input_untouched(call):
    x = np.random.default_rng(1).standard_normal(100)
    before = x.copy()
    call(x)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize(
    "call",
    [
        lambda x: resample(x, 360, 250),
        lambda x: bandpass(x, 250),
        lambda x: notch(x, 250),
        lambda x: remove_baseline(x, 250),
        lambda x: minmax_normalize(x),
        lambda x: fit_length(x, 5),
        lambda x: sliding_windows(x, 250),
    ],
)
def test_it_validates_the_signal_in_every_function(call):
    x = np.zeros(600)
    x[17] = np.nan
    with pytest.raises(ValueError, match=r"signal contains NaN at sample 17"):
        call(x)


# --- resample -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fs_in", "fs_out"),
    [(360, 250), (250, 360), (100, 250), (128, 250), (1000, 250), (257.3, 250), (250, 257.3)],
)
def test_it_resamples_a_sinusoid_without_changing_its_frequency_or_amplitude(fs_in, fs_out):
    x = sine(5.0, fs_in, 10.0, amplitude=1.5, phase=0.3)
    y = resample(x, fs_in, fs_out)
    expected = sine(5.0, fs_out, len(y) / fs_out, amplitude=1.5, phase=0.3)
    inner = slice(round(0.5 * fs_out), -round(0.5 * fs_out))  # away from the edges
    assert np.max(np.abs(y - expected)[inner]) < 0.005


@pytest.mark.parametrize(
    ("n", "fs_in", "fs_out", "n_out"),
    [
        (3600, 360, 250, 2500),
        (2500, 250, 360, 3600),
        (1000, 100, 250, 2500),
        (1280, 128, 250, 2500),
        (4000, 1000, 250, 1000),
        (1001, 1000, 250, 250),  # 250.25 rounds down
        (7, 360, 250, 5),  # 4.86 rounds up
        (2573, 257.3, 250, 2500),
        (10_000, 257.3, 250, 9716),
        (2500, 250, 257.3, 2573),
    ],
)
def test_it_resamples_to_round_n_times_the_rate_ratio(n, fs_in, fs_out, n_out):
    assert resample(np.zeros(n), fs_in, fs_out).shape == (n_out,)


def test_it_returns_a_copy_when_the_rates_are_equal():
    x = np.arange(5.0)
    y = resample(x, 250, 250.0)
    np.testing.assert_array_equal(y, x)
    assert not np.shares_memory(x, y)


def test_it_resamples_there_and_back_closely():
    fs = 250.0
    rng = np.random.default_rng(7)
    # band-limited like a filtered ECG: a few components between 1 and 40 Hz, plus an offset
    x = sum(sine(f, fs, 8.0, amplitude=a, phase=p) for f, a, p in rng.uniform(1, 40, (6, 3)))
    x = x + 0.4
    back = resample(resample(x, 250, 360), 360, 250)
    assert back.shape == x.shape
    assert np.max(np.abs(back - x)[50:-50]) < 0.01 * np.ptp(x)


def test_it_filters_out_what_the_new_rate_cannot_hold():
    # 200 Hz at 1000 Hz sampling would alias to 50 Hz if decimated without a low-pass
    x = sine(10.0, 1000, 4.0) + sine(200.0, 1000, 4.0)
    y = resample(x, 1000, 250)
    found = amplitudes(y, 250, [10.0, 50.0], 1.0, 3.0)
    assert found[10.0] == pytest.approx(1.0, abs=0.01)
    assert found[50.0] < 0.01


def test_it_resamples_each_channel_alike():
    x = np.column_stack([sine(3.0, 360, 2.0), sine(7.0, 360, 2.0, phase=1.0)])
    y = resample(x, 360, 250)
    assert y.shape == (500, 2)
    np.testing.assert_allclose(y[:, 1], resample(x[:, 1], 360, 250), atol=1e-12)


def test_it_refuses_a_bad_target_rate():
    with pytest.raises(ValueError, match=r"fs_out must be a positive finite number of Hz"):
        resample(np.zeros(10), 360, 0)


def test_it_maps_sample_indices_to_the_new_rate():
    mapped = resample_indices([0, 77, 360, 1000, 649_999], 360, 250)
    assert mapped.dtype == np.int64
    # 77 * 250/360 = 53.47, 1000 * 250/360 = 694.4, 649999 * 250/360 = 451388.2
    assert mapped.tolist() == [0, 53, 250, 694, 451_388]


def test_it_maps_no_indices_to_no_indices():
    mapped = resample_indices(np.array([], dtype=np.int64), 360, 250)
    assert mapped.shape == (0,)
    assert mapped.dtype == np.int64


def test_it_refuses_nan_indices():
    with pytest.raises(ValueError, match=r"indices contains nan at position 1"):
        resample_indices([3.0, np.nan], 360, 250)


# --- bandpass -----------------------------------------------------------------------------


def test_it_band_passes_an_ecg_band_and_removes_drift_and_high_frequency_noise():
    fs = 500.0
    x = sine(0.1, fs, 20.0) + sine(10.0, fs, 20.0, amplitude=0.5) + sine(100.0, fs, 20.0, 0.3)
    y = bandpass(x, fs, 0.5, 40.0)
    found = amplitudes(y, fs, [0.1, 10.0, 100.0], 5.0, 15.0)
    assert found[10.0] == pytest.approx(0.5, rel=0.02)
    assert found[0.1] < 0.01  # from 1.0
    assert found[100.0] < 0.3 * 0.05


def test_it_band_passes_without_shifting_a_peak():
    fs = 250.0
    t = (np.arange(501) - 250) / fs
    pulse = np.exp(-0.5 * (t / 0.02) ** 2)  # a QRS-like 20 ms Gaussian, centred
    assert int(np.argmax(bandpass(pulse, fs))) == 250


def test_it_band_passes_each_channel_alike():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 3))
    y = bandpass(x, 250)
    assert y.shape == (400, 3)
    np.testing.assert_allclose(y[:, 2], bandpass(x[:, 2], 250), atol=1e-12)


@pytest.mark.parametrize("n", [3, 5, 14, 15, 16])
def test_it_band_passes_a_signal_shorter_than_the_filter_padding(n):
    y = bandpass(np.linspace(0.0, 1.0, n), 250)
    assert y.shape == (n,)
    assert np.isfinite(y).all()


def test_it_refuses_to_band_pass_fewer_than_three_samples():
    with pytest.raises(ValueError, match=r"signal has 2 samples; at least 3 are needed"):
        bandpass([0.0, 1.0], 250)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"low_hz": 40.0, "high_hz": 40.0}, r"low_hz \(40 Hz\) must be below high_hz \(40 Hz\)"),
        ({"low_hz": 30.0, "high_hz": 5.0}, r"low_hz \(30 Hz\) must be below high_hz \(5 Hz\)"),
        ({"high_hz": 125.0}, r"high_hz = 125 Hz must be below the Nyquist frequency fs/2 = 125"),
        ({"high_hz": 300.0}, r"high_hz = 300 Hz must be below the Nyquist"),
        ({"low_hz": 0.0}, r"low_hz must be a positive finite frequency in Hz, got 0"),
        ({"low_hz": float("nan")}, r"low_hz must be a positive finite frequency in Hz, got nan"),
        ({"order": 0}, r"order must be a positive whole number, got 0"),
        ({"order": 2.5}, r"order must be a positive whole number, got 2.5"),
    ],
)
def test_it_refuses_an_impossible_band(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bandpass(np.zeros(500), 250.0, **kwargs)


def test_it_refuses_to_band_pass_at_a_bad_rate():
    with pytest.raises(ValueError, match=r"fs must be a positive finite number of Hz, got nan"):
        bandpass(np.zeros(500), float("nan"))


# --- notch --------------------------------------------------------------------------------


@pytest.mark.parametrize("mains_hz", [50.0, 60.0])
def test_it_notches_out_powerline_interference_and_keeps_the_ecg_band(mains_hz):
    fs = 500.0
    x = sine(10.0, fs, 10.0) + sine(mains_hz, fs, 10.0, amplitude=0.5, phase=0.7)
    y = notch(x, fs, freq_hz=mains_hz)
    found = amplitudes(y, fs, [10.0, mains_hz], 2.0, 8.0)
    assert 20 * np.log10(found[mains_hz] / 0.5) < -30
    assert found[10.0] == pytest.approx(1.0, rel=0.01)


def test_it_notches_only_the_frequency_asked_for():
    fs = 500.0
    x = sine(60.0, fs, 10.0)
    found = amplitudes(notch(x, fs, freq_hz=50.0), fs, [60.0], 2.0, 8.0)
    assert found[60.0] > 0.9


@pytest.mark.parametrize(
    ("fs", "kwargs", "message"),
    [
        (100.0, {"freq_hz": 50.0}, r"freq_hz = 50 Hz must be below the Nyquist frequency"),
        (100.0, {"freq_hz": 60.0}, r"freq_hz = 60 Hz must be below the Nyquist frequency"),
        (250.0, {"quality": 0.0}, r"quality must be a positive finite number, got 0"),
        (250.0, {"freq_hz": -50.0}, r"freq_hz must be a positive finite frequency in Hz"),
    ],
)
def test_it_refuses_an_impossible_notch(fs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        notch(np.zeros(500), fs, **kwargs)


# --- remove_baseline ----------------------------------------------------------------------


def spike_train_with_wander(fs: float = 360.0, duration_s: float = 10.0):
    """1 mV QRS-like spikes (Gaussian, sigma 10 ms) at 72 bpm on a 0.3 Hz, 0.8 mV wander with
    a 0.5 mV offset. Returns the signal, the spike centres and the points midway between
    spikes (where the clean signal is ~0), all away from the first and last second."""
    t = np.arange(round(duration_s * fs)) / fs
    centres_s = np.arange(0.4, duration_s, 60 / 72)
    spikes = sum(np.exp(-0.5 * ((t - c) / 0.01) ** 2) for c in centres_s)
    wander = 0.8 * np.sin(2 * np.pi * 0.3 * t + 0.5) + 0.5
    inner = centres_s[(centres_s > 1.0) & (centres_s < duration_s - 1.5)]
    peaks = np.round(inner * fs).astype(int)
    gaps = np.round((inner + 30 / 72) * fs).astype(int)
    return spikes + wander, peaks, gaps


@pytest.mark.parametrize(
    ("method", "max_wander_left"),
    [
        # a 2nd-order 0.5 Hz high-pass, run both ways, passes |H|^2 = 0.115 at 0.3 Hz
        ("highpass", 0.15),
        ("median", 0.02),
    ],
)
def test_it_removes_baseline_wander_and_keeps_the_spikes(method, max_wander_left):
    fs = 360.0
    x, peaks, gaps = spike_train_with_wander(fs)
    y = remove_baseline(x, fs, method=method)
    wander_before = np.sqrt(np.mean(x[gaps] ** 2))
    wander_after = np.sqrt(np.mean(y[gaps] ** 2))
    assert wander_after < max_wander_left * wander_before
    heights = y[peaks] - y[gaps]
    np.testing.assert_allclose(heights, 1.0, atol=0.12)


def test_it_removes_the_baseline_of_each_channel():
    x, _, gaps = spike_train_with_wander()
    both = remove_baseline(np.column_stack([x, -x]), 360.0, method="median")
    assert both.shape == (len(x), 2)
    np.testing.assert_allclose(both[:, 1], -remove_baseline(x, 360.0, method="median"))


def test_it_lists_the_baseline_methods_it_knows():
    with pytest.raises(
        ValueError, match=r"method must be one of 'highpass', 'median'; got 'wavelet'"
    ):
        remove_baseline(np.zeros(500), 250.0, method="wavelet")


def test_it_refuses_a_baseline_cutoff_above_nyquist():
    with pytest.raises(ValueError, match=r"cutoff_hz = 200 Hz must be below the Nyquist"):
        remove_baseline(np.zeros(500), 250.0, cutoff_hz=200.0)


# --- minmax_normalize ---------------------------------------------------------------------


def test_it_scales_a_signal_to_zero_one():
    np.testing.assert_array_equal(minmax_normalize([2.0, 4.0, 3.0, -2.0]), [2 / 3, 1, 5 / 6, 0])


def test_it_scales_each_channel_on_its_own():
    x = np.array([[0.0, 10.0, 7.0], [1.0, 20.0, 7.0], [2.0, 30.0, 7.0]])
    y = minmax_normalize(x)
    np.testing.assert_array_equal(y, [[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1.0, 1.0, 0.0]])


def test_it_normalizes_a_flat_signal_to_zeros_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = minmax_normalize(np.full(500, -0.25))
    np.testing.assert_array_equal(y, np.zeros(500))


# --- fit_length ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pad", "expected"),
    [
        ("edge", [1.0, 2.0, 3.0, 3.0, 3.0]),
        ("zeros", [1.0, 2.0, 3.0, 0.0, 0.0]),
        ("reflect", [1.0, 2.0, 3.0, 2.0, 1.0]),
    ],
)
def test_it_pads_a_short_signal_at_the_end(pad, expected):
    assert fit_length([1, 2, 3], 5, pad=pad).tolist() == expected


@pytest.mark.parametrize(
    ("crop", "n", "expected"),
    [
        ("center", 6, [1.0, 2.0, 3.0]),  # odd excess: one more from the end
        ("center", 5, [1.0, 2.0, 3.0]),
        ("center", 7, [2.0, 3.0, 4.0]),
        ("start", 6, [0.0, 1.0, 2.0]),
        ("end", 6, [3.0, 4.0, 5.0]),
    ],
)
def test_it_crops_a_long_signal_by_policy(crop, n, expected):
    assert fit_length(np.arange(float(n)), 3, crop=crop).tolist() == expected


def test_it_returns_a_copy_when_the_length_already_fits():
    x = np.arange(4.0)
    y = fit_length(x, 4)
    np.testing.assert_array_equal(y, x)
    assert not np.shares_memory(x, y)


def test_it_fits_the_length_of_every_channel():
    x = np.array([[1.0, 10.0], [2.0, 20.0]])
    assert fit_length(x, 3).tolist() == [[1.0, 10.0], [2.0, 20.0], [2.0, 20.0]]
    assert fit_length(x, 1, crop="end").tolist() == [[2.0, 20.0]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pad": "mean"}, r"pad must be one of 'edge', 'zeros', 'reflect'; got 'mean'"),
        ({"crop": "middle"}, r"crop must be one of 'center', 'start', 'end'; got 'middle'"),
    ],
)
def test_it_lists_the_length_policies_it_knows(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_length([1.0, 2.0, 3.0], 3, **kwargs)


@pytest.mark.parametrize("n_samples", [0, -5, 2.5, True])
def test_it_refuses_an_impossible_length(n_samples):
    with pytest.raises(ValueError, match=r"n_samples must be a positive whole number"):
        fit_length([1.0, 2.0], n_samples)


# --- sliding_windows ----------------------------------------------------------------------


def test_it_cuts_whole_windows_and_drops_the_tail():
    windows, starts = sliding_windows(np.arange(10.0), fs=1.0, window_s=4, step_s=4)
    assert starts.dtype == np.int64
    assert starts.tolist() == [0, 4]
    assert windows.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_it_pads_the_tail_into_a_last_window():
    windows, starts = sliding_windows(np.arange(10.0), fs=1.0, window_s=4, step_s=4, tail="pad")
    assert starts.tolist() == [0, 4, 8]
    assert windows[-1].tolist() == [8, 9, 9, 9]


@pytest.mark.parametrize(
    ("n", "tail", "starts"),
    [
        (10, "drop", [0, 2, 4, 6]),
        (10, "pad", [0, 2, 4, 6]),  # the last whole window already ends at the end
        (11, "drop", [0, 2, 4, 6]),
        (11, "pad", [0, 2, 4, 6, 8]),
    ],
)
def test_it_cuts_overlapping_windows(n, tail, starts):
    windows, found = sliding_windows(np.arange(float(n)), 1.0, window_s=4, step_s=2, tail=tail)
    assert found.tolist() == starts
    assert windows.shape == (len(starts), 4)
    np.testing.assert_array_equal(windows[:, 0], starts)


def test_it_cuts_windows_with_gaps_between_them():
    windows, starts = sliding_windows(np.arange(10.0), 1.0, window_s=2, step_s=3, tail="pad")
    assert starts.tolist() == [0, 3, 6, 9]
    assert windows.tolist() == [[0, 1], [3, 4], [6, 7], [9, 9]]


def test_it_gives_no_window_for_a_signal_shorter_than_one():
    windows, starts = sliding_windows(np.arange(3.0), 1.0, window_s=4, step_s=4)
    assert windows.shape == (0, 4)
    assert starts.shape == (0,)
    assert starts.dtype == np.int64


def test_it_pads_a_signal_shorter_than_one_window_into_one():
    windows, starts = sliding_windows(np.arange(3.0), 1.0, window_s=4, step_s=4, tail="pad")
    assert windows.tolist() == [[0, 1, 2, 2]]
    assert starts.tolist() == [0]


def test_it_cuts_two_second_windows_in_seconds():
    windows, starts = sliding_windows(np.zeros(1250), fs=250.0)
    assert windows.shape == (2, 500)
    assert starts.tolist() == [0, 500]
    windows, starts = sliding_windows(np.zeros(1250), fs=250.0, tail="pad")
    assert starts.tolist() == [0, 500, 1000]


def test_it_cuts_multichannel_windows():
    x = np.column_stack([np.arange(6.0), -np.arange(6.0)])
    windows, _ = sliding_windows(x, 1.0, window_s=3, step_s=3)
    assert windows.shape == (2, 3, 2)
    assert windows[1, :, 1].tolist() == [-3, -4, -5]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tail": "keep"}, r"tail must be one of 'drop', 'pad'; got 'keep'"),
        ({"window_s": 0}, r"window_s must be a positive number of seconds, got 0"),
        ({"step_s": -1}, r"step_s must be a positive number of seconds, got -1"),
        ({"step_s": 0.001}, r"step_s = 0.001 s is less than one sample at 250 Hz"),
    ],
)
def test_it_refuses_impossible_windows(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sliding_windows(np.zeros(1000), 250.0, **kwargs)


# --- Real data ----------------------------------------------------------------------------


def test_it_resamples_a_real_record_keeping_the_r_peaks_in_place():
    record_path = DATA_DIR / "mitdb" / "100"
    if not record_path.with_suffix(".hea").is_file():
        pytest.skip(
            f"MIT-BIH record 100 not found at {record_path}.hea; set CARDIOSPIKE_DATA_DIR to a "
            "folder holding mitdb/ (PhysioNet's MIT-BIH Arrhythmia Database)"
        )
    wfdb = pytest.importorskip("wfdb")
    record = wfdb.rdrecord(str(record_path), sampto=3600)
    annotation = wfdb.rdann(str(record_path), "atr", sampto=3600)
    mlii = record.p_signal[:, record.sig_name.index("MLII")]
    is_beat = np.isin(annotation.symbol, list(MITDB_BEAT_SYMBOLS))
    beats = np.asarray(annotation.sample)[is_beat]
    assert len(beats) >= 10  # ten seconds of sinus rhythm at ~75 bpm

    resampled = resample(mlii, 360, 250)
    peaks = resample_indices(beats, 360, 250)

    assert resampled.shape == (2500,)
    half = round(0.05 * 250)  # look for the local maximum within +-50 ms
    for peak in peaks:
        if peak < half or peak + half >= len(resampled):
            continue
        local_max = peak - half + int(np.argmax(resampled[peak - half : peak + half + 1]))
        assert abs(local_max - peak) <= 2, f"R peak at {peak}, local maximum at {local_max}"
