"""End-to-end analysis speed on a real 30-minute MIT-BIH record, on one core, and QRS detectors
compared on the same record.

    python bench/analysis_pipeline.py [--record 208] [--runs 5] [--holter] [--json FILE]

Times ``inference.analysis.analyze_signal`` (QRS detection -> beat classification -> rhythm
episodes -> summary) and each stage alone, as medians over ``--runs``; then, on the same record,
the detection time and beat-by-beat Se/+P (EC57, 150 ms) of our detector, NeuroKit2's default
``ecg_peaks`` and wfdb's ``xqrs_detect``. ``--holter`` also analyzes all 48 records end to end
as one 24-hour signal (once: it takes a while). Target (issue 4): the pipeline at >= 3,600x real
time (a 30-minute record in under 0.5 s, a 24-hour Holter in under 30 s).
"""

import argparse
import json
import logging
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import wfdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.qrs_compare import DETECTORS, run_detector  # noqa: E402
from inference.aami import AAMI_CLASSES  # noqa: E402
from inference.analysis import analyze_signal  # noqa: E402
from inference.beats import get_beat_classifier  # noqa: E402
from inference.datasets import data_dir  # noqa: E402
from inference.evaluation.qrs import load_annotated  # noqa: E402
from inference.qrs import detect_qrs  # noqa: E402
from inference.rhythm import detect_episodes  # noqa: E402


def timed(function, runs: int) -> tuple[float, object]:
    """Median seconds over ``runs`` calls, and the last result."""
    durations, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = function()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations), result


def mitdb_folder(data: str | None) -> Path:
    """The mitdb folder: ``data`` itself when it holds WFDB headers (as ``inference.evaluate``
    and ``bench/qrs_compare.py`` take it), else its ``mitdb/``."""
    if data is not None and any(Path(data).glob("*.hea")):
        return Path(data)
    folder = data_dir(data) / "mitdb"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} not found: pass --data with the mitdb folder")
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--data",
        default=None,
        help="the mitdb folder, or the PhysioNet data folder holding mitdb/ (default: "
        "$CARDIOSPIKE_DATA_DIR or ../shared/data)",
    )
    parser.add_argument("--record", default="208", help="MIT-BIH record (default 208: PVCs, F)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--holter", action="store_true", help="also all 48 records as 24 h")
    parser.add_argument("--json", default="bench/results/analysis_pipeline.json")
    args = parser.parse_args()

    torch.set_num_threads(1)  # "on one core"
    logging.getLogger("wfdb").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    try:
        folder = mitdb_folder(args.data)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    record = load_annotated(folder / args.record)
    ecg_mv, fs = np.asarray(record.signal_mv, dtype=np.float64), record.fs
    duration_s = len(ecg_mv) / fs

    classifier = get_beat_classifier()
    analyze_signal(ecg_mv[: int(60 * fs)], fs)  # warm up: model load, filter caches
    r_peaks = detect_qrs(ecg_mv, fs)
    stages = {}
    stages["QRS detection"], _ = timed(lambda: detect_qrs(ecg_mv, fs), args.runs)
    stages["beat classification"], probabilities = timed(
        lambda: classifier.classify(ecg_mv, fs, r_peaks), args.runs
    )
    labels = [AAMI_CLASSES[i] for i in probabilities.argmax(axis=1)]
    stages["rhythm episodes"], _ = timed(
        lambda: detect_episodes(ecg_mv, fs, r_peaks, labels), args.runs
    )
    stages["whole pipeline (analyze_signal)"], analysis = timed(
        lambda: analyze_signal(ecg_mv, fs), args.runs
    )

    print(
        f"record {args.record}: {duration_s / 60:.0f} min at {fs:g} Hz, {len(analysis.r_peaks)} "
        f"beats; torch {torch.__version__}, 1 thread; median of {args.runs} runs"
    )
    print("\n| stage | seconds | x real time |")
    print("| --- | ---: | ---: |")
    for name, seconds in stages.items():
        print(f"| {name} | {seconds:.3f} | {duration_s / seconds:,.0f} |")

    # the same detectors and scoring as bench/qrs_compare.py, on this one record; each runs once
    # on a short excerpt first, so that importing its library is not timed
    for _, function in DETECTORS.values():
        function(ecg_mv[: int(10 * fs)], fs)
    comparison = {
        name: run_detector(function, record, args.runs) for name, function in DETECTORS.values()
    }
    print(f"\nQRS detectors on record {args.record} (EC57, 150 ms window):\n")
    print("| detector | seconds | x real time | Se % | +P % |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, row in comparison.items():
        print(
            f"| {name} | {row['detect_s']:.3f} | {row['x_real_time']:,.0f} | "
            f"{100 * row['se']:.2f} | {100 * row['ppv']:.2f} |"
        )

    holter = None
    if args.holter:
        names = sorted(p.stem for p in folder.glob("*.hea"))
        signal = np.concatenate(
            [wfdb.rdrecord(str(folder / name), channels=[0]).p_signal[:, 0] for name in names]
        )
        started = time.perf_counter()
        day = analyze_signal(signal, fs)
        seconds = time.perf_counter() - started
        hours = len(signal) / fs / 3600
        holter = {
            "records": len(names),
            "hours": hours,
            "seconds": seconds,
            "x_real_time": len(signal) / fs / seconds,
            "n_beats": len(day.r_peaks),
        }
        print(
            f"\n{len(names)} records as one {hours:.1f}-hour signal: {seconds:.1f} s "
            f"({holter['x_real_time']:,.0f}x real time), {len(day.r_peaks)} beats"
        )

    output = Path(args.json)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "benchmark": "analysis_pipeline",
                "record": args.record,
                "duration_s": duration_s,
                "fs": fs,
                "machine": {
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "processor": platform.processor(),
                    "threads": 1,
                },
                "stages_s": stages,
                "x_real_time": {k: duration_s / v for k, v in stages.items()},
                "qrs_comparison": comparison,
                "holter": holter,
            },
            indent=2,
            default=float,
        )
    )
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
