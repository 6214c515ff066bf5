"""Train the isolated-beat-row classifiers on MIT-BIH DS1 and report them once on DS2.

    python -m inference.beat_rows_training                      # both layouts, write cards
    python -m inference.beat_rows_training --layout window216   # one layout
    python -m inference.beat_rows_training --tune               # validation only: no DS2, no files
    python -m inference.beat_rows_training --replace-shipped    # write over the shipped models

Rows are built with ``inference.beat_rows.rows_from_record`` from lead MLII and the reference
beat annotations, so training rows are made exactly like rows built from a user's record.
Inter-patient discipline (de Chazal 2004): the model is fitted on DS1 minus the validation
patients ``inference.train.MITDB_VALIDATION``, early-stopped on their macro F1, and only then
evaluated on DS2. Paced records (102, 104, 107, 217) are in neither set and are excluded
explicitly all the same.

Each full run writes ``beat-rows-<layout>.pt`` and ``.json`` (the model card) and
``beat-rows-<layout>.md`` with the training curve and the DS2 confusion matrix as PNG beside it,
into ``--out-dir DIR`` (default: a new ``runs/beat-rows-<UTC time>/``); only
``--replace-shipped`` writes over the shipped ``inference/weights/beat-rows-<layout>.*`` and
``docs/models/beat-rows-<layout>*``.
"""

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

from inference.aami import AAMI_CLASSES, DS1, DS2, PACED_RECORDS
from inference.beat_rows import ROW_LAYOUTS, BeatRowCNN, model_name, prepare_rows, rows_from_record
from inference.evaluation.beats import beat_metrics, confusion_table, metrics_table, plot_confusion
from inference.evaluation.common import json_text
from inference.models import count_parameters
from inference.registry import add_output_options, make_run_dirs, run_dirs
from inference.train import MITDB_VALIDATION, git_commit

N_CLASSES = len(AAMI_CLASSES)


# --- Data ---------------------------------------------------------------------------------


def load_rows(
    directory: Path, names: list[str], layouts: list[str]
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Rows of every reference beat of ``names`` in each layout, with AAMI labels 0-4.

    Returns ``{layout: (rows, labels, record names)}``; each record is read once.
    """
    from inference.datasets.mitdb import load_record

    parts: dict[str, list] = {layout: [] for layout in layouts}
    for name in tqdm([n for n in names if n not in PACED_RECORDS], desc="MIT-BIH", unit="record"):
        record = load_record(directory, name)
        labels = np.array([AAMI_CLASSES.index(cls) for cls in record.beat_classes], np.int64)
        for layout in layouts:
            rows = rows_from_record(record.signal_mv, record.fs, record.beat_samples, layout)
            parts[layout].append((rows, labels, np.full(len(labels), name)))
    return {
        layout: tuple(np.concatenate([part[i] for part in chunks]) for i in range(3))
        for layout, chunks in parts.items()
    }


def class_weights(labels: np.ndarray, max_ratio: float) -> np.ndarray:
    """Inverse-frequency loss weights, N = 1, capped at ``max_ratio``.

    The cap matters for Q: DS1 holds 8 unpaced Q beats, and an uncapped weight of several
    thousand would let those few beats steer the whole model.
    """
    counts = np.bincount(labels, minlength=N_CLASSES).astype(np.float64)
    weights = counts.max() / np.maximum(counts, 1)
    return np.minimum(weights, max_ratio).astype(np.float32)


# --- Metrics and training -----------------------------------------------------------------


# Early stopping averages F1 over the classes with at least this many validation beats: the
# held-out DS1 patients hold 16 F beats and no Q, too few for an F1 that means anything.
MIN_SELECTION_SUPPORT = 50


def scores(labels: np.ndarray, predicted: np.ndarray) -> dict:
    """``beat_metrics`` (accuracy, per-class Se, +P, F1, support, confusion matrix) plus
    ``macro_f1``, the mean F1 of the classes present, and ``selection_f1``, the mean F1 of
    the classes with at least ``MIN_SELECTION_SUPPORT`` beats (the macro F1 when none has)."""
    metrics = beat_metrics(labels, predicted)
    present = [c["f1"] for c in metrics["classes"].values() if c["support"]]
    frequent = [
        c["f1"] for c in metrics["classes"].values() if c["support"] >= MIN_SELECTION_SUPPORT
    ]
    metrics["macro_f1"] = float(np.mean(present)) if present else 0.0
    metrics["selection_f1"] = float(np.mean(frequent)) if frequent else metrics["macro_f1"]
    return metrics


def for_json(value):
    """Metrics for the JSON card: floats rounded to 4 places, NaN (undefined) as null."""
    if isinstance(value, float):
        return None if value != value else round(value, 4)
    if isinstance(value, dict):
        return {key: for_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [for_json(item) for item in value]
    return value


def predict(model: nn.Module, inputs: np.ndarray) -> np.ndarray:
    """Predicted class index per prepared row."""
    model.eval()
    with torch.inference_mode():
        return np.concatenate(
            [
                model(torch.from_numpy(inputs[start : start + 4096])).argmax(dim=1).numpy()
                for start in range(0, len(inputs), 4096)
            ]
        )


def augment(batch: torch.Tensor, generator: torch.Generator, noise: float) -> torch.Tensor:
    """Label-keeping perturbations between patients: amplitude scale 0.8-1.25, a shift of up
    to 3 samples (annotation and detector jitter), and white noise of ``noise`` (row units)."""
    n = len(batch)
    scale = torch.exp(torch.empty(n, 1).uniform_(-0.223, 0.223, generator=generator))
    shifts = torch.randint(-3, 4, (n,), generator=generator)
    columns = (torch.arange(batch.shape[1]).unsqueeze(0) - shifts.unsqueeze(1)).clamp(
        0, batch.shape[1] - 1
    )
    shifted = batch.gather(1, columns)
    return shifted * scale + noise * torch.randn(batch.shape, generator=generator)


def fit(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    args: argparse.Namespace,
    noise: float,
) -> tuple[list[dict], int]:
    """Adam + class-weighted cross-entropy; keeps the epoch with the best validation
    ``selection_f1`` (mean F1 of N, S and V on the held-out patients) and stops after
    ``args.patience`` epochs without improvement. Returns the history and the best epoch."""
    generator = torch.Generator().manual_seed(args.seed)
    x_train, y_train = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    weights = torch.from_numpy(class_weights(train[1], args.max_weight))
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay
    )
    history: list[dict] = []
    best_f1, best_epoch, best_state = -1.0, 0, None
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        total_loss = 0.0
        for start in tqdm(
            range(0, len(order), args.batch_size),
            desc=f"epoch {epoch}/{args.epochs}",
            unit="batch",
            leave=False,
        ):
            index = order[start : start + args.batch_size]
            inputs = x_train[index]
            if args.augment:
                inputs = augment(inputs, generator, noise)
            loss = loss_fn(model(inputs), y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(index)
        with torch.inference_mode():
            model.eval()
            val_loss = float(
                loss_fn(model(torch.from_numpy(validation[0])), torch.from_numpy(validation[1]))
            )
        val = scores(validation[1], predict(model, validation[0]))
        row = {
            "epoch": epoch,
            "train_loss": total_loss / len(order),
            "val_loss": val_loss,
            "val_accuracy": val["accuracy"],
            "val_macro_f1": val["macro_f1"],
            "val_selection_f1": val["selection_f1"],
            **{f"val_{name}_f1": for_json(val["classes"][name]["f1"]) for name in "SVF"},
        }
        history.append(row)
        print(
            f"epoch {epoch:2d}: train loss {row['train_loss']:.4f} | val loss {val_loss:.4f} "
            f"acc {val['accuracy']:.4f} macro F1 {val['macro_f1']:.4f} "
            f"(S {row['val_S_f1']}, V {row['val_V_f1']}, F {row['val_F_f1']})",
            flush=True,
        )
        if val["selection_f1"] > best_f1:
            best_f1, best_epoch = val["selection_f1"], epoch
            best_state = {key: value.clone() for key, value in model.state_dict().items()}
        elif epoch - best_epoch >= args.patience:
            print(f"early stop: validation F1 has not improved for {args.patience} epochs")
            break
    model.load_state_dict(best_state)
    model.eval()
    return history, best_epoch


# --- Pictures -----------------------------------------------------------------------------


def plot_history(history: list[dict], best_epoch: int, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, score_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    loss_axis.plot(epochs, [row["train_loss"] for row in history], label="training")
    loss_axis.plot(epochs, [row["val_loss"] for row in history], label="validation")
    loss_axis.set(xlabel="epoch", ylabel="weighted cross-entropy", title="loss")
    score_axis.plot(epochs, [row["val_accuracy"] for row in history], label="val accuracy")
    score_axis.plot(epochs, [row["val_macro_f1"] for row in history], label="val macro F1")
    for name, style in zip("SVF", (":", "--", "-."), strict=True):
        values = [row[f"val_{name}_f1"] or 0.0 for row in history]
        score_axis.plot(epochs, values, style, label=f"val {name} F1")
    score_axis.axvline(best_epoch, color="grey", alpha=0.5, label="kept epoch")
    score_axis.set(xlabel="epoch", title="validation (held-out DS1 patients)", ylim=(0, 1))
    for axis in (loss_axis, score_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# --- Model card ---------------------------------------------------------------------------

PUBLISHED = """| method | split | accuracy | S Se | S +P | S F1 | V Se | V +P | V F1 |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| Kachuee et al. 2018 (this layout, CNN) | **intra-patient** (random beats) | 93.4 | | | | | | |
| Kaggle notebooks on the same rows | **intra-patient** (random beats) | ~98 | | | | | | |
| de Chazal 2004 (morphology + RR) | inter-patient DS2 | | 75.9 | 38.5 | | 77.7 | 81.9 | |
| Mar 2011 (with RR) | inter-patient DS2 | | 83 | 33 | | 86 | 75 | |
| Niu 2020 (with RR) | inter-patient DS2 | 96.4 | | | 0.77 | | | 0.90 |
| Zhang 2021 (with RR) | inter-patient DS2 | | 78.8 | 90.8 | | 92.5 | 94.3 | |"""


# What a row shows beyond the beat itself, per layout.
CONTEXT_NOTE = {
    "kaggle187": (
        "No RR intervals are given, but the layout carries some rhythm: a row runs for 1.2 x "
        "the window's median RR, so it usually holds the next R wave, and where that falls "
        "(early, on time, or missing after a compensatory pause) is a following-RR feature; "
        "where the zero padding starts tells the local heart rate."
    ),
    "window216": (
        "No RR intervals and no neighbouring beats: the 350 ms after the R peak reach the "
        "next R wave only above 170 bpm."
    ),
}


def card_markdown(card: dict) -> str:
    """The markdown model card, written from the JSON card alone (so it can be redrawn)."""
    name, layout = card["name"], card["input"]["layout"]
    validation, ds2 = card["metrics"]["validation"], card["metrics"]["ds2"]
    # the tables format NaN as undefined; the JSON card stores it as null
    table = metrics_table(
        {
            "**DS2 (test)**": nan_for_none(ds2),
            "DS1 validation patients": nan_for_none(validation),
        }
    )
    return f"""# Model card: {name}

AAMI beat classifier for isolated beat rows in the `{layout}` layout
({card["input"]["description"]}). A {card["parameters"]:,}-parameter 1-D CNN
(`inference.beat_rows.BeatRowCNN`) sees one row and nothing else. {CONTEXT_NOTE[layout]}
Layout choice and the comparison with other results: [beat-rows.md](beat-rows.md).

Data: MIT-BIH Arrhythmia Database, lead MLII, one row per reference beat annotation, built
with `rows_from_record` (the same code that builds rows from a user's record). Inter-patient
split (de Chazal 2004): trained on DS1 minus the validation patients
{", ".join(card["data"]["validation_records"])} ({card["data"]["n_train"]} beats), early
stopping on their mean F1 of N, S and V (kept epoch {card["recipe"]["best_epoch"]};
{validation["n_beats"]} beats), then evaluated once on DS2 ({ds2["n_beats"]} beats of 22 other
patients). Paced records {", ".join(card["data"]["excluded"])} excluded. Loss:
{card["recipe"]["loss"]}, capped at {card["recipe"]["max_class_weight"]:g}; augmentation:
{card["recipe"]["augmentation"]}; seed {card["seed"]}. Training took
{card["training_cpu_s"]:.0f} s of CPU time ({card["training_wall_s"]:.0f} s wall) on
{card["environment"]["cpu_threads"]} thread(s).

Reproduce: `{card["command"]}` (trained {card["date"]}).

## Results (Se, +P and accuracy in %)

{table}
DS2 confusion matrix (rows reference, columns predicted):

{confusion_table(ds2)}
![DS2 confusion matrix]({name}-ds2.png)

![training curve]({name}-training.png)

## Against published figures (Se, +P and accuracy in %)

{PUBLISHED}

Intra-patient figures come from random beat splits in which beats of the same patient are in
both training and test sets; they measure recognition of known patients and are not comparable
with the inter-patient rows. Without RR context, S beats look like N beats: expect the S
figures here to be far below methods that use rhythm features (`inference.analysis` on whole
records).

Limits: single lead (MLII), the MIT-BIH population (1970s Holter recordings); Q has 8 beats in
DS1 and 7 in DS2, so its figures mean nothing. Not validated prospectively. Research software,
not a medical device. Data: Moody GB, Mark RG (2001); Goldberger AL et al. (2000), PhysioNet.
"""


def nan_for_none(value):
    """The inverse of ``for_json`` for null metrics: None back to NaN."""
    if value is None:
        return float("nan")
    if isinstance(value, dict):
        return {key: nan_for_none(item) for key, item in value.items()}
    return value


def write_card(
    layout: str, model: nn.Module, card: dict, weights_dir: Path, docs_dir: Path
) -> None:
    name = model_name(layout)
    spec = ROW_LAYOUTS[layout]
    make_run_dirs(weights_dir, docs_dir)
    torch.save(model.state_dict(), weights_dir / f"{name}.pt")
    card = {
        "name": name,
        "version": "1",
        "weights": f"{name}.pt",
        "task": "beat-rows",
        "architecture": "BeatRowCNN",
        "parameters": count_parameters(model),
        "input": {
            "layout": layout,
            "n_samples": spec.n_samples,
            "fs_hz": spec.fs_hz,
            "r_index": spec.r_index,
            "units": spec.units,
            "description": spec.description,
            "lead": "MLII",
        },
        "classes": list(AAMI_CLASSES),
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
    (docs_dir / f"{name}.md").write_text(card_markdown(card))
    print(f"wrote {weights_dir / name}.pt/.json and {docs_dir / name}.md")


# --- Command ------------------------------------------------------------------------------


# White noise added in augmentation, in units of the prepared rows (both scaled to about 1).
AUGMENT_NOISE = {"kaggle187": 0.01, "window216": 0.02}


def train_layout(
    layout: str, data: dict, args: argparse.Namespace, ds2: dict | None, command: str
) -> dict:
    torch.manual_seed(args.seed)
    rows, labels, records = data[layout]
    is_validation = np.isin(records, MITDB_VALIDATION)
    inputs = prepare_rows(rows, layout)
    train = (inputs[~is_validation], labels[~is_validation])
    validation = (inputs[is_validation], labels[is_validation])
    model = BeatRowCNN()
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    history, best_epoch = fit(model, train, validation, args, AUGMENT_NOISE[layout])
    cpu_s, wall_s = time.process_time() - started_cpu, time.perf_counter() - started_wall
    validation_metrics = for_json(scores(validation[1], predict(model, validation[0])))
    print(f"{layout} validation: {json.dumps(validation_metrics['classes'])}")
    result = {"layout": layout, "validation": validation_metrics, "best_epoch": best_epoch}
    if ds2 is None:
        return result
    ds2_rows, ds2_labels, _ = ds2[layout]
    ds2_metrics = for_json(scores(ds2_labels, predict(model, prepare_rows(ds2_rows, layout))))
    result["ds2"] = ds2_metrics
    name = model_name(layout)
    make_run_dirs(args.docs_dir)
    plot_history(history, best_epoch, args.docs_dir / f"{name}-training.png", f"{name}: training")
    plot_confusion(ds2_metrics, args.docs_dir / f"{name}-ds2.png", f"{name}: MIT-BIH DS2")
    write_card(
        layout,
        model,
        {
            "data": {
                "database": "MIT-BIH Arrhythmia Database (mitdb), lead MLII, reference beats",
                "train_records": [r for r in DS1 if r not in MITDB_VALIDATION],
                "validation_records": list(MITDB_VALIDATION),
                "test_records": list(DS2),
                "excluded": list(PACED_RECORDS),
                "n_train": int(len(train[1])),
                "train_class_counts": np.bincount(train[1], minlength=N_CLASSES).tolist(),
                "scheme": "inter-patient (de Chazal 2004): DS1 to train and tune, DS2 once",
            },
            "seed": args.seed,
            "recipe": {
                "max_epochs": args.epochs,
                "batch_size": args.batch_size,
                "optimizer": "Adam",
                "learning_rate": args.learning_rate,
                "weight_decay": args.weight_decay,
                "loss": "cross-entropy, inverse-frequency class weights (N = 1)",
                "max_class_weight": args.max_weight,
                "class_weights": class_weights(train[1], args.max_weight).round(2).tolist(),
                "early_stopping": (
                    f"validation mean F1 of classes with >= {MIN_SELECTION_SUPPORT} beats "
                    f"(N, S, V), patience {args.patience}"
                ),
                "augmentation": (
                    f"amplitude x0.8-1.25, shift +-3 samples, noise {AUGMENT_NOISE[layout]}"
                    if args.augment
                    else "none"
                ),
                "best_epoch": best_epoch,
            },
            "training_cpu_s": round(cpu_s, 1),
            "training_wall_s": round(wall_s, 1),
            "metrics": {"validation": validation_metrics, "ds2": ds2_metrics},
            "history": history,
            "command": command,
            "limits": (
                "Morphology only (no RR context): weak on S beats. Single lead, MIT-BIH "
                "population; not validated prospectively."
            ),
        },
        args.weights_dir,
        args.docs_dir,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.beat_rows_training", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", help="PhysioNet data folder (default: CARDIOSPIKE_DATA_DIR)")
    parser.add_argument("--layout", choices=[*ROW_LAYOUTS, "all"], default="all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--max-weight", type=float, default=30.0, help="cap on class weights")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--tune",
        action="store_true",
        help="report validation only: DS2 is not read and nothing is written",
    )
    add_output_options(parser, "beat-rows")
    args = parser.parse_args(argv)
    args.weights_dir, args.docs_dir = run_dirs(args.out_dir, args.replace_shipped, "beat-rows")
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    # One thread: deterministic results and the training-time figure in the card hold on any
    # machine.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    from inference.evaluation.common import mitdb_folder

    # a wrong --data: one line now, not a traceback after DS1 is read (DS2 checked too, unless
    # --tune, which never reads it)
    needed = [*DS1, *([] if args.tune else DS2)]
    directory = mitdb_folder(args.data, [name for name in needed if name not in PACED_RECORDS])
    layouts = list(ROW_LAYOUTS) if args.layout == "all" else [args.layout]
    command = "python -m inference.beat_rows_training " + " ".join(
        [
            f"--seed {args.seed} --epochs {args.epochs} --batch-size {args.batch_size}",
            f"--learning-rate {args.learning_rate:g} --weight-decay {args.weight_decay:g}",
            f"--patience {args.patience} --max-weight {args.max_weight:g}",
            "--augment" if args.augment else "--no-augment",
        ]
    )
    data = load_rows(directory, list(DS1), layouts)
    ds2 = None if args.tune else load_rows(directory, list(DS2), layouts)
    summary = [
        train_layout(layout, data, args, ds2, f"{command} --layout {layout}") for layout in layouts
    ]
    print(json.dumps({r["layout"]: {k: v for k, v in r.items() if k != "layout"} for r in summary}))
    if not args.tune and not args.replace_shipped:
        print(f"the shipped models are unchanged; this run's files are in {args.weights_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
