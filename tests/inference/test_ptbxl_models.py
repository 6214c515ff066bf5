"""The PTB-XL superclass models: networks, training command, cards and ``predict``."""

import csv
import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from inference import ptbxl_training
from inference.datasets.ptbxl import (
    DATABASE_COLUMNS,
    SUPERCLASSES,
    data_fingerprint,
    load_signals,
    patient_splits,
    read_table,
)
from inference.metrics import roc_auc
from inference.ptbxl_models import (
    MODEL_NAMES,
    N_FEATURES,
    TASK,
    DualInputNet,
    MetadataNet,
    best_model_name,
    clear_model_caches,
    load_model,
    metadata_row,
    normalize_ecg,
    predict,
    predict_probabilities,
    scaler_from_card,
)
from inference.registry import WEIGHTS_DIR, list_models


def synthetic_data(seed: int = 0) -> ptbxl_training.PtbxlData:
    """A tiny PTB-XL look-alike: labels that every split holds both ways, leads whose
    amplitude depends on the labels, raw metadata with missing values."""
    rng = np.random.default_rng(seed)
    sizes = {"train": 48, "validation": 20, "test": 20}
    labels, metadata, signals = {}, {}, {}
    for split, n in sizes.items():
        y = (rng.random((n, 5)) < 0.4).astype(np.float32)
        y[0], y[1] = 1.0, 0.0  # each class positive and negative at least once
        labels[split] = y
        raw = np.column_stack(
            [
                rng.uniform(20, 90, n),
                rng.integers(0, 2, n),
                rng.uniform(150, 190, n),
                rng.uniform(50, 100, n),
                np.zeros(n),
                rng.integers(0, 2, n),
                rng.integers(-1, 2, n),
            ]
        ).astype(np.float64)
        raw[::3, 2] = np.nan  # missing heights, as in PTB-XL
        metadata[split] = raw
        t_s = np.arange(1000) / 100.0
        beat = np.sin(2 * np.pi * 1.2 * t_s)[None, :, None]
        gain = 0.5 + y @ np.linspace(0.2, 1.0, 5)
        signals[split] = (
            gain[:, None, None] * beat + 0.05 * rng.standard_normal((n, 1000, 12))
        ).astype(np.float32)
    counts = {
        split: {
            "records": int(len(y)),
            **{s: int(c) for s, c in zip(SUPERCLASSES, y.sum(0), strict=True)},
        }
        for split, y in labels.items()
    }
    return ptbxl_training.PtbxlData(
        folder="/tmp/synthetic",
        ecg_ids={split: np.arange(n) for split, n in sizes.items()},
        # two records per patient, as PTB-XL has for some patients
        patient_ids={
            split: 1000 * i + np.arange(n) // 2 for i, (split, n) in enumerate(sizes.items())
        },
        labels=labels,
        metadata=metadata,
        signals_mv=signals,
        class_counts=counts,
    )


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """The three models trained for two epochs on synthetic data, written as the command
    writes them (weights, cards, docs) into a temporary folder."""
    folder = tmp_path_factory.mktemp("ptbxl")
    weights_dir, docs_dir = folder / "weights", folder / "docs"
    torch.set_num_threads(1)
    data = synthetic_data()
    for key in ptbxl_training.MODELS:
        model, content = ptbxl_training.run(key, data, epochs=2, patience=5, seed=0, resamples=50)
        ptbxl_training.write_outputs(key, model, content, f"test {key}", weights_dir, docs_dir)
    return weights_dir, docs_dir


def a_record(fs_hz: float = 100.0) -> np.ndarray:
    """A smooth 10 s 12-lead record in mV (band-limited, so resampling keeps its shape)."""
    t_s = np.arange(round(10 * fs_hz)) / fs_hz
    leads = [0.8 * np.sin(2 * np.pi * 1.1 * t_s + lead) for lead in range(12)]
    return np.column_stack(leads) + 0.1 * np.sin(2 * np.pi * 7 * t_s)[:, None]


METADATA = {"age_years": 64, "sex_female": 1, "weight_kg": 70, "heart_axis": "LAD"}


def test_networks_give_five_logits_per_record_for_any_length():
    features = torch.zeros(4, N_FEATURES)  # seven features and four missing flags
    assert N_FEATURES == 11
    assert MetadataNet()(features).shape == (4, 5)
    network = DualInputNet().eval()
    assert network(torch.zeros(4, 1000, 12), features).shape == (4, 5)
    assert network(torch.zeros(4, 750, 12), features).shape == (4, 5)


def test_sliding_windows_average_their_probabilities():
    network = DualInputNet().eval()
    ecg = np.random.default_rng(1).standard_normal((2, 1000, 12)).astype(np.float32)
    features = np.zeros((2, N_FEATURES), dtype=np.float32)
    averaged = predict_probabilities(network, features, ecg, 750, 125)
    by_hand = np.mean(
        [predict_probabilities(network, features, ecg[:, s : s + 750]) for s in (0, 125, 250)],
        axis=0,
    )
    np.testing.assert_allclose(averaged, by_hand, rtol=1e-6)


def test_the_tiny_training_run_writes_cards_the_registry_lists(tiny_models):
    weights_dir, docs_dir = tiny_models
    cards = list_models(weights_dir, task=TASK)
    assert [card["name"] for card in cards] == list(MODEL_NAMES)
    for card in cards:
        assert card["command"].startswith("test model0")
        assert set(card["thresholds"]) == set(SUPERCLASSES)
        low, high = card["metrics"]["test_ci95"]["macro_auc"]
        assert low <= card["metrics"]["test"]["macro_auc"] <= high
        assert (docs_dir / f"{card['name']}.md").is_file()
        assert (docs_dir / f"{card['name']}-training.png").stat().st_size > 1000
    overview = (docs_dir / "ptbxl-models.md").read_text()
    assert all(name in overview for name in MODEL_NAMES)
    assert cards[0]["input"]["ecg"] is False and cards[2]["input"]["window_samples"] == 750


def test_the_same_seed_gives_identical_metrics_and_another_seed_does_not():
    torch.set_num_threads(1)
    data = synthetic_data(seed=4)
    kwargs = {"epochs": 3, "patience": 5, "resamples": 20}
    _, first = ptbxl_training.run("model03", data, seed=7, **kwargs)
    _, again = ptbxl_training.run("model03", data, seed=7, **kwargs)
    _, other = ptbxl_training.run("model03", data, seed=8, **kwargs)
    strip = ("training_cpu_s", "training_wall_s")
    assert {k: v for k, v in first.items() if k not in strip} == {
        k: v for k, v in again.items() if k not in strip
    }
    assert first["history"] != other["history"]


def test_the_bootstrap_draws_patients_so_repeated_records_widen_the_interval():
    """Ten patients with four identical records each carry the evidence of ten, not forty:
    drawing patients gives about twice the width of drawing records."""
    rng = np.random.default_rng(3)
    per_patient = (rng.random((10, 5)) < 0.5).astype(np.float32)
    per_patient[0], per_patient[1] = 1.0, 0.0  # every class both ways
    labels = np.repeat(per_patient, 4, axis=0)
    probabilities = np.repeat(rng.random((10, 5)), 4, axis=0)  # uninformative, ~50 % right
    thresholds = np.full(5, 0.5)
    patients = np.repeat(np.arange(10), 4)

    def width(patient_ids):
        intervals, _ = ptbxl_training.bootstrap_intervals(
            labels, probabilities, thresholds, 400, 0, patient_ids
        )
        return intervals["binary_accuracy"][1] - intervals["binary_accuracy"][0]

    assert width(patients) > 1.5 * width(np.arange(40))
    with pytest.raises(ValueError, match="39 patient ids for 40 records"):
        ptbxl_training.bootstrap_intervals(labels, probabilities, thresholds, 10, 0, patients[1:])


def test_the_card_says_how_it_bootstrapped_imputed_and_chose_its_hyperparameters(tiny_models):
    weights_dir, docs_dir = tiny_models
    card = json.loads((weights_dir / "ptbxl-model02.json").read_text())
    assert card["metrics"]["n_test_patients"] == 10  # 20 test records, two per patient
    assert "test patients drawn with replacement" in card["metrics"]["test_bootstrap"]["method"]
    # sex, pacemaker and device: age, height, weight and heart axis have a flag
    assert card["data"]["imputed_without_flag"] == ["sex_female", "pacemaker", "device_cs"]
    assert card["input"]["metadata_features"][7:] == [
        "age_years_missing",
        "height_cm_missing",
        "weight_kg_missing",
        "heart_axis_missing",
    ]
    assert card["data"]["training_rows_missing"]["height_cm"] == 16  # every third of 48
    markdown = (docs_dir / "ptbxl-model02.md").read_text()
    assert "Cluster bootstrap over the 10 test patients" in markdown
    assert "imputed **without a flag**" in markdown
    flat = " ".join(markdown.split())
    assert "sex_female, pacemaker, device_cs are imputed **without a flag**" in flat
    assert "and 4 missing flags" in flat
    assert "fold 10 was not used to choose them" in markdown


STATEMENTS = {"NORM": "NORM", "IMI": "MI", "NDT": "STTC", "IRBBB": "CD", "LVH": "HYP"}


def write_ptbxl_folder(folder: Path, records_per_fold: int = 10) -> Path:
    """A PTB-XL folder of ten folds whose records each hold two of the five superclasses, so
    every class is positive and negative in every partition; metadata only (no signals). In
    fold 10 two records share a patient."""
    folder.mkdir(parents=True)
    with (folder / "scp_statements.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", "description", "diagnostic", "diagnostic_class"])
        writer.writerows(
            [code, code.lower(), "1.0", superclass] for code, superclass in STATEMENTS.items()
        )
    codes = list(STATEMENTS)
    rows = []
    for fold in range(1, 11):
        for k in range(records_per_fold):
            ecg_id = len(rows) + 1
            first, second = codes[k % 5], codes[(k + 2) % 5]
            rows.append(
                {
                    "ecg_id": str(ecg_id),
                    "patient_id": f"{ecg_id if (fold, k) != (10, 1) else ecg_id - 1}.0",
                    "age": str(30 + 5 * (k % 5) + fold),
                    "sex": str(k % 2),
                    "height": "" if k % 3 == 0 else str(160 + k),
                    "weight": str(60 + 3 * (k % 5)),
                    "device": "CS-12" if k % 2 else "AT-6 C 5.5",
                    "scp_codes": f"{{'{first}': 100.0, '{second}': 50.0}}",
                    "heart_axis": "LAD" if k % 5 == 1 else "",
                    "pacemaker": "",
                    "recording_date": f"{1990 + fold}-01-15 10:00:00",
                    "strat_fold": str(fold),
                    "filename_lr": f"records100/00000/{ecg_id:05d}_lr",
                    "filename_hr": f"records500/00000/{ecg_id:05d}_hr",
                }
            )
    with (folder / "ptbxl_database.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*DATABASE_COLUMNS, "recording_date"])
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_the_command_names_its_data_and_the_card_fingerprints_it(tmp_path):
    folder = write_ptbxl_folder(tmp_path / "my ptbxl")
    weights_dir, docs_dir = tmp_path / "weights", tmp_path / "docs"
    argv = ["model01", "--data", str(folder), "--epochs", "2", "--patience", "2"]
    argv += ["--resamples", "20", "--weights-dir", str(weights_dir), "--docs-dir", str(docs_dir)]
    try:
        assert ptbxl_training.main(argv) == 0
    finally:
        torch.use_deterministic_algorithms(False)
    card = json.loads((weights_dir / "ptbxl-model01.json").read_text())
    # the command reproduces on the same folder, not on the default one
    assert shlex.split(card["command"])[-2:] == ["--data", str(folder)]
    assert card["data"]["fingerprint"] == data_fingerprint(folder)
    assert card["data"]["fingerprint"]["database_rows"] == 100
    assert card["metrics"]["n_test_records"] == 10 and card["metrics"]["n_test_patients"] == 9
    markdown = (docs_dir / "ptbxl-model01.md").read_text()
    assert card["data"]["fingerprint"]["ptbxl_database_sha256"] in markdown
    # the card describes the data it was trained on, from the data: not "the 500-record subset"
    described = "a 100-record PTB-XL subset (ecg_id 1-100, 99 patients, recorded 1991-01-15 to "
    assert f"trained and tested on {described}2000-01-15)" in markdown.replace("\n", " ")
    assert "500" not in markdown.replace(card["data"]["fingerprint"]["ptbxl_database_sha256"], "")
    assert card["data"]["copy"]["records_per_fold"] == {str(fold): 10 for fold in range(1, 11)}
    overview = (docs_dir / "ptbxl-models.md").read_text()
    assert f"trained on {described}" in overview.replace("\n", " ")
    # the environment that makes the figures repeat is on the card
    environment = card["environment"]
    assert environment["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert environment["cpu_model"] and environment["blas"] != "unknown"
    flat = " ".join(markdown.split())
    assert "Deterministic on the same CPU and maths library" in flat
    assert f"({ptbxl_training.environment_phrase(environment)})" in flat


def test_a_card_trained_on_a_full_download_says_so(tiny_models):
    weights_dir, _ = tiny_models
    card = json.loads((weights_dir / "ptbxl-model02.json").read_text())
    copy = {
        "records": 21799,
        "patients": 18869,
        "ecg_ids": [1, 21837],
        "recording_dates": ["1989-10-09", "2001-06-28"],
        "records_per_fold": {},
    }
    card["data"]["copy"] = copy
    counts = {"records": 2158, "NORM": 912, "MI": 550, "STTC": 521, "CD": 496, "HYP": 262}
    card["data"]["class_counts"]["test"] = counts
    markdown = " ".join(ptbxl_training.card_markdown(card).split())
    assert "trained and tested on the full PTB-XL (21,799 records" in markdown
    assert "PTB-XL's own test fold" in markdown and "With at least 262 positives" in markdown
    assert "subset" not in markdown
    overview = " ".join(ptbxl_training.overview_markdown([card]).split())
    assert "trained on the full PTB-XL" in overview and "would settle" not in overview


def test_a_zero_width_interval_is_flagged_with_its_positives_and_dropped_draws_shown(
    tiny_models,
):
    weights_dir, _ = tiny_models
    card = json.loads((weights_dir / "ptbxl-model02.json").read_text())
    metrics = card["metrics"]
    metrics["test"]["auc_HYP"] = 1.0
    metrics["test_ci95"]["auc_HYP"] = [0.9996, 1.0]  # zero width at the two decimals shown
    metrics["test_bootstrap"]["undefined_draws"] |= {"auc_HYP": 3, "f1_HYP": 2}
    markdown = ptbxl_training.card_markdown(card)
    hyp = card["data"]["class_counts"]["test"]["HYP"]
    assert "| HYP | 5 | 1.00 [1.00, 1.00] †" in markdown and hyp == 5
    assert "| 3 / 2 |" in markdown  # draws dropped for HYP: AUC / F1
    assert (
        "† HYP ROC AUC: interval degenerate, n positives = 5 of 20 test records (3 of 50 draws "
        "dropped as undefined)" in " ".join(markdown.split())
    )
    assert markdown.count("†") == 2  # the mark and its footnote, nothing else
    overview = ptbxl_training.overview_markdown([card])
    assert "1.00 [1.00, 1.00] †" in overview and "ptbxl-model02 HYP ROC AUC" in overview


def test_the_model_choice_is_cached_and_read_again_after_new_weights(tiny_models, monkeypatch):
    weights_dir, _ = tiny_models
    clear_model_caches()
    first = predict(None, None, METADATA, weights_dir=weights_dir)
    with_ecg = best_model_name(True, str(weights_dir))
    import inference.ptbxl_models as ptbxl_models

    def no_reading(*args, **kwargs):
        raise AssertionError("a request re-read the model cards")

    def no_checking(*args, **kwargs):
        raise AssertionError("a request checked the card's layout again")

    monkeypatch.setattr(ptbxl_models, "list_models", no_reading)
    # the layout was checked once, when load_model read the card
    monkeypatch.setattr(ptbxl_models, "check_feature_layout", no_checking)
    assert predict(None, None, METADATA, weights_dir=weights_dir) == first
    assert best_model_name(True, str(weights_dir)) == with_ecg
    clear_model_caches()  # after new weights are written the cards are read again
    with pytest.raises(AssertionError, match="re-read"):
        best_model_name(False, str(weights_dir))


def test_thresholds_maximize_validation_f1():
    labels = np.array([[1], [1], [0], [0], [1]], dtype=np.float32)
    probabilities = np.array([[0.9], [0.4], [0.35], [0.1], [0.6]])
    # >= 0.4 catches all three positives with no false positive
    assert ptbxl_training.choose_thresholds(labels, probabilities)[0] == 0.4


def test_predict_without_leads_falls_back_to_the_metadata_only_model(tiny_models):
    weights_dir, _ = tiny_models
    result = predict(None, None, METADATA, weights_dir=weights_dir)
    assert result["model"] == "ptbxl-model01" and result["mode"] == "metadata-only"
    assert list(result["probabilities"]) == list(SUPERCLASSES)
    assert all(0.0 <= p <= 1.0 for p in result["probabilities"].values())
    assert result["imputed"] == ["height_cm", "pacemaker", "device_cs"]
    # what the model read instead: the card's training fill values (silent for two of them)
    fill = json.loads((weights_dir / "ptbxl-model01.json").read_text())["metadata_scaler"]
    assert result["imputed_values"] == {
        name: fill["fill_values"][name] for name in ("height_cm", "pacemaker", "device_cs")
    }
    assert set(result["positive"]) <= set(SUPERCLASSES)


def test_predict_with_leads_uses_the_ecg_model_with_the_best_validation_auc(tiny_models):
    weights_dir, _ = tiny_models
    result = predict(a_record(), 100, METADATA, weights_dir=weights_dir)
    cards = [c for c in list_models(weights_dir, task=TASK) if c["input"]["ecg"]]
    best = max(cards, key=lambda c: (c["metrics"]["validation"]["macro_auc"], c["name"]))
    assert result["model"] == best["name"] == best_model_name(True, str(weights_dir))
    assert result["mode"] == "ecg+metadata"
    # with leads and no metadata, every feature is imputed
    assert predict(a_record(), 100, None, weights_dir=weights_dir)["imputed"][0] == "age_years"


def test_predict_resamples_a_500_hz_record(tiny_models):
    weights_dir, _ = tiny_models
    at_100 = predict(a_record(100), 100, METADATA, weights_dir=weights_dir)["probabilities"]
    at_500 = predict(a_record(500), 500, METADATA, weights_dir=weights_dir)["probabilities"]
    for superclass in SUPERCLASSES:
        assert at_500[superclass] == pytest.approx(at_100[superclass], abs=0.02)


def test_predict_treats_ages_over_89_as_ptbxl_does_and_reads_axis_codes(tiny_models):
    weights_dir, _ = tiny_models
    old = predict(None, None, {"age_years": 104}, weights_dir=weights_dir)["probabilities"]
    ninety = predict(None, None, {"age_years": 90}, weights_dir=weights_dir)["probabilities"]
    assert old == ninety
    by_code = predict(None, None, {"heart_axis": "lad"}, weights_dir=weights_dir)
    by_number = predict(None, None, {"heart_axis": -1}, weights_dir=weights_dir)
    assert by_code["probabilities"] == by_number["probabilities"]


@pytest.mark.parametrize(
    ("leads", "fs_hz", "metadata", "message"),
    [
        (None, None, None, "nothing to predict from"),
        (None, None, {"height_cm": None}, "nothing to predict from"),
        (a_record()[:, :11], 100, None, r"\(n_samples, 12\)"),
        (a_record().T, 100, None, "transpose"),
        (np.where(np.arange(1000)[:, None] == 5, np.nan, a_record()), 100, None, "NaN"),
        (a_record(), 50, None, "outside 100-2000 Hz"),
        (a_record(), "100", None, "fs_hz"),
        (a_record()[:800], 100, None, "10 s"),
        (a_record() * 1000, 100, None, "millivolts"),
        (np.where(np.arange(12) == 7, 0.0, a_record()), 100, None, "lead V2 is flat"),
        (None, None, {"age_years": 150}, "age_years 150 is outside"),
        (None, None, {"weight_kg": -3}, "weight_kg"),
        (None, None, {"sex_female": 2}, "sex_female must be 0 or 1"),
        (None, None, {"heart_axis": "XYZ"}, "heart_axis"),
        (None, None, {"heart_axis": 3}, "heart_axis"),
        (None, None, {"age_years": "sixty"}, "finite number"),
        (None, None, {"bmi": 25}, "unknown metadata bmi"),
        (None, None, [64, 1], "mapping"),
    ],
)
def test_predict_refuses_bad_input_saying_why(tiny_models, leads, fs_hz, metadata, message):
    weights_dir, _ = tiny_models
    with pytest.raises(ValueError, match=message):
        predict(leads, fs_hz, metadata, weights_dir=weights_dir)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"age_years": True}, "age_years must be a number, got true"),
        ({"heart_axis": np.bool_(False)}, "heart_axis must be a number, got false"),
        ({"weight_kg": 10**400}, "weight_kg must be a finite number"),  # float() overflows
    ],
)
def test_metadata_refuses_booleans_for_measurements_and_integers_beyond_float_range(
    metadata, message
):
    with pytest.raises(ValueError, match=message):
        metadata_row(metadata)


def test_metadata_reads_true_and_false_for_the_yes_or_no_features():
    row, given = metadata_row({"sex_female": True, "pacemaker": np.bool_(False), "device_cs": 1})
    assert given == ["sex_female", "pacemaker", "device_cs"]
    np.testing.assert_array_equal(row[[1, 4, 5]], [1.0, 0.0, 1.0])


# --- The shipped models -------------------------------------------------------------------------


def test_the_shipped_cards_load_with_their_weights():
    cards = {card["name"]: card for card in list_models(WEIGHTS_DIR, task=TASK)}
    assert sorted(cards) == list(MODEL_NAMES)
    for name, card in cards.items():
        assert card["command"].startswith(f"python -m inference.ptbxl_training {name[-7:]}")
        assert card["metrics"]["n_test_records"] == card["data"]["class_counts"]["test"]["records"]
        model, _ = load_model(name)
        assert sum(p.numel() for p in model.parameters()) == card["parameters"]
        assert (WEIGHTS_DIR / card["weights"]).stat().st_size < 1_000_000


def test_the_shipped_weights_give_their_cards_test_figures(ptbxl):
    """Re-evaluate each shipped model on the real test partition with the card's own
    transforms: the macro AUC and binary accuracy must be the card's, when the PTB-XL copy
    here is the one the cards were computed on (their data fingerprint)."""
    here = data_fingerprint(ptbxl)
    for name in MODEL_NAMES:
        card_fingerprint = read_card_json(name)["data"]["fingerprint"]
        if card_fingerprint != here:
            pytest.skip(
                f"{ptbxl} is not the PTB-XL copy {name} was evaluated on ({here['database_rows']} "
                f"rows, sha256 {here['ptbxl_database_sha256'][:12]}; the card has "
                f"{card_fingerprint['database_rows']} rows, "
                f"{card_fingerprint['ptbxl_database_sha256'][:12]}): its figures do not apply"
            )
    table = read_table(ptbxl)
    test_rows = patient_splits(table)["test"]
    labels = table.labels[test_rows]
    signals = load_signals(table, test_rows)
    for name in MODEL_NAMES:
        model, card = load_model(name)
        features = scaler_from_card(card).transform(table.metadata[test_rows])
        ecg = None
        if card["input"]["ecg"]:
            ecg = normalize_ecg(signals, np.array(card["ecg_normalization"]["lead_scales_mv"]))
        probabilities = predict_probabilities(
            model,
            features,
            ecg,
            card["input"].get("window_samples", 1000),
            card["input"].get("stride_samples", 1000),
        )
        macro_auc = np.mean([roc_auc(labels[:, c], probabilities[:, c]) for c in range(5)])
        binary_accuracy = np.mean((probabilities >= 0.5) == labels.astype(bool))
        assert macro_auc == pytest.approx(card["metrics"]["test"]["macro_auc"], abs=1e-3), name
        assert binary_accuracy == pytest.approx(
            card["metrics"]["test"]["binary_accuracy"], abs=1e-3
        ), name


def read_card_json(name: str) -> dict:
    return json.loads((WEIGHTS_DIR / f"{name}.json").read_text())


def test_the_shipped_card_json_matches_its_markdown():
    from inference.train import DOCS_DIR

    for name in MODEL_NAMES:
        card = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
        assert (DOCS_DIR / f"{name}.md").read_text() == ptbxl_training.card_markdown(card)


def test_the_shipped_overview_matches_the_cards_and_the_seed_spread():
    """docs/models/ptbxl-models.md is written from the cards and ptbxl-seed-spread.json: a
    hand edit, or a card or spread committed without it, shows here."""
    from inference.train import DOCS_DIR

    expected = ptbxl_training.overview_markdown(
        ptbxl_training.read_cards(WEIGHTS_DIR), ptbxl_training.read_spread(DOCS_DIR)
    )
    assert (DOCS_DIR / "ptbxl-models.md").read_text() == expected
    assert "## Seed spread (training chance)" in expected  # the spread is committed and shown


# --- Checkpoints, resume and the seed spread ----------------------------------------------------


def train(argv: list[str]) -> int:
    try:
        return ptbxl_training.main(argv)
    finally:
        torch.use_deterministic_algorithms(False)  # main turns it on for the whole process


def crash_at_epoch(monkeypatch, epoch: int) -> None:
    """Make the run die during ``epoch`` (in its validation pass, after the epoch's training
    and before its checkpoint), as a killed process would."""
    calls = {"n": 0}
    real = ptbxl_training.evaluate_split

    def evaluate(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == epoch:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(ptbxl_training, "evaluate_split", evaluate)


def assert_same_run(first: Path, second: Path, name: str) -> None:
    """Two weights folders hold the same trained model and the same card, but the timings and
    the mark of the resume (the second was resumed, the first not)."""
    cards = [json.loads((folder / f"{name}.json").read_text()) for folder in (first, second)]
    assert cards[0]["resumed_after_epoch"] is None
    assert cards[1]["resumed_after_epoch"] is not None
    for card in cards:
        del card["training_cpu_s"], card["training_wall_s"], card["resumed_after_epoch"]
    assert cards[0] == cards[1]
    weights = [torch.load(folder / f"{name}.pt", weights_only=True) for folder in (first, second)]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


# The training time the checkpoint of the crashed process is made to hold: far more than the
# resumed process takes, so a card that left it out (or counted it twice) cannot pass.
EARLIER_CPU_S, EARLIER_WALL_S = 1000.0, 2000.0


def interrupted_and_resumed(monkeypatch, argv: list[str], folder: Path, epoch: int, capsys):
    """Run ``argv`` into ``folder``, crash it during ``epoch``, then run it with --resume.
    The card must count the time of the epochs run before the crash (set to ``EARLIER_*``)."""
    argv = [*argv, "--weights-dir", str(folder / "w"), "--docs-dir", str(folder / "d")]
    with monkeypatch.context() as patch:
        crash_at_epoch(patch, epoch)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(argv)
    checkpoint = next((folder / "w").glob("*.checkpoint.pt"))
    state = torch.load(checkpoint, weights_only=True)
    assert state["epoch"] == epoch - 1 and 0 < state["training_cpu_s"] < EARLIER_CPU_S
    state["training_cpu_s"], state["training_wall_s"] = EARLIER_CPU_S, EARLIER_WALL_S
    torch.save(state, checkpoint)
    assert train([*argv, "--resume"]) == 0
    assert f"resumed after epoch {epoch - 1}" in capsys.readouterr().out
    card = json.loads(next((folder / "w").glob("*.json")).read_text())
    assert card["resumed_after_epoch"] == epoch - 1
    # the earlier part plus this process's, which is short (tiny or few epochs)
    assert EARLIER_CPU_S <= card["training_cpu_s"] < EARLIER_CPU_S + 300
    assert EARLIER_WALL_S <= card["training_wall_s"] < EARLIER_WALL_S + 300
    markdown = next((folder / "d").glob("ptbxl-model0?.md")).read_text()
    assert f"resumed after epoch {epoch - 1}" in " ".join(markdown.split())


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch, capsys):
    folder = write_ptbxl_folder(tmp_path / "ptbxl")
    argv = ["model01", "--data", str(folder), "--epochs", "6", "--patience", "6"]
    argv += ["--resamples", "20"]
    whole = tmp_path / "whole"
    assert train([*argv, "--weights-dir", str(whole / "w"), "--docs-dir", str(whole / "d")]) == 0
    # the last epoch's state stays for --resume (gitignored as *.checkpoint.pt)
    assert (whole / "w" / "ptbxl-model01.checkpoint.pt").is_file()
    interrupted_and_resumed(monkeypatch, argv, tmp_path / "resumed", 3, capsys)
    assert_same_run(whole / "w", tmp_path / "resumed" / "w", "ptbxl-model01")


def test_a_resumed_augmented_run_on_ptbxl_equals_an_uninterrupted_one(
    ptbxl, tmp_path, monkeypatch, capsys
):
    """Model03 draws crops, noise and dropout from two generators and has batch-norm and Adam
    state: all of it must come back from the checkpoint for the runs to agree bit for bit."""
    argv = ["model03", "--data", str(ptbxl), "--epochs", "4", "--patience", "4"]
    argv += ["--resamples", "20"]
    whole = tmp_path / "whole"
    assert train([*argv, "--weights-dir", str(whole / "w"), "--docs-dir", str(whole / "d")]) == 0
    interrupted_and_resumed(monkeypatch, argv, tmp_path / "resumed", 3, capsys)
    assert_same_run(whole / "w", tmp_path / "resumed" / "w", "ptbxl-model03")


def test_resume_refuses_another_runs_checkpoint_and_a_missing_one(tmp_path):
    folder = write_ptbxl_folder(tmp_path / "ptbxl")
    argv = ["model01", "--data", str(folder), "--epochs", "2", "--patience", "2"]
    argv += ["--resamples", "10", "--weights-dir", str(tmp_path / "w")]
    argv += ["--docs-dir", str(tmp_path / "d")]
    with pytest.raises(ptbxl_training.ResumeError, match="no checkpoint .* run without --resume"):
        train([*argv, "--resume"])
    assert train(argv) == 0
    with pytest.raises(ptbxl_training.ResumeError, match=r"another run \(differs in seed\)"):
        train([*argv, "--seed", "1", "--resume"])
    with pytest.raises(ptbxl_training.ResumeError, match="differs in epochs"):
        train([*argv, "--epochs", "3", "--resume"])  # the last --epochs counts


def test_resume_refuses_a_checkpoint_of_another_recipe_or_ptbxl_copy(tmp_path, monkeypatch):
    folder = write_ptbxl_folder(tmp_path / "ptbxl")
    argv = ["model01", "--data", str(folder), "--epochs", "2", "--patience", "2"]
    argv += ["--resamples", "10", "--weights-dir", str(tmp_path / "w")]
    argv += ["--docs-dir", str(tmp_path / "d")]
    assert train(argv) == 0
    assert train([*argv, "--resume"]) == 0  # the same run: it resumes (already finished)
    # the code changed between the crash and the resume
    with monkeypatch.context() as patch:
        patch.setattr(ptbxl_training, "NOISE_STD", 0.1)
        with pytest.raises(ptbxl_training.ResumeError, match=r"differs in recipe\.noise_std\)"):
            train([*argv, "--resume"])
    with monkeypatch.context() as patch:
        changed = ptbxl_training.MODELS["model01"] | {"augment": True}
        patch.setitem(ptbxl_training.MODELS, "model01", changed)
        with pytest.raises(ptbxl_training.ResumeError, match=r"differs in recipe\.augment\)"):
            train([*argv, "--resume"])
    # another copy of PTB-XL whose training inputs happen to be the same: an extra, unused
    # statement changes the copy's fingerprint, not one training value
    with (folder / "scp_statements.csv").open("a") as handle:
        handle.write("XYZ,unused,,\n")
    with pytest.raises(
        ptbxl_training.ResumeError,
        match=r"differs in data_fingerprint\.scp_statements_sha256\)",
    ):
        train([*argv, "--resume"])


@pytest.mark.parametrize(
    "content",
    [
        "bare state_dict",
        {"format": ptbxl_training.CHECKPOINT_FORMAT, "run": "model01"},
        {"format": 1, "run": {"model": "model01"}},
        [1, 2, 3],
    ],
)
def test_resume_refuses_a_file_that_is_not_a_checkpoint_of_this_format(tmp_path, content):
    folder = write_ptbxl_folder(tmp_path / "ptbxl")
    weights = tmp_path / "w"
    weights.mkdir()
    checkpoint = weights / "ptbxl-model01.checkpoint.pt"
    if content == "bare state_dict":
        content = MetadataNet().state_dict()
    torch.save(content, checkpoint)
    argv = ["model01", "--data", str(folder), "--epochs", "2", "--patience", "2", "--resume"]
    argv += ["--weights-dir", str(weights), "--docs-dir", str(tmp_path / "d")]
    with pytest.raises(
        ptbxl_training.ResumeError, match="is not a checkpoint of this format"
    ) as refusal:
        train(argv)
    assert "differs" not in str(refusal.value)


def test_the_seed_spread_summarizes_the_runs_and_its_card_seed_matches_the_card(tmp_path):
    folder = write_ptbxl_folder(tmp_path / "ptbxl")
    common = ["--data", str(folder), "--epochs", "3", "--patience", "3"]
    common += ["--weights-dir", str(tmp_path / "w"), "--docs-dir", str(tmp_path / "d")]
    assert train(["model01", *common, "--resamples", "10"]) == 0
    assert train(["spread", "--seeds", "0", "1", "2", "--models", "model01", *common]) == 0
    spread = json.loads((tmp_path / "d" / "ptbxl-seed-spread.json").read_text())
    entry = spread["models"]["ptbxl-model01"]
    assert [run["seed"] for run in entry["runs"]] == [0, 1, 2]
    aucs = [run["test"]["macro_auc"] for run in entry["runs"]]
    assert entry["summary"]["macro_auc"]["mean"] == pytest.approx(np.mean(aucs), abs=1e-4)
    assert entry["summary"]["macro_auc"]["sd"] == pytest.approx(np.std(aucs, ddof=1), abs=1e-4)
    assert entry["summary"]["macro_auc"]["min"] == min(aucs)
    assert spread["command"].startswith("python -m inference.ptbxl_training spread --seeds 0 1 2")
    assert "--resamples" not in spread["command"]  # the spread runs no bootstrap
    assert set(spread["data"]) == {"fingerprint"}
    assert spread["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    # the seed-0 run is the card's own run (prepared on its own, bootstrapped): the same
    # figures, though the spread prepares the inputs once and skips the bootstrap
    card = json.loads((tmp_path / "w" / "ptbxl-model01.json").read_text())
    assert entry["runs"][0]["test"] == {
        key: card["metrics"]["test"][key] for key in ("macro_auc", "macro_f1", "binary_accuracy")
    }
    assert entry["runs"][0]["best_epoch"] == card["recipe"]["best_epoch"]
    assert entry["runs"][0]["validation_macro_auc"] == card["metrics"]["validation"]["macro_auc"]
    overview = (tmp_path / "d" / "ptbxl-models.md").read_text()
    assert "## Seed spread (training chance)" in overview
    row = next(line for line in overview.splitlines() if line.startswith("| ptbxl-model01 | 3 |"))
    assert row.endswith("| yes |")
    assert "Neither contains the other" in " ".join(overview.split())
    with pytest.raises(SystemExit):
        train(["spread", *common])  # no --seeds
    with pytest.raises(SystemExit):  # it would change nothing: the spread runs no bootstrap
        train(["spread", "--seeds", "0", *common, "--resamples", "10"])
    with pytest.raises(SystemExit):  # a card shows intervals
        train(["model01", *common, "--resamples", "0"])


def test_a_run_without_resamples_has_no_intervals_and_a_bootstrap_needs_one():
    torch.set_num_threads(1)
    data = synthetic_data(seed=2)
    _, content = ptbxl_training.run("model01", data, epochs=2, patience=2, seed=0, resamples=0)
    assert "test_ci95" not in content["metrics"] and "test_bootstrap" not in content["metrics"]
    assert content["metrics"]["test"]["macro_auc"] is not None
    labels = data.labels["test"]
    with pytest.raises(ValueError, match="at least one resample, got 0"):
        ptbxl_training.bootstrap_intervals(
            labels, np.full(labels.shape, 0.5), np.full(5, 0.5), 0, 0, data.patient_ids["test"]
        )


def test_a_model_of_another_input_layout_is_refused_by_name(tiny_models, tmp_path):
    weights_dir, _ = tiny_models
    old = tmp_path / "old"
    old.mkdir()
    for path in weights_dir.glob("ptbxl-model01.*"):
        (old / path.name).write_bytes(path.read_bytes())
    card = json.loads((old / "ptbxl-model01.json").read_text())
    # the layout that had a pacemaker flag: twelve inputs
    columns = card["metadata_scaler"]["feature_columns"]
    card["metadata_scaler"]["feature_columns"] = [*columns[:10], "pacemaker_missing", columns[10]]
    (old / "ptbxl-model01.json").write_text(json.dumps(card))
    clear_model_caches()
    with pytest.raises(ValueError, match="ptbxl-model01 was saved for feature_columns"):
        load_model("ptbxl-model01", str(old))
    clear_model_caches()
