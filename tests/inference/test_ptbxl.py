"""The PTB-XL loader: labels, metadata, signals and splits on the real subset (skipped with the
reason when the data are absent; the ``ptbxl`` fixture is in conftest.py), and clear errors
on small synthetic tables."""

import csv
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import wfdb

from inference.datasets.ptbxl import (
    DATABASE_COLUMNS,
    FEATURE_COLUMNS,
    LEADS,
    RAW_FEATURES,
    SUPERCLASSES,
    UNFLAGGED_FEATURES,
    MetadataScaler,
    class_counts,
    copy_summary,
    data_fingerprint,
    describe_copy,
    fit_metadata_scaler,
    load_signals,
    main,
    metadata_features,
    pacemaker_from_note,
    patient_splits,
    read_table,
)


@pytest.fixture(scope="session")
def table(ptbxl):
    return read_table(ptbxl)


def labels_of(table, ecg_id: int) -> set[str]:
    row = int(np.flatnonzero(table.ecg_ids == ecg_id)[0])
    return {name for name, value in zip(SUPERCLASSES, table.labels[row], strict=True) if value}


# --- the real subset ---------------------------------------------------------------------------


def test_it_maps_scp_codes_to_superclasses_as_the_benchmark(table):
    # read by hand from ptbxl_database.csv and scp_statements.csv
    assert labels_of(table, 1) == {"NORM"}  # NORM 100, LVOLT (form), SR (rhythm)
    assert labels_of(table, 8) == {"MI"}  # IMI 35
    assert labels_of(table, 22) == {"STTC"}  # NDT
    assert labels_of(table, 30) == {"HYP"}  # LVH
    assert labels_of(table, 39) == {"MI", "STTC"}  # IMI 15, LNGQT, NST_, DIG
    assert labels_of(table, 45) == {"CD", "HYP"}  # IRBBB, RAO/RAE, RVH
    # a diagnostic code counts whatever its likelihood (LMI 15), as example_physionet.py
    assert labels_of(table, 50) == {"MI", "CD"}
    # atrial flutter and fibrillation are rhythm statements: no diagnostic superclass
    assert labels_of(table, 17) == set()
    assert table.labels.shape == (500, 5) and table.labels.dtype == np.float32


def test_it_leaves_out_records_without_a_superclass_by_default(table):
    unlabelled = ~table.has_superclass
    assert unlabelled.sum() == 12
    kept = np.concatenate(list(patient_splits(table).values()))
    assert len(kept) == 488 and not unlabelled[kept].any()
    everything = np.concatenate(list(patient_splits(table, require_superclass=False).values()))
    assert sorted(everything) == list(range(500))


def test_its_partitions_follow_strat_fold_and_share_no_patient(ptbxl, table):
    with (ptbxl / "ptbxl_database.csv").open(newline="") as handle:
        folds = [int(row["strat_fold"]) for row in csv.DictReader(handle)]
    expected = {
        "train": sum(1 <= fold <= 8 for fold in folds),
        "validation": folds.count(9),
        "test": folds.count(10),
    }
    splits = patient_splits(table, require_superclass=False)
    assert {name: len(rows) for name, rows in splits.items()} == expected
    assert expected == {"train": 353, "validation": 81, "test": 66}
    patients = {name: set(table.patient_ids[rows]) for name, rows in splits.items()}
    assert not patients["train"] & patients["validation"]
    assert not patients["train"] & patients["test"]
    assert not patients["validation"] & patients["test"]
    # some patients have several records, so the check above is not vacuous
    assert len(set(table.patient_ids)) < len(table)


def test_it_counts_superclasses_per_split(table):
    counts = class_counts(table, patient_splits(table))
    assert counts["test"] == {"records": 64, "NORM": 36, "MI": 8, "STTC": 16, "CD": 11, "HYP": 7}
    assert sum(split["records"] for split in counts.values()) == 488


def test_it_reads_12_lead_signals_in_millivolts(table):
    signals = load_signals(table, np.array([0, 7]))
    assert signals.shape == (2, 1000, 12) and signals.dtype == np.float32
    # 00001_lr.hea: gain 1000/mV, baseline 0, first sample of lead I -119 -> -0.119 mV
    assert signals[0, 0, LEADS.index("I")] == pytest.approx(-0.119)
    assert signals[0, 0, LEADS.index("II")] == pytest.approx(-0.055)
    # QRS complexes of a few tenths of a mV to a few mV: millivolts, not microvolts or ADC units
    peak_to_peak = np.ptp(signals[:, :, LEADS.index("II")], axis=1)
    assert np.all((peak_to_peak > 0.3) & (peak_to_peak < 5.0))


def test_it_names_the_record_when_500_hz_files_are_absent(table):
    if (table.folder / "records500").is_dir():
        pytest.skip("this PTB-XL copy has records500/")
    with pytest.raises(FileNotFoundError, match=r"ecg_id 1 \(records500/00000/00001_hr\)"):
        load_signals(table, np.array([0]), sampling_rate_hz=500)


def test_it_reads_the_metadata_of_known_records(table):
    metadata = {name: table.metadata[:, column] for column, name in enumerate(RAW_FEATURES)}
    assert metadata["age_years"][0] == 56 and metadata["sex_female"][0] == 1
    assert math.isnan(metadata["height_cm"][0]) and metadata["weight_kg"][0] == 63
    assert metadata["device_cs"][0] == 1  # CS-12   E
    assert math.isnan(metadata["heart_axis"][0])
    assert metadata["heart_axis"][40] == -2  # ecg_id 41: ALAD
    assert metadata["heart_axis"][31] == 1  # ecg_id 32: RAD
    assert metadata["pacemaker"].sum() == 6
    missing = np.isnan(table.metadata).sum(axis=0)
    assert dict(zip(RAW_FEATURES, missing, strict=True)) == {
        "age_years": 4,
        "sex_female": 0,
        "height_cm": 341,
        "weight_kg": 112,
        "pacemaker": 0,
        "device_cs": 0,
        "heart_axis": 411,
    }


def test_the_metadata_scaler_learns_nothing_from_validation_or_test(table):
    splits = patient_splits(table)
    scaler = fit_metadata_scaler(table, splits)
    # change every validation and test value: the fitted scaler must not move
    altered = read_table(table.folder)
    held_out = np.concatenate([splits["validation"], splits["test"]])
    altered.metadata[held_out] = altered.metadata[held_out] * 3 + 100
    assert fit_metadata_scaler(altered, patient_splits(altered)) == scaler
    # the statistics are those of the training rows' values present
    train_ages = table.metadata[splits["train"], RAW_FEATURES.index("age_years")]
    assert scaler.means["age_years"] == pytest.approx(np.nanmean(train_ages))
    assert scaler.fill_values["height_cm"] == np.nanmedian(
        table.metadata[splits["train"], RAW_FEATURES.index("height_cm")]
    )
    train = scaler.transform(table.metadata[splits["train"]])
    test = scaler.transform(table.metadata[splits["test"]])
    assert train.shape == (len(splits["train"]), len(FEATURE_COLUMNS)) and train.dtype == np.float32
    assert not np.isnan(test).any()
    age = FEATURE_COLUMNS.index("age_years")
    observed = ~np.isnan(train_ages)
    assert train[observed, age].mean() == pytest.approx(0, abs=1e-5)
    assert train[observed, age].std() == pytest.approx(1, abs=1e-4)
    # flags mark exactly the missing heights
    heights = table.metadata[splits["test"], RAW_FEATURES.index("height_cm")]
    np.testing.assert_array_equal(
        test[:, FEATURE_COLUMNS.index("height_cm_missing")], np.isnan(heights)
    )


def test_the_metadata_scaler_round_trips_through_json(table, tmp_path):
    scaler = fit_metadata_scaler(table, patient_splits(table))
    path = tmp_path / "metadata_scaler.json"
    scaler.save(path)
    assert json.loads(path.read_text())["feature_columns"] == list(FEATURE_COLUMNS)
    loaded = MetadataScaler.load(path)
    expected = scaler.transform(table.metadata)
    np.testing.assert_array_equal(loaded.transform(table.metadata), expected)
    saved = json.loads(path.read_text())
    saved["raw_features"] = ["age_years"]
    path.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="saved for raw_features"):
        MetadataScaler.load(path)


def test_its_summary_prints_counts_per_split(ptbxl, capsys):
    main(["--data", str(ptbxl)])
    out = capsys.readouterr().out
    assert "12 without a diagnostic superclass" in out
    assert "test             64     36      8     16     11      7" in out


# --- synthetic tables ---------------------------------------------------------------------------

STATEMENTS = [
    ("NORM", "1.0", "NORM"),
    ("IMI", "1.0", "MI"),
    ("NDT", "1.0", "STTC"),
    ("SR", "", ""),
]


def base_row(ecg_id: int, **changes) -> dict[str, str]:
    row = {
        "ecg_id": str(ecg_id),
        "patient_id": f"{100 + ecg_id}.0",
        "age": "60.0",
        "sex": "0",
        "height": "",
        "weight": "80.0",
        "device": "AT-6 C 5.5",
        "scp_codes": "{'NORM': 100.0, 'SR': 0.0}",
        "heart_axis": "",
        "pacemaker": "",
        "strat_fold": str(ecg_id),
        "filename_lr": f"records100/00000/{ecg_id:05d}_lr",
        "filename_hr": f"records500/00000/{ecg_id:05d}_hr",
    }
    return row | changes


def write_folder(folder: Path, rows: list[dict[str, str]], columns=DATABASE_COLUMNS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "scp_statements.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", "description", "diagnostic", "diagnostic_class"])
        for code, diagnostic, superclass in STATEMENTS:
            writer.writerow([code, code.lower(), diagnostic, superclass])
    with (folder / "ptbxl_database.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return folder


def write_record(folder: Path, relative: str, fs_hz: int = 100) -> None:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    n_samples = 10 * fs_hz
    t_s = np.arange(n_samples) / fs_hz
    signal_mv = np.stack([0.5 * np.sin(2 * np.pi * (lead + 1) * t_s) for lead in range(12)], 1)
    wfdb.wrsamp(
        path.name,
        fs=fs_hz,
        units=["mV"] * 12,
        sig_name=list(LEADS),
        p_signal=signal_mv,
        fmt=["16"] * 12,
        write_dir=str(path.parent),
    )


def test_it_reads_a_synthetic_folder_and_its_records(tmp_path):
    folder = write_folder(tmp_path, [base_row(1), base_row(2, scp_codes="{'NDT': 50.0}")])
    write_record(folder, "records100/00000/00001_lr")
    table = read_table(folder)
    assert labels_of(table, 2) == {"STTC"}
    signals = load_signals(table, np.array([0]))
    assert signals.shape == (1, 1000, 12)
    assert signals[0, 25, LEADS.index("I")] == pytest.approx(0.5, abs=1e-3)  # sin peak, lead I
    with pytest.raises(FileNotFoundError, match=r"ecg_id 2 \(records100/00000/00002_lr\)"):
        load_signals(table)


def test_it_reads_a_500_hz_record_from_records500(tmp_path):
    folder = write_folder(tmp_path, [base_row(1)])
    write_record(folder, "records500/00000/00001_hr", fs_hz=500)
    signals = load_signals(read_table(folder), np.array([0]), 500)
    assert signals.shape == (1, 5000, 12) and signals.dtype == np.float32
    # millivolts as written: lead I is 0.5 sin(2 pi t), at its peak at 0.25 s (sample 125)
    assert signals[0, 125, LEADS.index("I")] == pytest.approx(0.5, abs=1e-3)
    assert signals[0, 375, LEADS.index("I")] == pytest.approx(-0.5, abs=1e-3)
    assert np.abs(signals).max() == pytest.approx(0.5, abs=1e-3)
    # the 100 Hz file is not there: the rate picks the folder
    with pytest.raises(FileNotFoundError, match="records100/00000/00001_lr"):
        load_signals(read_table(folder), np.array([0]), 100)


def test_its_fingerprint_counts_rows_and_hashes_both_tables(tmp_path):
    folder = write_folder(tmp_path, [base_row(1), base_row(2)])
    fingerprint = data_fingerprint(folder)
    assert fingerprint == {
        "database_rows": 2,
        "ptbxl_database_sha256": hashlib.sha256(
            (folder / "ptbxl_database.csv").read_bytes()
        ).hexdigest(),
        "scp_statements_sha256": hashlib.sha256(
            (folder / "scp_statements.csv").read_bytes()
        ).hexdigest(),
    }
    write_folder(tmp_path, [base_row(1), base_row(2, age="61.0")])  # one value edited
    changed = data_fingerprint(folder)
    assert changed["database_rows"] == 2
    assert changed["ptbxl_database_sha256"] != fingerprint["ptbxl_database_sha256"]
    assert changed["scp_statements_sha256"] == fingerprint["scp_statements_sha256"]


def test_it_rejects_an_unknown_scp_code(tmp_path):
    folder = write_folder(tmp_path, [base_row(1), base_row(2, scp_codes="{'XYZ': 100.0}")])
    with pytest.raises(ValueError, match=r"ecg_id 2: SCP code 'XYZ' is not in scp_statements"):
        read_table(folder)


def test_it_rejects_unreadable_scp_codes(tmp_path):
    folder = write_folder(tmp_path, [base_row(3, scp_codes="{'NORM': 100.0")])
    with pytest.raises(ValueError, match="ecg_id 3: unreadable scp_codes"):
        read_table(folder)


def test_it_names_a_missing_column(tmp_path):
    columns = [column for column in DATABASE_COLUMNS if column != "strat_fold"]
    folder = write_folder(tmp_path, [base_row(1)], columns=columns)
    with pytest.raises(ValueError, match="ptbxl_database.csv has no column strat_fold"):
        read_table(folder)


def test_it_names_a_missing_table(tmp_path):
    folder = write_folder(tmp_path, [base_row(1)])
    (folder / "scp_statements.csv").unlink()
    with pytest.raises(FileNotFoundError, match="scp_statements.csv not found"):
        read_table(folder)


def test_it_names_a_corrupt_record(tmp_path):
    folder = write_folder(tmp_path, [base_row(1)])
    write_record(folder, "records100/00000/00001_lr")
    dat = folder / "records100/00000/00001_lr.dat"
    dat.write_bytes(dat.read_bytes()[:1000])  # truncated mid-record
    with pytest.raises(ValueError, match=r"ecg_id 1 \(records100/00000/00001_lr\)"):
        load_signals(read_table(folder))


def test_it_names_a_record_at_the_wrong_rate_or_lead_order(tmp_path):
    folder = write_folder(tmp_path, [base_row(1)])
    write_record(folder, "records100/00000/00001_lr", fs_hz=250)
    with pytest.raises(ValueError, match="ecg_id 1 .*rate 250 Hz, expected 100 Hz"):
        load_signals(read_table(folder))


def test_it_refuses_a_patient_in_two_partitions(tmp_path):
    rows = [base_row(1, patient_id="7.0"), base_row(10, patient_id="7.0")]
    table = read_table(write_folder(tmp_path, rows))
    with pytest.raises(ValueError, match="patient_id 7 has records in both train and test"):
        patient_splits(table)


def test_it_decodes_age_over_89_and_drops_implausible_values():
    features = dict(
        zip(
            RAW_FEATURES,
            metadata_features(
                base_row(1, age="300.0", height="6.0", weight="70", heart_axis="SAG", sex="1")
                | {"pacemaker": "ja, pacemaker", "device": "CS100    3"}
            ),
            strict=True,
        )
    )
    assert features["age_years"] == 90  # PTB-XL's code for "over 89"
    assert math.isnan(features["height_cm"])  # 6 cm is a typing error, not a height
    assert features["weight_kg"] == 70 and features["sex_female"] == 1
    assert math.isnan(features["heart_axis"])  # sagittal: no frontal axis
    assert features["pacemaker"] == 1 and features["device_cs"] == 1


def test_the_scaler_imputes_and_flags_with_training_values_only():
    nan = math.nan
    train = np.array(
        [
            [40, 0, 170, 70, 0, 1, nan],
            [60, 1, nan, 90, 0, 0, -1],
            [50, 1, 160, nan, 0, 1, 1],
        ],
        dtype=np.float64,
    )
    scaler = MetadataScaler.fit(train)
    assert scaler.fill_values["height_cm"] == 165 and scaler.fill_values["weight_kg"] == 80
    assert scaler.fill_values["heart_axis"] == 0  # a missing axis counts as normal
    assert scaler.means["age_years"] == 50 and scaler.stds["height_cm"] == 5
    test = np.array([[nan, 0, nan, nan, 0, 0, nan]])
    features = dict(zip(FEATURE_COLUMNS, scaler.transform(test)[0], strict=True))
    assert features["age_years"] == 0  # imputed with the training median, 50, then centred
    assert features["height_cm"] == pytest.approx((165 - 165) / 5)
    assert features["height_cm_missing"] == features["weight_kg_missing"] == 1
    assert features["heart_axis_missing"] == 1
    assert features["age_years_missing"] == 1
    # a blank age is not the median age: the flag tells them apart
    median = scaler.transform(np.array([[50, 0, nan, nan, 0, 0, nan]]))[0]
    assert median[FEATURE_COLUMNS.index("age_years")] == features["age_years"]
    assert median[FEATURE_COLUMNS.index("age_years_missing")] == 0


@pytest.mark.parametrize(
    ("note", "expected"),
    [
        ("", 0.0),  # nothing noted: no pacemaker
        ("  ", 0.0),
        ("ja, pacemaker", 1.0),  # "yes, pacemaker"
        ("Pacemaker", 1.0),
        ("nan, pacemaker", 1.0),
        ("?", math.nan),
        ("PACE????, nan", math.nan),
        ("ja, nan", math.nan),  # "yes", but yes to what is not written
        ("pacemaker?", math.nan),  # doubted, not stated
    ],
)
def test_the_pacemaker_note_counts_only_when_it_names_one_and_is_missing_when_unclear(
    note, expected
):
    value = pacemaker_from_note(note)
    assert math.isnan(value) if math.isnan(expected) else value == expected


def test_unclear_pacemaker_notes_are_imputed_without_a_flag(tmp_path):
    notes = ["", "ja, pacemaker", "PACE????, nan", "?", "ja, nan"]
    rows = [base_row(k + 1, pacemaker=note, strat_fold="1") for k, note in enumerate(notes)]
    table = read_table(write_folder(tmp_path, rows))
    pacemaker = table.metadata[:, RAW_FEATURES.index("pacemaker")]
    assert pacemaker[:2].tolist() == [0.0, 1.0] and np.isnan(pacemaker[2:]).all()
    scaler = MetadataScaler.fit(table.metadata)
    features = scaler.transform(table.metadata)
    # imputed with the median of the clear notes (0 and 1 -> 0.5), never guessed as 0 or 1
    assert scaler.fill_values["pacemaker"] == 0.5
    assert features[2:, FEATURE_COLUMNS.index("pacemaker")].tolist() == [0.5] * 3
    # and unflagged, as sex and device: a flag 0 in every training row cannot be learnt
    assert "pacemaker" in UNFLAGGED_FEATURES and "pacemaker_missing" not in FEATURE_COLUMNS
    assert UNFLAGGED_FEATURES == ("sex_female", "pacemaker", "device_cs")


def test_the_subsets_pacemaker_records_are_all_left_out(table):
    """Why pacemaker has no flag: its six records have only the rhythm code PACE, no
    superclass, so no kept record has a pacemaker or an unclear note."""
    pacemaker = table.metadata[:, RAW_FEATURES.index("pacemaker")]
    assert (pacemaker == 1).sum() == 6 and not table.has_superclass[pacemaker == 1].any()
    for rows in patient_splits(table).values():
        assert (pacemaker[rows] == 0).all()


def test_it_describes_the_copy_it_read_from_the_data(tmp_path):
    columns = (*DATABASE_COLUMNS, "recording_date")
    rows = [
        base_row(3, recording_date="1995-06-30 11:00:00"),
        base_row(10, recording_date="1990-01-02 09:15:00"),
        base_row(7, recording_date="", patient_id="103.0"),
    ]
    table = read_table(write_folder(tmp_path / "dated", rows, columns=columns))
    copy = describe_copy(table)
    assert copy == {
        "records": 3,
        "patients": 2,
        "ecg_ids": [3, 10],
        "recording_dates": ["1990-01-02", "1995-06-30"],
        "records_per_fold": {"3": 1, "7": 1, "10": 1},
    }
    assert copy_summary(copy) == (
        "a 3-record PTB-XL subset (ecg_id 3-10, 2 patients, recorded 1990-01-02 to 1995-06-30)"
    )
    # without the (optional) recording_date column there are no dates to quote
    undated = describe_copy(read_table(write_folder(tmp_path / "undated", rows)))
    assert undated["recording_dates"] is None
    assert copy_summary(undated) == "a 3-record PTB-XL subset (ecg_id 3-10, 2 patients)"
    full = copy | {"records": 21799, "patients": 18869, "ecg_ids": [1, 21837]}
    assert copy_summary(full).startswith("the full PTB-XL (21,799 records, ecg_id 1-21837")


def test_it_describes_the_real_subset_as_a_subset(table):
    copy = describe_copy(table)
    assert copy["records"] == 500 and copy["ecg_ids"] == [1, 500]
    assert copy["recording_dates"] == ["1984-11-09", "1987-03-01"]
    assert sum(copy["records_per_fold"].values()) == 500 and copy["records_per_fold"]["10"] == 66
    assert copy_summary(copy).startswith("a 500-record PTB-XL subset (ecg_id 1-500, 466 patients")
