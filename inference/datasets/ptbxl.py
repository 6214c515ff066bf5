"""PTB-XL: diagnostic superclass labels, patient metadata, signals and patient-aware splits.

Reads the official PhysioNet layout (``ptbxl_database.csv``, ``scp_statements.csv``,
``records100/``, ``records500/``) and works unchanged on the full download or the 500-record
subset in ../shared/data/ptbxl. See docs/ptbxl.md.

Wagner P, Strodthoff N, et al. PTB-XL, a large publicly available electrocardiography dataset.
Scientific Data 7:154 (2020). Strodthoff N, et al. Deep learning for ECG analysis: benchmarks and
insights from PTB-XL. IEEE J Biomed Health Inform 25(5):1519-1528 (2021). Goldberger AL, et al.
PhysioBank, PhysioToolkit, and PhysioNet. Circulation 101(23):e215-e220 (2000).
"""

import argparse
import ast
import csv
import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import wfdb
from tqdm import tqdm

from inference.datasets import data_dir

SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")
# The order of the leads in every PTB-XL record (the header spells aVR as AVR).
LEADS = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
RECORD_S = 10.0
# Records in the full PTB-XL 1.0.3 (1.0.1 held 21,837): a copy with fewer is a subset.
PTBXL_RECORDS = 21_799
SAMPLING_RATES_HZ = {100: "filename_lr", 500: "filename_hr"}

# strat_fold 1-8 train, 9 validation, 10 test: the split the PTB-XL authors recommend. All the
# records of one patient share a fold, so the partitions are patient-disjoint.
SPLIT_FOLDS = {"train": tuple(range(1, 9)), "validation": (9,), "test": (10,)}

DATABASE_COLUMNS = (
    "ecg_id",
    "patient_id",
    "age",
    "sex",
    "height",
    "weight",
    "device",
    "scp_codes",
    "heart_axis",
    "pacemaker",
    "strat_fold",
    "filename_lr",
    "filename_hr",
)
STATEMENT_COLUMNS = ("diagnostic", "diagnostic_class")

# The seven metadata features, as read (NaN where missing).
RAW_FEATURES = (
    "age_years",
    "sex_female",
    "height_cm",
    "weight_kg",
    "pacemaker",
    "device_cs",
    "heart_axis",
)
# Features whose missing values get an indicator column (``*_missing``), so that a blank is
# not read as the typical value: height, weight and heart axis are missing in many rows; age in
# a few (4 of the subset's 352 training records), and a served request that leaves the age
# blank must not pass for a patient of the median age.
FLAGGED_FEATURES = ("age_years", "height_cm", "weight_kg", "heart_axis")
# Imputed without a flag, because a flag that is 0 in every training row cannot be learnt:
# PTB-XL records sex and device for every record, and the subset's training rows hold no
# unclear pacemaker note (``pacemaker_from_note``; its six "ja, pacemaker" records have no
# diagnostic superclass and are left out). A blank pacemaker is also the diagnosis page's
# default, which a flag would read as a doubtful note on every such request. A served request
# that leaves one blank gets the training median, and predict() says which values it
# imputed. docs/ptbxl.md gives the decision.
UNFLAGGED_FEATURES = tuple(name for name in RAW_FEATURES if name not in FLAGGED_FEATURES)
# Standardized with training-fold mean and standard deviation; the 0/1 features stay 0/1.
CONTINUOUS_FEATURES = ("age_years", "height_cm", "weight_kg", "heart_axis")
FEATURE_COLUMNS = RAW_FEATURES + tuple(f"{name}_missing" for name in FLAGGED_FEATURES)

# PTB-XL writes age 300 for patients over 89 (de-identification); they become 90.
AGE_OVER_89_CODE = 300.0
AGE_OVER_89_YEARS = 90.0
# Values outside these ranges are data-entry errors and count as missing.
PLAUSIBLE_RANGES = {
    "age_years": (0.0, 120.0),
    "height_cm": (40.0, 230.0),
    "weight_kg": (2.0, 300.0),
}
# Frontal QRS axis as a signed deviation from normal: left negative, right positive, "abnormal"
# (extreme) deviation 2. SAG (sagittal, indeterminate) and blanks are missing.
HEART_AXIS_DEVIATION = {
    "ALAD": -2.0,
    "LAD": -1.0,
    "AXL": -1.0,
    "MID": 0.0,
    "AXR": 1.0,
    "RAD": 1.0,
    "ARAD": 2.0,
    "SAG": math.nan,
}
# A missing heart axis is imputed as normal (0), not the training median: the column is mostly
# filled in when the axis is abnormal, so the median of the values present is a deviation.
FIXED_FILL_VALUES = {"heart_axis": 0.0}


@dataclass
class PtbxlTable:
    """The rows of ``ptbxl_database.csv`` as arrays, one entry per record (ECG).

    ``labels`` is the multi-hot superclass matrix (n, 5) in ``SUPERCLASSES`` order;
    ``has_superclass`` is False for records with no diagnostic statement. ``metadata`` is
    (n, 7) in ``RAW_FEATURES`` order with NaN where missing (see ``metadata_features``).
    """

    folder: Path
    ecg_ids: np.ndarray
    patient_ids: np.ndarray
    strat_folds: np.ndarray
    scp_codes: list[dict[str, float]]
    labels: np.ndarray
    metadata: np.ndarray
    filenames: dict[int, list[str]]
    # ``recording_date`` of each row ("" where blank, or all "" when the column is absent: it
    # is optional, used only to describe the copy in model cards)
    recording_dates: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ecg_ids)

    @property
    def has_superclass(self) -> np.ndarray:
        return self.labels.any(axis=1)


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"PTB-XL file {path} not found")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in required if column not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path.name} has no column {', '.join(missing)}")
        return list(reader)


def read_scp_statements(path: str | Path) -> dict[str, str | None]:
    """Every SCP code of ``scp_statements.csv`` -> its diagnostic superclass, or None.

    As the PTB-XL benchmark: a code counts when its row has ``diagnostic == 1``, and its
    superclass is ``diagnostic_class``. Form and rhythm statements map to None.
    """
    path = Path(path)
    rows = _read_csv(path, STATEMENT_COLUMNS)
    code_to_class: dict[str, str | None] = {}
    for row in rows:
        code = row[""] if "" in row else next(iter(row.values()))
        if row["diagnostic"].strip() and float(row["diagnostic"]) == 1.0:
            superclass = row["diagnostic_class"].strip()
            if superclass not in SUPERCLASSES:
                raise ValueError(
                    f"{path.name}: diagnostic code {code} has superclass {superclass!r}, "
                    f"not one of {', '.join(SUPERCLASSES)}"
                )
            code_to_class[code] = superclass
        else:
            code_to_class[code] = None
    return code_to_class


def superclass_labels(
    scp_codes: dict[str, float], code_to_class: dict[str, str | None], ecg_id: int = 0
) -> np.ndarray:
    """Multi-hot (5,) labels of one record from its ``scp_codes``.

    Every diagnostic code counts whatever its likelihood (0 included), as PTB-XL's
    ``example_physionet.py`` and the benchmark's aggregation do. A code that
    ``scp_statements.csv`` does not know is an error (a mismatched statements file).
    """
    labels = np.zeros(len(SUPERCLASSES), dtype=np.float32)
    for code in scp_codes:
        if code not in code_to_class:
            raise ValueError(f"ecg_id {ecg_id}: SCP code {code!r} is not in scp_statements.csv")
        superclass = code_to_class[code]
        if superclass is not None:
            labels[SUPERCLASSES.index(superclass)] = 1.0
    return labels


def _number(text: str) -> float:
    return float(text) if text.strip() else math.nan


def pacemaker_from_note(note: str) -> float:
    """PTB-XL's ``pacemaker`` column as 1 (a pacemaker), 0 (none) or NaN (unclear).

    The column is a note written only when the annotator saw something, of comma-separated
    parts such as ``ja, pacemaker`` ("yes, pacemaker"). The rule: a blank note is 0 (nothing
    was noted); a note with a part that is the word ``pacemaker`` is 1; any other note
    (``?``, ``PACE????, nan``, ``ja, nan``, ...) is unclear and missing, so it takes the
    training median rather than a guess of our own (without a flag: ``UNFLAGGED_FEATURES``).
    """
    text = note.strip()
    if not text:
        return 0.0
    parts = [part.strip().lower() for part in text.split(",")]
    return 1.0 if "pacemaker" in parts else math.nan


def metadata_features(row: dict[str, str]) -> np.ndarray:
    """The seven raw features of one database row, NaN where missing or implausible."""
    age = _number(row["age"])
    if age == AGE_OVER_89_CODE:
        age = AGE_OVER_89_YEARS
    values = {
        "age_years": age,
        # PTB-XL codes sex 0 male, 1 female
        "sex_female": _number(row["sex"]),
        "height_cm": _number(row["height"]),
        "weight_kg": _number(row["weight"]),
        "pacemaker": pacemaker_from_note(row["pacemaker"]),
        # Schiller CS-12/CS100 versus the AT-6/AT-60 family; blank device is missing
        "device_cs": (
            (1.0 if row["device"].strip().upper().startswith("CS") else 0.0)
            if row["device"].strip()
            else math.nan
        ),
        "heart_axis": HEART_AXIS_DEVIATION.get(row["heart_axis"].strip(), math.nan),
    }
    for name, (low, high) in PLAUSIBLE_RANGES.items():
        if not low <= values[name] <= high:  # NaN fails too, and stays NaN
            values[name] = math.nan
    if values["sex_female"] not in (0.0, 1.0):
        values["sex_female"] = math.nan
    return np.array([values[name] for name in RAW_FEATURES], dtype=np.float64)


def read_table(folder: str | Path | None = None) -> PtbxlTable:
    """Read ``ptbxl_database.csv`` and ``scp_statements.csv`` of a PTB-XL folder.

    ``folder`` defaults to ``data_dir() / "ptbxl"``. Signals are not read (``load_signals``).
    """
    folder = Path(folder) if folder is not None else data_dir() / "ptbxl"
    code_to_class = read_scp_statements(folder / "scp_statements.csv")
    rows = _read_csv(folder / "ptbxl_database.csv", DATABASE_COLUMNS)
    ecg_ids, patient_ids, folds, codes, labels, metadata = [], [], [], [], [], []
    for row in rows:
        ecg_id = int(float(row["ecg_id"]))
        try:
            scp_codes = ast.literal_eval(row["scp_codes"])
        except (ValueError, SyntaxError) as exc:
            raise ValueError(f"ecg_id {ecg_id}: unreadable scp_codes {row['scp_codes']!r}") from exc
        if not isinstance(scp_codes, dict):
            raise ValueError(f"ecg_id {ecg_id}: scp_codes is not a dict: {row['scp_codes']!r}")
        fold = int(float(row["strat_fold"]))
        if not 1 <= fold <= 10:
            raise ValueError(f"ecg_id {ecg_id}: strat_fold {fold} is not 1-10")
        ecg_ids.append(ecg_id)
        patient_ids.append(int(float(row["patient_id"])))
        folds.append(fold)
        codes.append({str(code): float(value) for code, value in scp_codes.items()})
        labels.append(superclass_labels(scp_codes, code_to_class, ecg_id))
        metadata.append(metadata_features(row))
    return PtbxlTable(
        folder=folder,
        ecg_ids=np.array(ecg_ids, dtype=np.int64),
        patient_ids=np.array(patient_ids, dtype=np.int64),
        strat_folds=np.array(folds, dtype=np.int64),
        scp_codes=codes,
        labels=np.array(labels, dtype=np.float32).reshape(len(rows), len(SUPERCLASSES)),
        metadata=np.array(metadata, dtype=np.float64).reshape(len(rows), len(RAW_FEATURES)),
        filenames={
            rate: [row[column] for row in rows] for rate, column in SAMPLING_RATES_HZ.items()
        },
        recording_dates=[(row.get("recording_date") or "").strip() for row in rows],
    )


def data_fingerprint(folder: str | Path | None = None) -> dict:
    """What identifies a PTB-XL copy: the number of rows of ``ptbxl_database.csv`` and the
    sha256 of it and of ``scp_statements.csv``. Model cards store it, so a card's figures can
    be checked against the copy they were computed on (the 500-record subset or a full
    download) before they are compared."""
    folder = Path(folder) if folder is not None else data_dir() / "ptbxl"
    fingerprint: dict = {"database_rows": len(_read_csv(folder / "ptbxl_database.csv", ()))}
    for name in ("ptbxl_database.csv", "scp_statements.csv"):
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        fingerprint[f"{name.removesuffix('.csv')}_sha256"] = digest
    return fingerprint


def describe_copy(table: PtbxlTable) -> dict:
    """What a PTB-XL copy holds, for model cards and the diagnosis page to describe the data a
    model was trained on from the data themselves (a subset or a full download): records,
    patients, the ecg_id range, the first and last recording date (None without the column)
    and the records per strat_fold."""
    dates = sorted(date[:10] for date in table.recording_dates if date)
    folds, counts = np.unique(table.strat_folds, return_counts=True)
    return {
        "records": len(table),
        "patients": int(len(np.unique(table.patient_ids))),
        "ecg_ids": [int(table.ecg_ids.min()), int(table.ecg_ids.max())] if len(table) else None,
        "recording_dates": [dates[0], dates[-1]] if dates else None,
        "records_per_fold": {str(fold): int(n) for fold, n in zip(folds, counts, strict=True)},
    }


def copy_summary(copy: dict | None) -> str:
    """A phrase naming the data a model was trained on, from ``describe_copy``'s dict: "the full
    PTB-XL (21,799 records ...)" or "a 500-record PTB-XL subset (ecg_id 1-500 ...)"."""
    if copy is None:
        return "data that are not a PTB-XL folder"
    details = [f"{copy['patients']:,} patients"]
    if copy["ecg_ids"]:
        details.insert(0, f"ecg_id {copy['ecg_ids'][0]}-{copy['ecg_ids'][1]}")
    if copy["recording_dates"]:
        first, last = copy["recording_dates"]
        details.append(f"recorded {first} to {last}")
    if copy["records"] >= PTBXL_RECORDS:
        return f"the full PTB-XL ({copy['records']:,} records, {', '.join(details)})"
    return f"a {copy['records']:,}-record PTB-XL subset ({', '.join(details)})"


def patient_splits(table: PtbxlTable, require_superclass: bool = True) -> dict[str, np.ndarray]:
    """Row indices of the train (folds 1-8), validation (9) and test (10) partitions.

    With ``require_superclass`` (the default, as the benchmark does for all partitions) records
    with no diagnostic superclass are left out. Raises ``ValueError`` when a patient has records
    in two partitions (a table whose strat_fold was edited).
    """
    splits = {}
    for name, folds in SPLIT_FOLDS.items():
        keep = np.isin(table.strat_folds, folds)
        if require_superclass:
            keep &= table.has_superclass
        splits[name] = np.flatnonzero(keep)
    # check on every record, labelled or not: a patient is one person whatever the labels
    owner: dict[int, str] = {}
    for name, folds in SPLIT_FOLDS.items():
        for patient in np.unique(table.patient_ids[np.isin(table.strat_folds, folds)]):
            if owner.setdefault(int(patient), name) != name:
                raise ValueError(
                    f"patient_id {patient} has records in both {owner[int(patient)]} and {name}"
                )
    return splits


def class_counts(table: PtbxlTable, splits: dict[str, np.ndarray]) -> dict[str, dict[str, int]]:
    """Records per superclass (and in all, ``records``) in each partition."""
    counts = {}
    for name, indices in splits.items():
        per_class = table.labels[indices].sum(axis=0)
        counts[name] = {"records": int(len(indices))}
        for superclass, count in zip(SUPERCLASSES, per_class, strict=True):
            counts[name][superclass] = int(count)
    return counts


def load_signals(
    table: PtbxlTable,
    indices: np.ndarray | None = None,
    sampling_rate_hz: int = 100,
    progress: bool | None = None,
) -> np.ndarray:
    """The 12-lead signals of the rows ``indices`` (all by default): (n, 10 s × rate, 12).

    float32 millivolts, leads in ``LEADS`` order as in the files; ``sampling_rate_hz`` 100
    reads records100/, 500 reads records500/. ``progress`` (default: on for 200 records or
    more) reports on stderr. A missing or unreadable record raises an error naming it.
    """
    if sampling_rate_hz not in SAMPLING_RATES_HZ:
        raise ValueError(f"PTB-XL has 100 Hz and 500 Hz records, not {sampling_rate_hz} Hz")
    indices = np.arange(len(table)) if indices is None else np.asarray(indices, dtype=np.int64)
    n_samples = round(RECORD_S * sampling_rate_hz)
    signals = np.empty((len(indices), n_samples, len(LEADS)), dtype=np.float32)
    show = len(indices) >= 200 if progress is None else progress
    rows = tqdm(
        indices,
        desc=f"PTB-XL records at {sampling_rate_hz} Hz",
        unit="record",
        file=sys.stderr,
        disable=not show,
    )
    for position, row in enumerate(rows):
        signals[position] = _read_record(table, int(row), sampling_rate_hz, n_samples)
    return signals


def _read_record(table: PtbxlTable, row: int, sampling_rate_hz: int, n_samples: int) -> np.ndarray:
    ecg_id = int(table.ecg_ids[row])
    relative = table.filenames[sampling_rate_hz][row]
    path = table.folder / relative
    name = f"PTB-XL record ecg_id {ecg_id} ({relative})"
    if not relative or not path.with_suffix(".hea").is_file():
        raise FileNotFoundError(f"{name} not found in {table.folder}")
    try:
        signal, fields = wfdb.rdsamp(str(path))
    except Exception as exc:  # wfdb raises many types for truncated or garbled files
        raise ValueError(f"{name} could not be read: {exc}") from exc
    problems = []
    if fields["fs"] != sampling_rate_hz:
        problems.append(f"rate {fields['fs']} Hz, expected {sampling_rate_hz} Hz")
    if tuple(lead.upper() for lead in fields["sig_name"]) != LEADS:
        problems.append(f"leads {', '.join(fields['sig_name'])}, expected {', '.join(LEADS)}")
    if any(unit != "mV" for unit in fields["units"]):
        problems.append(f"units {', '.join(fields['units'])}, expected mV")
    if signal.shape != (n_samples, len(LEADS)):
        problems.append(f"shape {signal.shape}, expected {(n_samples, len(LEADS))}")
    if problems:
        raise ValueError(f"{name}: " + "; ".join(problems))
    return signal


@dataclass
class MetadataScaler:
    """Imputation and standardization of the metadata, fitted on the training partition only.

    Missing values take the training median (flagged in ``*_missing`` columns for
    ``FLAGGED_FEATURES`` only); continuous features are then standardized with the training mean
    and standard deviation. Saved as JSON so the server applies exactly the same transform.
    """

    fill_values: dict[str, float]
    means: dict[str, float]
    stds: dict[str, float]

    @classmethod
    def fit(cls, raw: np.ndarray) -> "MetadataScaler":
        """Fit on raw training metadata (n, 7) in ``RAW_FEATURES`` order, NaN missing."""
        raw = np.asarray(raw, dtype=np.float64)
        fill_values, means, stds = {}, {}, {}
        for column, name in enumerate(RAW_FEATURES):
            present = raw[:, column][~np.isnan(raw[:, column])]
            if name in FIXED_FILL_VALUES:
                fill_values[name] = FIXED_FILL_VALUES[name]
            else:
                # a feature never seen in training fills with 0
                fill_values[name] = float(np.median(present)) if len(present) else 0.0
            if name in CONTINUOUS_FEATURES:
                # statistics of the values present: imputed medians would shrink the spread
                means[name] = float(present.mean()) if len(present) else 0.0
                std = float(present.std()) if len(present) else 0.0
                stds[name] = std if std > 0 else 1.0
        return cls(fill_values=fill_values, means=means, stds=stds)

    def _impute(self, raw: np.ndarray) -> np.ndarray:
        imputed = np.array(raw, dtype=np.float64, copy=True)
        for column, name in enumerate(RAW_FEATURES):
            missing = np.isnan(imputed[:, column])
            imputed[missing, column] = self.fill_values[name]
        return imputed

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """(n, 11) float32 in ``FEATURE_COLUMNS`` order: the seven features, then the four
        ``*_missing`` flags of ``FLAGGED_FEATURES``."""
        raw = np.asarray(raw, dtype=np.float64).reshape(-1, len(RAW_FEATURES))
        features = self._impute(raw)
        for name in CONTINUOUS_FEATURES:
            column = RAW_FEATURES.index(name)
            features[:, column] = (features[:, column] - self.means[name]) / self.stds[name]
        flags = np.isnan(raw[:, [RAW_FEATURES.index(name) for name in FLAGGED_FEATURES]])
        return np.concatenate([features, flags.astype(np.float64)], axis=1).astype(np.float32)

    def to_dict(self) -> dict:
        return {
            "raw_features": list(RAW_FEATURES),
            "feature_columns": list(FEATURE_COLUMNS),
            "fill_values": self.fill_values,
            "means": self.means,
            "stds": self.stds,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "MetadataScaler":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        check_feature_layout(data, str(path))
        return cls(fill_values=data["fill_values"], means=data["means"], stds=data["stds"])


def check_feature_layout(saved: dict, what: str) -> None:
    """Raise ``ValueError`` unless a saved scaler (``MetadataScaler.to_dict``) has this code's
    raw features and model input columns: a model trained on another layout (say, with the
    pacemaker flag it once had) must be refused by name, not fail on a tensor shape."""
    for key, expected in (("raw_features", RAW_FEATURES), ("feature_columns", FEATURE_COLUMNS)):
        if saved.get(key) != list(expected):
            raise ValueError(
                f"{what} was saved for {key} {saved.get(key)}, this code uses {list(expected)}"
            )


def fit_metadata_scaler(table: PtbxlTable, splits: dict[str, np.ndarray]) -> MetadataScaler:
    """The scaler fitted on the training partition's metadata, never on validation or test."""
    return MetadataScaler.fit(table.metadata[splits["train"]])


def missing_counts(table: PtbxlTable) -> dict[str, int]:
    """Rows with each raw feature missing (or implausible), over the whole table."""
    return {
        name: int(np.isnan(table.metadata[:, column]).sum())
        for column, name in enumerate(RAW_FEATURES)
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Summarize a PTB-XL folder: superclass counts per split, missing metadata."
    )
    parser.add_argument("--data", help="PTB-XL folder (default: $CARDIOSPIKE_DATA_DIR/ptbxl)")
    args = parser.parse_args(argv)
    try:
        table = read_table(args.data)
    except (FileNotFoundError, ValueError) as exc:  # a wrong folder or a damaged table
        raise SystemExit(str(exc)) from None
    splits = patient_splits(table)
    print(copy_summary(describe_copy(table)))
    print(f"{len(table)} records, {len(np.unique(table.patient_ids))} patients, ", end="")
    print(f"{int((~table.has_superclass).sum())} without a diagnostic superclass (left out)")
    print("split       records  " + "  ".join(f"{name:>5}" for name in SUPERCLASSES))
    for name, counts in class_counts(table, splits).items():
        cells = "  ".join(f"{counts[superclass]:>5}" for superclass in SUPERCLASSES)
        print(f"{name:<10}  {counts['records']:>7}  {cells}")
    print("missing:", ", ".join(f"{name} {count}" for name, count in missing_counts(table).items()))


if __name__ == "__main__":
    main()
