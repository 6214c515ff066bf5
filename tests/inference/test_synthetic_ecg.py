"""The synthetic ECG generator: deterministic, physiologically shaped, correctly labelled."""

import numpy as np
import pytest

from inference.synthetic import (
    WINDOW_KINDS,
    NoiseConfig,
    add_noise_at_snr,
    generate,
    generate_window,
    make_binary_dataset,
)


def rr_s(strip) -> np.ndarray:
    return np.diff(strip.beats) / strip.fs


def test_it_is_deterministic_given_a_seed():
    a = generate(20, seed=7, pvc_per_min=6, noise=NoiseConfig.realistic())
    b = generate(20, seed=7, pvc_per_min=6, noise=NoiseConfig.realistic())
    c = generate(20, seed=8, pvc_per_min=6, noise=NoiseConfig.realistic())
    np.testing.assert_array_equal(a.signal_mv, b.signal_mv)
    assert a.beat_labels == b.beat_labels
    assert not np.array_equal(a.signal_mv, c.signal_mv)


@pytest.mark.parametrize(("rhythm", "hr_bpm"), [("NSR", 72), ("SBR", 48), ("STACH", 118)])
def test_it_beats_at_the_requested_rate_with_modest_variability(rhythm, hr_bpm):
    strip = generate(60, rhythm=rhythm, hr_bpm=hr_bpm, seed=1)
    assert abs(len(strip.beats) - hr_bpm) <= 3
    intervals = rr_s(strip)
    assert 60 / np.mean(intervals) == pytest.approx(hr_bpm, rel=0.03)
    assert 0.005 < np.std(intervals) / np.mean(intervals) < 0.1  # HRV present, not chaotic


def test_it_makes_atrial_fibrillation_irregular_and_without_p_waves():
    af = generate(60, rhythm="AFIB", seed=2)
    sinus = generate(60, rhythm="NSR", hr_bpm=95, seed=2)
    assert np.std(rr_s(af)) / np.mean(rr_s(af)) > 0.15
    assert np.std(rr_s(sinus)) / np.mean(rr_s(sinus)) < 0.1

    def p_wave_height(strip) -> float:
        # mean signal 210-130 ms before each R, where a sinus P wave peaks
        fs = strip.fs
        spans = [strip.signal_mv[r - int(0.21 * fs) : r - int(0.13 * fs)] for r in strip.beats[2:]]
        return float(np.mean([span.max() - np.median(strip.signal_mv) for span in spans]))

    assert p_wave_height(sinus) > 0.1
    assert p_wave_height(af) < 0.08


def qrs_width_s(strip, r: int) -> float:
    """Time the signal stays above 30 % of its |R| around a beat (a QRS duration proxy)."""
    segment = np.abs(strip.signal_mv[r - int(0.15 * strip.fs) : r + int(0.15 * strip.fs)])
    return np.count_nonzero(segment > 0.3 * segment.max()) / strip.fs


def test_it_makes_pvcs_wide_with_a_compensatory_pause():
    strip = generate(120, hr_bpm=70, pvc_per_min=6, seed=3)
    labels = np.asarray(strip.beat_labels)
    pvcs = np.flatnonzero(labels == "V")
    assert len(pvcs) >= 5
    normal_width = np.median([qrs_width_s(strip, r) for r in strip.beats[labels == "N"][2:20]])
    pvc_width = np.median([qrs_width_s(strip, strip.beats[i]) for i in pvcs])
    assert pvc_width > 2 * normal_width
    rr = 60 / 70
    for index in pvcs:
        if 0 < index < len(labels) - 1 and labels[index - 1] == labels[index + 1] == "N":
            around = (strip.beats[index + 1] - strip.beats[index - 1]) / strip.fs
            assert around == pytest.approx(2 * rr, rel=0.1)  # pre + post = 2 RR


def test_it_makes_pacs_premature_without_full_compensation():
    strip = generate(120, hr_bpm=70, pac_per_min=6, seed=4)
    labels = np.asarray(strip.beat_labels)
    rr = 60 / 70
    checked = 0
    for index in np.flatnonzero(labels == "S"):
        if 0 < index < len(labels) - 1 and labels[index - 1] == labels[index + 1] == "N":
            before = (strip.beats[index] - strip.beats[index - 1]) / strip.fs
            around = (strip.beats[index + 1] - strip.beats[index - 1]) / strip.fs
            assert before < 0.8 * rr
            assert around < 1.9 * rr
            checked += 1
    assert checked >= 3


def test_it_runs_vt_as_three_or_more_fast_ventricular_beats():
    strip = generate(60, hr_bpm=70, vt_runs=2, seed=5)
    labels = "".join(strip.beat_labels)
    assert "VVV" in labels
    start = labels.index("VVV")
    vt_rr = (strip.beats[start + 1] - strip.beats[start]) / strip.fs
    assert 60 / vt_rr >= 100
    assert any(label == "VT" for _, _, label in strip.rhythms)


def test_it_makes_pauses_of_at_least_two_seconds():
    strip = generate(60, hr_bpm=70, pauses=2, seed=6)
    assert np.sum(rr_s(strip) >= 2.0) == 2
    assert sum(label == "PAUSE" for _, _, label in strip.rhythms) == 2


@pytest.mark.parametrize("fs", [125.0, 250.0, 360.0, 500.0, 1000.0])
def test_it_puts_r_peaks_at_the_labelled_samples_at_any_rate(fs):
    strip = generate(10, fs=fs, seed=9)
    assert len(strip.signal_mv) == round(10 * fs)
    half = int(0.05 * fs)
    for r in strip.beats[1:-1]:
        local = strip.signal_mv[r - half : r + half + 1]
        assert abs(int(np.argmax(local)) - half) <= 2
    heights = strip.signal_mv[strip.beats]
    assert 0.6 < heights.min() and heights.max() < 2.5  # R amplitude in mV


def spectrum_peak_share(signal: np.ndarray, fs: float, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(signal - signal.mean())) ** 2
    freqs = np.fft.rfftfreq(len(signal), 1 / fs)
    return power[(freqs >= low) & (freqs <= high)].sum() / power.sum()


def test_it_adds_powerline_and_baseline_wander_where_they_belong():
    clean = generate(20, seed=10).signal_mv
    hum = generate(20, seed=10, noise=NoiseConfig(powerline=0.2, powerline_hz=60.0)).signal_mv
    wander = generate(20, seed=10, noise=NoiseConfig(baseline_wander=0.4)).signal_mv
    assert spectrum_peak_share(hum - clean, 250.0, 59.5, 60.5) > 0.95
    assert spectrum_peak_share(wander - clean, 250.0, 0.0, 0.5) > 0.95


def test_it_adds_noise_at_a_target_snr():
    rng = np.random.default_rng(0)
    clean = generate(20, seed=11).signal_mv
    noise = rng.normal(size=len(clean))
    noisy = add_noise_at_snr(clean, noise, 6.0)
    added = noisy - clean
    snr = 10 * np.log10(np.var(clean) / np.var(added))
    assert snr == pytest.approx(6.0, abs=0.5)


@pytest.mark.parametrize("kind", WINDOW_KINDS)
def test_it_shows_the_requested_kind_in_a_2_second_window(kind):
    strip = generate_window(kind, seed=12)
    assert len(strip.signal_mv) == 500
    label = strip.window_labels()[0]
    assert label == (0 if kind == "normal" else 1)
    if kind == "normal":
        assert set(strip.beat_labels) == {"N"}
        assert all(60 <= 60 / rr <= 100 for rr in rr_s(strip))
    if kind in ("pvc", "vt"):
        assert "V" in strip.beat_labels
    if kind == "pac":
        assert "S" in strip.beat_labels


def test_it_labels_windows_by_the_same_rule_as_real_data():
    strip = generate(20, hr_bpm=60, seed=13)
    assert strip.window_labels().tolist() == [0] * 10
    first_beat = strip.beats[0]
    strip.beat_labels[0] = "V"  # one ectopic beat makes its window arrhythmia
    labels = strip.window_labels()
    assert labels[first_beat // 500] == 1 and labels.sum() == 1
    strip.rhythms.append((1200, 1300, "AFIB"))  # so does overlapping a non-sinus rhythm
    assert strip.window_labels()[2] == 1


def test_it_builds_the_seed_recipe_dataset():
    windows, labels = make_binary_dataset(30, 30, seed=14)
    assert windows.shape == (60, 500) and windows.dtype == np.float32
    assert labels.tolist() == [0] * 30 + [1] * 30
    assert np.all(np.isfinite(windows))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"duration_s": 0}, "duration_s must be positive"),
        ({"duration_s": 5, "fs": 20}, "fs must be between"),
        ({"duration_s": 5, "rhythm": "SVT"}, "rhythm must be one of NSR"),
        ({"duration_s": 5, "hr_bpm": 400}, "hr_bpm must be between"),
        ({"duration_s": 5, "pvc_per_min": -1}, "must not be negative"),
    ],
)
def test_it_refuses_impossible_requests(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(**kwargs)
    with pytest.raises(ValueError, match="kind must be one of normal"):
        generate_window("flutter")


def test_a_pause_range_that_is_not_a_range_of_seconds_is_refused():
    for bad in [(0.0, 3.0), (4.0, 3.0), (3.0, 25.0)]:
        with pytest.raises(ValueError, match="pause_range_s"):
            generate(20, pauses=1, pause_range_s=bad)


def test_the_pause_range_sets_the_pause_and_moves_nothing_else():
    short = generate(30, pauses=1, seed=4)
    long = generate(30, pauses=1, seed=4, pause_range_s=(4.0, 4.0))
    gaps_short, gaps_long = np.diff(short.beats) / 250.0, np.diff(long.beats) / 250.0
    assert 2.5 <= gaps_short.max() <= 3.5
    assert gaps_long.max() == pytest.approx(4.0, abs=0.02)
    # the same draws: every interval but the pause is the same (the longer pause pushes the
    # strip's last beat out of its 30 s)
    others_short = np.delete(gaps_short, gaps_short.argmax())
    others_long = np.delete(gaps_long, gaps_long.argmax())
    n = min(len(others_short), len(others_long))
    assert n >= 25
    assert np.allclose(others_short[:n], others_long[:n], atol=0.01)
