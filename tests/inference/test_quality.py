"""The signal-quality (noise) probability: its grid, flat lines, clean and noisy ECG, bad input,
the nst-style noise mixing, the labels, and real nstdb noise (skipped without the data)."""

import numpy as np
import pytest

from inference.quality import (
    QUALITY_FEATURE_NAMES,
    SYNTHETIC_VT_STRIPS,
    QualityModel,
    add_noise_blocks,
    noise_probability,
    noise_rms_mv,
    noisy_block_mask,
    probability_from_features,
    qrs_size_mv,
    quality_features,
    read_mitdb,
    segment_error_labels,
    shipped_model,
)
from inference.synthetic import NoiseConfig, generate
from inference.vf import FEATURE_NAMES, is_flat, segment_features, vf_probability


def _flagged_share(ecg_mv: np.ndarray, fs_hz: float) -> float:
    return float((noise_probability(ecg_mv, fs_hz) >= shipped_model().threshold).mean())


@pytest.mark.parametrize("fs_hz", [128.0, 250.0, 360.0])
def test_grid_is_the_vf_detectors(fs_hz):
    # 61.3 s: 30 whole 2-s segments and a piece left out, as vf_probability leaves it
    ecg = generate(61.3, fs=fs_hz, seed=3).signal_mv
    noise = noise_probability(ecg, fs_hz)
    assert noise.shape == vf_probability(ecg, fs_hz).shape == (30,)
    assert np.all((noise >= 0) & (noise <= 1))
    # the stream's route gives the very same numbers, and its first 30 columns are exactly the
    # features the VF stage already computes
    features = quality_features(ecg, fs_hz)
    assert features.shape == (30, len(QUALITY_FEATURE_NAMES))
    assert np.array_equal(features[:, : len(FEATURE_NAMES)], segment_features(ecg, fs_hz))
    assert np.array_equal(probability_from_features(features), noise)


def test_flat_line_is_never_noisy():
    fs_hz = 250.0
    assert np.all(noise_probability(np.zeros(round(20 * fs_hz)), fs_hz) == 0.0)
    # a lead off: tiny white noise under the flatness limit, at any offset
    rng = np.random.default_rng(0)
    tiny = 3.0 + 0.005 * rng.normal(size=round(20 * fs_hz))
    assert np.all(noise_probability(tiny, fs_hz) == 0.0)


def test_clean_synthetic_ecg_is_not_flagged_but_muscle_noise_is():
    fs_hz = 250.0
    clean = generate(120.0, fs=fs_hz, seed=1).signal_mv
    noisy = generate(120.0, fs=fs_hz, seed=1, noise=NoiseConfig(muscle=0.6)).signal_mv
    assert _flagged_share(clean, fs_hz) <= 0.05
    assert _flagged_share(noisy, fs_hz) >= 0.8


@pytest.mark.parametrize(
    ("rate_bpm", "fs_hz", "gain"), [(125.0, 360.0, 1.0), (170.0, 250.0, -1.0), (215.0, 360.0, 0.6)]
)
def test_sustained_synthetic_vt_is_not_noise(rate_bpm, fs_hz, gain):
    # The first model flagged 100 % of a synthetic 170-bpm VT that the QRS detector follows
    # perfectly. Seeds past the training strips' (0 .. SYNTHETIC_VT_STRIPS - 1): never fitted.
    seed = SYNTHETIC_VT_STRIPS + int(rate_bpm)
    strip = generate(120.0, fs=fs_hz, rhythm="VT", hr_bpm=rate_bpm, seed=seed)
    assert _flagged_share(gain * strip.signal_mv, fs_hz) <= 0.02
    # with modest muscle noise, too
    noisy = generate(
        120.0, fs=fs_hz, rhythm="VT", hr_bpm=rate_bpm, seed=seed, noise=NoiseConfig(muscle=0.05)
    )
    assert _flagged_share(gain * noisy.signal_mv, fs_hz) <= 0.02


def test_heavy_muscle_noise_on_vt_is_flagged():
    fs_hz = 250.0
    clean = generate(60.0, fs=fs_hz, rhythm="VT", hr_bpm=170.0, seed=500).signal_mv
    noise = generate(60.0, fs=fs_hz, seed=501, noise=NoiseConfig(muscle=1.0)).signal_mv
    noise -= generate(60.0, fs=fs_hz, seed=501).signal_mv  # the noise alone
    assert _flagged_share(clean, fs_hz) <= 0.05
    assert _flagged_share(clean + noise, fs_hz) >= 0.5


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        noise_probability(np.zeros((1000, 2)), 250.0)
    with pytest.raises(ValueError):
        noise_probability(np.array([0.0, np.nan] * 1000), 250.0)
    with pytest.raises(ValueError):
        noise_probability(np.zeros(1000), 50.0)  # under the VF features' 100 Hz
    with pytest.raises(ValueError):
        probability_from_features(np.zeros((3, 15)))  # the 2-s half only
    with pytest.raises(ValueError):
        probability_from_features(np.zeros((3, 30)))  # the VF features without organisation
    assert noise_probability(np.zeros(100), 250.0).shape == (0,)  # shorter than one segment


def test_shipped_weights_load_with_a_threshold():
    from inference.vf import shipped_model as vf_model

    model = QualityModel.load()  # its own weights by default, not VfModel.load's VF weights
    assert isinstance(model, QualityModel)
    assert np.array_equal(model.w1, shipped_model().w1)
    assert not np.array_equal(model.w1, vf_model().w1)
    assert 0.0 < shipped_model().threshold < 1.0


def test_noise_blocks_follow_nst_protocol_and_snr():
    fs_hz = 100.0
    mask = noisy_block_mask(round(1000 * fs_hz), fs_hz)
    minutes = np.arange(len(mask)) / fs_hz / 60
    assert not mask[minutes < 5].any()
    assert mask[(minutes >= 5) & (minutes < 7)].all()
    assert not mask[(minutes >= 7) & (minutes < 9)].any()
    assert mask[(minutes >= 9) & (minutes < 11)].all()
    clean = np.zeros(len(mask))
    noise = np.random.default_rng(0).normal(size=len(mask))
    for snr_db in (12.0, 0.0):
        noisy, _ = add_noise_blocks(clean, noise, fs_hz, snr_db, size_mv=2.0)
        # S = size^2 / 8, N = RMS^2: at 0 dB the noise RMS is size / sqrt(8)
        added_rms = noise_rms_mv(noisy[mask], fs_hz)
        assert added_rms == pytest.approx(2.0 / np.sqrt(8) * 10 ** (-snr_db / 20), rel=0.03)
        assert np.all(noisy[~mask] == 0.0)


def test_qrs_size_is_trimmed_peak_to_peak():
    fs_hz = 100.0
    ecg = np.zeros(10_000)
    beats = np.arange(50, 9_950, 100)
    ecg[beats] = 1.0
    ecg[beats[0]] = 50.0  # one huge artefact: among the largest 5 %, dropped
    assert qrs_size_mv(ecg, beats, fs_hz) == pytest.approx(1.0)


def test_labels_mark_misses_and_false_beats_in_their_segment():
    fs_hz = 100.0  # segments of 200 samples
    reference = np.array([50, 250, 450, 650])
    detected = np.array([52, 250 + 20, 520, 650, 790])  # 20 samples = 200 ms: a miss + an FP
    label, keep = segment_error_labels(5, fs_hz, reference, detected, excluded=[(800, 900)])
    # 250 missed and 270 false (segment 1); 450 missed and 520 false (segment 2); 790 false (3)
    assert label.tolist() == [0, 1, 1, 1, 0]
    assert keep.tolist() == [True, True, True, True, False]


# --- Real data (CARDIOSPIKE_DATA_DIR) --------------------------------------------------------


@pytest.fixture(scope="session")
def nstdb():
    from tests.inference.conftest import physionet_folder

    return physionet_folder("nstdb", "118e00")


def test_clean_118_is_not_flagged_and_unseen_muscle_noise_is(nstdb):
    from inference.datasets.wfdb_record import read_record_mv

    record = read_record_mv(nstdb / "118e00", [0])
    ecg, fs_hz = record.p_signal[:, 0], float(record.fs)
    # 0-5 min of 118e00: record 118 before nst adds any noise
    assert _flagged_share(ecg[: round(300 * fs_hz)], fs_hz) <= 0.02
    # the second half of ma was never fitted (training used its first half); its flat
    # stretches (under 0.03 mV) are never "noisy", so only the others count
    noise = read_record_mv(nstdb / "ma", [0]).p_signal[:, 0][650_000 // 2 :]
    features = quality_features(noise, fs_hz)
    flat = is_flat(features[:, FEATURE_NAMES.index("log_amplitude_mv_2s")])
    flagged = probability_from_features(features) >= shipped_model().threshold
    assert flat.mean() < 0.5
    assert flagged[~flat].mean() >= 0.9
    assert not flagged[flat].any()


def test_ds2_is_never_read(tmp_path):
    with pytest.raises(ValueError, match="DS2"):
        read_mitdb(tmp_path, "100")
