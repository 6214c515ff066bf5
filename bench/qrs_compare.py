"""QRS detectors side by side on MIT-BIH: speed on one core and EC57 accuracy.

    python bench/qrs_compare.py [--data DIR] [--records 100 101 ...] [--runs 3]
                                [--detectors ours neurokit2 xqrs] [--json FILE]

On the analysed lead of every record (MLII, else II, else the first channel, as ``python -m
inference.evaluate qrs`` reads it; all 48 MIT-BIH records by default), each detector is
timed ``--runs`` times (the median counts: the machines are shared and noisy) and its beats are
scored against the reference annotations exactly as ``python -m inference.evaluate qrs`` scores
ours (``inference.beat_match``: 150 ms window; ventricular flutter/fibrillation episodes left
out). The detectors:

- ``ours``: ``inference.qrs.detect_qrs``;
- ``neurokit2``: ``neurokit2.ecg_peaks`` with its default method, on the raw signal;
- ``xqrs``: ``wfdb.processing.xqrs_detect`` (verbose off).

Only detection is timed (the signal is in memory); the detectors take turns record by record,
so that a shared machine's changing load falls on all of them alike. Every library runs on one
thread. Prints a markdown table and writes the per-record results as JSON (default
``bench/results/qrs_compare.json``).
"""

import os

# "On one core": no BLAS or OpenMP thread pools behind numpy/scipy/scikit-learn.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import wfdb  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.datasets import data_dir  # noqa: E402
from inference.evaluation.common import record_names  # noqa: E402
from inference.evaluation.qrs import AnnotatedRecord, load_annotated  # noqa: E402
from inference.evaluation.qrs import gross as evaluation_gross  # noqa: E402
from inference.qrs import detect_qrs  # noqa: E402


def ours(signal_mv: np.ndarray, fs: float) -> np.ndarray:
    return detect_qrs(signal_mv, fs)


def neurokit2_default(signal_mv: np.ndarray, fs: float) -> np.ndarray:
    import neurokit2 as nk

    _, info = nk.ecg_peaks(signal_mv, sampling_rate=int(round(fs)))
    return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)


def xqrs(signal_mv: np.ndarray, fs: float) -> np.ndarray:
    from wfdb import processing

    return np.asarray(processing.xqrs_detect(signal_mv, fs=fs, verbose=False), dtype=np.int64)


DETECTORS = {
    "ours": ("CardioSpike inference.qrs", ours),
    "neurokit2": ("NeuroKit2 ecg_peaks (default)", neurokit2_default),
    "xqrs": ("wfdb xqrs_detect", xqrs),
}


def versions() -> dict:
    found = {"python": platform.python_version(), "numpy": np.__version__}
    found |= {"scipy": scipy.__version__, "wfdb": wfdb.__version__}
    try:
        import neurokit2

        found["neurokit2"] = neurokit2.__version__
    except ImportError:
        found["neurokit2"] = None
    return found


def run_detector(function, record: AnnotatedRecord, n_runs: int) -> dict:
    """Median wall-clock and CPU time of ``n_runs`` detections, and the scores."""
    wall, cpu = [], []
    for _ in range(n_runs):
        started_wall, started_cpu = time.perf_counter(), time.process_time()
        beats = function(record.signal_mv, record.fs)
        cpu.append(time.process_time() - started_cpu)
        wall.append(time.perf_counter() - started_wall)
    seconds = statistics.median(wall)
    return {
        "record": record.name,
        "duration_s": record.duration_s,
        "detect_s": seconds,
        "detect_cpu_s": statistics.median(cpu),
        "runs_s": wall,
        "x_real_time": record.duration_s / seconds,
        **record.score(beats),
    }


def gross(rows: list[dict]) -> dict:
    """``evaluate qrs``'s gross scores, plus CPU time and the median time per record."""
    cpu_seconds = sum(row["detect_cpu_s"] for row in rows)
    duration = sum(row["duration_s"] for row in rows)
    return {
        **evaluation_gross(rows),
        "duration_s": duration,
        "detect_s": sum(row["detect_s"] for row in rows),
        "detect_cpu_s": cpu_seconds,
        "x_real_time_cpu": duration / cpu_seconds if cpu_seconds else float("inf"),
        "median_record_s": statistics.median(row["detect_s"] for row in rows),
    }


def markdown(results: dict) -> str:
    lines = [
        "| detector | records | median s per 30-min record | x real time (wall) | "
        "x real time (CPU) | Se % | +P % | FN | FP |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results.values():
        total = result["gross"]
        lines.append(
            f"| {result['name']} | {total['n_records']} | {total['median_record_s']:.3f} | "
            f"{total['x_real_time']:,.0f} | {total['x_real_time_cpu']:,.0f} | "
            f"{100 * total['se']:.2f} | {100 * total['ppv']:.2f} | {total['fn']} | "
            f"{total['fp']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="MIT-BIH folder (default: the data folder's mitdb/)")
    parser.add_argument("--records", nargs="*", help="record names, or ds1/ds2 (default: all)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per record (median)")
    parser.add_argument("--detectors", nargs="*", choices=sorted(DETECTORS), default=None)
    parser.add_argument("--json", default="bench/results/qrs_compare.json")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    folder = Path(args.data) if args.data else data_dir() / "mitdb"
    names = record_names(folder, args.records)
    chosen = args.detectors or list(DETECTORS)
    records = [load_annotated(folder / name) for name in tqdm(names, desc="reading")]
    load_before = os.getloadavg()
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NeuroKit2 warns about its own defaults
        for key in chosen:  # warm up (imports, caches)
            DETECTORS[key][1](records[0].signal_mv[: int(60 * records[0].fs)], records[0].fs)
        rows: dict[str, list[dict]] = {key: [] for key in chosen}
        # Record by record, every detector in turn: the machine's load changes over minutes,
        # and this way each detector meets the same load, not one quiet and one busy phase.
        for record in tqdm(records, desc="records"):
            for key in chosen:
                rows[key].append(run_detector(DETECTORS[key][1], record, args.runs))
        for key in chosen:
            name, runs = DETECTORS[key][0], rows[key]
            results[key] = {"name": name, "gross": gross(runs), "records": runs}

    table = markdown(results)
    print(
        f"{len(records)} records of {folder} (analysed lead), median of {args.runs} runs, "
        f"one thread; load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print(table)
    output = Path(args.json)
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "command": "python " + " ".join(sys.argv),
        "data": str(folder),
        "runs": args.runs,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "versions": versions(),
        "detectors": results,
    }
    output.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
