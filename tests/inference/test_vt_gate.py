"""The VT gate (inference.vt_gate): real VT is supported, noise read as VT is not."""

import numpy as np
import pytest

from inference.synthetic import NoiseConfig, generate
from inference.vt_gate import (
    MARGIN_S,
    MIN_QRS_BAND_SHARE,
    baseline_power_share,
    episode_span,
    qrs_band_power_share,
    vt_episode_supported,
)
from tests.inference.conftest import physionet_folder


def test_synthetic_vt_is_supported():
    strip = generate(20.0, fs=250.0, rhythm="VT", hr_bpm=170.0, seed=1)
    supported, features = vt_episode_supported(strip.signal_mv, 250.0, 5.0, 12.0)
    assert supported, features
    assert features["qrs_band_share"] >= MIN_QRS_BAND_SHARE


def test_vt_buried_in_muscle_noise_is_not_supported():
    # muscle noise spreads its power evenly to 40 Hz: the span is no longer QRS-dominated
    strip = generate(
        20.0, fs=250.0, rhythm="VT", hr_bpm=170.0, seed=1, noise=NoiseConfig(muscle=1.5)
    )
    supported, features = vt_episode_supported(strip.signal_mv, 250.0, 5.0, 12.0)
    assert not supported
    assert features["qrs_band_share"] < MIN_QRS_BAND_SHARE


def test_slow_baseline_motion_is_not_supported():
    fs_hz = 250.0
    t_s = np.arange(round(20 * fs_hz)) / fs_hz
    strip = generate(20.0, fs=fs_hz, rhythm="VT", hr_bpm=150.0, seed=2)
    wander_mv = 4.0 * np.sin(2 * np.pi * 0.4 * t_s)  # a slow swing far larger than the QRS
    assert baseline_power_share(strip.signal_mv[: round(8 * fs_hz)], fs_hz) < 0.3
    supported, features = vt_episode_supported(strip.signal_mv + wander_mv, fs_hz, 5.0, 12.0)
    assert not supported
    assert features["baseline_share"] > 0.3


def test_flat_span_is_not_supported():
    supported, features = vt_episode_supported(np.zeros(5000), 250.0, 5.0, 10.0)
    assert not supported and features["qrs_band_share"] == 0.0


def test_span_is_episode_with_margins_cut_to_the_signal():
    assert episode_span(10.0, 12.0, 100.0, 10_000) == (
        round((10.0 - MARGIN_S) * 100),
        round((12.0 + MARGIN_S) * 100) + 1,
    )
    assert episode_span(0.5, 1.5, 100.0, 300) == (0, 300)


def test_shares_are_fractions():
    rng = np.random.default_rng(0)
    noise_mv = rng.normal(0, 0.5, 2500)
    assert 0.0 <= qrs_band_power_share(noise_mv, 250.0) <= 1.0
    assert 0.0 <= baseline_power_share(noise_mv, 250.0) <= 1.0
    with pytest.raises(ValueError):
        qrs_band_power_share(np.array([np.nan, 1.0, 2.0]), 250.0)


def test_real_vt_in_ds1_is_supported(mitdb):
    from inference.quality import read_mitdb

    record = read_mitdb(mitdb, "205")
    assert record["vt"], "205 has reference VT"
    for start, end in record["vt"]:
        supported, features = vt_episode_supported(
            record["ecg"], record["fs"], start / record["fs"], end / record["fs"]
        )
        assert supported, (start, features)


def test_pure_muscle_noise_vt_is_gated():
    """60 s of nstdb muscle noise: the product finds VT in it; the gate removes all of it."""
    from inference.analysis import analyze_signal
    from inference.quality import read_noise

    noise, fs_hz = read_noise(physionet_folder("nstdb", "ma"), "ma")
    ecg_mv = noise[: round(120 * fs_hz), 0]
    vt = [e for e in analyze_signal(ecg_mv, fs_hz).episodes if e.kind == "VT"]
    assert vt, "the product reads VT in this noise (the problem the gate is for)"
    assert not any(vt_episode_supported(ecg_mv, fs_hz, e.start_s, e.end_s)[0] for e in vt)
