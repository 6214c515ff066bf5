"""``python -m inference.evaluate beats --data DIR [--records ...|ds1|ds2] [--json OUT]``

Scores the AAMI beat classifier the way the field reports it (ANSI/AAMI EC57; de Chazal et
al. 2004): per class sensitivity (Se), positive predictivity (+P), F1 and support, overall
accuracy and the confusion matrix (rows reference, columns predicted, N S V F Q). Two runs:

- ``reference``: the classifier on the reference beat positions (as papers report);
- ``end_to_end``: on the beats our QRS detector finds; detections are matched to reference
  beats within 150 ms (EC57), class metrics are on the matched beats, and ``qrs.se`` /
  ``qrs.ppv`` say how many beats were found and how many detections were real.

Detections inside ventricular flutter/fibrillation episodes ('[' to ']') are left out of the
detection counts, as ``evaluate qrs`` and ``inference.analyze`` leave them out: there are no
beats to find there, and counting them as false made 207's +P 81.8 % here and 99.4 % there.

Lead: ``--lead`` when given (the first of its names the record has, any case), else MLII when
the record has it, else II, else the first channel (the upload's rule), in mV whatever the
header's voltage unit. Reference: the ``--annotator`` files (default ``atr``); beats whose
symbol has no AAMI class ('B', 'r', 'n', '?') count for the detection figures but not for the
class metrics (a record whose beats all lack one is scored for detection only, and named).
Any sampling rate from 100 to 2000 Hz (the classifier reads its windows at 180 Hz). A record
with gaps (missing samples, as the project's WFDB export writes them) is scored on the
stretches between them, each detected and classified alone; reference beats in the gaps are
not counted, and the output says how much was left out.

``--records`` is required: record names, ``ds1`` / ``ds2`` (the MIT-BIH inter-patient sets) or
``all`` (every annotated record of the folder; a record whose ``.atr`` holds no beat is left out,
and named, refused). DS2 is the reserved test set: it is read only when asked for by name
(``ds2`` or its records); ``all`` refuses a folder that holds DS2 records. Paced records (102,
104, 107, 217) are in neither set; named explicitly, they are evaluated as asked.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inference.aami import DS2, aami_class
from inference.beat_match import match_beats
from inference.beats import BEAT_CLASSES, BeatClassifier, get_beat_classifier
from inference.evaluation.common import (
    add_annotator_argument,
    add_data_argument,
    add_lead_argument,
    add_records_argument,
    data_folder,
    excluded_note,
    finite_stretches,
    in_ranges,
    read_record,
    read_record_lead,
    read_reference,
    record_names,
    report_output,
    write_report,
)
from inference.evaluation.qrs import QRS_SYMBOLS, outside_mask, vf_episodes
from inference.qrs import MIN_DURATION_S, detect_qrs


@dataclass
class AnnotatedRecord:
    """One lead of a WFDB record with its reference beats (AAMI class indices; -1 for a beat
    without an AAMI class, 'B' or '?', scored for detection only)."""

    name: str
    fs: float
    lead: str
    signal_mv: np.ndarray
    beat_samples: np.ndarray
    beat_labels: np.ndarray  # index into BEAT_CLASSES
    # ventricular flutter/fibrillation, (start, end) samples: no beats to detect there
    vf_episodes: list[tuple[int, int]] = field(default_factory=list)


def load_annotated(
    path: Path, annotator: str = "atr", leads: list[str] | None = None
) -> AnnotatedRecord:
    """Read the analysed lead (``read_record_lead`` of ``leads``: by default MLII, else II,
    else the first channel) in mV and the beat annotations of a record; a record that cannot
    be read ends the command naming it."""
    record = read_record(path, channels=[read_record_lead(path, leads)])
    annotation = read_reference(path, annotator)
    is_beat = np.array([symbol in QRS_SYMBOLS for symbol in annotation.symbol], dtype=bool)
    samples = np.asarray(annotation.sample, dtype=np.int64)[is_beat]
    labels = np.array(
        [
            BEAT_CLASSES.index(aami_class(symbol)) if aami_class(symbol) else -1
            for symbol, beat in zip(annotation.symbol, is_beat, strict=True)
            if beat
        ],
        dtype=np.int64,
    )
    signal = record.p_signal[:, 0].astype(np.float64)
    # a beat annotated past the end of the signal (it happens at record ends) has no window
    inside = (samples >= 0) & (samples < len(signal))
    # de-duplicate positions: two annotations on one sample would break the increasing order
    keep = inside & np.concatenate([[True], np.diff(samples) > 0])
    return AnnotatedRecord(
        name=path.name,
        fs=float(record.fs),
        lead=record.sig_name[0],
        signal_mv=signal,
        beat_samples=samples[keep],
        beat_labels=labels[keep].astype(np.int64),
        vf_episodes=vf_episodes(annotation.sample, list(annotation.symbol), len(signal)),
    )


def beat_metrics(reference: np.ndarray, predicted: np.ndarray) -> dict:
    """Accuracy, per class Se / +P / F1 / support and the confusion matrix.

    Parameters
    ----------
    reference, predicted : int arrays of class indices into ``BEAT_CLASSES``

    Returns
    -------
    dict with ``n_beats``, ``accuracy``, ``classes`` (``{"N": {"se", "ppv", "f1",
    "support", "n_predicted"}, ...}``; NaN where undefined, e.g. Se of a class with no
    reference beat) and ``confusion`` (list of rows: reference; columns: predicted).
    """
    reference = np.asarray(reference, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    k = len(BEAT_CLASSES)
    return metrics_from_confusion(
        np.bincount(reference * k + predicted, minlength=k * k).reshape(k, k)
    )


def metrics_from_confusion(confusion: np.ndarray) -> dict:
    """``beat_metrics`` of a confusion matrix (rows reference, columns predicted, in
    ``BEAT_CLASSES`` order), e.g. one summed over some records' matrices."""
    confusion = np.asarray(confusion, dtype=np.int64)
    classes = {}
    for index, name in enumerate(BEAT_CLASSES):
        tp = int(confusion[index, index])
        support = int(confusion[index].sum())
        n_predicted = int(confusion[:, index].sum())
        classes[name] = {
            "se": tp / support if support else float("nan"),
            "ppv": tp / n_predicted if n_predicted else float("nan"),
            "f1": 2 * tp / (support + n_predicted) if support + n_predicted else float("nan"),
            "support": support,
            "n_predicted": n_predicted,
        }
    n = int(confusion.sum())
    return {
        "n_beats": n,
        "accuracy": float(np.trace(confusion) / n) if n else float("nan"),
        "classes": classes,
        "confusion": confusion.tolist(),
    }


def evaluate_record(
    classifier: BeatClassifier, record: AnnotatedRecord
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """Both runs on one record, stretch by stretch between gaps (one stretch, the whole
    record, when it has none).

    Returns reference and predicted labels on the reference positions, reference and
    predicted labels on the matched detections, and the detection counts of the record.
    Reference beats in gaps are left out of both runs; detections and reference beats
    inside ventricular flutter/fibrillation are left out of the detection counts (EC57).
    Reference beats without an AAMI class (label -1) count for detection only.
    """
    fs = record.fs
    stretches, excluded = finite_stretches(record.signal_mv, math.ceil(MIN_DURATION_S * fs))
    in_gap = in_ranges(record.beat_samples, excluded)
    beat_samples, beat_labels = record.beat_samples[~in_gap], record.beat_labels[~in_gap]
    predicted_parts, detected_parts, detected_predicted_parts = [], [], []
    seconds = 0.0
    for start, end in stretches:
        signal = record.signal_mv[start:end]
        here = (beat_samples >= start) & (beat_samples < end)
        probabilities = classifier.classify(signal, fs, beat_samples[here] - start)
        predicted_parts.append(probabilities.argmax(axis=1))
        started = time.perf_counter()
        detected = detect_qrs(signal, fs)
        detected_probabilities = classifier.classify(signal, fs, detected)
        seconds += time.perf_counter() - started
        detected_parts.append(detected + start)
        detected_predicted_parts.append(
            detected_probabilities.argmax(axis=1) if len(detected) else np.zeros(0, np.int64)
        )
    predicted = np.concatenate([np.zeros(0, np.int64), *predicted_parts])
    detected = np.concatenate([np.zeros(0, np.int64), *detected_parts]).astype(np.int64)
    detected_predicted = np.concatenate([np.zeros(0, np.int64), *detected_predicted_parts])
    # VF/VFL left out of detection as evaluate qrs and analyze leave it out
    reference_kept = outside_mask(beat_samples, record.vf_episodes)
    detected_kept = outside_mask(detected, record.vf_episodes)
    matched_reference, matched_detected = match_beats(
        beat_samples[reference_kept], detected[detected_kept], fs
    )
    e2e_reference = beat_labels[reference_kept][matched_reference]
    e2e_predicted = detected_predicted[detected_kept][matched_detected]
    # beats without an AAMI class ('B', '?') were found or missed above; they have no class
    classed, e2e_classed = beat_labels >= 0, e2e_reference >= 0
    counts = {
        "record": record.name,
        "lead": record.lead,
        "fs": fs,
        "n_reference": int(reference_kept.sum()),
        "n_detected": int(detected_kept.sum()),
        "tp": int(len(matched_reference)),
        "excluded_s": round(sum(end - start for start, end in excluded) / fs, 3),
        "excluded_reference_beats": int(in_gap.sum()),
        "detect_and_classify_s": seconds,
    }
    return (
        beat_labels[classed],
        predicted[classed],
        e2e_reference[e2e_classed],
        e2e_predicted[e2e_classed],
        counts,
    )


def rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    return value


def metrics_table(results: dict[str, dict]) -> str:
    """A markdown table: one row per run, Se / +P / F1 per class and accuracy."""
    header = ["run", "beats", "accuracy"]
    for name in BEAT_CLASSES:
        header += [f"{name} Se", f"{name} +P", f"{name} F1"]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    for run, metrics in results.items():
        cells = [run, str(metrics["n_beats"]), _percent_2(metrics["accuracy"])]
        for name in BEAT_CLASSES:
            row = metrics["classes"][name]
            cells += [_percent(row["se"]), _percent(row["ppv"]), _fraction(row["f1"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def confusion_table(metrics: dict) -> str:
    lines = [
        "| reference \\ predicted | " + " | ".join(BEAT_CLASSES) + " | total |",
        "| --- |" + " ---: |" * (len(BEAT_CLASSES) + 1),
    ]
    for name, row in zip(BEAT_CLASSES, metrics["confusion"], strict=True):
        lines.append(f"| {name} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    return "\n".join(lines) + "\n"


def _percent(value: float) -> str:
    return "–" if value != value else f"{100 * value:.1f}"  # NaN: undefined


def _percent_2(value: float) -> str:
    return "–" if value != value else f"{100 * value:.2f}"


def _fraction(value: float) -> str:
    return "–" if value != value else f"{value:.3f}"


def plot_confusion(metrics: dict, path: Path, title: str) -> None:
    """The confusion matrix as a PNG: counts, coloured by row share (each class's Se)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(metrics["confusion"], dtype=np.float64)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(5.2, 4.6))
    axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(matrix):
        colour = "white" if share[row, column] > 0.5 else "black"
        axis.text(
            column,
            row,
            f"{int(count)}\n{share[row, column]:.1%}",
            ha="center",
            va="center",
            color=colour,
            fontsize=8,
        )
    ticks = range(len(BEAT_CLASSES))
    axis.set(
        xticks=ticks,
        yticks=ticks,
        xticklabels=BEAT_CLASSES,
        yticklabels=BEAT_CLASSES,
        xlabel="predicted",
        ylabel="reference",
        title=title,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def evaluate_records(
    classifier: BeatClassifier,
    folder: Path,
    names: list[str],
    progress: bool = True,
    annotator: str = "atr",
    leads: list[str] | None = None,
) -> dict:
    """Both runs over several records: ``{"records", "reference", "end_to_end"}``."""
    reference_true, reference_pred, e2e_true, e2e_pred, rows = [], [], [], [], []
    iterable = tqdm(names, desc="records", unit="record") if progress else names
    for name in iterable:
        record = load_annotated(folder / name, annotator, leads)
        record.name = name  # its path from the folder (p01/106): two 106s stay two rows
        true, predicted, matched_true, matched_pred, counts = evaluate_record(classifier, record)
        reference_true.append(true)
        reference_pred.append(predicted)
        e2e_true.append(matched_true)
        e2e_pred.append(matched_pred)
        counts["reference"] = rounded(beat_metrics(true, predicted))
        rows.append(counts)
    reference = beat_metrics(np.concatenate(reference_true), np.concatenate(reference_pred))
    end_to_end = beat_metrics(np.concatenate(e2e_true), np.concatenate(e2e_pred))
    tp = sum(row["tp"] for row in rows)
    n_reference = sum(row["n_reference"] for row in rows)
    n_detected = sum(row["n_detected"] for row in rows)
    end_to_end["qrs"] = {
        "tp": tp,
        "fn": n_reference - tp,
        "fp": n_detected - tp,
        "se": tp / n_reference if n_reference else float("nan"),
        "ppv": tp / n_detected if n_detected else float("nan"),
    }
    return {
        "model": {"name": classifier.name, "version": classifier.version},
        "records": list(names),
        "excluded": {
            "seconds": round(sum(row["excluded_s"] for row in rows), 3),
            "reference_beats": sum(row["excluded_reference_beats"] for row in rows),
        },
        "reference": {"records": list(names), **reference},
        "end_to_end": {"records": list(names), **end_to_end},
        "per_record": rows,
    }


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("beats", help="AAMI beat classification (N S V F Q)")
    add_data_argument(parser)
    add_records_argument(
        parser,
        "required: record names, ds1, ds2 (the reserved test set, read only when named) or all "
        "(every annotated record; refused where DS2 records are); repeatable",
        required=True,
    )
    add_annotator_argument(parser)
    add_lead_argument(parser)
    parser.add_argument("--model", help="beat model name (default: beat-cnn-mitdb)")
    parser.add_argument(
        "--json",
        help="write the results here (and a .md table and PNGs beside it: OUT.json gives "
        "OUT.md, so OUT must not end in .md)",
    )


def run(args: argparse.Namespace) -> int:
    folder = data_folder(args.data)
    try:
        classifier = get_beat_classifier(args.model)
    except LookupError as exc:  # an unknown model name: the message lists the shipped ones
        raise SystemExit(str(exc.args[0])) from None
    report_output(args.json)
    # a record whose beats are all 'B' or '?' is kept: it is scored for QRS detection only
    names = record_names(
        folder,
        args.records,
        args.annotator,
        protected=DS2,
        leads=args.lead,
        beat_symbols=QRS_SYMBOLS,
    )
    result = evaluate_records(classifier, folder, names, annotator=args.annotator, leads=args.lead)
    qrs = result["end_to_end"]["qrs"]
    note = excluded_note(result["per_record"])  # gaps left out, if any
    unclassed = [row["record"] for row in result["per_record"] if not row["reference"]["n_beats"]]
    if unclassed:
        note += (
            "No reference beat with an AAMI class (all 'B' or '?'), scored for QRS detection "
            f"only: {', '.join(unclassed)}\n"
        )
    markdown = (
        f"Beat classifier `{classifier.name}` on {len(names)} records of {folder}\n\n"
        + metrics_table(
            {"reference beats": result["reference"], "detected beats": result["end_to_end"]}
        )
        + f"\nQRS detection (150 ms; VF/VFL left out): Se {_percent_2(qrs['se'])} %, "
        f"+P {_percent_2(qrs['ppv'])} %\n"
        + (f"\n{note}" if note else "")
        + "\nConfusion matrix, reference beat positions:\n\n"
        + confusion_table(result["reference"])
        + "\nConfusion matrix, detected beats (matched):\n\n"
        + confusion_table(result["end_to_end"])
    )
    print(markdown)
    output = write_report(args.json, result, markdown)
    if output is not None:
        for run_name in ("reference", "end_to_end"):
            picture = output.with_name(f"{output.stem}-{run_name.replace('_', '-')}.png")
            plot_confusion(result[run_name], picture, f"{classifier.name}: {run_name} beats")
            print(f"wrote {picture}")
    return 0
