"""The AAMI beat classifier: features, model, serving, saliency and the evaluation command.

Tests on real records use a few minutes of MIT-BIH and skip, saying why, when the data are
absent.
"""

import json

import numpy as np
import pytest

from inference.beats import (
    BEAT_CLASSES,
    RR_FEATURES,
    WINDOW_AFTER_S,
    WINDOW_BEFORE_S,
    WINDOW_SAMPLES,
    beat_features,
    get_beat_classifier,
    rr_features,
    saliency_beats,
    saliency_excerpt,
)
from inference.evaluation.beats import beat_metrics
from inference.signal import resample, resample_indices


@pytest.fixture(scope="module")
def excerpt(mitdb):
    """The first 5 minutes of DS2 record 233 (many PVCs), MLII, with its reference beats."""
    from inference.datasets.mitdb import load_record

    record = load_record(mitdb, "233")
    n = round(300 * record.fs)
    inside = record.beat_samples < n
    labels = np.array([BEAT_CLASSES.index(c) for c in record.beat_classes])[inside]
    return record.signal_mv[:n], record.fs, record.beat_samples[inside], labels


def spike_train(fs: float = 250.0) -> tuple[np.ndarray, np.ndarray]:
    """Beats every 1.0 s with one premature beat 0.6 s after the 10th, then a 1.4 s pause."""
    times_s = [float(t) for t in range(10)]
    times_s += [9.6, 11.0] + [12.0 + t for t in range(10)]
    peaks = np.round(np.asarray(times_s) * fs).astype(np.int64)
    ecg = np.zeros(peaks[-1] + round(fs))
    ecg[peaks] = 1.0
    return ecg, peaks


def test_it_computes_rr_features_of_a_known_spike_train():
    _, peaks = spike_train()
    features = rr_features(peaks, 250.0)
    column = {name: index for index, name in enumerate(RR_FEATURES[:9])}
    premature = 10
    assert features.shape == (len(peaks), 9)
    assert features[premature, column["pre_rr_s"]] == pytest.approx(0.6)
    assert features[premature, column["post_rr_s"]] == pytest.approx(1.4)
    # the patient's average RR is 1.0 s: the ratios to it are the intervals themselves
    assert features[premature, column["pre_over_average"]] == pytest.approx(0.6)
    assert features[premature, column["post_over_average"]] == pytest.approx(1.4)
    # the local median excludes the beat itself: ten 1.0 s intervals before it
    assert features[premature, column["pre_over_local"]] == pytest.approx(0.6)
    assert features[premature, column["pre_over_post"]] == pytest.approx(0.6 / 1.4)
    assert features[premature - 1, column["post_over_local"]] == pytest.approx(0.6)
    # a median: one premature beat and its pause do not move the local RR of the next beats
    assert features[premature + 2, column["local_over_average"]] == pytest.approx(1.0)
    # a regular beat: every ratio 1, no irregularity
    assert features[5, 2:8].tolist() == pytest.approx([1.0] * 6)
    assert features[5, column["local_irregularity"]] == 0
    # after the premature beat the last 10 intervals changed by 0.4 s and then 0.8 s
    after = premature + 2
    assert features[after, column["local_irregularity"]] == pytest.approx((0.4 + 0.8) / 10)
    # the first beat borrows its post-RR, the last its pre-RR
    assert features[0, column["pre_rr_s"]] == pytest.approx(1.0)
    assert features[-1, column["post_rr_s"]] == pytest.approx(1.0)


def test_premature_beats_that_outnumber_the_sinus_beats_still_look_early():
    # a slow sinus rhythm (1.8 s) broken by runs of three premature beats at 0.7 s: the
    # premature beats are most of the beats, so their interval is the median RR; the average
    # RR is the mean (de Chazal's), which counts the sinus intervals too
    intervals_s = np.tile([1.8, 0.7, 0.7, 0.7], 50)
    peaks = np.round(np.concatenate([[0.0], np.cumsum(intervals_s)]) * 360).astype(np.int64)
    features = rr_features(peaks, 360.0)
    column = {name: index for index, name in enumerate(RR_FEATURES[:9])}
    pre = features[:, column["pre_rr_s"]]
    later = np.arange(len(peaks)) > 40
    early = later & np.isclose(pre, 0.7, atol=0.01)
    sinus = later & np.isclose(pre, 1.8, atol=0.01)
    assert early.sum() > 2 * sinus.sum() > 0
    # the mean interval is 0.975 s (each 32-beat block's mean varies a little with its end)
    assert features[early, column["pre_over_average"]].max() < 0.75
    assert features[sinus, column["pre_over_average"]].min() > 1.75
    # (a median of the intervals, 0.7 s, would make every premature beat look on time)


def test_it_gives_one_window_and_rhythm_row_per_beat():
    ecg, peaks = spike_train()
    windows, templates, rhythm = beat_features(ecg, 250.0, peaks)
    assert windows.shape == templates.shape == (len(peaks), WINDOW_SAMPLES)
    assert rhythm.shape == (len(peaks), len(RR_FEATURES))
    assert windows.dtype == np.float32 and np.isfinite(rhythm).all()
    empty = beat_features(ecg, 250.0, np.array([], dtype=np.int64))
    assert [part.shape[0] for part in empty] == [0, 0, 0]


def test_it_reads_the_same_windows_at_any_sampling_rate(excerpt):
    ecg, fs, peaks, _ = excerpt
    ecg, peaks = ecg[: round(60 * fs)], peaks[peaks < round(59 * fs)]
    windows_360, _, rhythm_360 = beat_features(ecg, fs, peaks)
    windows_250, _, rhythm_250 = beat_features(
        resample(ecg, fs, 250.0), 250.0, resample_indices(peaks, fs, 250.0)
    )
    # R peaks move by up to half a sample at 250 Hz (2 ms): windows agree to a few µV RMS
    rms = np.sqrt(np.mean((windows_360 - windows_250) ** 2))
    assert rms < 0.03
    assert np.allclose(rhythm_360[:, 0], rhythm_250[:, 0], atol=0.005)


@pytest.mark.parametrize(
    ("ecg", "fs", "peaks", "message"),
    [
        (np.zeros(1000), 250.0, [10, 5], "strictly increasing"),
        (np.zeros(1000), 250.0, [10, 1000], "outside the signal"),
        (np.zeros(1000), 250.0, [-1, 10], "outside the signal"),
        (np.zeros(1000), 250.0, [10.5, 20], "whole sample numbers"),
        (np.zeros(1000), 250.0, [[10, 20]], "1-D"),
        (np.zeros(1000), 250.0, ["a", "b"], "sample indices"),
        (np.zeros(1000), 50.0, [10, 20], "between 100 and 2000 Hz"),
        (np.zeros(1000), "250", [10, 20], "positive finite number of Hz"),
        (np.zeros((1000, 2)), 250.0, [10, 20], "single lead"),
        (np.array([0.0, np.nan, 0.0, 0.0]), 250.0, [1], "NaN"),
    ],
)
def test_it_refuses_bad_input_with_a_message(ecg, fs, peaks, message):
    with pytest.raises(ValueError, match=message):
        get_beat_classifier().classify(ecg, fs, np.asarray(peaks))


def test_it_loads_each_beat_model_once_and_names_the_available_ones():
    assert get_beat_classifier() is get_beat_classifier("beat-cnn-mitdb")
    with pytest.raises(LookupError, match="beat-cnn-mitdb"):
        get_beat_classifier("no-such-model")


def test_it_classifies_a_real_ds2_excerpt_sensibly(excerpt):
    ecg, fs, peaks, labels = excerpt
    probabilities = get_beat_classifier().classify(ecg, fs, peaks)
    assert probabilities.shape == (len(peaks), len(BEAT_CLASSES))
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    metrics = beat_metrics(labels, probabilities.argmax(axis=1))
    # 233's first 5 minutes: about 1,000 N and 250 V beats, from a patient never trained on
    assert metrics["classes"]["V"]["support"] > 100
    assert metrics["classes"]["N"]["se"] > 0.9
    assert metrics["classes"]["V"]["se"] > 0.8 and metrics["classes"]["V"]["ppv"] > 0.8
    # the same beats give the same answers at another sampling rate
    at_250 = get_beat_classifier().classify(
        resample(ecg, fs, 250.0), 250.0, resample_indices(peaks, fs, 250.0)
    )
    assert np.mean(at_250.argmax(axis=1) == probabilities.argmax(axis=1)) > 0.97


def test_it_explains_a_beat_with_a_deterministic_saliency_map(excerpt):
    ecg, fs, peaks, _ = excerpt
    ecg, peaks = ecg[: round(30 * fs)], peaks[peaks < round(29 * fs)]
    classifier = get_beat_classifier()
    first = classifier.saliency(ecg, fs, peaks, 12)
    again = classifier.saliency(ecg, fs, peaks, 12)
    assert first == again
    assert first["fs"] == fs
    assert first["start"] == int(np.ceil(peaks[12] - WINDOW_BEFORE_S * fs))
    expected = int(np.floor(peaks[12] + WINDOW_AFTER_S * fs)) - first["start"] + 1
    assert len(first["values"]) == expected
    values = np.asarray(first["values"])
    assert values.min() >= 0 and values.max() == pytest.approx(1.0)
    assert first["label"] in BEAT_CLASSES
    probabilities = classifier.classify(ecg, fs, peaks)[12]
    assert first["probability"] == pytest.approx(probabilities.max(), abs=1e-5)
    assert first["label"] == BEAT_CLASSES[int(probabilities.argmax())]
    with pytest.raises(ValueError, match="out of range"):
        classifier.saliency(ecg, fs, peaks, len(peaks))


def test_a_saliency_map_read_from_an_excerpt_equals_the_whole_recordings(excerpt):
    """A long recording need not be read whole to explain a beat: the samples
    ``saliency_excerpt`` names (the beats the label depends on, and a minute each side for the
    band-pass) give the whole recording's map, label and probability, to the bit."""
    ecg, fs, peaks, _ = excerpt
    classifier = get_beat_classifier()
    for index in (3, 360, len(peaks) - 1):
        start, end = saliency_excerpt(peaks, fs, index, len(ecg))
        whole = classifier.saliency(ecg, fs, peaks, index)
        part = classifier.saliency(ecg[start:end], fs, peaks, index, first_sample=start)
        assert part == whole, index
        if index == 360:  # minutes 0.5-4.5 of 5: the excerpt ends inside on both sides
            assert 0 < start and end < len(ecg)
    # an excerpt that misses a beat the label depends on is refused
    first, _ = saliency_beats(index, len(peaks))
    cut = int(peaks[first]) + 1
    with pytest.raises(ValueError, match="must hold the R peaks"):
        classifier.saliency(ecg[cut:], fs, peaks, index, first_sample=cut)


def test_it_scores_classes_from_a_known_confusion():
    reference = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3])
    predicted = np.array([0, 0, 1, 1, 0, 2, 2, 0, 3])
    metrics = beat_metrics(reference, predicted)
    assert metrics["n_beats"] == 9
    assert metrics["accuracy"] == pytest.approx(6 / 9)
    assert metrics["confusion"][0] == [2, 1, 0, 0, 0]
    s = metrics["classes"]["S"]
    assert (s["se"], s["ppv"], s["support"]) == (0.5, 0.5, 2)
    assert metrics["classes"]["V"]["f1"] == pytest.approx(2 * 2 / (3 + 2))
    assert np.isnan(metrics["classes"]["Q"]["se"])


def test_it_evaluates_beats_on_a_wfdb_folder(excerpt, tmp_path):
    """`evaluate beats` on a 5-minute WFDB excerpt written at 250 Hz: both runs, every key."""
    import wfdb

    from inference.evaluate import main

    ecg, fs, peaks, labels = excerpt
    ecg_250 = resample(ecg, fs, 250.0)
    wfdb.wrsamp(
        "ex233",
        fs=250,
        units=["mV"],
        sig_name=["MLII"],
        p_signal=ecg_250[:, np.newaxis],
        fmt=["16"],
        write_dir=str(tmp_path),
    )
    wfdb.wrann(
        "ex233",
        "atr",
        np.minimum(resample_indices(peaks, fs, 250.0), len(ecg_250) - 1),
        np.array(["N" if label == 0 else "V" if label == 2 else "A" for label in labels]),
        write_dir=str(tmp_path),
    )
    output = tmp_path / "out" / "beats.json"
    assert (
        main(["beats", "--data", str(tmp_path), "--records", "ex233", "--json", str(output)]) == 0
    )
    result = json.loads(output.read_text())
    assert result["records"] == ["ex233"]
    for run in ("reference", "end_to_end"):
        assert set(result[run]["classes"]) == set(BEAT_CLASSES)
        assert {"se", "ppv", "f1", "support"} <= set(result[run]["classes"]["V"])
        assert len(result[run]["confusion"]) == 5
        assert (output.parent / f"beats-{run.replace('_', '-')}.png").is_file()
    assert result["reference"]["n_beats"] == len(peaks)
    assert result["end_to_end"]["qrs"]["se"] > 0.98
    assert result["reference"]["accuracy"] > 0.9
    assert output.with_suffix(".md").is_file()


def test_it_makes_synthetic_premature_beats_only_from_regular_normal_ones():
    import torch

    from inference.beat_training import make_premature

    column = {name: index for index, name in enumerate(RR_FEATURES)}
    rhythm = torch.ones(400, len(RR_FEATURES))
    rhythm[:, column["pre_rr_s"]] = 0.8
    rhythm[:, column["post_rr_s"]] = 0.8
    rhythm[:, column["pre_over_average"]] = 1.0
    rhythm[:, column["local_irregularity"]] = 0.02
    rhythm[200:300, column["local_irregularity"]] = 0.3  # atrial fibrillation: left alone
    labels = torch.zeros(400, dtype=torch.int64)
    labels[300:] = 2  # V beats: left alone
    generator = torch.Generator().manual_seed(0)
    new_rhythm, new_labels = make_premature(rhythm, labels, 0.5, generator)
    changed = new_labels == 1
    assert 60 < int(changed[:200].sum()) < 140 and not changed[200:].any()
    pre = new_rhythm[changed, column["pre_rr_s"]]
    assert (pre >= 0.4 - 1e-6).all() and (pre <= 0.68 + 1e-6).all()
    assert torch.allclose(new_rhythm[changed, column["pre_over_local"]], pre / 0.8)
    assert (new_rhythm[changed, column["post_rr_s"]] >= 0.8 - 1e-6).all()
    assert torch.equal(new_rhythm[~changed], rhythm[~changed])
    assert torch.equal(labels, torch.where(torch.arange(400) >= 300, 2, 0))  # input untouched


def test_synthetic_s_beats_can_borrow_a_real_s_beats_p_wave_and_keep_their_own_qrs():
    import torch

    from inference.beat_training import P_SWAP_END, p_wave_donors, swap_p_waves
    from inference.beats import rhythm_features

    column = {name: index for index, name in enumerate(RR_FEATURES)}
    x = np.arange(WINDOW_SAMPLES, dtype=np.float32)
    r_index = round(WINDOW_BEFORE_S * 180)
    qrs = np.exp(-(((x - r_index) / 2.0) ** 2)).astype(np.float32)
    sinus_p = 0.15 * np.exp(-(((x - 25) / 4.0) ** 2)).astype(np.float32)
    beats = np.stack([qrs + sinus_p] * 4)  # N beats: sinus P wave, 1 mV QRS
    # the donor: an S beat with an inverted P wave, its dominant beat twice as tall
    donor = 2 * (qrs - 0.1 * np.exp(-(((x - 25) / 4.0) ** 2))).astype(np.float32)
    train = {
        "windows": np.vstack([beats, donor[np.newaxis], np.roll(beats[:1], 30, axis=1)]),
        "templates": np.vstack([beats, 2 * beats[:1], 2 * beats[:1]]),
        "labels": np.array([0, 0, 0, 0, 1, 1]),  # the last S beat's QRS is not its dominant's
    }
    train["rhythm"] = rhythm_features(
        np.ones((6, 9), np.float32), train["windows"], train["templates"]
    )
    donors = p_wave_donors(train)
    assert donors.shape == (1, WINDOW_SAMPLES)  # only the S beat with a normal QRS lends
    assert torch.allclose(donors[0], torch.from_numpy(donor / 2))

    windows = torch.from_numpy(beats)
    templates = torch.from_numpy(beats)
    rhythm = torch.from_numpy(train["rhythm"][:4])
    chosen = torch.tensor([True, False, True, False])
    generator = torch.Generator().manual_seed(0)
    new_windows, new_rhythm = swap_p_waves(windows, templates, rhythm, chosen, donors, generator)
    # untouched: the beats not chosen, and every beat's QRS and T from the swap's end on
    assert torch.equal(new_windows[~chosen], windows[~chosen])
    assert torch.equal(new_rhythm[~chosen], rhythm[~chosen])
    assert torch.equal(new_windows[:, P_SWAP_END:], windows[:, P_SWAP_END:])
    # before it, the donor's inverted P wave at the beat's own scale, no sinus P wave left
    swapped = new_windows[chosen, :P_SWAP_END]
    assert float(swapped[:, 25].max()) < -0.05
    assert (
        float((new_windows[chosen, P_SWAP_END - 1] - windows[chosen, P_SWAP_END]).abs().max())
        < 0.02
    )
    # the QRS-likeness features are those of the new windows, as rhythm_features computes them
    expected = rhythm_features(np.ones((2, 9), np.float32), new_windows[chosen].numpy(), beats[:2])
    for name in ("correlation_with_dominant", "amplitude_over_dominant"):
        assert torch.allclose(
            new_rhythm[chosen, column[name]], torch.from_numpy(expected[:, column[name]]), atol=1e-5
        )
    assert (new_rhythm[chosen, column["correlation_with_dominant"]] < rhythm[chosen, 9]).all()
    assert torch.equal(windows, torch.from_numpy(beats))  # the inputs are left as they are
    # with the P wave as a feature, its value is the swapped window's (so they agree)
    from inference.beat_training import with_p_wave_feature
    from inference.beats import beat_p_waves

    featured = torch.from_numpy(
        with_p_wave_feature({"rhythm": train["rhythm"][:4], "p_wave": np.ones(4)})["rhythm"]
    )
    _, new_featured = swap_p_waves(
        windows, templates, featured, chosen, donors, torch.Generator().manual_seed(0)
    )
    p_wave = beat_p_waves(new_windows[chosen].numpy(), beats[:2], expected)
    assert (p_wave < -0.9).all()  # an inverted P wave against an upright sinus one
    assert torch.allclose(
        new_featured[chosen, len(RR_FEATURES)], torch.from_numpy(p_wave).float(), atol=1e-5
    )
    assert torch.equal(new_featured[~chosen], featured[~chosen])
    # asked to, it leaves the QRS features as they were (and still swaps the stretch)
    same_windows, same_rhythm = swap_p_waves(
        windows, templates, rhythm, chosen, donors, torch.Generator().manual_seed(0), False, False
    )
    assert torch.equal(same_windows, new_windows) and torch.equal(same_rhythm, rhythm)


def test_it_makes_synthetic_beats_inside_premature_runs_with_consistent_rr_features():
    import torch

    from inference.beat_training import make_premature, make_premature_runs

    column = {name: index for index, name in enumerate(RR_FEATURES)}
    n = 1000
    sinus = torch.linspace(0.6, 1.2, n)  # every patient's own sinus interval
    rhythm = torch.ones(n, len(RR_FEATURES))
    rhythm[:, column["pre_rr_s"]] = sinus
    rhythm[:, column["post_rr_s"]] = sinus
    rhythm[:, column["local_irregularity"]] = 0.02
    rhythm[600:700, column["local_irregularity"]] = 0.3  # atrial fibrillation: left alone
    rhythm[700:800, column["pre_over_local"]] = 1.3  # an irregular beat: left alone
    labels = torch.zeros(n, dtype=torch.int64)
    labels[800:] = 2  # V beats: left alone
    generator = torch.Generator().manual_seed(0)
    isolated_rhythm, isolated_labels = make_premature(rhythm, labels, 0.2, generator)
    new_rhythm, new_labels = make_premature_runs(isolated_rhythm, isolated_labels, 0.5, generator)
    changed = (new_labels == 1) & (isolated_labels == 0)
    assert 200 < int(changed.sum()) < 400 and not changed[600:].any()
    # the isolated premature beats stay as make_premature left them, the rest as they were
    assert torch.equal(new_rhythm[~changed], isolated_rhythm[~changed])
    assert torch.equal(new_labels[~changed], isolated_labels[~changed])

    def feature(name: str) -> torch.Tensor:
        return new_rhythm[changed, column[name]]

    base = sinus[changed]
    pre, post = feature("pre_rr_s"), feature("post_rr_s")
    early = pre / base
    assert (early >= 0.5 - 1e-5).all() and (early <= 0.85 + 1e-5).all()
    # early against the average RR (here the sinus interval)...
    assert torch.allclose(feature("pre_over_average"), early)
    assert (feature("pre_over_average") < 0.85 + 1e-5).all()
    # ...but against a local RR somewhere between the sinus and the run's interval
    local = pre / feature("pre_over_local")
    assert (local >= pre - 1e-5).all() and (local <= base + 1e-5).all()
    assert (feature("pre_over_local") > 0.95).any() and (feature("pre_over_local") < 0.6).any()
    average = pre / feature("pre_over_average")
    assert torch.allclose(feature("local_over_average"), local / average, atol=1e-5)
    assert torch.allclose(feature("post_over_local"), post / local, atol=1e-5)
    assert torch.allclose(feature("post_over_average"), post / average, atol=1e-5)
    assert torch.allclose(feature("pre_over_post"), pre / post, atol=1e-5)
    # post-RR: the run's next interval, or a pause back to sinus rhythm at the run's end
    inside = (post >= 0.9 * pre - 1e-5) & (post <= 1.1 * pre + 1e-5)
    at_end = (post >= base - 1e-5) & (post <= (2 - early) * base + 1e-5)
    assert (inside | at_end).all() and inside.any() and at_end.any()
    # the run's entry among the last 10 changes of interval
    irregularity = feature("local_irregularity")
    assert torch.allclose(irregularity, 0.02 + (1 - early) / 10, atol=1e-5)
    assert (irregularity < 0.1).all()
    assert torch.equal(labels, torch.where(torch.arange(n) >= 800, 2, 0))  # input untouched
    # fraction 0 draws nothing and changes nothing
    same = make_premature_runs(rhythm, labels, 0.0, generator)
    assert same[0] is rhythm and same[1] is labels


def test_it_encodes_the_p_wave_with_an_unknown_flag_and_gives_synthetic_s_beats_one():
    import torch

    from inference.beat_training import (
        P_WAVE_COLUMNS,
        make_premature,
        make_premature_runs,
        p_wave_columns,
        synthetic_p_wave_pool,
        with_p_wave_feature,
    )

    # NaN (QRS unlike the dominant beat) is 0 and flagged; an exact 0 (the dominant beat's P
    # stretch is flat) is flagged only with flat_unknown
    p_wave = np.array([0.95, np.nan, 0.0, -0.4])
    assert np.array_equal(
        p_wave_columns(p_wave), np.array([[0.95, 0], [0, 1], [0, 0], [-0.4, 0]], np.float32)
    )
    assert np.array_equal(
        p_wave_columns(p_wave, flat_unknown=True),
        np.array([[0.95, 0], [0, 1], [0, 1], [-0.4, 0]], np.float32),
    )
    data = {
        "rhythm": np.ones((4, len(RR_FEATURES)), np.float32),
        "p_wave": p_wave,
        "labels": np.array([0, 1, 1, 1]),
    }
    widened = with_p_wave_feature(data)
    assert widened["rhythm"].shape == (4, len(RR_FEATURES) + len(P_WAVE_COLUMNS))
    assert data["rhythm"].shape == (4, len(RR_FEATURES))  # input untouched
    # the pool: the S beats whose P wave was read (not NaN), not the N beats
    assert torch.equal(synthetic_p_wave_pool(data), torch.tensor([0.0, -0.4]))
    assert torch.equal(synthetic_p_wave_pool(data, flat_unknown=True), torch.tensor([-0.4]))
    assert with_p_wave_feature(data, flat_unknown=True)["rhythm"][2, -1] == 1
    with pytest.raises(ValueError, match="no S beat"):
        synthetic_p_wave_pool({**data, "labels": np.zeros(4, dtype=np.int64)})

    column = {name: index for index, name in enumerate(RR_FEATURES)}
    n = 1000
    rhythm = torch.ones(n, len(RR_FEATURES) + 2)
    rhythm[:, column["pre_rr_s"]] = 0.8
    rhythm[:, column["post_rr_s"]] = 0.8
    rhythm[:, column["local_irregularity"]] = 0.02
    rhythm[:500, len(RR_FEATURES)] = 0.95  # a sinus P wave
    rhythm[:500, len(RR_FEATURES) + 1] = 0.0
    rhythm[500:, len(RR_FEATURES)] = 0.0  # ...and, on the other half, an unread one
    original = rhythm.clone()
    labels = torch.zeros(n, dtype=torch.int64)
    pool = torch.tensor([-0.7, -0.2, 0.3])
    for make in (make_premature, make_premature_runs):
        plain = make(rhythm, labels, 0.3, torch.Generator().manual_seed(1))
        new_rhythm, new_labels = make(rhythm, labels, 0.3, torch.Generator().manual_seed(1), pool)
        # the same beats made S with the same intervals as without the P wave...
        assert torch.equal(new_labels, plain[1])
        assert torch.equal(new_rhythm[:, : len(RR_FEATURES)], plain[0][:, : len(RR_FEATURES)])
        changed = new_labels == 1
        assert 200 < int(changed.sum()) < 400
        # ...and a P wave drawn from the pool, read (not unknown)
        drawn = new_rhythm[changed, len(RR_FEATURES)]
        assert torch.isin(drawn, pool).all() and len(torch.unique(drawn)) == 3
        assert (new_rhythm[changed, len(RR_FEATURES) + 1] == 0).all()
        assert torch.equal(new_rhythm[~changed], rhythm[~changed])
        assert torch.equal(rhythm, original)  # input untouched
        # keep_unknown: a beat whose P wave is unknown keeps it so, the others draw as before
        kept, kept_labels = make(
            rhythm, labels, 0.3, torch.Generator().manual_seed(1), pool, keep_unknown=True
        )
        assert torch.equal(kept_labels, new_labels)
        read = changed & (torch.arange(n) < 500)
        assert torch.equal(kept[read], new_rhythm[read])
        assert torch.equal(
            kept[changed & ~read, len(RR_FEATURES) :], original[changed & ~read, -2:]
        )
    with pytest.raises(ValueError, match="P_WAVE_COLUMNS"):
        make_premature(rhythm[:, : len(RR_FEATURES)], labels, 0.3, torch.Generator(), pool)


def test_the_gated_p_wave_term_moves_only_the_n_s_split_and_nothing_where_unknown():
    import argparse

    import torch

    from inference.beat_training import PWaveGatedNet, cv_network

    torch.manual_seed(0)
    args = argparse.Namespace(
        p_wave_feature="gated", morphology_dropout=0.0, difference_channel=False
    )
    model = cv_network(len(RR_FEATURES) + 2, args).eval()
    assert isinstance(model, PWaveGatedNet)
    with torch.no_grad():  # a vote that is far from 0: tanh(1 - 3 * correlation)
        model.p_wave.weight.fill_(-3.0)
        model.p_wave.bias.fill_(1.0)
    n = 6
    windows = torch.randn(n, WINDOW_SAMPLES)
    templates = torch.randn(n, WINDOW_SAMPLES)
    rhythm = torch.randn(n, len(RR_FEATURES) + 2)
    rhythm[:, len(RR_FEATURES)] = torch.tensor([0.95, -0.5, 0.3, 0.0, 0.0, 0.9])
    rhythm[:, len(RR_FEATURES) + 1] = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    with torch.no_grad():
        gated = model(windows, templates, rhythm)
        # the same network with the P-wave term removed: it reads the RR features only
        plain = model.network(windows, templates, rhythm[:, : len(RR_FEATURES)])
    unknown, known = slice(3, 6), slice(0, 3)
    # unknown P wave (flagged): exactly the network's logits, whatever the correlation says
    assert torch.equal(gated[unknown], plain[unknown])
    # known: only N and S move, toward N for a sinus-like P wave and S for an unlike one...
    n_s = [BEAT_CLASSES.index("N"), BEAT_CLASSES.index("S")]
    others = [i for i in range(len(BEAT_CLASSES)) if i not in n_s]
    assert torch.equal(gated[known][:, others], plain[known][:, others])
    log_odds = (gated[known, 1] - gated[known, 0]) - (plain[known, 1] - plain[known, 0])
    expected = 2 * torch.tanh(1 - 3 * rhythm[known, len(RR_FEATURES)])
    assert torch.allclose(log_odds, expected, atol=1e-5)
    # ...and P(N) + P(S) is kept, so V, F and Q never see the P wave
    assert not torch.allclose(torch.softmax(gated, 1), torch.softmax(plain, 1), atol=1e-6)
    assert torch.allclose(
        torch.softmax(gated, 1)[:, others], torch.softmax(plain, 1)[:, others], atol=1e-6
    )
    # the other encodings keep the plain network on every rhythm column
    plain_args = argparse.Namespace(**{**vars(args), "p_wave_feature": "flat-unknown"})
    assert cv_network(len(RR_FEATURES) + 2, plain_args).rhythm[0].in_features == (
        len(RR_FEATURES) + 2
    )


def test_it_counts_how_long_the_rhythm_kept_each_beats_rate_within_each_record():
    import torch

    from inference.beat_training import (
        RATE_RUN_BEATS,
        make_premature,
        make_premature_runs,
        rate_run_lengths,
    )

    # 70 sinus beats, an isolated premature beat and its pause, sinus, a run of 12, sinus
    pre = np.array([1.0] * 70 + [0.6, 1.3] + [1.0] * 5 + [0.7] * 12 + [1.0] * 3)
    count = np.round(rate_run_lengths(pre, np.array(["a"] * len(pre))) * RATE_RUN_BEATS)
    assert count[:66].tolist() == list(range(65)) + [64]  # capped
    assert count[70] == 0 and count[71] == 0  # the premature beat and its pause
    assert count[72:77].tolist() == [0, 1, 2, 3, 4]  # sinus again, counted afresh
    assert count[77:89].tolist() == list(range(12))  # the k-th beat of the run: k - 1
    assert count[89] == 0
    # a run does not reach into the record before
    two = rate_run_lengths(np.ones(10), np.array(["a"] * 5 + ["b"] * 5))
    assert (np.round(two * RATE_RUN_BEATS) == [0, 1, 2, 3, 4] * 2).all()

    # synthetic S beats get the count their story implies: 0 isolated, up to 10 in a run
    column = {name: index for index, name in enumerate(RR_FEATURES)}
    rhythm = torch.ones(400, len(RR_FEATURES) + 1)
    rhythm[:, column["pre_rr_s"]] = 0.8
    rhythm[:, column["local_irregularity"]] = 0.02
    labels = torch.zeros(400, dtype=torch.int64)
    for make in (make_premature, make_premature_runs):
        new_rhythm, new_labels = make(rhythm, labels, 0.5, torch.Generator().manual_seed(0))
        made = new_labels == 1
        runs = new_rhythm[made, -1] * RATE_RUN_BEATS
        assert made.any() and (runs >= 0).all() and (runs <= 10).all()
        assert (runs == 0).all() if make is make_premature else runs.max() > 5
        assert (new_rhythm[~made, -1] == 1).all()


def test_it_refuses_the_p_wave_feature_outside_cross_validation(capsys):
    from inference.beat_training import main

    with pytest.raises(SystemExit) as refused:
        main(["--p-wave-feature", "--epochs", "1"])
    assert refused.value.code == 2
    with pytest.raises(SystemExit):
        main(["--p-wave-feature", "flat-unknown"])
    with pytest.raises(SystemExit):
        main(["--p-wave-feature", "gated"])
    assert (
        "--p-wave-feature is a cross-validation experiment; the served classifier does not "
        "take the P wave as an input yet" in capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        main(["--rate-run-feature", "--epochs", "1"])
    assert "--rate-run-feature is a cross-validation experiment" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--future-rr-feature", "--epochs", "1"])
    assert "--future-rr-feature is a cross-validation experiment" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--cv", "5", "--future-rr-feature", "--rate-run-feature"])
    assert "cannot be combined" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "the served classifier does not take the P wave" in " ".join(
        capsys.readouterr().out.split()
    )


def test_the_reproduce_command_names_premature_runs_and_borrowed_p_waves_only_when_used():
    import argparse

    from inference.beat_training import reproduce_command

    args = argparse.Namespace(
        seed=0,
        epochs=8,
        stop_epoch=5,
        members=1,
        batch_size=128,
        learning_rate=0.001,
        weight_decay=0.0001,
        weight_power=0.5,
        morphology_dropout=0.3,
        synthetic_premature=0.1,
        synthetic_premature_runs=0.0,
        synthetic_s_p_wave="keep",
        f_weight_scale=0.2,
        augment=True,
        difference_channel=False,
        fold_s_in_af=True,
        ds2_evaluations=4,
        cv_results=[],
        cv_chosen=None,
        choice_note=None,
        ds2_note=None,
    )
    assert "--synthetic-premature-runs" not in reproduce_command(args)
    args.synthetic_premature_runs = 0.05
    assert "--synthetic-premature 0.1 " in reproduce_command(args)
    assert "--synthetic-premature-runs 0.05 " in reproduce_command(args)
    assert "--synthetic-s-p-wave" not in reproduce_command(args)
    args.synthetic_s_p_wave = "donor"
    assert "--synthetic-s-p-wave donor " in reproduce_command(args)


def test_it_holds_each_ds1_patient_out_exactly_once_in_cross_validation():
    from inference.aami import DS1
    from inference.beat_training import patient_folds

    folds = patient_folds(list(DS1), 5)
    assert len(folds) == 5
    held_out = [record for fold in folds for record in fold]
    assert sorted(held_out) == sorted(DS1)  # every patient once, none twice
    assert {len(fold) for fold in folds} == {4, 5}
    assert patient_folds(list(DS1), 5) == folds  # seeded: the same folds every run
    with pytest.raises(ValueError, match="n_folds"):
        patient_folds(list(DS1), 1)


def test_it_scores_pooled_held_out_predictions_of_several_folds():
    import argparse

    from inference.beat_training import cross_validate, cv_report

    rng = np.random.default_rng(0)
    n = 240
    labels = np.where(np.arange(n) % 6 == 0, 2, 0).astype(np.int64)  # every 6th beat V
    rhythm = rng.normal(size=(n, len(RR_FEATURES))).astype(np.float32)
    rhythm[:, -1] = np.where(labels == 2, 3.0, 1.0)  # V beats: a separable amplitude ratio
    data = {
        "windows": rng.normal(size=(n, WINDOW_SAMPLES)).astype(np.float32),
        "templates": rng.normal(size=(n, WINDOW_SAMPLES)).astype(np.float32),
        "rhythm": rhythm,
        "labels": labels,
        "record": np.repeat(np.array(["a", "b", "c", "d"]), n // 4),
    }
    args = argparse.Namespace(
        cv=2,
        fold_seed=0,
        model="logreg",
        weight_power=0.5,
        f_weight_scale=1.0,
        seed=0,
        fold_s_in_af=False,
    )
    result = cross_validate(data, args)
    assert sorted(record for fold in result["folds"] for record in fold) == ["a", "b", "c", "d"]
    assert result["probabilities"].shape == (1, n, len(BEAT_CLASSES))
    # every beat got a held-out prediction, and the separable V beats are found
    assert np.allclose(result["probabilities"].sum(axis=2), 1.0, atol=1e-5)
    row = cv_report(labels, result["probabilities"])[0]
    assert row["v_f1"] > 0.95


def test_it_serves_a_seed_ensemble_as_the_mean_of_its_members_probabilities():
    import torch

    from inference.beats import BeatClassifier, BeatEnsemble

    torch.manual_seed(0)
    ensemble = BeatEnsemble(3, difference_channel=False).eval()
    card = {"name": "test-ensemble", "version": "0", "weights": "unused.pt"}
    classifier = BeatClassifier({**card, "difference_channel": False}, ensemble.state_dict())
    ecg, peaks = spike_train()
    probabilities = classifier.classify(ecg, 250.0, peaks)
    windows, templates, rhythm = beat_features(ecg, 250.0, peaks)
    inputs = [torch.from_numpy(array) for array in (windows, templates, rhythm)]
    with torch.inference_mode():
        members = [torch.softmax(m(*inputs), dim=1).numpy() for m in ensemble.members]
    assert np.allclose(probabilities, np.mean(members, axis=0), atol=1e-5)
    assert not np.allclose(members[0], members[1])  # the members differ
    first = classifier.saliency(ecg, 250.0, peaks, 10)
    assert first == classifier.saliency(ecg, 250.0, peaks, 10)
    assert max(first["values"]) == pytest.approx(1.0)


def test_the_served_beat_card_names_the_cpu_and_maths_libraries_it_was_trained_with():
    # whether the training command repeats bit for bit depends on them (as the PTB-XL cards say)
    from inference.registry import WEIGHTS_DIR

    environment = json.loads((WEIGHTS_DIR / "beat-cnn-mitdb.json").read_text())["environment"]
    assert environment["cpu_model"] and environment["cpu_capability"]
    assert "unknown" not in (environment["blas"], environment["onednn"])


def test_the_beat_card_keeps_the_hand_written_notes_before_its_limits(tmp_path):
    # the notes record what was learned after the DS2 read; writing the card must not drop them
    from inference.beat_training import card_ending

    notes = tmp_path / "notes.md"
    notes.write_text("<!-- Hand-written. -->\n\n### What the read shows\n\n- a note\n")
    ending = card_ending(notes)
    assert ending.startswith("### What the read shows\n\n- a note\n\n\nLimits: single lead")
    assert "Hand-written" not in ending
    without = card_ending(tmp_path / "absent.md")
    assert without.startswith("\nLimits: single lead") and "###" not in without


def test_the_committed_beat_card_ends_with_its_notes_file_and_limits():
    # edit docs/models/beat-cnn-mitdb-notes.md, not the card: the training command rewrites it
    from inference.beat_training import NOTES_PATH, card_ending
    from inference.train import DOCS_DIR

    assert NOTES_PATH.exists()
    card = (DOCS_DIR / "beat-cnn-mitdb.md").read_text()
    assert card.endswith("(`ds2_per_record`).\n\n" + card_ending(NOTES_PATH))


def test_the_future_rr_is_the_median_of_the_intervals_after_the_post_rr_within_a_record():
    import torch

    from inference.beat_training import (
        FUTURE_COLUMN,
        FUTURE_RR_COLUMNS,
        future_rr,
        make_premature,
        make_premature_runs,
        with_future_rr_feature,
    )

    # sinus at 1 s, a premature beat (0.6 s) and its pause (1.4 s), then the rhythm speeds up
    pre = np.array([1.0] * 12 + [0.6, 1.4] + [0.8] * 14)
    record = np.array(["a"] * len(pre))
    future = future_rr(pre, np.ones(len(pre)), record)
    # beat 11: its post-RR is the premature one; the 10 after it (the pause, then 0.8 s) decide
    assert future[11] == pytest.approx(0.8)
    # beat 0: beats 2-11, all sinus
    assert future[0] == pytest.approx(1.0)
    # the premature beat itself: seen from ahead the rhythm is 0.8 s, not its own 0.6 s
    assert future[12] == pytest.approx(0.8)
    # pauses are left out, and nothing is known past a record's end or across records
    assert np.isnan(future[-2:]).all()
    assert np.isnan(future_rr(np.ones(6), np.ones(6), np.array(["a"] * 3 + ["b"] * 3))[1])
    assert future_rr(np.array([1, 1, 1, 5, 1.0]), np.ones(5), np.array(["a"] * 5))[0] == 1.0

    # the columns: future / average, pre / future, post / future; the local RR where unknown
    column = {name: index for index, name in enumerate(RR_FEATURES)}
    rhythm = np.ones((len(pre), len(RR_FEATURES)), dtype=np.float32)
    rhythm[:, column["pre_rr_s"]] = pre
    rhythm[:, column["post_rr_s"]] = np.append(pre[1:], pre[-1])
    rhythm[:, column["pre_over_average"]] = pre  # an average RR of 1 s
    rhythm[:, column["pre_over_local"]] = pre / 0.9  # a local RR of 0.9 s
    data = with_future_rr_feature({"rhythm": rhythm, "record": record})
    extra = data["rhythm"][:, FUTURE_COLUMN:]
    assert extra.shape == (len(pre), len(FUTURE_RR_COLUMNS))
    assert extra[12].tolist() == pytest.approx([0.8, 0.6 / 0.8, 1.4 / 0.8])
    assert extra[-1].tolist() == pytest.approx([0.9, 0.8 / 0.9, 0.8 / 0.9])

    # synthetic S beats: an isolated one is early against the future RR; a run's may not be
    rows = torch.ones(400, len(RR_FEATURES) + len(FUTURE_RR_COLUMNS))
    rows[:, column["pre_rr_s"]] = 0.8
    rows[:, column["local_irregularity"]] = 0.02
    labels = torch.zeros(400, dtype=torch.int64)
    for make in (make_premature, make_premature_runs):
        new_rows, new_labels = make(rows, labels, 0.5, torch.Generator().manual_seed(0))
        made = new_labels == 1
        pre_over_future = new_rows[made, FUTURE_COLUMN + 1]
        assert made.any()
        if make is make_premature:  # the future is the sinus rhythm it interrupted
            assert (pre_over_future <= 0.85 + 1e-6).all()
            assert torch.allclose(new_rows[made, FUTURE_COLUMN], torch.ones(int(made.sum())))
        else:  # inside a run the future is partly the run's own faster rhythm
            assert (pre_over_future <= 1 + 1e-6).all() and (pre_over_future > 0.9).any()
            assert (new_rows[made, FUTURE_COLUMN] < 0.95).any()
        assert (new_rows[~made, FUTURE_COLUMN:] == 1).all()
