"""The QRS detector: real MIT-BIH records, any rate, streaming, bad input, synthetic ECG.

Tests on real records read a few minutes of the PhysioNet files and skip with the reason when
the data folder is absent (CI has it).
"""

import numpy as np
import pytest

from inference.beat_match import detection_scores, match_beats
from inference.qrs import MAX_PENDING_S, StreamingQrsDetector, detect_qrs
from inference.signal import resample, resample_indices
from inference.synthetic import NoiseConfig, generate
from tests.inference.qrs_signals import excerpt

wfdb = pytest.importorskip("wfdb")


# (record, minutes, Se floor, +P floor): a clean record, a noisy one, and 203 (multiform
# PVCs, atrial flutter/fibrillation, noise), the hardest in the database.
REAL_CASES = [("100", 5, 1.0, 1.0), ("105", 5, 0.995, 0.995), ("203", 5, 0.985, 0.985)]


@pytest.mark.parametrize(("name", "minutes", "se_floor", "ppv_floor"), REAL_CASES)
def test_it_finds_the_beats_of_real_records(mitdb, name, minutes, se_floor, ppv_floor):
    ecg, reference, fs = excerpt(mitdb, name, minutes)
    beats = detect_qrs(ecg, fs)
    scores = detection_scores(reference, beats, fs)
    assert scores["se"] >= se_floor and scores["ppv"] >= ppv_floor, scores
    assert beats.dtype == np.int64 and np.all(np.diff(beats) > 0)


def test_it_puts_the_beat_on_the_r_peak(mitdb):
    ecg, reference, fs = excerpt(mitdb, "100", 2)
    beats = detect_qrs(ecg, fs)
    matched_reference, matched_beats = match_beats(reference, beats, fs)
    offsets_ms = np.abs(beats[matched_beats] - reference[matched_reference]) / fs * 1000
    assert np.median(offsets_ms) <= 10 and np.percentile(offsets_ms, 95) <= 20


@pytest.mark.parametrize("fs_out", [128.0, 250.0, 500.0, 1000.0])
def test_it_holds_its_accuracy_at_any_rate(mitdb, fs_out):
    ecg, reference, fs = excerpt(mitdb, "208", 3)  # PVCs and fusion beats
    resampled = resample(ecg, fs, fs_out)
    beats = detect_qrs(resampled, fs_out)
    scores = detection_scores(resample_indices(reference, fs, fs_out), beats, fs_out)
    assert scores["se"] >= 0.995 and scores["ppv"] >= 0.995, scores


def feed_in_chunks(ecg: np.ndarray, fs: float, sizes) -> np.ndarray:
    detector = StreamingQrsDetector(fs)
    out, start = [], 0
    for size in sizes:
        if start >= len(ecg):
            break
        out.append(detector.push(ecg[start : start + size]))
        start += size
    assert start >= len(ecg)
    out.append(detector.flush())
    return np.concatenate(out)


def random_sizes(seed: int, fs: float, n_samples: int) -> list[int]:
    """Chunk sizes from 1 sample up to a minute, log-uniform, covering n_samples."""
    rng = np.random.default_rng(seed)
    sizes = np.exp(rng.uniform(0.0, np.log(60 * fs), n_samples)).astype(int)
    return list(np.maximum(sizes, 1))


@pytest.mark.parametrize("seed", range(5))
def test_it_streams_the_same_beats_in_chunks_of_any_size(mitdb, seed):
    ecg, _, fs = excerpt(mitdb, "203", 4)
    offline = detect_qrs(ecg, fs)
    streamed = feed_in_chunks(ecg, fs, random_sizes(seed, fs, len(ecg)))
    np.testing.assert_array_equal(streamed, offline)


def test_it_streams_the_same_beats_at_a_high_rate(mitdb):
    # at 1000 Hz the features run on means of 6 samples: blocks must align across chunks
    ecg, _, fs = excerpt(mitdb, "208", 2)
    ecg_1000 = resample(ecg, fs, 1000.0)
    offline = detect_qrs(ecg_1000, 1000.0)
    streamed = feed_in_chunks(ecg_1000, 1000.0, random_sizes(7, 1000.0, len(ecg_1000)))
    np.testing.assert_array_equal(streamed, offline)


def test_it_streams_the_same_beats_one_sample_at_a_time(mitdb):
    ecg, _, fs = excerpt(mitdb, "232", 0.5)  # sinus pauses: search-back fires
    np.testing.assert_array_equal(feed_in_chunks(ecg, fs, [1] * len(ecg)), detect_qrs(ecg, fs))


def test_it_returns_each_streamed_beat_once_and_soon(mitdb):
    ecg, _, fs = excerpt(mitdb, "100", 2)
    detector = StreamingQrsDetector(fs)
    chunk = int(fs)  # one second at a time, like a device
    returned_at = {}
    for start in range(0, len(ecg), chunk):
        for beat in detector.push(ecg[start : start + chunk]):
            returned_at[int(beat)] = start + chunk
    beats = np.array(sorted(returned_at))
    assert len(beats) == len(detect_qrs(ecg, fs)) - len(detector.flush())
    delays_s = (np.array([returned_at[b] for b in beats]) - beats) / fs
    # held until the 2-s learning phase ends, then final by the next chunk or the one after
    assert delays_s[beats > 3 * fs].max() < 2.0


def test_it_keeps_its_memory_bounded(mitdb):
    ecg, _, fs = excerpt(mitdb, "100", 10)
    detector = StreamingQrsDetector(fs)
    most = 0
    for start in range(0, len(ecg), 3600):
        detector.push(ecg[start : start + 3600])
        most = max(most, detector.buffered_samples)
    assert most < (MAX_PENDING_S + 10) * fs + 3600


def test_it_refuses_a_push_after_flush():
    detector = StreamingQrsDetector(250.0)
    detector.push(np.zeros(500))
    detector.flush()
    with pytest.raises(ValueError, match="flushed"):
        detector.push(np.zeros(10))


def test_it_accepts_empty_chunks():
    detector = StreamingQrsDetector(250.0)
    assert len(detector.push(np.zeros(0))) == 0 and len(detector.push([])) == 0


@pytest.mark.parametrize(
    ("kwargs", "fs"),
    [
        ({}, 128.0),
        ({"pvc_per_min": 6.0, "pac_per_min": 4.0}, 250.0),
        ({"rhythm": "AFIB"}, 500.0),
        ({"rhythm": "VT"}, 250.0),
        ({"pauses": 2}, 360.0),
        ({"noise": NoiseConfig.realistic()}, 250.0),
    ],
)
def test_it_finds_every_beat_of_synthetic_ecg(kwargs, fs):
    strip = generate(90.0, fs=fs, seed=3, **kwargs)
    beats = detect_qrs(strip.signal_mv, fs)
    scores = detection_scores(strip.beats, beats, fs)
    assert scores["fn"] == 0 and scores["fp"] == 0, scores


@pytest.mark.parametrize("level_mv", [0.0, 1.5, -0.3])
def test_it_finds_no_beat_on_a_flat_line(level_mv):
    assert len(detect_qrs(np.full(2500, level_mv), 250.0)) == 0


@pytest.mark.parametrize("fs", [128.0, 360.0, 1000.0])
def test_it_finds_no_beat_in_a_flat_line_with_quantization_noise(fs):
    noise_mv = np.random.default_rng(0).normal(0.0, 0.003, int(20 * fs))  # 3 uV rms
    assert len(detect_qrs(noise_mv, fs)) == 0


@pytest.mark.parametrize(
    ("ecg", "fs", "message"),
    [
        (np.array([0.0, np.nan] + [0.0] * 998), 250.0, "NaN at sample 1"),
        (np.array([0.0] * 700 + [np.inf] + [0.0] * 299), 250.0, "inf at sample 700"),
        (np.zeros((1000, 2)), 250.0, "one lead"),
        (np.zeros(400), 250.0, "at least 2 s"),
        (np.zeros(1000), 50.0, "between 100 and 2000 Hz"),
        (np.zeros(1000), 5000.0, "between 100 and 2000 Hz"),
        (np.zeros(1000), float("nan"), "fs must be"),
        (np.zeros(1000), "250", "fs must be"),
        (["a"] * 1000, 250.0, "only numbers"),
    ],
)
def test_it_refuses_bad_input_with_a_clear_message(ecg, fs, message):
    with pytest.raises(ValueError, match=message):
        detect_qrs(ecg, fs)


def test_the_streaming_detector_refuses_bad_chunks_and_rates():
    with pytest.raises(ValueError, match="between 100 and 2000 Hz"):
        StreamingQrsDetector(64.0)
    detector = StreamingQrsDetector(250.0)
    with pytest.raises(ValueError, match="NaN"):
        detector.push(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="one lead"):
        detector.push(np.zeros((10, 2)))
