"""Isolated beat rows: building them in the seeds' layouts, classifying and explaining them."""

import argparse

import numpy as np
import pytest
import torch

from inference.aami import AAMI_CLASSES
from inference.beat_rows import (
    ROW_LAYOUTS,
    BeatRowCNN,
    classify_rows,
    layout_for_width,
    prepare_rows,
    row_saliency,
    rows_from_record,
)
from inference.beat_rows_training import card_markdown, class_weights, fit, for_json, scores

R_AMPLITUDE_MV = 1.0
S_AMPLITUDE_MV = -0.3


def synthetic_record(fs: float, rr_s: float, duration_s: float) -> tuple[np.ndarray, np.ndarray]:
    """A flat baseline with a narrow R wave (+1 mV) and an S dip (-0.3 mV) 30 ms after it,
    at a constant RR; returns the signal (mV) and the R-peak indices."""
    time_s = np.arange(round(duration_s * fs)) / fs
    r_times_s = np.arange(0.3, duration_s - 0.3, rr_s)
    ecg = np.zeros_like(time_s)
    for r_s in r_times_s:
        ecg += R_AMPLITUDE_MV * np.exp(-0.5 * ((time_s - r_s) / 0.008) ** 2)
        ecg += S_AMPLITUDE_MV * np.exp(-0.5 * ((time_s - r_s - 0.03) / 0.008) ** 2)
    return ecg, np.round(r_times_s * fs).astype(np.int64)


@pytest.fixture(scope="module")
def beat_rows():
    ecg, peaks = synthetic_record(360.0, 0.8, 30.0)
    return {layout: rows_from_record(ecg, 360.0, peaks, layout) for layout in ROW_LAYOUTS}


# --- building rows ------------------------------------------------------------------------


def test_it_builds_window216_rows_with_the_r_peak_at_index_90():
    ecg, peaks = synthetic_record(360.0, 0.8, 20.0)
    rows = rows_from_record(ecg, 360.0, peaks, "window216")
    assert rows.shape == (len(peaks), 216)
    assert np.all(rows.argmax(axis=1) == 90)
    # millivolts, unscaled (the S dip's tail takes 0.3 uV off the R peak)
    assert np.allclose(rows[:, 90], R_AMPLITUDE_MV, atol=1e-3)


def test_it_resamples_a_250_hz_record_to_the_layouts_rate():
    ecg, peaks = synthetic_record(250.0, 0.8, 20.0)
    rows = rows_from_record(ecg, 250.0, peaks, "window216")
    assert rows.shape == (len(peaks), 216)
    assert np.all(np.abs(rows.argmax(axis=1) - 90) <= 1)
    kaggle = rows_from_record(ecg, 250.0, peaks, "kaggle187")
    assert kaggle.shape == (len(peaks), 187)
    assert np.all(kaggle[:, :50].argmax(axis=1) <= 1)  # the row starts at its R peak


def test_it_builds_kaggle187_rows_from_the_r_peak_for_1_2_median_rr(beat_rows):
    rows = beat_rows["kaggle187"]
    assert rows.shape[1] == 187
    # each row starts at its R peak, the maximum of its 10-s window, scaled to 1 (at 125 Hz
    # the true peak falls between two samples)
    assert np.allclose(rows[:, 0], 1.0, atol=0.01)
    assert rows.min() >= 0.0 and rows.max() <= 1.0
    # RR 0.8 s at 125 Hz is 100 samples: the beat fills 1.2 x 100 = 120 samples, which take
    # in the next R peak at sample 100, then zeros. The baseline sits above the S dip, the
    # window's minimum, so it is not zero (0.3 / 1.3 before the 125 Hz low-pass blunts the dip).
    baseline = -S_AMPLITUDE_MV / (R_AMPLITUDE_MV - S_AMPLITUDE_MV)
    assert np.allclose(rows[:, 20:90], baseline, atol=0.02)
    assert np.all(np.ptp(rows[:, 20:90], axis=1) < 1e-3)
    assert np.allclose(rows[:-1, 99:102].max(axis=1), 1.0, atol=0.01)
    assert np.all(rows[:, 120:] == 0.0)


def test_it_truncates_slow_beats_at_187_samples():
    ecg, peaks = synthetic_record(360.0, 2.0, 30.0)  # 30 bpm: 1.2 x RR = 2.4 s > 1.496 s
    rows = rows_from_record(ecg, 360.0, peaks, "kaggle187")
    assert rows.shape == (len(peaks), 187)
    assert np.all(rows[:-1, -1] > 0.0)  # filled to the end (the last beat meets the record end)


def test_it_gives_every_r_peak_a_row_even_at_the_record_edges():
    ecg, peaks = synthetic_record(360.0, 0.8, 10.0)
    edge_peaks = np.array([5, *peaks[1:-1], len(ecg) - 3])
    rows = rows_from_record(ecg, 360.0, edge_peaks, "window216")
    assert rows.shape == (len(edge_peaks), 216)
    assert np.all(rows[0, :85] == ecg[0])  # before the signal: its first value repeated
    assert np.all(rows[-1, 93:] == ecg[-1])


def test_it_returns_no_rows_for_no_peaks():
    ecg, _ = synthetic_record(360.0, 0.8, 5.0)
    assert rows_from_record(ecg, 360.0, [], "kaggle187").shape == (0, 187)


@pytest.mark.parametrize(
    ("peaks", "message"),
    [
        ([10, 5000], "outside the signal"),
        ([-1, 10], "outside the signal"),
        ([300, 200], "strictly increasing"),
        ([10.5, 20], "whole sample numbers"),
        ([[1, 2]], "1-D"),
    ],
)
def test_it_refuses_bad_r_peaks(peaks, message):
    ecg, _ = synthetic_record(360.0, 0.8, 3.0)
    with pytest.raises(ValueError, match=message):
        rows_from_record(ecg, 360.0, peaks, "window216")


def test_it_refuses_an_unknown_layout_naming_the_valid_ones():
    with pytest.raises(ValueError, match="kaggle187, window216"):
        rows_from_record(np.zeros(1000), 360.0, [10], "kaggle188")


def test_it_tells_the_layout_from_the_table_width():
    assert layout_for_width(187) == ("kaggle187", False)
    assert layout_for_width(188) == ("kaggle187", True)
    assert layout_for_width(216) == ("window216", False)
    assert layout_for_width(217) == ("window216", True)
    with pytest.raises(ValueError, match="has 200 values"):
        layout_for_width(200)


# --- classifying and explaining -------------------------------------------------------------


@pytest.mark.parametrize("layout", list(ROW_LAYOUTS))
def test_it_gives_five_probabilities_summing_to_one_per_row(beat_rows, layout):
    probabilities = classify_rows(beat_rows[layout], layout)
    assert probabilities.shape == (len(beat_rows[layout]), len(AAMI_CLASSES))
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert probabilities.min() >= 0.0
    single = classify_rows(beat_rows[layout][3], layout)  # one row as a 1-D array
    assert np.allclose(single[0], probabilities[3], atol=1e-6)


def test_it_ignores_a_baseline_offset_in_millivolt_rows(beat_rows):
    rows = beat_rows["window216"][:5]
    assert np.allclose(classify_rows(rows, "window216"), classify_rows(rows + 2.5, "window216"))


@pytest.mark.parametrize("layout", list(ROW_LAYOUTS))
def test_it_explains_a_row_the_same_way_every_time(beat_rows, layout):
    first = row_saliency(beat_rows[layout], layout, 2)
    second = row_saliency(beat_rows[layout], layout, 2)
    assert first == second
    spec = ROW_LAYOUTS[layout]
    assert first["start"] == 0 and first["fs"] == spec.fs_hz
    assert len(first["values"]) == spec.n_samples
    assert min(first["values"]) >= 0.0 and max(first["values"]) == 1.0
    probabilities = classify_rows(beat_rows[layout][2], layout)[0]
    assert first["label"] == AAMI_CLASSES[int(probabilities.argmax())]
    assert first["probability"] == pytest.approx(probabilities.max(), abs=1e-5)


def test_it_locates_the_saliency_of_a_millivolt_row_on_the_beat(beat_rows):
    values = np.array(row_saliency(beat_rows["window216"], "window216", 0)["values"])
    # the flat baseline carries nothing (gradient x input is zero where the input is zero)
    assert values[70:130].max() == 1.0
    assert values[:50].max() < 0.05


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (np.zeros((3, 180)), "180 values each; layout window216 needs 216"),
        (np.zeros((0, 216)), "no beat rows"),
        ([], "no beat rows"),
        ([[0.0] * 216, [0.0] * 215], "row 1 has 215 values"),
        (
            np.where(np.arange(216 * 4).reshape(4, 216) == 3 * 216 + 7, np.nan, 0.0),
            "row 3 contains NaN at value 7",
        ),
        (np.where(np.arange(216 * 2).reshape(2, 216) == 5, np.inf, 0.0), "row 0 contains inf"),
        ([["a"] * 216], "only numbers"),
        (np.zeros((2, 3, 216)), "2-D"),
    ],
)
def test_it_refuses_bad_rows_naming_the_problem(rows, message):
    with pytest.raises(ValueError, match=message):
        classify_rows(rows, "window216")


def test_it_refuses_a_saliency_row_that_is_not_there(beat_rows):
    with pytest.raises(ValueError, match="row_index 99 is out of range: there are 5 rows"):
        row_saliency(beat_rows["kaggle187"][:5], "kaggle187", 99)


def test_it_refuses_rows_of_the_other_layout(beat_rows):
    with pytest.raises(ValueError, match="layout kaggle187 needs 187"):
        classify_rows(beat_rows["window216"], "kaggle187")


# --- training pieces ----------------------------------------------------------------------


def test_it_selects_on_the_f1_of_classes_with_enough_validation_beats():
    labels = np.array([0] * 60 + [1] * 60 + [3] * 5)
    predicted = np.array([0] * 60 + [0] * 30 + [1] * 30 + [0] * 5)
    metrics = scores(labels, predicted)
    n_f1, s_f1 = 2 * 60 / (60 + 95), 2 * 30 / (60 + 30)
    assert metrics["selection_f1"] == pytest.approx((n_f1 + s_f1) / 2)  # F (5 beats) left out
    assert metrics["macro_f1"] == pytest.approx((n_f1 + s_f1 + 0.0) / 3)
    # the card stores undefined figures (Se of a class without beats) as null, not NaN
    assert for_json(metrics)["classes"]["V"]["se"] is None


def test_it_caps_the_inverse_frequency_class_weights():
    labels = np.array([0] * 1000 + [1] * 100 + [2] * 10 + [4] * 1)
    weights = class_weights(labels, max_ratio=50.0)
    assert weights[0] == 1.0 and weights[1] == pytest.approx(10.0)
    assert weights[2] == pytest.approx(50.0) and weights[4] == pytest.approx(50.0)


def test_it_trains_deterministically():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(192, 216)).astype(np.float32)
    labels = rng.integers(0, 3, size=192)
    args = argparse.Namespace(
        seed=1,
        max_weight=30.0,
        learning_rate=1e-3,
        weight_decay=0.0,
        epochs=1,
        batch_size=64,
        augment=True,
        patience=1,
    )
    states = []
    for _ in range(2):
        torch.manual_seed(1)
        model = BeatRowCNN()
        fit(model, (rows[:128], labels[:128]), (rows[128:], labels[128:]), args, noise=0.02)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])


# --- real data ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ds2_excerpt():
    from inference.datasets import data_dir
    from inference.datasets.mitdb import load_record

    try:
        folder = data_dir() / "mitdb"
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    if not (folder / "200.hea").is_file():
        pytest.skip(f"MIT-BIH record 200 not found in {folder}")
    record = load_record(folder, "200")
    # the first 5 minutes of a DS2 record (never trained on or tuned with) with many PVCs: a
    # sanity check of the shipped models, not their evaluation (that is the model card's)
    keep = record.beat_samples < 5 * 60 * record.fs
    labels = np.array([AAMI_CLASSES.index(cls) for cls in record.beat_classes])[keep]
    return record.signal_mv[: int(5 * 60 * record.fs)], record.fs, record.beat_samples[keep], labels


@pytest.mark.parametrize("layout", list(ROW_LAYOUTS))
def test_it_tells_normal_from_ventricular_beats_on_a_real_ds2_record(ds2_excerpt, layout):
    ecg, fs, peaks, labels = ds2_excerpt
    rows = rows_from_record(ecg, fs, peaks, layout)
    predicted = classify_rows(rows, layout).argmax(axis=1)
    metrics = scores(labels, predicted)
    assert metrics["classes"]["N"]["support"] > 200 and metrics["classes"]["V"]["support"] > 100
    assert metrics["classes"]["V"]["se"] > 0.8
    assert metrics["classes"]["N"]["se"] > 0.9


def test_prepare_rows_keeps_kaggle_rows_as_they_are(beat_rows):
    rows = beat_rows["kaggle187"]
    assert np.allclose(prepare_rows(rows, "kaggle187"), rows, atol=1e-6)


@pytest.mark.parametrize("layout", list(ROW_LAYOUTS))
def test_it_ships_each_layouts_card_with_its_markdown_in_step(layout):
    import json

    from inference.registry import WEIGHTS_DIR
    from inference.train import DOCS_DIR

    card = json.loads((WEIGHTS_DIR / f"beat-rows-{layout}.json").read_text())
    assert card["input"]["n_samples"] == ROW_LAYOUTS[layout].n_samples
    assert card["data"]["test_records"] and not set(card["data"]["test_records"]) & set(
        card["data"]["train_records"] + card["data"]["validation_records"]
    )
    assert (DOCS_DIR / f"beat-rows-{layout}.md").read_text() == card_markdown(card)
