"""Train one of the three PTB-XL superclass models and write its card.

    python -m inference.ptbxl_training model01    # metadata-only dense network
    python -m inference.ptbxl_training model02    # metadata + 1D CNN
    python -m inference.ptbxl_training model03    # model02 with crops and noise
    python -m inference.ptbxl_training model02 --data /path/to/ptbxl --epochs 60 --seed 0
    python -m inference.ptbxl_training model02 --resume --out-dir runs/ptbxl-model02-...
                                                    # continue an interrupted run in its folder
    python -m inference.ptbxl_training spread --seeds 0 1 2 3 4  # every model once per seed

Splits from ``strat_fold`` (1-8 train, 9 validation, 10 test; patient-disjoint), records
without a diagnostic superclass left out (``inference.datasets.ptbxl``). Adam on binary
cross-entropy over the five sigmoid outputs; after each epoch the validation binary accuracy
(at 0.5) decides early stopping, the best epoch's weights are kept, and the whole state of the
run is checkpointed (``<weights-dir>/ptbxl-<model>.checkpoint.pt``, kept after the run and
gitignored; ``--resume`` continues from it, refusing a checkpoint of another format, model,
recipe, setting or PTB-XL copy; the card's training time then adds up every process's part and
its ``resumed_after_epoch`` says where it continued). Per-class thresholds are then chosen on
validation (maximum F1) and the test partition is scored once: per-class and macro ROC AUC,
binary accuracy, F1, each with a bootstrap 95 % interval over test patients (a cluster
bootstrap: a patient's records are drawn together, as they are not independent).

Writes ``ptbxl-<model>.pt`` and ``.json`` (the card), and ``ptbxl-<model>.md`` with
``ptbxl-<model>-training.png``, and redraws ``ptbxl-models.md`` (the three side by side) from the
cards present, into ``--out-dir DIR`` (default: a new ``runs/ptbxl-<model>-<UTC time>/``;
``--weights-dir`` and ``--docs-dir`` split it). Only ``--replace-shipped`` writes over the
shipped ``inference/weights/ptbxl-*`` and ``docs/models/ptbxl-*``. ``spread`` trains without
writing weights or bootstrapping (it uses the point figures only) and writes
``ptbxl-seed-spread.json``, which the overview shows beside the bootstrap table.
Deterministic with a fixed seed (one thread, deterministic algorithms) on the same CPU and
maths library; another CPU or library gives other weights, about as far off as another seed, so
the cards record the CPU, its instruction set and the BLAS version.
"""

import argparse
import hashlib
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from inference.datasets.ptbxl import (
    FEATURE_COLUMNS,
    LEADS,
    PTBXL_RECORDS,
    RAW_FEATURES,
    SPLIT_FOLDS,
    SUPERCLASSES,
    UNFLAGGED_FEATURES,
    MetadataScaler,
    class_counts,
    copy_summary,
    data_fingerprint,
    describe_copy,
    load_signals,
    patient_splits,
    read_table,
)
from inference.evaluation.common import json_text
from inference.metrics import roc_auc
from inference.models import count_parameters
from inference.ptbxl_models import (
    ARCHITECTURES,
    FS_HZ,
    N_FEATURES,
    N_SAMPLES,
    TASK,
    clear_model_caches,
    lead_scales_mv,
    normalize_ecg,
    predict_probabilities,
)
from inference.registry import add_output_options, make_run_dirs, run_dirs
from inference.train import git_commit, training_environment

SPLITS = tuple(SPLIT_FOLDS)
# Augmentation of model03: a random 7.5 s crop of each 10 s record per step ("random sliding
# windows"), read at test time as windows every 1.25 s whose probabilities are averaged, and
# Gaussian noise in normalized units (0.05 of a lead's training scale, about 10 uV).
CROP_SAMPLES = 750
CROP_STRIDE_SAMPLES = 125
NOISE_STD = 0.05
# How the hyperparameters above and in MODELS were chosen, for the cards. From the code and its
# history: they are constants set by hand in commit 088d619, unchanged by the training commit
# 30c150b, and the repository holds no search over them.
HYPERPARAMETER_CHOICE = (
    "max epochs, patience and (model03) the crop length and noise level were set by hand in "
    "the code before training (commit 088d619, unchanged since) and not searched: validation "
    "(strat_fold 9) chose only the kept epoch and the thresholds, and the test fold "
    "(strat_fold 10) is scored once, at the end of the run, after both are fixed; fold 10 was "
    "not used to choose them"
)

MODELS = {
    "model01": {
        "architecture": "MetadataNet",
        "ecg": False,
        "augment": False,
        "epochs": 300,
        "patience": 40,
        # the input width from the code, so the card cannot go stale when the features change
        "description": f"metadata-only dense network ({N_FEATURES} -> 32 -> 32 -> 5)",
    },
    "model02": {
        "architecture": "DualInputNet",
        "ecg": True,
        "augment": False,
        "epochs": 60,
        "patience": 15,
        "description": "metadata + 1D CNN: two branches, concatenated",
    },
    "model03": {
        "architecture": "DualInputNet",
        "ecg": True,
        "augment": True,
        "epochs": 80,
        "patience": 20,
        "description": "model02 trained with random 7.5 s crops and Gaussian noise",
    },
}

# Bootstrap resamples of a card's test intervals.
DEFAULT_RESAMPLES = 1000

# The seed paper's binary accuracies (Keras binary_accuracy at 0.5 on the full PTB-XL).
SEED_BINARY_ACCURACY = {"model01": 0.75, "model02": 0.89, "model03": 0.87}


def model_name(key: str) -> str:
    return f"ptbxl-{key}"


def epochs_and_patience(key: str, epochs: int | None, patience: int | None) -> tuple[int, int]:
    """The most epochs and the patience of a run: as given on the command line, else the
    model's own (``MODELS``)."""
    return epochs or MODELS[key]["epochs"], patience or MODELS[key]["patience"]


# --- Data -------------------------------------------------------------------------------------


@dataclass
class PtbxlData:
    """The three partitions as arrays: labels (n, 5), raw metadata (n, 7), signals (n, 1000,
    12) mV at 100 Hz (None for the metadata-only model), ecg_ids and patient_ids (n,); the
    fingerprint of the PTB-XL copy read (``data_fingerprint``) and what it holds
    (``describe_copy``), both None for synthetic data."""

    folder: str
    ecg_ids: dict[str, np.ndarray]
    patient_ids: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    metadata: dict[str, np.ndarray]
    signals_mv: dict[str, np.ndarray] | None
    class_counts: dict[str, dict[str, int]]
    fingerprint: dict | None = None
    copy: dict | None = None


def load_data(folder: str | None, with_signals: bool) -> PtbxlData:
    table = read_table(folder)
    splits = patient_splits(table)
    return PtbxlData(
        folder=str(table.folder),
        ecg_ids={name: table.ecg_ids[rows] for name, rows in splits.items()},
        patient_ids={name: table.patient_ids[rows] for name, rows in splits.items()},
        labels={name: table.labels[rows] for name, rows in splits.items()},
        metadata={name: table.metadata[rows] for name, rows in splits.items()},
        signals_mv=(
            {name: load_signals(table, rows, 100) for name, rows in splits.items()}
            if with_signals
            else None
        ),
        class_counts=class_counts(table, splits),
        fingerprint=data_fingerprint(table.folder),
        copy=describe_copy(table),
    )


@dataclass
class Prepared:
    """Model inputs: metadata features (n, N_FEATURES) and normalized ECG (n, 1000, 12) or
    None, with the transforms fitted on the training partition only."""

    features: dict[str, np.ndarray]
    ecg: dict[str, np.ndarray] | None
    scaler: MetadataScaler
    lead_scales_mv: np.ndarray | None


def prepare(data: PtbxlData) -> Prepared:
    scaler = MetadataScaler.fit(data.metadata["train"])
    features = {name: scaler.transform(data.metadata[name]) for name in SPLITS}
    if data.signals_mv is None:
        return Prepared(features, None, scaler, None)
    scales = lead_scales_mv(data.signals_mv["train"])
    ecg = {name: normalize_ecg(data.signals_mv[name], scales) for name in SPLITS}
    return Prepared(features, ecg, scaler, scales)


# --- Metrics ----------------------------------------------------------------------------------


def f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    tp = float(np.sum(predicted & labels))
    fp = float(np.sum(predicted & ~labels))
    fn = float(np.sum(~predicted & labels))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")


def choose_thresholds(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Per class, the probability threshold (>=) with the highest validation F1; the highest
    such threshold on ties; 0.5 for a class with no validation positive."""
    thresholds = np.full(labels.shape[1], 0.5)
    for column in range(labels.shape[1]):
        truth = labels[:, column].astype(bool)
        if not truth.any():
            continue
        candidates = np.unique(probabilities[:, column])[::-1]
        scores = [f1(truth, probabilities[:, column] >= t) for t in candidates]
        thresholds[column] = float(candidates[int(np.nanargmax(scores))])
    return thresholds


def point_metrics(labels: np.ndarray, probabilities: np.ndarray, thresholds: np.ndarray) -> dict:
    """Flat dict of scalars: ROC AUC and F1 per class, their macro means, binary accuracy at
    0.5 (as the seed reports it) and at the thresholds. NaN where undefined (no positive or
    no negative in ``labels``)."""
    truth = labels.astype(bool)
    metrics = {}
    aucs, f1s = [], []
    for column, superclass in enumerate(SUPERCLASSES):
        auc = roc_auc(truth[:, column], probabilities[:, column])
        score = f1(truth[:, column], probabilities[:, column] >= thresholds[column])
        metrics[f"auc_{superclass}"], metrics[f"f1_{superclass}"] = auc, score
        aucs.append(auc)
        f1s.append(score)
    metrics["macro_auc"] = float(np.mean(aucs))  # NaN when a class is undefined
    metrics["macro_f1"] = float(np.mean(f1s))
    metrics["binary_accuracy"] = float(np.mean((probabilities >= 0.5) == truth))
    metrics["binary_accuracy_at_thresholds"] = float(
        np.mean((probabilities >= thresholds) == truth)
    )
    return metrics


def bootstrap_intervals(
    labels: np.ndarray,
    probabilities: np.ndarray,
    thresholds: np.ndarray,
    resamples: int,
    seed: int,
    patient_ids: np.ndarray,
) -> tuple[dict, dict]:
    """Percentile 95 % intervals of every ``point_metrics`` value over ``resamples`` cluster
    bootstrap draws, and per metric how many draws left it undefined (a class with no positive
    drawn); those draws are left out of its interval.

    Each draw takes as many patients as the test records hold, with replacement, and all the
    records of each (``patient_ids`` gives each record's patient). Records of one patient are
    alike, so drawing records one by one would treat them as independent evidence and give
    intervals too narrow."""
    if resamples < 1:
        raise ValueError(f"a bootstrap needs at least one resample, got {resamples}")
    patient_ids = np.asarray(patient_ids)
    if len(patient_ids) != len(labels):
        raise ValueError(f"{len(patient_ids)} patient ids for {len(labels)} records")
    members = [np.flatnonzero(patient_ids == patient) for patient in np.unique(patient_ids)]
    rng = np.random.default_rng(seed)
    draws = []
    for chosen in rng.integers(0, len(members), size=(resamples, len(members))):
        rows = np.concatenate([members[index] for index in chosen])
        draws.append(point_metrics(labels[rows], probabilities[rows], thresholds))
    intervals, undefined = {}, {}
    for key in draws[0]:
        values = np.array([draw[key] for draw in draws])
        defined = values[~np.isnan(values)]
        undefined[key] = int(len(values) - len(defined))
        intervals[key] = (
            [float(np.percentile(defined, 2.5)), float(np.percentile(defined, 97.5))]
            if len(defined)
            else [float("nan"), float("nan")]
        )
    return intervals, undefined


def bce(labels: np.ndarray, probabilities: np.ndarray) -> float:
    p = np.clip(probabilities.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def for_json(value):
    """Floats rounded to 4 places, NaN (undefined) as null, arrays as lists."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, float | np.floating):
        return None if value != value else round(float(value), 4)
    if isinstance(value, dict):
        return {key: for_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [for_json(item) for item in value]
    return value


# --- Training ---------------------------------------------------------------------------------


def random_crops(ecg: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random ``CROP_SAMPLES`` window of each record of a batch (batch, T, 12)."""
    starts = torch.randint(0, ecg.shape[1] - CROP_SAMPLES + 1, (len(ecg),), generator=generator)
    return torch.stack(
        [record[s : s + CROP_SAMPLES] for record, s in zip(ecg, starts.tolist(), strict=True)]
    )


def evaluate_split(model: nn.Module, prepared: Prepared, split: str, spec: dict) -> np.ndarray:
    window = CROP_SAMPLES if spec["augment"] else N_SAMPLES
    stride = CROP_STRIDE_SAMPLES if spec["augment"] else N_SAMPLES
    return predict_probabilities(
        model,
        prepared.features[split],
        prepared.ecg[split] if spec["ecg"] else None,
        window_samples=window,
        stride_samples=stride,
    )


# 2: the checkpoint carries the training time so far and the run's recipe and data
# fingerprint; a format-1 checkpoint lacks them and is refused as not of this format.
CHECKPOINT_FORMAT = 2


class ResumeError(ValueError):
    """A checkpoint that cannot continue this run (another model, seed, recipe or data)."""


def training_fingerprint(prepared: Prepared, labels: np.ndarray, spec: dict) -> str:
    """sha256 of the training inputs the model reads and the labels: a checkpoint resumes
    only the same data."""
    digest = hashlib.sha256(prepared.features["train"].tobytes())
    if spec["ecg"]:
        digest.update(prepared.ecg["train"].tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()


def run_identity(
    key: str, prepared: Prepared, labels: np.ndarray, data_fingerprint: dict | None, **settings
) -> dict:
    """What a checkpoint must match to be resumed: the model and its recipe (``MODELS[key]``
    and the augmentation constants, which the code may change between the crash and the
    resume), the run's settings (seed, epochs, ...), the PTB-XL copy (``data_fingerprint``)
    and the training inputs themselves."""
    return {
        "model": key,
        "recipe": {
            **MODELS[key],
            "crop_samples": CROP_SAMPLES,
            "crop_stride_samples": CROP_STRIDE_SAMPLES,
            "noise_std": NOISE_STD,
        },
        **settings,
        "data_fingerprint": data_fingerprint,
        "training_data_sha256": training_fingerprint(prepared, labels, MODELS[key]),
    }


def differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """The names whose values differ between two run identities, nested dicts named down to
    the value that differs (``recipe.noise_std``), so a refusal says what changed."""
    names = []
    for name in sorted(set(saved) | set(current)):
        old, new = saved.get(name), current.get(name)
        if isinstance(old, dict) and isinstance(new, dict):
            names += differences(old, new, f"{prefix}{name}.")
        elif old != new:
            names.append(f"{prefix}{name}")
    return names


def load_checkpoint(checkpoint: Path, identity: dict) -> dict:
    """The state saved in ``checkpoint``, or ``ResumeError`` when it cannot continue the run
    ``identity`` describes. The format is checked first, on its own: a file of another kind
    (a bare state_dict, an older checkpoint) has no run to compare, and listing "differences"
    against it would mislead."""
    if not checkpoint.is_file():
        raise ResumeError(f"no checkpoint {checkpoint} to resume; run without --resume")
    state = torch.load(checkpoint, weights_only=True)
    if (
        not isinstance(state, dict)
        or state.get("format") != CHECKPOINT_FORMAT
        or not isinstance(state.get("run"), dict)
    ):
        raise ResumeError(
            f"{checkpoint} is not a checkpoint of this format (format {CHECKPOINT_FORMAT}, "
            "written by python -m inference.ptbxl_training); run without --resume to start again"
        )
    differs = differences(state["run"], identity)
    if differs:
        raise ResumeError(
            f"checkpoint {checkpoint} belongs to another run (differs in {', '.join(differs)}); "
            "resume with the command that wrote it, or run without --resume to start again"
        )
    return state


def save_checkpoint(state: dict, path: Path) -> None:
    """Write ``state`` so that a crash mid-write leaves the previous checkpoint whole (the
    partial name still ends in .checkpoint.pt, which .gitignore covers)."""
    partial = path.with_name(path.name.removesuffix(".checkpoint.pt") + ".partial.checkpoint.pt")
    torch.save(state, partial)
    os.replace(partial, path)


@dataclass
class Fitted:
    """What ``fit`` gives: the model with the kept weights, the per-epoch history, the kept
    epoch, the training time of the whole run (over every process that ran part of it) and
    the epoch a resumed run continued after (None when it was not resumed)."""

    model: nn.Module
    history: list[dict]
    best_epoch: int
    cpu_s: float
    wall_s: float
    resumed_after_epoch: int | None


def fit(
    key: str,
    prepared: Prepared,
    labels: dict[str, np.ndarray],
    *,
    epochs: int,
    patience: int,
    seed: int,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    checkpoint: Path | None = None,
    resume: bool = False,
    data_fingerprint: dict | None = None,
) -> Fitted:
    """Train ``MODELS[key]``; keep the epoch with the best validation binary accuracy (ties:
    lower validation loss), stop after ``patience`` epochs without one.

    After every epoch the whole state of the run goes to ``checkpoint`` (the weights, the
    optimiser, both random generators, the history, the best epoch and its weights, the
    training time so far), and stays there after the run. With ``resume`` the run continues
    from it, and gives on the same machine exactly what an uninterrupted run gives: every
    random draw comes from the restored generators, and the time of the epochs run before
    is added to this process's. A checkpoint of another model, recipe, seed, setting, PTB-XL
    copy (``data_fingerprint``) or training data raises ``ResumeError``."""
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    spec = MODELS[key]
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = ARCHITECTURES[spec["architecture"]]()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    features = torch.from_numpy(prepared.features["train"])
    ecg = torch.from_numpy(prepared.ecg["train"]) if spec["ecg"] else None
    targets = torch.from_numpy(labels["train"])
    # hashing the training inputs costs a pass over them: only a run that checkpoints needs it
    identity = None
    if checkpoint is not None:
        identity = run_identity(
            key,
            prepared,
            labels["train"],
            data_fingerprint,
            seed=seed,
            epochs=epochs,
            patience=patience,
            batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
        )
    history: list[dict] = []
    best = (-1.0, float("inf"))
    best_epoch, best_state = 0, None
    first_epoch, finished = 1, False
    # training time of the epochs run by earlier processes of this run (resumed)
    earlier_cpu_s, earlier_wall_s, resumed_after_epoch = 0.0, 0.0, None
    if resume:
        if checkpoint is None:
            raise ResumeError("no checkpoint to resume; run without --resume")
        state = load_checkpoint(checkpoint, identity)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])  # dropout draws from the global generator
        generator.set_state(state["generator"])
        history = state["history"]
        best, best_epoch = tuple(state["best"]), state["best_epoch"]
        best_state = state["best_state"]
        first_epoch, finished = state["epoch"] + 1, state["finished"]
        earlier_cpu_s, earlier_wall_s = state["training_cpu_s"], state["training_wall_s"]
        resumed_after_epoch = state["epoch"]
        print(
            f"{model_name(key)}: resumed after epoch {state['epoch']} (kept epoch {best_epoch}"
            f"{', run already finished' if finished else ''}) from {checkpoint}",
            flush=True,
        )

    def elapsed() -> tuple[float, float]:
        """Training time of the run so far: earlier processes' and this one's."""
        return (
            earlier_cpu_s + time.process_time() - started_cpu,
            earlier_wall_s + time.perf_counter() - started_wall,
        )

    for epoch in range(first_epoch, epochs + 1):
        if finished:
            break
        model.train()
        order = torch.randperm(len(targets), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            if spec["ecg"]:
                batch = ecg[rows]
                if spec["augment"]:
                    batch = random_crops(batch, generator)
                    batch = batch + NOISE_STD * torch.randn(batch.shape, generator=generator)
                logits = model(batch, features[rows])
            else:
                logits = model(features[rows])
            loss = loss_fn(logits, targets[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        probabilities = evaluate_split(model, prepared, "validation", spec)
        val = point_metrics(labels["validation"], probabilities, np.full(len(SUPERCLASSES), 0.5))
        row = {
            "epoch": epoch,
            "train_loss": total / len(order),
            "val_loss": bce(labels["validation"], probabilities),
            "val_binary_accuracy": val["binary_accuracy"],
            "val_macro_auc": val["macro_auc"],
        }
        history.append(row)
        improved = (row["val_binary_accuracy"], -row["val_loss"]) > (best[0], -best[1])
        print(
            f"{model_name(key)} epoch {epoch:3d}/{epochs}: train loss {row['train_loss']:.4f} | "
            f"val loss {row['val_loss']:.4f} binary acc {row['val_binary_accuracy']:.4f} "
            f"macro AUC {row['val_macro_auc']:.4f}" + (" *" if improved else ""),
            flush=True,
        )
        if improved:
            best, best_epoch = (row["val_binary_accuracy"], row["val_loss"]), epoch
            best_state = {name: value.clone() for name, value in model.state_dict().items()}
        stop = not improved and epoch - best_epoch >= patience
        finished = stop or epoch == epochs
        if checkpoint is not None:
            cpu_s, wall_s = elapsed()
            save_checkpoint(
                {
                    "format": CHECKPOINT_FORMAT,
                    "run": identity,
                    "epoch": epoch,
                    "finished": finished,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "generator": generator.get_state(),
                    "history": history,
                    "best": list(best),
                    "best_epoch": best_epoch,
                    "best_state": best_state,
                    "training_cpu_s": cpu_s,
                    "training_wall_s": wall_s,
                },
                checkpoint,
            )
        if stop:
            print(f"early stop: validation binary accuracy not improved for {patience} epochs")
            break
    model.load_state_dict(best_state)
    model.eval()
    cpu_s, wall_s = elapsed()
    return Fitted(model, history, best_epoch, cpu_s, wall_s, resumed_after_epoch)


def run(
    key: str,
    data: PtbxlData,
    *,
    epochs: int,
    patience: int,
    seed: int,
    resamples: int = 1000,
    checkpoint: Path | None = None,
    resume: bool = False,
    prepared: Prepared | None = None,
) -> tuple[nn.Module, dict]:
    """Train, choose thresholds on validation, score the test partition once. Returns the
    model and the card's content (without the bookkeeping ``write_card`` adds). ``checkpoint``
    and ``resume`` as in ``fit``. ``resamples`` 0 skips the bootstrap (the seed spread needs
    only the point figures), and the content then has no intervals, so no card can be written
    from it. ``prepared``: the inputs ``prepare(data)`` gives, when the caller already has
    them (the seed spread prepares once for all its runs)."""
    spec = MODELS[key]
    prepared = prepare(data) if prepared is None else prepared
    fitted = fit(
        key,
        prepared,
        data.labels,
        epochs=epochs,
        patience=patience,
        seed=seed,
        checkpoint=checkpoint,
        resume=resume,
        data_fingerprint=data.fingerprint,
    )
    model, history, best_epoch = fitted.model, fitted.history, fitted.best_epoch
    validation = evaluate_split(model, prepared, "validation", spec)
    thresholds = choose_thresholds(data.labels["validation"], validation)
    test = evaluate_split(model, prepared, "test", spec)
    test_metrics = point_metrics(data.labels["test"], test, thresholds)
    bootstrap = {}
    if resamples:
        intervals, undefined = bootstrap_intervals(
            data.labels["test"], test, thresholds, resamples, seed, data.patient_ids["test"]
        )
        bootstrap = {
            "test_ci95": intervals,
            "test_bootstrap": {
                "resamples": resamples,
                "seed": seed,
                "method": (
                    "percentile, cluster bootstrap: test patients drawn with replacement, "
                    "each with all their records"
                ),
                "undefined_draws": undefined,
            },
        }
    # Binary accuracy of a constant answer (each class's training majority) on the same test
    # records: the floor that multi-label binary accuracy has to be read against.
    majority = (data.labels["train"].mean(axis=0) > 0.5).astype(np.float32)
    constant = np.broadcast_to(majority, data.labels["test"].shape)
    baseline = {
        "binary_accuracy": float(np.mean(constant == data.labels["test"])),
        "answer": {s: int(m) for s, m in zip(SUPERCLASSES, majority, strict=True)},
    }

    def shown(metric: str) -> str:
        value = f"{test_metrics[metric]:.3f}"
        if bootstrap:
            low, high = bootstrap["test_ci95"][metric]
            value += f" [{low:.3f}, {high:.3f}]"
        return value

    print(
        f"{model_name(key)} test: macro AUC {shown('macro_auc')}, binary accuracy "
        f"{shown('binary_accuracy')} (constant answer {baseline['binary_accuracy']:.3f})"
    )
    content = {
        "architecture": spec["architecture"],
        "architecture_args": {},
        "parameters": count_parameters(model),
        "description": spec["description"],
        "input": {
            "ecg": spec["ecg"],
            "metadata_features": list(FEATURE_COLUMNS),
            **(
                {
                    "fs_hz": FS_HZ,
                    "n_samples": N_SAMPLES,
                    "leads": list(LEADS),
                    "units": "mV",
                    "window_samples": CROP_SAMPLES if spec["augment"] else N_SAMPLES,
                    "stride_samples": CROP_STRIDE_SAMPLES if spec["augment"] else N_SAMPLES,
                }
                if spec["ecg"]
                else {}
            ),
        },
        "classes": list(SUPERCLASSES),
        "metadata_scaler": prepared.scaler.to_dict(),
        **(
            {
                "ecg_normalization": {
                    "method": (
                        "per record and lead minus the lead's median, divided by the lead's "
                        "standard deviation over the baseline-removed training records"
                    ),
                    "lead_scales_mv": [round(float(s), 6) for s in prepared.lead_scales_mv],
                }
            }
            if spec["ecg"]
            else {}
        ),
        "data": {
            "database": "PTB-XL 1.0.x, records100 (100 Hz), diagnostic superclasses",
            "folder": Path(data.folder).name,
            "split": "strat_fold 1-8 train, 9 validation, 10 test (patient-disjoint)",
            "left_out": "records with no diagnostic superclass",
            "class_counts": data.class_counts,
            "test_patients": int(len(np.unique(data.patient_ids["test"]))),
            # what the PTB-XL copy holds (records, ecg_ids, dates, folds), for the wording
            **({"copy": data.copy} if data.copy is not None else {}),
            # rows, sha256 of ptbxl_database.csv and scp_statements.csv of the copy used
            **({"fingerprint": data.fingerprint} if data.fingerprint is not None else {}),
            # training rows lacking each raw feature (imputed with fill_values), and which
            # are imputed without a *_missing flag column (sex and device: never missing)
            "training_rows_missing": {
                name: int(count)
                for name, count in zip(
                    RAW_FEATURES, np.isnan(data.metadata["train"]).sum(axis=0), strict=True
                )
            },
            "imputed_without_flag": list(UNFLAGGED_FEATURES),
        },
        "seed": seed,
        "recipe": {
            "max_epochs": epochs,
            "patience": patience,
            "batch_size": 32,
            "optimizer": "Adam, learning rate 0.001, weight decay 0.0001",
            "loss": "binary cross-entropy over five sigmoid outputs (unweighted)",
            "early_stopping": "validation binary accuracy at 0.5; ties: lower validation loss",
            "augmentation": (
                f"random {CROP_SAMPLES / FS_HZ:g} s crop per record and step, Gaussian noise "
                f"{NOISE_STD:g} (normalized units); read as windows every "
                f"{CROP_STRIDE_SAMPLES / FS_HZ:g} s, probabilities averaged"
                if spec["augment"]
                else "none"
            ),
            "best_epoch": best_epoch,
            "epochs_run": len(history),
            "hyperparameter_choice": HYPERPARAMETER_CHOICE,
        },
        "thresholds": {
            s: round(float(t), 6) for s, t in zip(SUPERCLASSES, thresholds, strict=True)
        },
        "metrics": {
            "validation": point_metrics(data.labels["validation"], validation, thresholds),
            "test": test_metrics,
            **bootstrap,
            "test_constant_answer": baseline,
            "n_test_records": int(len(data.labels["test"])),
            "n_test_patients": int(len(np.unique(data.patient_ids["test"]))),
        },
        # the whole run's, over every process that ran part of it (--resume)
        "training_cpu_s": round(fitted.cpu_s, 1),
        "training_wall_s": round(fitted.wall_s, 1),
        "resumed_after_epoch": fitted.resumed_after_epoch,
        "history": history,
    }
    return model, for_json(content)


# --- Pictures and cards -----------------------------------------------------------------------


def plot_history(history: list[dict], best_epoch: int, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, score_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    loss_axis.plot(epochs, [row["train_loss"] for row in history], label="training")
    loss_axis.plot(epochs, [row["val_loss"] for row in history], label="validation")
    loss_axis.set(xlabel="epoch", ylabel="binary cross-entropy", title="loss")
    score_axis.plot(
        epochs, [row["val_binary_accuracy"] for row in history], label="binary accuracy"
    )
    score_axis.plot(epochs, [row["val_macro_auc"] or 0.0 for row in history], label="macro ROC AUC")
    score_axis.axvline(best_epoch, color="grey", alpha=0.5, label="kept epoch")
    score_axis.set(xlabel="epoch", title="validation (strat_fold 9)", ylim=(0.4, 1))
    for axis in (loss_axis, score_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# Binary accuracies are shown in percent with one decimal, the other figures with two decimals.
PERCENT_KEYS = ("binary_accuracy", "binary_accuracy_at_thresholds")
# Marks an interval with no width at the precision shown (footnoted in the card).
DEGENERATE_MARK = "†"
# Below this many test positives in a class, the cards call the test partition small.
FEW_POSITIVES = 50


def _shown(value: float, key: str) -> str:
    scale, digits = (100, 1) if key in PERCENT_KEYS else (1, 2)
    return f"{value * scale:.{digits}f}"


def degenerate(card: dict, key: str) -> bool:
    """True when the test interval of ``key`` has no width at the precision shown, e.g. an AUC
    of 1.00 [1.00, 1.00]: every bootstrap draw gave the same value because the class has so
    few positives, which is no certainty and must not read as one."""
    low, high = card["metrics"]["test_ci95"][key]
    if card["metrics"]["test"][key] is None or low is None:
        return False
    return _shown(low, key) == _shown(high, key)


def _cell(card: dict, key: str) -> str:
    value = card["metrics"]["test"][key]
    low, high = card["metrics"]["test_ci95"][key]
    if value is None:
        return "undefined"
    mark = f" {DEGENERATE_MARK}" if degenerate(card, key) else ""
    return f"{_shown(value, key)} [{_shown(low, key)}, {_shown(high, key)}]{mark}"


def _metric_name(key: str) -> str:
    names = {"auc": "ROC AUC", "f1": "F1"}
    kind, _, superclass = key.partition("_")
    if superclass in SUPERCLASSES:
        return f"{superclass} {names[kind]}"
    return key.replace("_", " ").replace("auc", "ROC AUC").replace("f1", "F1")


def degenerate_note(card: dict, keys: list[str], name: str = "") -> str:
    """Footnotes for the intervals among ``keys`` that have no width, with the number of test
    positives behind each (or "" when there is none)."""
    counts = card["data"]["class_counts"]["test"]
    resamples = card["metrics"]["test_bootstrap"]["resamples"]
    dropped = card["metrics"]["test_bootstrap"]["undefined_draws"]
    notes = []
    for key in keys:
        if not degenerate(card, key):
            continue
        superclass = key.partition("_")[2]
        basis = (
            f"n positives = {counts[superclass]} of {card['metrics']['n_test_records']} test "
            "records"
            if superclass in SUPERCLASSES
            else f"n = {card['metrics']['n_test_records']} test records"
        )
        notes.append(
            f"{DEGENERATE_MARK} {name}{_metric_name(key)}: interval degenerate, {basis} "
            f"({dropped[key]} of {resamples} draws dropped as undefined). Every draw gave "
            f"{_shown(card['metrics']['test_ci95'][key][0], key)} at this precision: too few "
            "cases to vary, not certainty."
        )
    return "\n\n".join(notes)


def _dropped(card: dict, key: str) -> int:
    return card["metrics"]["test_bootstrap"]["undefined_draws"][key]


def data_phrase(card: dict) -> str:
    """The data a card's model was trained on, described from the card's own record of them."""
    return copy_summary(card["data"].get("copy"))


def is_subset(card: dict) -> bool:
    copy = card["data"].get("copy")
    return copy is None or copy["records"] < PTBXL_RECORDS


def test_size_note(card: dict) -> str:
    """How many test records and patients lie behind the figures, and what the data can stand
    for: built from the card's data, so a run on a full download describes itself."""
    counts = card["data"]["class_counts"]["test"]
    n, patients = card["metrics"]["n_test_records"], card["metrics"]["n_test_patients"]
    fewest = min(counts[s] for s in SUPERCLASSES)
    size = (
        "A bootstrap over so few patients gives wide intervals, and one record more or less moves "
        "a rare class's F1 or AUC by several points: the intervals, not the centres, are the "
        "result."
        if fewest < FEW_POSITIVES
        else f"With at least {fewest} positives per class the intervals are narrower, but they "
        "still come from one hospital's archive."
    )
    scope = (
        f"A subset is no sample of the full PTB-XL ({PTBXL_RECORDS:,} records), so none of this "
        "estimates the models' performance on it, let alone on patients."
        if is_subset(card)
        else "These are figures on PTB-XL's own test fold; they promise nothing about patients "
        "elsewhere."
    )
    return (
        f"**How many test records.** The models were trained and tested on {data_phrase(card)}. "
        "The test partition "
        f"(strat_fold 10) holds {n} labelled records of {patients} patients, with "
        f"{', '.join(f'{counts[s]} {s}' for s in SUPERCLASSES)}. The intervals come from a "
        "cluster bootstrap over those patients (a patient's records drawn together, since "
        f"records of one patient are not independent evidence). {size} Differences between the "
        f"three models inside overlapping intervals are not shown by these data. {scope}"
    )


def binary_accuracy_note(card: dict) -> str:
    baseline = card["metrics"]["test_constant_answer"]["binary_accuracy"] * 100
    seed = (
        "were on the full PTB-XL and are not comparable with "
        f"{card['metrics']['n_test_records']} test records of a subset"
        if is_subset(card)
        else "were on the full PTB-XL too, but with their own split and networks, so compare "
        "them loosely"
    )
    return (
        "**Binary accuracy** (the seed's figure: the share of the 5 x n record-class cells right "
        "at 0.5) is dominated by negatives: most records have one or two of five classes, so a "
        f"constant answer already scores {baseline:.1f} % on these test records. Read it against "
        "that floor; macro ROC AUC and per-class F1 say more. The seed's figures (~75 % / ~89 % / "
        f"~87 %) {seed}."
    )


def imputation_note(card: dict) -> str:
    """How the card's model fills blank metadata, with the training counts behind it."""
    fill = card["metadata_scaler"]["fill_values"]
    missing = card["data"]["training_rows_missing"]
    n_train = card["data"]["class_counts"]["train"]["records"]
    silent = card["data"]["imputed_without_flag"]
    flagged = [name for name in fill if name not in silent]
    return (
        "a blank feature takes a value fitted on the training records "
        f"({', '.join(f'{name} {fill[name]:g}' for name in fill)}; the training median, but a "
        f"normal heart axis, 0). {', '.join(flagged)} also set a `*_missing` input, so the model "
        f'reads "unknown", not the typical value: of the {n_train} training records '
        f"{', '.join(f'{missing[name]} lack {name}' for name in flagged)}. "
        f"{', '.join(silent)} are imputed **without a flag**: "
        f"{', '.join(f'{missing[name]} of the training records lack {name}' for name in silent)}"
        ". A flag that is 0 in every training row cannot be learnt: PTB-XL records sex and "
        "device for every record, and a pacemaker note counts as missing only when it is "
        "neither blank (none) nor names a pacemaker (`?`, `PACE????, nan`, `ja, nan`). A blank "
        "pacemaker is also the diagnosis page's default, which a flag would read as a doubtful "
        "note. A blank one is read as that typical value; `predict` and the diagnosis page "
        "report each imputed value."
    )


def fingerprint_note(card: dict) -> str:
    fingerprint = card["data"].get("fingerprint")
    if fingerprint is None:
        return "No data fingerprint (not trained on a PTB-XL folder)."
    return (
        f"Data fingerprint: ptbxl_database.csv with {fingerprint['database_rows']} rows, "
        f"sha256 `{fingerprint['ptbxl_database_sha256']}`; scp_statements.csv sha256 "
        f"`{fingerprint['scp_statements_sha256']}`."
    )


def environment_phrase(environment: dict) -> str:
    return (
        f"{environment['cpu_model']}, torch CPU capability {environment['cpu_capability']}, "
        f"{environment['blas']}"
    )


def card_markdown(card: dict) -> str:
    """The markdown model card, written from the JSON card alone."""
    key = card["name"].removeprefix("ptbxl-")
    metrics = card["metrics"]
    rows = "\n".join(
        f"| {s} | {card['data']['class_counts']['test'][s]} | {_cell(card, f'auc_{s}')} | "
        f"{_cell(card, f'f1_{s}')} | {card['thresholds'][s]:.3f} | "
        f"{_dropped(card, f'auc_{s}')} / {_dropped(card, f'f1_{s}')} |"
        for s in SUPERCLASSES
    )
    footnotes = degenerate_note(
        card,
        [f"{kind}_{s}" for s in SUPERCLASSES for kind in ("auc", "f1")]
        + ["macro_auc", "macro_f1", *PERCENT_KEYS],
    )
    baseline = metrics["test_constant_answer"]["binary_accuracy"] * 100
    ecg = card["input"]["ecg"]
    title = card["description"][0].upper() + card["description"][1:]
    normalization = (
        f"ECG: {card['ecg_normalization']['method']} (`inference.ptbxl_models.normalize_ecg`). "
        if ecg
        else "No ECG input. "
    )
    environment = card["environment"]
    n_flags = sum(column.endswith("_missing") for column in card["input"]["metadata_features"])
    resumed = (
        f" (interrupted and resumed after epoch {card['resumed_after_epoch']}: the time adds "
        "up both parts)"
        if card.get("resumed_after_epoch") is not None
        else ""
    )
    macro_row = (
        f"| **macro** | | **{_cell(card, 'macro_auc')}** | {_cell(card, 'macro_f1')} | | "
        f"{_dropped(card, 'macro_auc')} / {_dropped(card, 'macro_f1')} |"
    )
    return f"""# Model card: {card["name"]}

> Research software, not a medical device.

{title} (`inference.ptbxl_models.{card["architecture"]}`,
{card["parameters"]:,} parameters): PTB-XL diagnostic superclasses {", ".join(SUPERCLASSES)},
multi-label (one sigmoid each). Inputs: {"the 12 leads (10 s at 100 Hz, mV) and " if ecg else ""}the
{len(card["input"]["metadata_features"])} metadata inputs of `inference.datasets.ptbxl` (age, sex,
height, weight, pacemaker, device, heart axis, standardized with training statistics, and
{n_flags} missing flags). {normalization}Augmentation:
{card["recipe"]["augmentation"]}. Overview of the three models: [ptbxl-models.md](ptbxl-models.md).

Missing metadata: {imputation_note(card)}

Data: `{card["data"]["folder"]}`, {data_phrase(card)} ({card["data"]["database"]});
{card["data"]["split"]}; {card["data"]["left_out"]} left out:
{card["data"]["class_counts"]["train"]["records"]} training,
{card["data"]["class_counts"]["validation"]["records"]} validation,
{metrics["n_test_records"]} test records. {card["recipe"]["loss"].capitalize()}; Adam; early
stopping on {card["recipe"]["early_stopping"]} (kept epoch {card["recipe"]["best_epoch"]} of
{card["recipe"]["epochs_run"]} run, patience {card["recipe"]["patience"]}); seed {card["seed"]};
{card["training_cpu_s"]:.0f} s CPU on {environment["cpu_threads"]} thread{resumed}.

Hyperparameters: {card["recipe"]["hyperparameter_choice"]}.

Reproduce: `{card["command"]}` (code {card["code_commit"]}, trained {card["date"]}). Deterministic
on the same CPU and maths library: with one thread and deterministic kernels the command gives
these weights and figures again on the same data in this environment
({environment_phrase(environment)}).
Another CPU or maths library rounds differently and the run drifts to other weights, a kept
epoch and figures about as far off as another seed's: compare such a run with the seed spread in
[ptbxl-models.md](ptbxl-models.md), not with this card. {fingerprint_note(card)}

## Test (strat_fold 10), with bootstrap 95 % intervals

Cluster bootstrap over the {metrics["n_test_patients"]} test patients
({metrics["n_test_records"]} records): {metrics["test_bootstrap"]["resamples"]} resamples, each
drawing patients with replacement and taking all their records, seed
{metrics["test_bootstrap"]["seed"]}. F1 at the per-class thresholds chosen on validation
(maximum F1), never on test. A draw with no positive of a class (or, for ROC AUC, no negative)
leaves that class's figure undefined: such draws are dropped from its interval and from the macro
intervals, and their count is the last column (of {metrics["test_bootstrap"]["resamples"]}).

| superclass | test positives | ROC AUC | F1 | threshold | draws dropped (AUC / F1) |
| --- | ---: | --- | --- | ---: | ---: |
{rows}
{macro_row}

| binary accuracy | % |
| --- | --- |
| at 0.5 (the seed's figure) | {_cell(card, "binary_accuracy")} |
| at the validation thresholds | {_cell(card, "binary_accuracy_at_thresholds")} |
| constant answer (training majority per class) | {baseline:.1f} |
| seed paper, full PTB-XL | ~{SEED_BINARY_ACCURACY[key] * 100:.0f} |
{f"{chr(10)}{footnotes}{chr(10)}" if footnotes else ""}
Validation (strat_fold 9, which also chose the epoch and thresholds, so optimistic): macro AUC
{metrics["validation"]["macro_auc"]:.3f}, binary accuracy at 0.5
{metrics["validation"]["binary_accuracy"] * 100:.1f} %.

{test_size_note(card)}

{binary_accuracy_note(card)}

![training curve]({card["name"]}-training.png)

Limits: the heart axis feature is itself read off an ECG (docs/ptbxl.md), so "metadata-only" is
not blind to the ECG. 12 leads at 100 Hz, 10 s records from one German hospital's archive. Not
validated prospectively. Data: Wagner P, Strodthoff N, et al. PTB-XL (2020), CC BY 4.0;
Goldberger AL et al. (2000), PhysioNet.
"""


# --- Seed spread ------------------------------------------------------------------------------

SPREAD_METRICS = ("macro_auc", "macro_f1", "binary_accuracy")
SPREAD_FILE = "ptbxl-seed-spread.json"


def summarize(values: list[float]) -> dict:
    """Mean, sample standard deviation (n - 1), min and max of one figure over the seeds."""
    array = np.array(values, dtype=np.float64)
    return {
        "mean": float(array.mean()),
        "sd": float(array.std(ddof=1)) if len(array) > 1 else float("nan"),
        "min": float(array.min()),
        "max": float(array.max()),
    }


def seed_spread(
    keys: list[str],
    seeds: list[int],
    data: PtbxlData,
    *,
    epochs: int | None,
    patience: int | None,
) -> dict:
    """Train each model of ``keys`` once per seed on ``data`` (nothing written) and collect
    the test figures of every run with their mean, sd, min and max: how far the figures move
    with training chance alone, to set beside the bootstrap intervals' test-sampling spread.

    The inputs are prepared once (the transforms depend on the training data only, not on the
    model or seed), and no run bootstraps: the spread uses the point figures alone, which the
    bootstrap does not change."""
    prepared = prepare(data)
    models = {}
    for key in keys:
        max_epochs, key_patience = epochs_and_patience(key, epochs, patience)
        runs = []
        for seed in seeds:
            _, content = run(
                key,
                data,
                epochs=max_epochs,
                patience=key_patience,
                seed=seed,
                resamples=0,
                prepared=prepared,
            )
            runs.append(
                {
                    "seed": seed,
                    "best_epoch": content["recipe"]["best_epoch"],
                    "epochs_run": content["recipe"]["epochs_run"],
                    "test": {m: content["metrics"]["test"][m] for m in SPREAD_METRICS},
                    "validation_macro_auc": content["metrics"]["validation"]["macro_auc"],
                }
            )
        models[model_name(key)] = {
            "max_epochs": max_epochs,
            "patience": key_patience,
            "runs": runs,
            "summary": {
                m: summarize([r["test"][m] for r in runs if r["test"][m] is not None])
                for m in SPREAD_METRICS
            },
            "kept_epochs": [min(r["best_epoch"] for r in runs), max(r["best_epoch"] for r in runs)],
        }
    return for_json(
        {
            "seeds": list(seeds),
            "data": {"fingerprint": data.fingerprint},
            "models": models,
        }
    )


SPREAD_HEADER = (
    "| model | seeds | test macro ROC AUC | test macro F1 | test binary accuracy % | kept epoch "
    "| card's seed = card |\n| --- | ---: | --- | --- | --- | --- | --- |"
)


def _spread_cell(summary: dict, key: str) -> str:
    mean, sd, low, high = (summary[key][k] for k in ("mean", "sd", "min", "max"))
    if key in PERCENT_KEYS:
        return f"{mean * 100:.1f} ± {sd * 100:.1f} ({low * 100:.1f}–{high * 100:.1f})"
    return f"{mean:.3f} ± {sd:.3f} ({low:.3f}–{high:.3f})"


def _same_as_card(entry: dict, card: dict | None) -> str:
    """Whether the spread's run with the card's seed gave the card's test figures: on the
    machine and code that wrote both it must; otherwise the card was trained elsewhere."""
    if card is None:
        return "no card"
    runs = [r for r in entry["runs"] if r["seed"] == card["seed"]]
    if not runs:
        return f"seed {card['seed']} not run"
    differs = [
        f"{m} {runs[0]['test'][m]} vs {card['metrics']['test'][m]}"
        for m in SPREAD_METRICS
        if runs[0]["test"][m] != card["metrics"]["test"][m]
    ]
    return "yes" if not differs else "no: " + "; ".join(differs)


def spread_markdown(spread: dict, cards: list[dict]) -> str:
    """The seed-spread section of the overview: a table and what it can and cannot show."""
    by_name = {card["name"]: card for card in cards}
    fingerprints = {json.dumps(card["data"].get("fingerprint"), sort_keys=True) for card in cards}
    if fingerprints != {json.dumps(spread["data"]["fingerprint"], sort_keys=True)}:
        return (
            "## Seed spread\n\nThe seed spread in "
            f"`{SPREAD_FILE}` was computed on another PTB-XL copy than the cards (their data "
            "fingerprints differ), so it is not shown here; run the spread command again.\n"
        )
    rows = "\n".join(
        f"| {name} | {len(entry['runs'])} | {_spread_cell(entry['summary'], 'macro_auc')} | "
        f"{_spread_cell(entry['summary'], 'macro_f1')} | "
        f"{_spread_cell(entry['summary'], 'binary_accuracy')} | "
        f"{entry['kept_epochs'][0]}–{entry['kept_epochs'][1]} | "
        f"{_same_as_card(entry, by_name.get(name))} |"
        for name, entry in spread["models"].items()
    )
    seeds = spread["seeds"]
    n_test = cards[0]["metrics"]["n_test_records"] if cards else "the"
    patients = cards[0]["metrics"]["n_test_patients"] if cards else "the"
    return f"""## Seed spread (training chance)

Each model trained again with seeds {", ".join(map(str, seeds))} on the same data and machine
(`{spread["command"]}`; code {spread["code_commit"]}, {spread["date"]};
{environment_phrase(spread["environment"])}), each run with its own kept epoch and validation
thresholds, scored on the same test records. Mean ± sd (n - 1) over the {len(seeds)} seeds, and
min–max. The last column checks that the run with the card's seed gives the card's figures.

{SPREAD_HEADER}
{rows}

What the two spreads can and cannot show. The bootstrap intervals above hold one trained model
fixed and redraw the {patients} test patients: they show how far a figure moves with which
patients happen to be tested, not how far it moves if the model is trained again. The seed
spread holds the {n_test} test records fixed and retrains: it shows how far the same recipe
moves with its random start, batch order, dropout and (model03) crops and noise, not how it
would do on other patients. Neither contains the other, and {len(seeds)} seeds give only a rough
sd. A difference between two models smaller than their seed spread is training chance, not a
difference between the recipes; one beyond both min–max ranges says the recipes differ on these
test records, but where the bootstrap intervals overlap it is not shown to hold for other
patients. A run on another CPU or maths library drifts like a run with another seed: compare it
with this spread, not with the card.
"""


def overview_markdown(cards: list[dict], spread: dict | None = None) -> str:
    """docs/models/ptbxl-models.md: the shipped PTB-XL models side by side, with the seed
    spread when one was computed (``ptbxl-seed-spread.json``)."""
    rows = "\n".join(
        f"| [{card['name']}]({card['name']}.md) | {card['description']} | "
        f"{_cell(card, 'macro_auc')} | {_cell(card, 'macro_f1')} | "
        f"{_cell(card, 'binary_accuracy')} | "
        f"~{SEED_BINARY_ACCURACY[card['name'].removeprefix('ptbxl-')] * 100:.0f} | "
        f"{card['metrics']['validation']['macro_auc']:.3f} |"
        for card in cards
    )
    per_class = "\n".join(
        f"| {card['name']} | " + " | ".join(_cell(card, f"auc_{s}") for s in SUPERCLASSES) + " |"
        for card in cards
    )
    footnotes = "\n\n".join(
        note
        for card in cards
        if (
            note := degenerate_note(
                card,
                [f"auc_{s}" for s in SUPERCLASSES] + ["macro_auc", "macro_f1", "binary_accuracy"],
                name=f"{card['name']} ",
            )
        )
    )
    first = cards[0]
    counts = first["data"]["class_counts"]["test"]
    rarest = sorted(SUPERCLASSES, key=lambda s: counts[s])[:2]
    commands = "\n".join(f"    {card['command']}" for card in cards)
    settle = (
        " Training on the full PTB-XL (same commands with `--data`) is what would settle those."
        if is_subset(first)
        else ""
    )
    return f"""# PTB-XL superclass models (issue 7)

> Research software, not a medical device.

Three models for the five PTB-XL diagnostic superclasses ({", ".join(SUPERCLASSES)}),
multi-label, trained on {data_phrase(first)} with the patient-aware strat_fold split
(docs/ptbxl.md). Each is reproduced by one command, deterministic on the same CPU and maths
library (the cards name theirs; elsewhere expect a drift like another seed's, below):

{commands}

`inference.ptbxl_models.predict(leads_mv, fs_hz, metadata)` serves them: with a 10 s 12-lead
record, the ECG + metadata model with the higher **validation** macro AUC; without one, the
metadata-only model. It refuses (``ValueError``) leads not shaped (n_samples, 12), records not
10 s long, rates outside 100-2000 Hz (others are resampled to 100 Hz), NaN, leads not in
millivolts (an amplitude that says volts or microvolts, or a value beyond 100 mV), flat leads,
unknown metadata names and out-of-range values.

## Test figures side by side (bootstrap 95 % intervals)

Intervals from a cluster bootstrap over the {first["metrics"]["n_test_patients"]} test
patients (each draw takes patients with replacement and all their records). Hyperparameters:
{first["recipe"]["hyperparameter_choice"]}.

| model | what | macro ROC AUC | macro F1 | binary accuracy % | seed % | val macro AUC |
| --- | --- | --- | --- | --- | --- | --- |
{rows}

Per-class test ROC AUC:

| model | {" | ".join(SUPERCLASSES)} |
| --- | {" | ".join("---" for _ in SUPERCLASSES)} |
{per_class}
{f"{chr(10)}{footnotes}{chr(10)}" if footnotes else ""}
{test_size_note(first)}

{binary_accuracy_note(first)}

What these data can show: whether a model ranks records of a class above the others at all
(an AUC interval clear of 0.5), and a rough size of that. What they cannot: which of the three
models is better where their intervals overlap, the effect of augmentation (model03 vs model02),
or any figure for the rarest classes ({", ".join(f"{s} {counts[s]}" for s in rarest)} test
positives) beyond a wide range.{settle}
{f"{chr(10)}{spread_markdown(spread, cards)}" if spread else ""}"""


def read_cards(weights_dir: Path) -> list[dict]:
    return [
        json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(weights_dir.glob("ptbxl-model0*.json"))
    ]


def read_spread(docs_dir: Path) -> dict | None:
    path = docs_dir / SPREAD_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_overview(weights_dir: Path, docs_dir: Path) -> None:
    cards = read_cards(weights_dir)
    if cards:
        (docs_dir / "ptbxl-models.md").write_text(
            overview_markdown(cards, read_spread(docs_dir)), encoding="utf-8"
        )


def write_outputs(
    key: str, model: nn.Module, content: dict, command: str, weights_dir: Path, docs_dir: Path
) -> dict:
    name = model_name(key)
    make_run_dirs(weights_dir, docs_dir)
    torch.save(model.state_dict(), weights_dir / f"{name}.pt")
    card = {
        "name": name,
        "version": "2",
        "weights": f"{name}.pt",
        "task": TASK,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "code_commit": git_commit(),
        "command": command,
        "environment": training_environment(),
        **content,
    }
    (weights_dir / f"{name}.json").write_text(json_text(card), encoding="utf-8")
    plot_history(
        card["history"], card["recipe"]["best_epoch"], docs_dir / f"{name}-training.png", name
    )
    (docs_dir / f"{name}.md").write_text(card_markdown(card), encoding="utf-8")
    write_overview(weights_dir, docs_dir)
    clear_model_caches()  # a server in this process must not keep serving the old weights
    print(f"wrote {weights_dir / name}.pt/.json and {docs_dir / name}.md")
    return card


def write_spread(spread: dict, command: str, weights_dir: Path, docs_dir: Path) -> dict:
    make_run_dirs(docs_dir)
    spread = {
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "code_commit": git_commit(),
        "environment": training_environment(),
        **spread,
    }
    (docs_dir / SPREAD_FILE).write_text(json_text(spread), encoding="utf-8")
    write_overview(weights_dir, docs_dir)
    for name, entry in spread["models"].items():
        print(
            f"{name}: "
            + ", ".join(f"{m} {_spread_cell(entry['summary'], m)}" for m in SPREAD_METRICS)
        )
    print(f"wrote {docs_dir / SPREAD_FILE}")
    return spread


def _command(
    args: argparse.Namespace, epochs: int | None, patience: int | None, resamples: int | None
) -> str:
    """The command line that reproduces this run (with --data when one was given: without it
    the command would "reproduce" on the default folder). The spread's has no --resamples: it
    runs no bootstrap."""
    if args.model == "spread":
        words = ["spread", "--seeds", *map(str, args.seeds), "--models", *args.models]
        words += [f"--epochs {epochs}"] if epochs else []
        words += [f"--patience {patience}"] if patience else []
    else:
        words = [args.model, f"--epochs {epochs} --patience {patience} --seed {args.seed}"]
        words += [f"--resamples {resamples}"]
    command = f"python -m inference.ptbxl_training {' '.join(words)}"
    if args.data:
        command += f" --data {shlex.quote(args.data)}"
    return command


def checked_data(folder: str | None, with_signals: bool) -> PtbxlData:
    """``load_data`` for the command line: a missing folder or file ends it with one line."""
    try:
        return load_data(folder, with_signals=with_signals)
    except FileNotFoundError as exc:
        raise SystemExit(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.ptbxl_training", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "model",
        choices=[*MODELS, "spread"],
        help="the model to train, or spread: train --models once per seed of --seeds",
    )
    parser.add_argument("--data", help="PTB-XL folder (default: $CARDIOSPIKE_DATA_DIR/ptbxl)")
    parser.add_argument("--epochs", type=int, help="most epochs (default per model)")
    parser.add_argument("--patience", type=int, help="early-stopping patience (default per model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run from <weights-dir>/ptbxl-<model>.checkpoint.pt "
        "(give the interrupted run's --out-dir)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="spread: the seeds (e.g. 0 1 2 3 4)")
    parser.add_argument(
        "--models", nargs="+", choices=list(MODELS), default=list(MODELS), help="spread: models"
    )
    parser.add_argument(
        "--resamples",
        type=int,
        help=f"bootstrap resamples for the card's intervals (default {DEFAULT_RESAMPLES}; "
        "not with spread, which runs no bootstrap)",
    )
    add_output_options(parser, "ptbxl-<model>")
    parser.add_argument("--weights-dir", type=Path, help="weights and cards (default --out-dir)")
    parser.add_argument("--docs-dir", type=Path, help="the markdown cards (default --out-dir)")
    args = parser.parse_args(argv)
    if args.replace_shipped and (args.weights_dir or args.docs_dir):
        parser.error("--replace-shipped writes the shipped folders: no --weights-dir/--docs-dir")
    if args.resume and not (args.out_dir or args.weights_dir or args.replace_shipped):
        # a new run folder holds no checkpoint to continue from
        parser.error("--resume continues a run in its folder: give it the run's --out-dir DIR")
    name = "ptbxl-seed-spread" if args.model == "spread" else model_name(args.model)
    weights_dir, docs_dir = run_dirs(args.out_dir, args.replace_shipped, name)
    args.weights_dir = args.weights_dir or weights_dir
    args.docs_dir = args.docs_dir or docs_dir
    if args.model == "spread" and (not args.seeds or args.resume):
        parser.error("spread needs --seeds (e.g. --seeds 0 1 2 3 4) and takes no --resume")
    if args.model != "spread" and args.seeds:
        parser.error("--seeds goes with spread; one model trains with --seed")
    if args.model == "spread" and args.resamples is not None:
        parser.error("spread runs no bootstrap: --resamples goes with one model's run")
    resamples = DEFAULT_RESAMPLES if args.resamples is None else args.resamples
    if resamples < 1:
        parser.error("--resamples must be at least 1: the card shows bootstrap intervals")
    # 0 used to read as "the model's default" (40 epochs) while the card said otherwise
    for option in ("epochs", "patience"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option} must be at least 1, got {value}")
    # One thread and deterministic kernels: on the same CPU and maths library the command
    # reproduces the card's figures exactly.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if args.model == "spread":
        with_signals = any(MODELS[key]["ecg"] for key in args.models)
        spread = seed_spread(
            args.models,
            args.seeds,
            checked_data(args.data, with_signals=with_signals),
            epochs=args.epochs,
            patience=args.patience,
        )
        command = _command(args, args.epochs, args.patience, None)
        write_spread(spread, command, args.weights_dir, args.docs_dir)
        print_unchanged(args)
        return 0
    epochs, patience = epochs_and_patience(args.model, args.epochs, args.patience)
    data = checked_data(args.data, with_signals=MODELS[args.model]["ecg"])
    make_run_dirs(args.weights_dir)
    # kept after the run (gitignored): the last epoch's state, for --resume
    checkpoint = args.weights_dir / f"{model_name(args.model)}.checkpoint.pt"
    model, content = run(
        args.model,
        data,
        epochs=epochs,
        patience=patience,
        seed=args.seed,
        resamples=resamples,
        checkpoint=checkpoint,
        resume=args.resume,
    )
    command = _command(args, epochs, patience, resamples)
    write_outputs(args.model, model, content, command, args.weights_dir, args.docs_dir)
    print_unchanged(args)
    return 0


def print_unchanged(args: argparse.Namespace) -> None:
    if not args.replace_shipped:
        print(f"the shipped models are unchanged; this run's files are in {args.weights_dir}")


if __name__ == "__main__":
    sys.exit(main())
