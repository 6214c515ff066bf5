"""Analyze one recording: beats, AAMI labels, heart rate, rhythm episodes and a summary.

    python -m inference.analyze RECORD [--lead MLII] [--json OUT]
    python -m inference.analyze signal.csv --fs 250 [--json OUT]

RECORD is a WFDB record (the path without extension, or its ``.hea``); the lead is MLII when the
record has it, else the first channel, unless ``--lead`` says otherwise. When reference beat
annotations (``.atr``) sit beside the record, the output also scores our beats against them
(EC57 matching, 150 ms) and gives the class agreement. A CSV file holds one column of
millivolts (a header line is allowed) and needs ``--fs``.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import wfdb

from inference.aami import AAMI_CLASSES, aami_class
from inference.analysis import RecordAnalysis, analyze_signal
from inference.beat_match import detection_scores, match_beats
from inference.evaluation.beats import beat_metrics
from inference.evaluation.qrs import QRS_SYMBOLS, outside, vf_episodes


def load_wfdb(path: Path, lead: str | None) -> tuple[np.ndarray, float, str]:
    """One lead of a WFDB record in mV, its rate, and the lead's name."""
    record = wfdb.rdrecord(str(path))
    names = list(record.sig_name)
    if lead is None:
        lead = "MLII" if "MLII" in names else names[0]
    if lead not in names:
        raise SystemExit(f"record {path.name} has no lead {lead}; it has {', '.join(names)}")
    channel = names.index(lead)
    return record.p_signal[:, channel].astype(np.float64), float(record.fs), lead


def load_csv(path: Path) -> np.ndarray:
    """A one-column CSV of millivolts; the first line may be a header."""
    values = []
    with path.open() as handle:
        for line_number, line in enumerate(handle, start=1):
            cell = line.strip().split(",")[0].strip()
            if not cell:
                continue
            try:
                values.append(float(cell))
            except ValueError:
                if line_number == 1:
                    continue  # a header
                raise SystemExit(
                    f"{path.name} line {line_number}: {cell!r} is not a number"
                ) from None
    if not values:
        raise SystemExit(f"{path.name} holds no samples")
    return np.asarray(values)


def reference_agreement(path: Path, analysis: RecordAnalysis) -> dict | None:
    """Our beats against the record's reference annotations, when it has any: QRS Se/+P
    as ``evaluate qrs`` scores them, and the class metrics of ``evaluate beats`` on matched
    beats."""
    if not path.with_suffix(".atr").is_file():
        return None
    annotation = wfdb.rdann(str(path), "atr")
    classes = [aami_class(symbol) for symbol in annotation.symbol]
    samples = np.array(
        [s for s, c in zip(annotation.sample, classes, strict=True) if c], dtype=np.int64
    )
    labels = np.array([AAMI_CLASSES.index(c) for c in classes if c], dtype=np.int64)
    predicted = np.array([AAMI_CLASSES.index(label) for label in analysis.labels], dtype=np.int64)
    ref_index, det_index = match_beats(samples, analysis.r_peaks, analysis.fs)
    # QRS scores exactly as 'evaluate qrs' computes them: every QRS symbol, VF/VFL left out
    symbols = list(annotation.symbol)
    qrs_reference = np.array(
        [s for s, y in zip(annotation.sample, symbols, strict=True) if y in QRS_SYMBOLS],
        dtype=np.int64,
    )
    vf = vf_episodes(annotation.sample, symbols, analysis.n_samples)
    qrs = detection_scores(outside(qrs_reference, vf), outside(analysis.r_peaks, vf), analysis.fs)
    return {
        "n_reference": len(samples),
        "matched": len(ref_index),
        "qrs": qrs,
        **beat_metrics(labels[ref_index], predicted[det_index]),
        "confusion_order": list(AAMI_CLASSES),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.analyze", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("record", help="WFDB record path (no extension, or .hea) or a .csv file")
    parser.add_argument("--lead", help="lead name of a WFDB record (default MLII, else first)")
    parser.add_argument("--fs", type=float, help="sampling rate in Hz, for a CSV file")
    parser.add_argument("--json", help="write the full result here")
    args = parser.parse_args(argv)

    given = Path(args.record)
    if given.suffix.lower() == ".csv":
        if args.fs is None:
            raise SystemExit("a CSV file needs --fs (its sampling rate in Hz)")
        ecg_mv, fs, lead, path = load_csv(given), args.fs, "column 1", given
    else:
        path = given.with_suffix("") if given.suffix == ".hea" else given
        if not path.with_suffix(".hea").is_file():
            raise SystemExit(f"no WFDB header {path.with_suffix('.hea')}")
        ecg_mv, fs, lead = load_wfdb(path, args.lead)

    started = time.perf_counter()
    try:
        analysis = analyze_signal(ecg_mv, fs)
    except ValueError as error:
        raise SystemExit(f"{given.name}: {error}") from None
    elapsed_s = time.perf_counter() - started

    result = {"record": path.name, "lead": lead, **analysis.to_dict()}
    result["analysis_s"] = round(elapsed_s, 4)
    agreement = None if path.suffix == ".csv" else reference_agreement(path, analysis)
    if agreement is not None:
        result["reference"] = agreement

    summary = analysis.summary
    rate = summary["heart_rate_bpm"]
    print(f"{path.name} ({lead}, {fs:g} Hz, {summary['duration_s']:.0f} s) in {elapsed_s:.3f} s")
    print(
        f"beats: {summary['n_beats']}  heart rate mean/min/max: {rate['mean']} / "
        f"{rate['min']} / {rate['max']} bpm"
    )
    print("counts: " + ", ".join(f"{k} {v}" for k, v in summary["counts"].items()))
    for episode in analysis.episodes:
        print(f"episode {episode.kind}: {episode.start_s:.1f}-{episode.end_s:.1f} s")
    if agreement is not None:
        print(
            f"against the reference: QRS Se {100 * agreement['qrs']['se']:.2f} % "
            f"+P {100 * agreement['qrs']['ppv']:.2f} %, class accuracy "
            f"{100 * agreement['accuracy']:.2f} %"
        )
    if args.json:
        output = Path(args.json)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
