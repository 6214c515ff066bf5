"""``python -m inference.evaluate qrs --data DIR [--records 100 101 ...] [--json OUT]``

Scores the QRS detector beat by beat against the reference beats (ANSI/AAMI EC57:
150 ms match window; ventricular flutter/fibrillation episodes, between '[' and ']', left
out as EC57 does) on the analysed lead of each record: ``--lead`` when given (the first of its
names the record has, any case), else MLII, else II, else the first channel, the lead ``evaluate
beats``, ``rhythm``, ``inference.analyze`` and the upload read (the ``lead`` of each row). No
resampling is needed: the detector takes any rate from 100 to 2000 Hz. The reference is every
beat annotation of PhysioBank's list (``QRS_SYMBOLS``) in the ``--annotator`` files (default
``atr``). It prints a markdown table, and writes it next to the JSON (per record and gross Se,
+P, counts, and the detector's speed as a multiple of real time).

A record with gaps (missing samples, as the project's WFDB export writes them) is scored on
the stretches between them, each detected alone; reference beats in the gaps (and in
stretches under the detector's 2 s) are not counted, and the table says how much was left out.
"""

import argparse
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inference.beat_match import detection_scores
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
from inference.qrs import MAX_FS_HZ, MIN_DURATION_S, MIN_FS_HZ, detect_qrs
from inference.signal import resample, resample_indices

# PhysioBank's beat annotation codes (WFDB's isqrs): beats of every kind, 'B' (bundle branch
# block, unspecified) and '?' (not classified during learning) included, but not '!' flutter
# waves. A database that marks its beats 'B' had every detection counted as false without them.
QRS_SYMBOLS = frozenset("NLRBaVFJASEj/Qenfr?")


def vf_episodes(samples: np.ndarray, symbols: list[str], n_samples: int) -> list[tuple[int, int]]:
    """Ventricular flutter/fibrillation episodes as (start, end) sample ranges."""
    episodes, start = [], None
    for sample, symbol in zip(samples, symbols, strict=True):
        if symbol == "[":
            start = int(sample)
        elif symbol == "]" and start is not None:
            episodes.append((start, int(sample)))
            start = None
    if start is not None:
        episodes.append((start, n_samples))
    return episodes


def outside_mask(positions: np.ndarray, episodes: list[tuple[int, int]]) -> np.ndarray:
    """Which ``positions`` lie outside every (start, end) episode, both ends inside."""
    positions = np.asarray(positions)
    keep = np.ones(len(positions), dtype=bool)
    for start, end in episodes:
        keep &= ~((positions >= start) & (positions <= end))
    return keep


def outside(positions: np.ndarray, episodes: list[tuple[int, int]]) -> np.ndarray:
    return np.asarray(positions)[outside_mask(positions, episodes)]


def detect_in_stretches(
    signal_mv: np.ndarray, fs: float
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """R peaks of ``detect_qrs`` run on each stretch between gaps (NaN) alone, as indices
    into the whole signal, and the [start, end) ranges left out (``finite_stretches``). On
    a signal without gaps this is ``detect_qrs`` of the whole signal."""
    stretches, excluded = finite_stretches(signal_mv, math.ceil(MIN_DURATION_S * fs))
    peaks = [detect_qrs(signal_mv[start:end], fs) + start for start, end in stretches]
    detected = np.concatenate(peaks) if peaks else np.zeros(0, dtype=np.int64)
    return detected.astype(np.int64), excluded


@dataclass(frozen=True)
class AnnotatedRecord:
    """The analysed lead of a WFDB record with its reference beats and VF/VFL episodes."""

    name: str
    lead: str
    fs: float
    signal_mv: np.ndarray
    reference: np.ndarray  # sample indices of the reference beats (QRS annotations)
    vf_episodes: list[tuple[int, int]]
    # [start, end) sample ranges without signal to score (gaps): their reference beats are
    # not counted
    excluded: list[tuple[int, int]] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.signal_mv) / self.fs

    def score(self, detected: np.ndarray) -> dict:
        """EC57 scores of detected beats, ventricular flutter/fibrillation and the excluded
        ranges left out."""
        reference = self.reference[~in_ranges(self.reference, self.excluded)]
        return detection_scores(
            outside(reference, self.vf_episodes),
            outside(np.asarray(detected, dtype=np.int64), self.vf_episodes),
            self.fs,
        )


def load_annotated(
    path: Path, annotator: str = "atr", leads: list[str] | None = None
) -> AnnotatedRecord:
    """Read a record's analysed lead (``read_record_lead`` of ``leads``) in mV, whatever the
    header's voltage unit, and its ``annotator`` beat annotations; a record that cannot be
    read ends the command naming it."""
    record = read_record(path, channels=[read_record_lead(path, leads)])
    annotation = read_reference(path, annotator)
    signal = record.p_signal[:, 0]
    symbols = list(annotation.symbol)
    reference = np.array(
        [s for s, y in zip(annotation.sample, symbols, strict=True) if y in QRS_SYMBOLS],
        dtype=np.int64,
    )
    return AnnotatedRecord(
        name=Path(path).name,
        lead=record.sig_name[0],
        fs=float(record.fs),
        signal_mv=signal,
        reference=reference,
        vf_episodes=vf_episodes(annotation.sample, symbols, len(signal)),
    )


def resampled(record: AnnotatedRecord, fs_hz: float) -> AnnotatedRecord:
    """The record at ``fs_hz`` (``inference.signal.resample``, polyphase), its reference beats
    and ventricular flutter/fibrillation episodes mapped to the new rate. A record with gaps
    (missing samples) is refused: the filter would smear them."""
    if not np.isfinite(record.signal_mv).all():
        raise SystemExit(
            f"record {record.name} has missing samples; --resample-hz needs a record without gaps"
        )
    signal = resample(record.signal_mv, record.fs, fs_hz)
    last = len(signal) - 1
    return replace(
        record,
        fs=float(fs_hz),
        signal_mv=signal,
        reference=np.clip(resample_indices(record.reference, record.fs, fs_hz), 0, last),
        vf_episodes=[
            (int(start), int(end))
            for start, end in (
                resample_indices(np.array(episode), record.fs, fs_hz)
                for episode in record.vf_episodes
            )
        ],
    )


def evaluate_qrs_record(
    path: Path,
    annotator: str = "atr",
    leads: list[str] | None = None,
    resample_hz: float | None = None,
    name: str | None = None,
) -> dict:
    """Detector scores on one record's analysed lead, stretch by stretch between gaps; at
    ``resample_hz`` when given (the detector's accuracy at another rate). The row is named
    ``name`` (the record's path from the data folder, ``p01/106``), else the file's name."""
    record = load_annotated(path, annotator, leads)
    if name is not None:
        record = replace(record, name=name)
    if resample_hz is not None:
        record = resampled(record, resample_hz)
    started = time.perf_counter()
    detected, excluded = detect_in_stretches(record.signal_mv, record.fs)
    seconds = time.perf_counter() - started
    record = replace(record, excluded=excluded)
    return {
        "record": record.name,
        "lead": record.lead,
        "fs": record.fs,
        "duration_s": round(record.duration_s, 1),
        **record.score(detected),
        "excluded_s": round(sum(end - start for start, end in excluded) / record.fs, 3),
        "excluded_reference_beats": int(in_ranges(record.reference, excluded).sum()),
        "detect_s": seconds,
        "x_real_time": record.duration_s / seconds if seconds else float("inf"),
    }


def gross(rows: list[dict]) -> dict:
    tp, fn, fp = (sum(row[key] for row in rows) for key in ("tp", "fn", "fp"))
    duration = sum(row["duration_s"] for row in rows)
    seconds = sum(row["detect_s"] for row in rows)
    return {
        "n_records": len(rows),
        "tp": tp,
        "fn": fn,
        "fp": fp,
        "se": tp / (tp + fn) if tp + fn else float("nan"),
        "ppv": tp / (tp + fp) if tp + fp else float("nan"),
        "excluded_s": round(sum(row.get("excluded_s", 0.0) for row in rows), 3),
        "excluded_reference_beats": sum(row.get("excluded_reference_beats", 0) for row in rows),
        "x_real_time": duration / seconds if seconds else float("inf"),
    }


def _percent(value: float) -> str:
    return "–" if value != value else f"{100 * value:.2f}"  # NaN: nothing to divide, as beats


def qrs_markdown(rows: list[dict], total: dict) -> str:
    lines = [
        "| record | lead | beats | TP | FN | FP | Se | +P |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['record']} | {row['lead']} | {row['n_reference']} | {row['tp']} | "
            f"{row['fn']} | {row['fp']} | {_percent(row['se'])} | {_percent(row['ppv'])} |"
        )
    lines.append(
        f"| **gross** ({total['n_records']} records) | | {total['tp'] + total['fn']} | "
        f"{total['tp']} | {total['fn']} | {total['fp']} | **{_percent(total['se'])}** | "
        f"**{_percent(total['ppv'])}** |"
    )
    note = excluded_note(rows)
    return "\n".join(lines) + "\n" + (f"\n{note}" if note else "")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("qrs", help="QRS detection, beat by beat (EC57)")
    add_data_argument(parser)
    add_records_argument(parser, "record names, or ds1/ds2/all (default: all); repeatable")
    add_annotator_argument(parser)
    add_lead_argument(parser)
    parser.add_argument(
        "--resample-hz",
        type=float,
        help="resample each record to this rate (Hz, 100-2000) before detecting, to score the "
        "detector at another rate; the reference beats are mapped to it",
    )
    parser.add_argument(
        "--json",
        help="write the results here (and a .md table beside it: OUT.json gives OUT.md, so "
        "OUT must not end in .md)",
    )


def run(args: argparse.Namespace) -> int:
    if args.resample_hz is not None and not MIN_FS_HZ <= args.resample_hz <= MAX_FS_HZ:
        raise SystemExit(
            f"--resample-hz must be {MIN_FS_HZ:g} to {MAX_FS_HZ:g} Hz, got {args.resample_hz:g}"
        )
    folder = data_folder(args.data)
    report_output(args.json)
    names = record_names(
        folder, args.records, args.annotator, leads=args.lead, beat_symbols=QRS_SYMBOLS
    )
    rows = [
        evaluate_qrs_record(folder / name, args.annotator, args.lead, args.resample_hz, name)
        for name in tqdm(names, desc="records")
    ]
    total = gross(rows)
    table = qrs_markdown(rows, total)
    print(table)
    print(f"detector speed: {total['x_real_time']:,.0f} x real time (all records)")
    write_report(args.json, {"records": rows, "gross": total}, table)
    return 0
