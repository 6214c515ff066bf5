"""Train the 2-second window CNN and write its weights, model card and pictures.

    python -m inference.train synthetic            # the seed's recipe on synthetic ECG
    python -m inference.train mitdb [--data DIR]   # real MIT-BIH: tune on DS1, report on DS2

Each run writes ``<name>.pt`` (state dict) and ``<name>.json`` (the model card the registry
reads), and ``<name>.md`` with the training curve, the confusion matrix and the ROC curve as
PNG beside it, into ``--out-dir DIR`` (default: a new ``runs/<name>-<UTC time>/``). Only
``--replace-shipped`` writes over the shipped ``inference/weights/<name>.*`` and
``docs/models/<name>.*``.
"""

import argparse
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from inference.aami import DS1, DS2
from inference.evaluation.common import json_text
from inference.metrics import binary_metrics, roc_curve
from inference.models import (
    BANDPASS_HZ,
    WINDOW_CLASSES,
    WINDOW_FS_HZ,
    WINDOW_SAMPLES,
    SeedCNN,
    count_parameters,
    prepare_windows,
)
from inference.registry import (
    ROOT,
    SHIPPED_DOCS_DIR,
    add_output_options,
    make_run_dirs,
    run_dirs,
)

# the shipped model cards' folder (other modules read the shipped cards' notes from it)
DOCS_DIR = SHIPPED_DOCS_DIR

# DS1 patients held out for validation (early stopping and tuning); never trained on. Chosen
# to hold each kind of event DS1 offers: AF (201), ventricular ectopy (106, 223), atrial
# premature beats (220, 223) and mostly-normal rhythm (115).
MITDB_VALIDATION = ("106", "115", "201", "220", "223")


def predict_proba(model: nn.Module, inputs: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Probability of class 1 for each prepared window."""
    model.eval()
    scores = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            batch = torch.from_numpy(inputs[start : start + batch_size])
            scores.append(torch.softmax(model(batch), dim=1)[:, 1].numpy())
    return np.concatenate(scores) if scores else np.empty(0)


def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random perturbations of prepared windows (values in [0, 1]) that keep their label:
    time stretch of +-10 % (heart-rate change), a slow baseline drift and white noise, then
    min-max again so the input stays what the model sees in serving."""
    n, length = batch.shape
    stretch = 0.9 + 0.2 * torch.rand(n, 1, generator=generator)
    positions = (torch.arange(length).float().unsqueeze(0) * stretch).clamp(max=length - 1)
    low = positions.floor().long()
    high = (low + 1).clamp(max=length - 1)
    fraction = positions - low
    stretched = batch.gather(1, low) * (1 - fraction) + batch.gather(1, high) * fraction
    time_s = torch.arange(length).float().unsqueeze(0) / WINDOW_FS_HZ
    drift_hz = 0.1 + 0.4 * torch.rand(n, 1, generator=generator)
    phase = 2 * torch.pi * torch.rand(n, 1, generator=generator)
    drift = (
        0.1
        * torch.rand(n, 1, generator=generator)
        * torch.sin(2 * torch.pi * drift_hz * time_s + phase)
    )
    noise = (
        0.03 * torch.rand(n, 1, generator=generator) * torch.randn(n, length, generator=generator)
    )
    out = stretched + drift + noise
    low_value = out.min(dim=1, keepdim=True).values
    span = (out.max(dim=1, keepdim=True).values - low_value).clamp(min=1e-6)
    return (out - low_value) / span


def fit(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    patience: int | None = None,
    class_weights: np.ndarray | None = None,
    checkpoint: Path | None = None,
    weight_decay: float = 0.0,
    augmentation: bool = False,
) -> list[dict]:
    """Adam + cross-entropy; after each epoch, validation loss, accuracy and ROC AUC.

    With ``patience``, stops when validation AUC has not improved for that many epochs and
    restores the best epoch's weights (also saved to ``checkpoint``). Without it, trains all
    epochs and keeps the last weights (the seed's recipe).
    """
    generator = torch.Generator().manual_seed(seed)
    x_train, y_train = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    x_val, y_val = validation
    weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    history: list[dict] = []
    best_auc, best_state, epochs_since_best = -1.0, None, 0
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        total_loss, correct = 0.0, 0
        batches = range(0, len(order), batch_size)
        for start in tqdm(batches, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False):
            index = order[start : start + batch_size]
            inputs = x_train[index]
            if augmentation:
                inputs = augment(inputs, generator)
            logits = model(inputs)
            loss = loss_fn(logits, y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(index)
            correct += int((logits.argmax(dim=1) == y_train[index]).sum())
        val_scores = predict_proba(model, x_val)
        val = binary_metrics(y_val, val_scores)
        with torch.inference_mode():
            val_loss = float(
                loss_fn(model(torch.from_numpy(x_val)), torch.from_numpy(y_val)).item()
            )
        row = {
            "epoch": epoch,
            "train_loss": total_loss / len(order),
            "train_accuracy": correct / len(order),
            "val_loss": val_loss,
            "val_accuracy": val["accuracy"],
            "val_roc_auc": val["roc_auc"],
        }
        history.append(row)
        print(
            f"epoch {epoch:2d}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f}"
            f" | val loss {val_loss:.4f} acc {val['accuracy']:.4f} AUC {val['roc_auc']:.4f}",
            flush=True,
        )
        if patience is None:
            continue
        if val["roc_auc"] > best_auc:
            best_auc, epochs_since_best = val["roc_auc"], 0
            best_state = {key: value.clone() for key, value in model.state_dict().items()}
            if checkpoint:
                torch.save(best_state, checkpoint)
        else:
            epochs_since_best += 1
            if epochs_since_best >= patience:
                print(f"early stop: validation AUC has not improved for {patience} epochs")
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def class_balance_weights(labels: np.ndarray) -> np.ndarray:
    """Inverse-frequency weights, so each class weighs equally in the loss."""
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    return (counts.sum() / (2.0 * np.maximum(counts, 1))).astype(np.float32)


# --- Pictures ---------------------------------------------------------------------------


def plot_history(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    loss_axis.plot(epochs, [row["train_loss"] for row in history], label="training")
    loss_axis.plot(epochs, [row["val_loss"] for row in history], label="validation")
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    accuracy_axis.plot(epochs, [row["train_accuracy"] for row in history], label="training")
    accuracy_axis.plot(epochs, [row["val_accuracy"] for row in history], label="validation")
    accuracy_axis.plot(epochs, [row["val_roc_auc"] for row in history], "--", label="val ROC AUC")
    accuracy_axis.set(xlabel="epoch", title="accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_evaluation(metrics: dict, labels, scores, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (matrix_axis, roc_axis) = plt.subplots(1, 2, figsize=(9, 4))
    confusion = metrics["confusion"]
    matrix = np.array([[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]])
    matrix_axis.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        share = count / max(matrix[row].sum(), 1)
        colour = "white" if count > matrix.max() / 2 else "black"
        matrix_axis.text(
            column, row, f"{count}\n{share:.1%}", ha="center", va="center", color=colour
        )
    matrix_axis.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=WINDOW_CLASSES,
        yticklabels=WINDOW_CLASSES,
        xlabel="predicted",
        ylabel="reference",
        title="confusion matrix (row %)",
    )
    fpr, tpr = roc_curve(labels, scores)
    roc_axis.plot(fpr, tpr, label=f"AUC {metrics['roc_auc']:.3f}")
    roc_axis.plot([0, 1], [0, 1], ":", color="grey")
    roc_axis.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC")
    roc_axis.legend(loc="lower right")
    roc_axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# --- Model cards ------------------------------------------------------------------------


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def training_environment() -> dict:
    """What decides whether a deterministic run repeats bit for bit: the CPU (its model and the
    instruction set torch picks for it) and the maths libraries, besides Python and torch."""
    config = torch.__config__.show()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": _config_line(config, ("Math Kernel Library", "OpenBLAS"), "BLAS_INFO"),
        "onednn": _config_line(config, ("MKL-DNN", "oneDNN"), "USE_MKLDNN"),
    }


def cpu_model() -> str:
    """/proc/cpuinfo's "model name" (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _config_line(config: str, names: tuple[str, ...], setting: str) -> str:
    """The line of ``torch.__config__.show()`` naming one of ``names`` with its version, else
    the build setting ``setting`` (e.g. BLAS_INFO=mkl), else "unknown"."""
    for line in config.splitlines():
        if any(name in line for name in names):
            return line.strip(" -").removesuffix(" for Intel(R) 64 architecture applications")
    for item in config.replace("\n", ",").split(","):
        if item.strip().startswith(f"{setting}="):
            return item.strip()
    return "unknown"


def write_card(
    name: str, model: nn.Module, card: dict, markdown: str, weights_dir: Path, docs_dir: Path
) -> None:
    make_run_dirs(weights_dir, docs_dir)
    weights = f"{name}.pt"
    torch.save(model.state_dict(), weights_dir / weights)
    card = {
        "name": name,
        "weights": weights,
        "architecture": "SeedCNN",
        "parameters": count_parameters(model),
        "input": {
            "fs_hz": WINDOW_FS_HZ,
            "n_samples": WINDOW_SAMPLES,
            "lead": "II (MLII)",
            "units": "mV",
            "preprocessing": f"band-pass {BANDPASS_HZ[0]}-{BANDPASS_HZ[1]} Hz, min-max to [0, 1]",
        },
        "classes": list(WINDOW_CLASSES),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "code_commit": git_commit(),
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_threads": torch.get_num_threads(),
        },
        **card,
    }
    (weights_dir / f"{name}.json").write_text(json_text(card))
    (docs_dir / f"{name}.md").write_text(markdown)
    print(f"wrote {weights_dir / weights}, {weights_dir / f'{name}.json'}, {docs_dir / name}.md")


def metrics_row(label: str, metrics: dict) -> str:
    return (
        f"| {label} | {metrics['n']} | {metrics['n_positive']} | {metrics['accuracy']:.4f} | "
        f"{metrics['sensitivity']:.4f} | {metrics['specificity']:.4f} | "
        f"{metrics['ppv']:.4f} | {metrics['roc_auc']:.4f} |"
    )


METRICS_HEADER = (
    "| data | windows | arrhythmia | accuracy | sensitivity | specificity | +P | ROC AUC |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def rounded(metrics: dict) -> dict:
    return {
        key: round(value, 4) if isinstance(value, float) else value
        for key, value in metrics.items()
    }


# --- Recipes ----------------------------------------------------------------------------


def train_synthetic(args: argparse.Namespace) -> None:
    """The seed's recipe: 150 normal + 150 arrhythmia synthetic windows, 25 epochs, batch 16,
    Adam 1e-3, cross-entropy. 20 % of the 300 (stratified) validate; a fresh synthetic test
    set from another seed, and real MIT-BIH DS2 when present, show what it generalises to."""
    from inference.synthetic import make_binary_dataset

    name = "window-cnn-synthetic"
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x, y = make_binary_dataset(150, 150, fs=WINDOW_FS_HZ, duration_s=2.0, seed=args.seed)
    inputs = prepare_windows(x, WINDOW_FS_HZ)
    validation_index = np.concatenate(
        [rng.permutation(np.flatnonzero(y == label))[:30] for label in (0, 1)]
    )
    is_validation = np.zeros(len(y), dtype=bool)
    is_validation[validation_index] = True
    train = (inputs[~is_validation], y[~is_validation])
    validation = (inputs[is_validation], y[is_validation])

    model = SeedCNN()
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    history = fit(
        model,
        train,
        validation,
        epochs=25,
        batch_size=16,
        learning_rate=1e-3,
        seed=args.seed,
    )
    cpu_s, wall_s = time.process_time() - started_cpu, time.perf_counter() - started_wall

    train_metrics = binary_metrics(train[1], predict_proba(model, train[0]))
    val_metrics = binary_metrics(validation[1], predict_proba(model, validation[0]))
    x_test, y_test = make_binary_dataset(250, 250, fs=WINDOW_FS_HZ, seed=args.seed + 1000)
    test_scores = predict_proba(model, prepare_windows(x_test))
    test_metrics = binary_metrics(y_test, test_scores)
    results = {
        "train": rounded(train_metrics),
        "validation": rounded(val_metrics),
        "synthetic_test": rounded(test_metrics),
    }
    rows = [
        metrics_row("synthetic training (240)", train_metrics),
        metrics_row("synthetic validation (60)", val_metrics),
        metrics_row("synthetic test (500, other seed)", test_metrics),
    ]
    real_note = "MIT-BIH not found: the synthetic model was not tried on real ECG."
    try:
        from inference.datasets import data_dir
        from inference.datasets.mitdb import load_windows

        ds2 = load_windows(data_dir(args.data) / "mitdb", DS2, progress=tqdm)
        ds2_scores = predict_proba(model, prepare_windows(ds2.windows))
        ds2_metrics = binary_metrics(ds2.labels, ds2_scores)
        results["mitdb_ds2"] = rounded(ds2_metrics)
        rows.append(metrics_row("real MIT-BIH DS2 (not trained on real ECG)", ds2_metrics))
        real_note = (
            "The last row is the same model on real MIT-BIH DS2 windows: what synthetic "
            "training alone is worth on real ECG."
        )
    except FileNotFoundError as exc:
        print(f"skipping the real-data check: {exc}")

    image = f"{name}-training.png"
    make_run_dirs(args.docs_dir)
    plot_history(history, args.docs_dir / image, "seed recipe on synthetic ECG")
    plot_evaluation(
        test_metrics, y_test, test_scores, args.docs_dir / f"{name}-test.png", "synthetic test set"
    )
    command = f"python -m inference.train synthetic --seed {args.seed}"
    card = {
        "version": f"1.0.{args.seed}",
        "data": "synthetic ECG (inference.synthetic.make_binary_dataset), 150 normal + 150 "
        "arrhythmia 2-s windows at 250 Hz",
        "split": "stratified 240 training / 60 validation; test: 500 windows from another seed",
        "seed": args.seed,
        "recipe": {"epochs": 25, "batch_size": 16, "optimizer": "Adam", "learning_rate": 1e-3},
        "training_cpu_s": round(cpu_s, 1),
        "training_wall_s": round(wall_s, 1),
        "metrics": results,
        "history": history,
        "command": command,
        "limits": "Synthetic data only; single lead; binary; not validated on patients.",
    }
    markdown = f"""# Model card: {name}

The seed's recipe reproduced: the seed CNN ({count_parameters(model):,} parameters) trained on
synthetic 2-second lead II windows, 150 normal + 150 arrhythmia, 25 epochs, batch 16, Adam 1e-3,
cross-entropy. Training took {cpu_s:.0f} s of CPU time ({wall_s:.0f} s wall,
{torch.get_num_threads()} threads).

Reproduce: `{command}` (trained {datetime.now(UTC):%Y-%m-%d}).

{METRICS_HEADER}
{chr(10).join(rows)}

{real_note}

![training curve]({image})

![synthetic test set]({name}-test.png)

Limits: synthetic data only, single lead, binary, not validated on patients. Research software,
not a medical device.
"""
    write_card(name, model, card, markdown, args.weights_dir, args.docs_dir)


def train_mitdb(args: argparse.Namespace) -> None:
    """The same CNN on real MIT-BIH 2-second windows: train on DS1 minus the validation
    patients, stop early on their ROC AUC, then report once on DS2."""
    from inference.datasets import data_dir
    from inference.datasets.mitdb import load_windows

    name = "window-cnn-mitdb"
    torch.manual_seed(args.seed)
    mitdb = data_dir(args.data) / "mitdb"
    training_records = [record for record in DS1 if record not in MITDB_VALIDATION]
    train_set = load_windows(mitdb, training_records, step_s=args.train_step_s, progress=tqdm)
    val_set = load_windows(mitdb, MITDB_VALIDATION, progress=tqdm)
    print(
        f"training windows {len(train_set)} ({train_set.labels.mean():.1%} arrhythmia), "
        f"validation {len(val_set)} ({val_set.labels.mean():.1%})"
    )
    train = (prepare_windows(train_set.windows), train_set.labels)
    validation = (prepare_windows(val_set.windows), val_set.labels)

    model = SeedCNN()
    make_run_dirs(args.weights_dir)
    checkpoint = args.weights_dir / f"{name}.checkpoint.pt"
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    history = fit(
        model,
        train,
        validation,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        patience=args.patience,
        class_weights=class_balance_weights(train[1]),
        checkpoint=checkpoint,
        weight_decay=args.weight_decay,
        augmentation=args.augment,
    )
    cpu_s, wall_s = time.process_time() - started_cpu, time.perf_counter() - started_wall
    checkpoint.unlink(missing_ok=True)
    best_epoch = max(history, key=lambda row: row["val_roc_auc"])["epoch"]

    val_metrics = binary_metrics(validation[1], predict_proba(model, validation[0]))
    val_scores = predict_proba(model, validation[0])
    for record in MITDB_VALIDATION:
        mask = val_set.records == record
        row = binary_metrics(validation[1][mask], val_scores[mask])
        print(
            f"validation {record}: {mask.sum()} windows, {row['n_positive']} arrhythmia, "
            f"accuracy {row['accuracy']:.3f} Se {row['sensitivity']:.3f} "
            f"Sp {row['specificity']:.3f} AUC {row['roc_auc']:.3f}"
        )
    if args.skip_test:
        print("--skip-test: DS2 not evaluated and no model written (a tuning run)")
        return
    # DS2: touched once, here, for the final report.
    ds2 = load_windows(mitdb, DS2, progress=tqdm)
    ds2_scores = predict_proba(model, prepare_windows(ds2.windows))
    ds2_metrics = binary_metrics(ds2.labels, ds2_scores)
    per_record = {
        record: rounded(
            binary_metrics(ds2.labels[ds2.records == record], ds2_scores[ds2.records == record])
        )
        for record in DS2
    }

    image = f"{name}-training.png"
    make_run_dirs(args.docs_dir)
    plot_history(history, args.docs_dir / image, "MIT-BIH DS1 (validation: held-out DS1 patients)")
    plot_evaluation(
        ds2_metrics, ds2.labels, ds2_scores, args.docs_dir / f"{name}-ds2.png", "MIT-BIH DS2"
    )
    command = (
        f"python -m inference.train mitdb --seed {args.seed} --epochs {args.epochs} "
        f"--batch-size {args.batch_size} --learning-rate {args.learning_rate} "
        f"--patience {args.patience} --train-step-s {args.train_step_s} "
        f"--weight-decay {args.weight_decay}" + (" --augment" if args.augment else "")
    )
    card = {
        "version": f"1.0.{args.seed}",
        "data": "MIT-BIH Arrhythmia Database, lead MLII resampled 360 -> 250 Hz, "
        "non-overlapping 2-s windows; arrhythmia = a beat other than AAMI N in the window, or "
        "overlap with a rhythm other than normal sinus",
        "split": {
            "train": training_records,
            "validation": list(MITDB_VALIDATION),
            "test": list(DS2),
            "scheme": "inter-patient (de Chazal 2004): DS1 to train and tune, DS2 reported once",
        },
        "seed": args.seed,
        "recipe": {
            "max_epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": "Adam",
            "learning_rate": args.learning_rate,
            "loss": "cross-entropy with inverse-frequency class weights",
            "early_stopping": f"validation ROC AUC, patience {args.patience}",
            "weight_decay": args.weight_decay,
            "training_window_step_s": args.train_step_s,
            "augmentation": "time stretch, baseline drift, noise" if args.augment else "none",
            "best_epoch": best_epoch,
        },
        "training_cpu_s": round(cpu_s, 1),
        "training_wall_s": round(wall_s, 1),
        "metrics": {"validation": rounded(val_metrics), "ds2": rounded(ds2_metrics)},
        "ds2_per_record": per_record,
        "history": history,
        "command": command,
        "limits": "Binary window verdict, single lead, MIT-BIH population (47 subjects, 1970s "
        "Holter recordings); not validated prospectively.",
    }
    markdown = f"""# Model card: {name}

The seed CNN ({count_parameters(model):,} parameters) trained on real ECG: MIT-BIH Arrhythmia
Database lead MLII, resampled to 250 Hz, non-overlapping 2-second windows. A window is
"arrhythmia" when it holds a beat other than AAMI N or overlaps a rhythm other than normal sinus.
Inter-patient split (de Chazal 2004): trained on DS1 minus the validation patients
{", ".join(MITDB_VALIDATION)}, early stopping on their ROC AUC (best epoch {best_epoch}), then
evaluated once on DS2 (22 records no window of which was seen in training or tuning). Class
imbalance handled with inverse-frequency loss weights; threshold 0.5 on the arrhythmia
probability (argmax). Training took {cpu_s:.0f} s of CPU time ({wall_s:.0f} s wall).

Reproduce: `{command}` (trained {datetime.now(UTC):%Y-%m-%d}).

{METRICS_HEADER}
{metrics_row("DS1 validation patients", val_metrics)}
{metrics_row("**DS2 (test)**", ds2_metrics)}

![training curve]({image})

![DS2 confusion matrix and ROC]({name}-ds2.png)

Per-record DS2 figures are in `inference/weights/{name}.json` (`ds2_per_record`).

Limits: binary window verdict, single lead, the MIT-BIH population; not validated prospectively.
Research software, not a medical device. Data: Moody GB, Mark RG (2001); Goldberger AL et al.
(2000), PhysioNet.
"""
    write_card(name, model, card, markdown, args.weights_dir, args.docs_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.train", description=__doc__)
    sub = parser.add_subparsers(dest="recipe", required=True)
    synthetic = sub.add_parser("synthetic", help="the seed's recipe on synthetic ECG")
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.add_argument("--data", help="PhysioNet data folder, for the real-ECG check")
    synthetic.add_argument(
        "--without-real-check",
        action="store_true",
        help="write the card without its real MIT-BIH DS2 row when the data are not here",
    )
    mitdb = sub.add_parser("mitdb", help="real MIT-BIH windows, DS1 -> DS2")
    mitdb.add_argument("--data", help="PhysioNet data folder (default $CARDIOSPIKE_DATA_DIR)")
    mitdb.add_argument("--seed", type=int, default=0)
    mitdb.add_argument("--epochs", type=int, default=30)
    mitdb.add_argument("--batch-size", type=int, default=64)
    mitdb.add_argument("--learning-rate", type=float, default=1e-3)
    mitdb.add_argument("--patience", type=int, default=5)
    mitdb.add_argument(
        "--train-step-s", type=float, default=0.5, help="training window step (overlap)"
    )
    mitdb.add_argument("--weight-decay", type=float, default=0.0)
    mitdb.add_argument("--augment", action="store_true", help="augment training windows")
    mitdb.add_argument(
        "--skip-test", action="store_true", help="tuning run: validation only, no DS2, no files"
    )
    add_output_options(synthetic, "window-cnn-synthetic")
    add_output_options(mitdb, "window-cnn-mitdb")
    args = parser.parse_args(argv)
    args.weights_dir, args.docs_dir = run_dirs(
        args.out_dir, args.replace_shipped, f"window-cnn-{args.recipe}"
    )
    if args.recipe == "synthetic" and not args.without_real_check:
        # The committed card carries the real-ECG row; a rerun without the data would
        # silently rewrite it without that row.
        from inference.datasets import data_dir

        try:
            mitdb_dir = data_dir(args.data) / "mitdb"
            if not mitdb_dir.is_dir():
                raise FileNotFoundError(f"{mitdb_dir} not found")
        except FileNotFoundError as exc:
            parser.error(
                f"{exc}. The card's real MIT-BIH DS2 row needs it: pass --data DIR, or "
                "--without-real-check to write the card without that row"
            )
    torch.manual_seed(args.seed)
    {"synthetic": train_synthetic, "mitdb": train_mitdb}[args.recipe](args)
    if not args.replace_shipped:
        print(f"the shipped model is unchanged; this run's files are in {args.weights_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
