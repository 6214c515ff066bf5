"""Train the AAMI beat classifier on MIT-BIH DS1 and report it once on DS2.

    python -m inference.beat_training [--data DIR] [--seed 0] [--skip-test]

Inter-patient discipline (de Chazal et al. 2004): the network is trained on DS1 minus the
validation patients (``MITDB_VALIDATION``), every choice (epochs, loss weights, recipe) is
made on those held-out DS1 patients, and DS2 is read only at the end of a final run to write
the model card (``--skip-test`` for tuning runs: no DS2, no files). Writes
``inference/weights/beat-cnn-mitdb.pt`` and ``.json`` and ``docs/models/beat-cnn-mitdb.md``
with the training curves and the DS2 confusion matrix as PNG.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from inference.aami import DS1, DS2
from inference.beats import (
    BANDPASS_HZ,
    BEAT_CLASSES,
    BEAT_FS_HZ,
    RR_FEATURES,
    TEMPLATE_UPDATE_BEATS,
    WINDOW_AFTER_S,
    WINDOW_BEFORE_S,
    WINDOW_SAMPLES,
    BeatClassifier,
    BeatNet,
    beat_features,
    count_parameters,
)
from inference.datasets import data_dir
from inference.datasets.mitdb import load_record
from inference.evaluation.beats import (
    beat_metrics,
    confusion_table,
    evaluate_records,
    metrics_table,
    plot_confusion,
    rounded,
)
from inference.registry import WEIGHTS_DIR
from inference.train import DOCS_DIR, MITDB_VALIDATION, git_commit

NAME = "beat-cnn-mitdb"

PUBLISHED = (
    # (reference, S Se, S +P, S F1, V Se, V +P, V F1, accuracy), percent / fraction as printed
    ("de Chazal et al. 2004", 75.9, 38.5, None, 77.7, 81.9, None, None),
    ("Mar et al. 2011", 83.0, 33.0, None, 86.0, 75.0, None, None),
    ("Niu et al. 2020", None, None, 0.77, None, None, 0.90, 96.4),
    ("Zhang et al. 2021", 78.8, 90.8, None, 92.5, 94.3, None, None),
)


# --- Data ---------------------------------------------------------------------------------


def record_features(folder: Path, name: str, cache_dir: Path | None = None) -> dict:
    """Features and AAMI labels of every annotated beat of one MIT-BIH record (MLII)."""
    # the cache is keyed by the feature list, so changing the features cannot reuse stale ones
    version = f"{len(RR_FEATURES)}-{WINDOW_SAMPLES}-{TEMPLATE_UPDATE_BEATS}"
    cached = cache_dir / f"{name}-{version}.npz" if cache_dir else None
    if cached is not None and cached.is_file():
        with np.load(cached) as stored:
            return {key: stored[key] for key in stored.files}
    record = load_record(folder, name)
    # two annotations on one sample (rare) would break the strictly increasing R peaks
    keep = np.concatenate([[True], np.diff(record.beat_samples) > 0])
    windows, templates, rhythm = beat_features(
        record.signal_mv, record.fs, record.beat_samples[keep]
    )
    labels = np.array(
        [
            BEAT_CLASSES.index(cls)
            for cls, kept in zip(record.beat_classes, keep, strict=True)
            if kept
        ]
    )
    features = {
        "windows": windows,
        "templates": templates,
        "rhythm": rhythm,
        "labels": labels.astype(np.int64),
    }
    if cached is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.savez(cached, **features)
    return features


def load_set(folder: Path, names: list[str], cache_dir: Path | None = None) -> dict:
    parts = [
        record_features(folder, name, cache_dir)
        for name in tqdm(names, desc="MIT-BIH records", unit="record")
    ]
    merged = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    merged["record"] = np.concatenate(
        [np.full(len(part["labels"]), name) for name, part in zip(names, parts, strict=True)]
    )
    return merged


# --- Training -----------------------------------------------------------------------------


def class_weights(labels: np.ndarray, power: float, f_scale: float = 1.0) -> np.ndarray:
    """Loss weights ``(n_total / n_class) ** power``, scaled so N weighs 1.

    ``power`` 1 is inverse frequency (each class weighs equally), 0 no weighting; between
    them trades Se of the rare classes against their +P. A class with fewer than 50 training
    beats (Q in DS1) gets the weight of one with 50, so a handful of beats cannot dominate.
    ``f_scale`` multiplies the F (fusion) weight: nearly all of DS1's training F beats come
    from one patient (208), so a heavy F weight teaches that patient's shapes and pulls other
    patients' N and V beats into F.
    """
    counts = np.bincount(labels, minlength=len(BEAT_CLASSES)).astype(np.float64)
    weights = (counts.sum() / np.maximum(counts, 50)) ** power
    weights[BEAT_CLASSES.index("F")] *= f_scale
    return (weights / weights[0]).astype(np.float32)


def augment(
    windows: torch.Tensor, rhythm: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label-keeping perturbations of a batch: the beat's amplitude scaled by 0.85-1.15
    against its dominant beat, white noise up to 0.03 mV, and a shift of up to 2 samples
    (11 ms) of the R peak position, as a detector's jitter."""
    n = windows.shape[0]
    scale = 0.85 + 0.3 * torch.rand(n, 1, generator=generator)
    noise = (
        0.03
        * torch.rand(n, 1, generator=generator)
        * torch.randn(windows.shape, generator=generator)
    )
    shift = torch.randint(-2, 3, (n,), generator=generator)
    index = (torch.arange(windows.shape[1]).unsqueeze(0) + shift.unsqueeze(1)).clamp(
        0, windows.shape[1] - 1
    )
    shifted = windows.gather(1, index)
    rhythm = rhythm.clone()
    amplitude_column = RR_FEATURES.index("amplitude_over_dominant")
    rhythm[:, amplitude_column] = rhythm[:, amplitude_column] * scale[:, 0]
    return shifted * scale + noise, rhythm


def make_premature(
    rhythm: torch.Tensor, labels: torch.Tensor, fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn some normal beats of regular rhythm into premature supraventricular ones.

    AAMI's S class is, by definition, a supraventricular (normal-looking) beat that comes
    early. DS1's training patients have few such beats (most of their S beats are runs of
    supraventricular tachycardia with odd shapes, in records 207 and 209), so a network learns
    "S = odd shape" and misses the isolated premature beats other patients have. Here a
    ``fraction`` of the batch's N beats whose rhythm is regular (pre-RR within 10 % of the local
    mean, irregularity below 0.1, so nothing in atrial fibrillation) gets its pre-RR shortened
    to 50-85 % and its post-RR lengthened (up to a full compensatory pause), and the label S.
    The morphology is left as it is; the ratio features are recomputed from the new intervals.
    """
    column = {name: index for index, name in enumerate(RR_FEATURES)}
    regular = (
        (labels == 0)
        & ((rhythm[:, column["pre_over_local"]] - 1).abs() < 0.1)
        & (rhythm[:, column["local_irregularity"]] < 0.1)
    )
    chosen = regular & (torch.rand(len(labels), generator=generator) < fraction)
    if not chosen.any():
        return rhythm, labels
    rhythm, labels = rhythm.clone(), labels.clone()
    rows = rhythm[chosen]
    pre = rows[:, column["pre_rr_s"]]
    local = pre / rows[:, column["pre_over_local"]].clamp(min=1e-3)
    long = pre / rows[:, column["pre_over_long"]].clamp(min=1e-3)
    early = 0.5 + 0.35 * torch.rand(len(rows), generator=generator)
    late = 1.0 + (1.0 - early) * torch.rand(len(rows), generator=generator)
    new_pre, new_post = pre * early, pre * late
    rows[:, column["pre_rr_s"]] = new_pre
    rows[:, column["post_rr_s"]] = new_post
    rows[:, column["pre_over_local"]] = new_pre / local
    rows[:, column["post_over_local"]] = new_post / local
    rows[:, column["pre_over_long"]] = new_pre / long
    rows[:, column["post_over_long"]] = new_post / long
    rows[:, column["pre_over_post"]] = new_pre / new_post
    rhythm[chosen] = rows
    labels[chosen] = BEAT_CLASSES.index("S")
    return rhythm, labels


def predict(model: nn.Module, data: dict, batch_size: int = 4096) -> np.ndarray:
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(data["labels"]), batch_size):
            part = slice(start, start + batch_size)
            logits = model(
                torch.from_numpy(data["windows"][part]),
                torch.from_numpy(data["templates"][part]),
                torch.from_numpy(data["rhythm"][part]),
            )
            out.append(torch.softmax(logits, dim=1).numpy())
    return np.concatenate(out)


def selection_score(metrics: dict) -> float:
    """What early stopping maximises on the validation patients: the mean of the S and V
    F1 (the classes the floor and goal are about), NaN counted as 0."""
    f1 = [metrics["classes"][name]["f1"] for name in ("S", "V")]
    return float(np.mean([0.0 if value != value else value for value in f1]))


def fit(model: BeatNet, train: dict, validation: dict, args: argparse.Namespace) -> list[dict]:
    """Adam + weighted cross-entropy; after each epoch the validation metrics; keeps the
    epoch with the best ``selection_score`` and stops after ``patience`` epochs without one."""
    generator = torch.Generator().manual_seed(args.seed)
    tensors = {key: torch.from_numpy(train[key]) for key in ("windows", "templates", "rhythm")}
    labels = torch.from_numpy(train["labels"])
    weights = torch.from_numpy(
        class_weights(train["labels"], args.weight_power, args.f_weight_scale)
    )
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay
    )
    # cosine decay to zero over the planned epochs: late epochs change the weights little,
    # so the epoch early stopping picks is less a matter of luck on the validation patients
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    history: list[dict] = []
    best_score, best_state, since_best = -1.0, None, 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(labels), generator=generator)
        total_loss = 0.0
        for start in tqdm(
            range(0, len(order), args.batch_size), desc=f"epoch {epoch}", unit="batch", leave=False
        ):
            index = order[start : start + args.batch_size]
            windows, rhythm = tensors["windows"][index], tensors["rhythm"][index]
            targets = labels[index]
            if args.augment:
                windows, rhythm = augment(windows, rhythm, generator)
            if args.synthetic_premature > 0:
                rhythm, targets = make_premature(
                    rhythm, targets, args.synthetic_premature, generator
                )
            logits = model(windows, tensors["templates"][index], rhythm)
            loss = loss_fn(logits, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(index)
        scheduler.step()
        probabilities = predict(model, validation)
        metrics = beat_metrics(validation["labels"], probabilities.argmax(axis=1))
        val_loss = float(
            nn.functional.nll_loss(
                torch.log(torch.from_numpy(probabilities).clamp(min=1e-12)),
                torch.from_numpy(validation["labels"]),
                weight=weights,
            )
        )
        score = selection_score(metrics)
        row = {
            "epoch": epoch,
            "train_loss": total_loss / len(order),
            "val_loss": val_loss,
            "val_accuracy": metrics["accuracy"],
            "val_f1_s": metrics["classes"]["S"]["f1"],
            "val_f1_v": metrics["classes"]["V"]["f1"],
            "val_score": score,
        }
        history.append(rounded(row))
        print(
            f"epoch {epoch:2d}: train loss {row['train_loss']:.4f} | val loss {val_loss:.4f} "
            f"acc {metrics['accuracy']:.4f} F1 S {row['val_f1_s']:.3f} V {row['val_f1_v']:.3f}",
            flush=True,
        )
        if score > best_score:
            best_score, since_best = score, 0
            best_state = {key: value.clone() for key, value in model.state_dict().items()}
        else:
            since_best += 1
            if since_best >= args.patience:
                print(f"early stop: validation S/V F1 has not improved for {args.patience} epochs")
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


# --- Pictures and card --------------------------------------------------------------------


def plot_history(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, score_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    loss_axis.plot(epochs, [row["train_loss"] for row in history], label="training")
    loss_axis.plot(epochs, [row["val_loss"] for row in history], label="validation")
    loss_axis.set(xlabel="epoch", ylabel="weighted cross-entropy", title="loss")
    score_axis.plot(epochs, [row["val_accuracy"] for row in history], label="val accuracy")
    score_axis.plot(epochs, [row["val_f1_s"] for row in history], label="val S F1")
    score_axis.plot(epochs, [row["val_f1_v"] for row in history], label="val V F1")
    score_axis.set(xlabel="epoch", title="validation patients")
    for axis in (loss_axis, score_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def published_table(ds2: dict) -> str:
    """Our DS2 figures beside the published inter-patient DS2 results."""

    def cell(value, percent: bool = True) -> str:
        if value is None:
            return "–"
        return f"{value:.1f}" if percent else f"{value:.2f}"

    lines = [
        "| DS2 (inter-patient) | S Se | S +P | S F1 | V Se | V +P | V F1 | accuracy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s_se, s_ppv, s_f1, v_se, v_ppv, v_f1, accuracy in PUBLISHED:
        lines.append(
            f"| {name} | {cell(s_se)} | {cell(s_ppv)} | {cell(s_f1, False)} | {cell(v_se)} | "
            f"{cell(v_ppv)} | {cell(v_f1, False)} | {cell(accuracy)} |"
        )
    for label, metrics in (
        ("**this model, reference beats**", ds2["reference"]),
        ("**this model, our detected beats**", ds2["end_to_end"]),
    ):
        s, v = metrics["classes"]["S"], metrics["classes"]["V"]
        lines.append(
            f"| {label} | {100 * s['se']:.1f} | {100 * s['ppv']:.1f} | {s['f1']:.2f} | "
            f"{100 * v['se']:.1f} | {100 * v['ppv']:.1f} | {v['f1']:.2f} | "
            f"{100 * metrics['accuracy']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def targets_note(reference: dict) -> str:
    s_f1 = reference["classes"]["S"]["f1"]
    v_f1 = reference["classes"]["V"]["f1"]
    accuracy = reference["accuracy"]
    checks = [
        ("S F1", s_f1, 0.77, 0.85),
        ("V F1", v_f1, 0.90, 0.95),
        ("accuracy", accuracy, 0.93, 0.96),
    ]
    return "; ".join(
        f"{name} {value:.3f}: floor {floor} {'met' if value >= floor else 'NOT met'}, "
        f"goal {goal} {'met' if value >= goal else 'not met'}"
        for name, value, floor, goal in checks
    )


def write_model(
    model: BeatNet, args: argparse.Namespace, history: list[dict], results: dict, timing: dict
) -> None:
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    DOCS_DIR.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), WEIGHTS_DIR / f"{NAME}.pt")
    best_epoch = max(history, key=lambda row: row["val_score"])["epoch"]
    command = reproduce_command(args)
    training_records = [record for record in DS1 if record not in MITDB_VALIDATION]
    ds2 = results["ds2"]  # None for an interim model (--no-test): DS2 not evaluated
    card = {
        "name": NAME,
        "version": f"1.0.{args.seed}",
        "weights": f"{NAME}.pt",
        "task": "beats",
        "architecture": "BeatNet",
        "parameters": count_parameters(model),
        "classes": list(BEAT_CLASSES),
        "input": {
            "lead": "II (MLII)",
            "units": "mV",
            "fs_hz": "any from 100 to 2000; windows read at 180 Hz",
            "window": {
                "fs_hz": BEAT_FS_HZ,
                "before_r_s": WINDOW_BEFORE_S,
                "after_r_s": WINDOW_AFTER_S,
                "n_samples": WINDOW_SAMPLES,
            },
            "preprocessing": f"band-pass {BANDPASS_HZ[0]}-{BANDPASS_HZ[1]} Hz (zero-phase); "
            "window median removed; beat and beat minus the running dominant beat, both over "
            "the dominant beat's peak-to-peak amplitude",
            "rhythm_features": list(RR_FEATURES),
        },
        "data": "MIT-BIH Arrhythmia Database, lead MLII at 360 Hz, every annotated beat "
        "(AAMI EC57 classes; paced records 102, 104, 107, 217 excluded)",
        "split": {
            "train": training_records,
            "validation": list(MITDB_VALIDATION),
            "test": list(DS2),
            "scheme": "inter-patient (de Chazal 2004): DS1 to train and tune (validation on "
            "held-out DS1 patients), DS2 evaluated once for this card",
        },
        "seed": args.seed,
        "recipe": {
            "max_epochs": args.epochs,
            "best_epoch": best_epoch,
            "batch_size": args.batch_size,
            "optimizer": "Adam",
            "learning_rate": args.learning_rate,
            "schedule": "cosine decay to 0 over max_epochs",
            "morphology_dropout": args.morphology_dropout,
            "synthetic_premature": args.synthetic_premature,
            "weight_decay": args.weight_decay,
            "loss": f"cross-entropy, class weights (n / n_class) ** {args.weight_power}, "
            f"F weight x {args.f_weight_scale}",
            "class_weights": [round(float(w), 3) for w in timing["class_weights"]],
            "early_stopping": f"mean of validation S and V F1, patience {args.patience}",
            "augmentation": "amplitude, noise, R-peak jitter" if args.augment else "none",
        },
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "code_commit": git_commit(),
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_threads": torch.get_num_threads(),
        },
        "training_cpu_s": round(timing["cpu_s"], 1),
        "training_wall_s": round(timing["wall_s"], 1),
        "metrics": {"validation": rounded(results["validation"])},
        "ds2_evaluations": args.ds2_evaluations if ds2 else 0,
        "history": history,
        "command": command,
        "evaluate_command": "python -m inference.evaluate beats --data DIR/mitdb --records ds2",
        "limits": "Single lead (MLII), trained on 17 patients of a 1970s Holter database; Q "
        "(unclassifiable) and F (fusion) have few training beats; not validated prospectively.",
    }
    if ds2:
        card["metrics"]["ds2_reference"] = rounded(ds2["reference"])
        card["metrics"]["ds2_end_to_end"] = rounded(ds2["end_to_end"])
        card["ds2_per_record"] = ds2["per_record"]
    else:
        card["metrics"]["ds2"] = "not evaluated: an interim model (--no-test)"
    (WEIGHTS_DIR / f"{NAME}.json").write_text(json.dumps(card, indent=2, default=float) + "\n")
    plot_history(history, DOCS_DIR / f"{NAME}-training.png", "MIT-BIH DS1 (validation: held out)")
    (DOCS_DIR / f"{NAME}.md").write_text(card_markdown(model, args, card, results, timing))
    print(f"wrote {WEIGHTS_DIR / NAME}.pt/.json and {DOCS_DIR / NAME}.md")


def card_markdown(
    model: BeatNet, args: argparse.Namespace, card: dict, results: dict, timing: dict
) -> str:
    ds2 = results["ds2"]
    best_epoch = card["recipe"]["best_epoch"]
    command = card["command"]
    if ds2 is None:
        ds2_section = (
            "## DS2\n\nNot evaluated: this is an interim model, written without touching DS2 "
            "(`--no-test`), so that the pipeline can be wired. Validation patients only:\n\n"
            + metrics_table({"DS1 validation patients": results["validation"]})
        )
        pictures = f"![training curves]({NAME}-training.png)\n"
        return _markdown(model, args, card, timing, best_epoch, command, "", ds2_section, pictures)
    plot_confusion(ds2["reference"], DOCS_DIR / f"{NAME}-ds2.png", "DS2, reference beats")
    plot_confusion(
        ds2["end_to_end"], DOCS_DIR / f"{NAME}-ds2-detected.png", "DS2, our detected beats"
    )
    qrs = ds2["end_to_end"]["qrs"]
    repeated = (
        ""
        if args.ds2_evaluations <= 1
        else f"\n**DS2 was evaluated {args.ds2_evaluations} times** during this work "
        "(see the card's `ds2_evaluations`); the figures below are the last run's.\n"
    )
    all_classes = metrics_table(
        {
            "DS1 validation patients": results["validation"],
            "DS2, reference beats": ds2["reference"],
            "DS2, detected beats": ds2["end_to_end"],
        }
    )
    ds2_section = f"""## DS2 against published inter-patient results

{published_table(ds2)}
Targets (reference beats): {targets_note(ds2["reference"])}.

End to end, our QRS detector found {100 * qrs["se"]:.2f} % of the DS2 beats with
{100 * qrs["ppv"]:.2f} % of its detections real (150 ms); class figures on detected beats are on
the matched ones.

## All classes

{all_classes}
DS2 confusion matrix, reference beats (rows reference, columns predicted):

{confusion_table(ds2["reference"])}
"""
    pictures = f"""![training curves]({NAME}-training.png)

![DS2 confusion matrix]({NAME}-ds2.png)

![DS2 confusion matrix, detected beats]({NAME}-ds2-detected.png)

Per-record DS2 figures are in `inference/weights/{NAME}.json` (`ds2_per_record`).

Limits: single lead (MLII); 17 training patients from a 1970s Holter database; F and Q have few
training beats; not validated prospectively. Research software, not a medical device. Data:
Moody GB, Mark RG (2001); Goldberger AL et al. (2000), PhysioNet.
"""
    return _markdown(
        model, args, card, timing, best_epoch, command, repeated, ds2_section, pictures
    )


def _markdown(model, args, card, timing, best_epoch, command, repeated, ds2_section, pictures):
    synthetic = (
        "no synthetic beats"
        if not args.synthetic_premature
        else f"{args.synthetic_premature:.0%} of the regular-rhythm N beats of each batch made "
        "premature (pre-RR 50-85 %, longer post-RR) and labelled S, because DS1's training "
        "patients have few isolated premature supraventricular beats (their S beats are mostly "
        "runs of tachycardia in 207 and 209): an AAMI S beat is a normal-looking beat that "
        "comes early (`make_premature`)"
    )
    return f"""# Model card: {NAME}

AAMI beat classifier (N, S, V, F, Q): a small CNN on each beat's morphology fused with an MLP
on its rhythm features, {count_parameters(model):,} parameters (`inference.beats.BeatNet`).

- **Input**: lead MLII in mV at any rate from 100 to 2000 Hz, band-passed 0.5-40 Hz, read at
  180 Hz from {WINDOW_BEFORE_S} s before to {WINDOW_AFTER_S} s after the R peak; the beat and
  the beat minus the patient's dominant beat (median of the preceding 64 beats, refreshed
  every 32), both divided by the dominant beat's amplitude; pre- and post-RR, their ratios to
  the local (10 beats) and long-term (5 min median) RR and to each other, the local RR
  irregularity, correlation and amplitude ratio with the dominant beat. Causal except one
  beat of lookahead (post-RR).
- **Data and split**: MIT-BIH Arrhythmia Database, inter-patient (de Chazal 2004). Trained on
  DS1 minus the validation patients {", ".join(MITDB_VALIDATION)}; early stopping (best epoch
  {best_epoch}) and every tuning choice on those patients; DS2 (22 other patients) kept for
  the final report. Paced records excluded.
- **Recipe**: Adam {args.learning_rate} with cosine decay over {args.epochs} epochs, batch
  {args.batch_size}, cross-entropy with class weights (n / n_class)^{args.weight_power} (F
  weight x {args.f_weight_scale}: DS1's training F beats are nearly all one patient's, 208),
  augmentation {card["recipe"]["augmentation"]}, dropout {args.morphology_dropout} on the CNN's
  features; {synthetic}; seed {args.seed}; {timing["cpu_s"]:.0f} s of CPU time
  ({timing["wall_s"]:.0f} s wall, {torch.get_num_threads()} thread).

Reproduce: `{command}` (trained {card["date"]}, code {card["code_commit"]}); evaluate again with
`python -m inference.evaluate beats --data DIR/mitdb --records ds2 --json OUT`.
{repeated}
{ds2_section}
{pictures}"""


def reproduce_command(args: argparse.Namespace) -> str:
    return (
        f"python -m inference.beat_training --seed {args.seed} --epochs {args.epochs} "
        f"--batch-size {args.batch_size} --learning-rate {args.learning_rate} "
        f"--weight-decay {args.weight_decay} --weight-power {args.weight_power} "
        f"--patience {args.patience} --morphology-dropout {args.morphology_dropout} "
        f"--synthetic-premature {args.synthetic_premature} --f-weight-scale {args.f_weight_scale}"
        + (" --augment" if args.augment else " --no-augment")
    )


# --- Command ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.beat_training", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--data", help="PhysioNet data folder (default $CARDIOSPIKE_DATA_DIR)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument(
        "--weight-power", type=float, default=0.5, help="class weights (n / n_class) ** this"
    )
    parser.add_argument("--patience", type=int, default=16)
    parser.add_argument(
        "--f-weight-scale", type=float, default=0.2, help="multiplies the F class's loss weight"
    )
    parser.add_argument(
        "--synthetic-premature",
        type=float,
        default=0.1,
        help="share of regular N beats made premature and labelled S in training",
    )
    parser.add_argument(
        "--morphology-dropout", type=float, default=0.3, help="dropout on the CNN's features"
    )
    parser.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="augment training beats (amplitude, noise, R-peak jitter)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--cache", help="folder to cache per-record features in (tuning)")
    parser.add_argument(
        "--ds2-evaluations",
        type=int,
        default=1,
        help="how many times DS2 has been evaluated in this work, for the card's honesty",
    )
    parser.add_argument(
        "--skip-test", action="store_true", help="tuning run: validation only, no DS2, no files"
    )
    parser.add_argument(
        "--no-test",
        action="store_true",
        help="write an interim model and card without evaluating DS2",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    mitdb = data_dir(args.data) / "mitdb"
    cache = Path(args.cache) if args.cache else None
    training_records = [record for record in DS1 if record not in MITDB_VALIDATION]
    train = load_set(mitdb, training_records, cache)
    validation = load_set(mitdb, list(MITDB_VALIDATION), cache)
    counts = np.bincount(train["labels"], minlength=len(BEAT_CLASSES))
    print("training beats per class:", dict(zip(BEAT_CLASSES, counts.tolist(), strict=True)))

    model = BeatNet(morphology_dropout=args.morphology_dropout)
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    history = fit(model, train, validation, args)
    timing = {
        "cpu_s": time.process_time() - started_cpu,
        "wall_s": time.perf_counter() - started_wall,
        "class_weights": class_weights(train["labels"], args.weight_power, args.f_weight_scale),
    }
    model.eval()
    validation_metrics = beat_metrics(validation["labels"], predict(model, validation).argmax(1))
    print(metrics_table({"DS1 validation patients": validation_metrics}))
    print(confusion_table(validation_metrics))
    for record in MITDB_VALIDATION:
        mask = validation["record"] == record
        row = beat_metrics(
            validation["labels"][mask],
            predict(model, {key: value[mask] for key, value in validation.items()}).argmax(1),
        )
        print(f"validation {record}: " + metrics_table({record: row}).splitlines()[-1])
    if args.skip_test:
        print("--skip-test: DS2 not evaluated and no model written (a tuning run)")
        return 0
    if args.no_test:
        results = {"validation": validation_metrics, "ds2": None}
        write_model(model, args, history, results, timing)
        return 0
    # DS2: read once, here, for the final report, with the evaluation command's own code.
    card = {"name": NAME, "version": f"1.0.{args.seed}", "weights": f"{NAME}.pt"}
    classifier = BeatClassifier(card, state=model.state_dict())
    ds2 = evaluate_records(classifier, mitdb, list(DS2))
    print(metrics_table({"DS2 reference": ds2["reference"], "DS2 detected": ds2["end_to_end"]}))
    write_model(model, args, history, {"validation": validation_metrics, "ds2": ds2}, timing)
    return 0


if __name__ == "__main__":
    sys.exit(main())
