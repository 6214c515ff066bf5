"""``python -m inference.evaluate qrs --data DIR [--records 100 101 ...] [--json OUT]``

Scores the QRS detector beat by beat against the reference beats (ANSI/AAMI EC57:
150 ms match window; ventricular flutter/fibrillation episodes, between '[' and ']', left
out as EC57 does) on the first channel of each record, resampling is not needed (the detector
takes any rate from 100 to 2000 Hz). It prints a markdown table, and writes it next to the
JSON (per record and gross Se, +P, counts, and the detector's speed as a multiple of real time).
"""

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb
from tqdm import tqdm

from inference.beat_match import detection_scores
from inference.evaluation.common import (
    add_data_argument,
    data_folder,
    record_names,
    writable_output,
    write_report,
)
from inference.qrs import detect_qrs

# WFDB's QRS annotation codes (isqrs): beats of every kind, but not '!' flutter waves.
QRS_SYMBOLS = frozenset("NLRaVFJASEj/Qenfr")


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


def outside(positions: np.ndarray, episodes: list[tuple[int, int]]) -> np.ndarray:
    keep = np.ones(len(positions), dtype=bool)
    for start, end in episodes:
        keep &= ~((positions >= start) & (positions <= end))
    return positions[keep]


@dataclass(frozen=True)
class AnnotatedRecord:
    """The first channel of a WFDB record with its reference beats and VF/VFL episodes."""

    name: str
    lead: str
    fs: float
    signal_mv: np.ndarray
    reference: np.ndarray  # sample indices of the reference beats (QRS annotations)
    vf_episodes: list[tuple[int, int]]

    @property
    def duration_s(self) -> float:
        return len(self.signal_mv) / self.fs

    def score(self, detected: np.ndarray) -> dict:
        """EC57 scores of detected beats, ventricular flutter/fibrillation left out."""
        return detection_scores(
            outside(self.reference, self.vf_episodes),
            outside(np.asarray(detected, dtype=np.int64), self.vf_episodes),
            self.fs,
        )


def load_annotated(path: Path) -> AnnotatedRecord:
    """Read a record's first channel (mV) and its ``atr`` beat annotations."""
    record = wfdb.rdrecord(str(path), channels=[0])
    annotation = wfdb.rdann(str(path), "atr")
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


def evaluate_qrs_record(path: Path) -> dict:
    """Detector scores on one record (first channel)."""
    record = load_annotated(path)
    started = time.perf_counter()
    detected = detect_qrs(record.signal_mv, record.fs)
    seconds = time.perf_counter() - started
    return {
        "record": record.name,
        "lead": record.lead,
        "fs": record.fs,
        "duration_s": round(record.duration_s, 1),
        **record.score(detected),
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
        "x_real_time": duration / seconds if seconds else float("inf"),
    }


def qrs_markdown(rows: list[dict], total: dict) -> str:
    lines = [
        "| record | lead | beats | TP | FN | FP | Se | +P |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['record']} | {row['lead']} | {row['n_reference']} | {row['tp']} | "
            f"{row['fn']} | {row['fp']} | {100 * row['se']:.2f} | {100 * row['ppv']:.2f} |"
        )
    lines.append(
        f"| **gross** ({total['n_records']} records) | | {total['tp'] + total['fn']} | "
        f"{total['tp']} | {total['fn']} | {total['fp']} | **{100 * total['se']:.2f}** | "
        f"**{100 * total['ppv']:.2f}** |"
    )
    return "\n".join(lines) + "\n"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("qrs", help="QRS detection, beat by beat (EC57)")
    add_data_argument(parser)
    parser.add_argument("--records", nargs="*", help="record names, or ds1/ds2 (default: all)")
    parser.add_argument("--json", help="write the results here (and a .md table beside it)")


def run(args: argparse.Namespace) -> int:
    folder = data_folder(args.data)
    writable_output(args.json)
    names = record_names(folder, args.records)
    rows = [evaluate_qrs_record(folder / name) for name in tqdm(names, desc="records")]
    total = gross(rows)
    table = qrs_markdown(rows, total)
    print(table)
    print(f"detector speed: {total['x_real_time']:,.0f} x real time (all records)")
    write_report(args.json, {"records": rows, "gross": total}, table)
    return 0
