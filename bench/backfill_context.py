"""How much context the backfill of a late chunk needs (monitoring/backfill.py).

    python bench/backfill_context.py [--records 101,106,...] [--gaps 5] [--contexts 10,30,60]
                                     [--seconds 300] [--seed 7] [--json FILE]

A chunk stored after the streaming analysis gave up its gap is analysed afterwards with the
offline pipeline (``inference.analysis.detect_and_classify_beats``) on the stored ECG around
it. For each MIT-BIH record (DS1 only: the held-out DS2 is not read here), this cuts random
gaps of 1-9 s from its first ``--seconds`` (MLII), and compares the beats found in each gap
with ``--contexts`` seconds on each side against one pass over the whole excerpt: the beats
found within 150 ms (EC57's window) and those with the same label. Also the CPU time of one
such analysis. Prints a table and writes JSON. Needs ``$CARDIOSPIKE_DATA_DIR/mitdb``.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import wfdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.analysis import analyze_signal, detect_and_classify_beats  # noqa: E402
from inference.datasets import data_dir  # noqa: E402

DS1 = (
    "101 106 108 109 112 114 115 116 118 119 122 124 201 203 205 207 208 209 215 220 223 230"
).split()
MATCH_S = 0.15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", default=",".join(DS1))
    parser.add_argument("--gaps", type=int, default=5, help="gaps per record")
    parser.add_argument("--contexts", default="10,30,60", help="seconds on each side")
    parser.add_argument("--seconds", type=float, default=300.0, help="excerpt per record")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    records = args.records.split(",")
    if set(records) - set(DS1):
        parser.error("DS1 records only: DS2 is held out for the beat classifier's final report")
    contexts = [float(value) for value in args.contexts.split(",")]
    folder = data_dir() / "mitdb"
    rng = np.random.default_rng(args.seed)
    totals = {
        context: {"beats": 0, "found": 0, "same_label": 0, "cpu_s": 0.0} for context in contexts
    }
    runs = 0
    for record in records:
        header = wfdb.rdheader(str(folder / record))
        fs = float(header.fs)
        signal = wfdb.rdrecord(
            str(folder / record), sampto=round(args.seconds * fs), channels=[0]
        ).p_signal[:, 0]
        whole = analyze_signal(signal, fs)
        for _ in range(args.gaps):
            start = int(rng.integers(round(0.3 * len(signal)), round(0.7 * len(signal))))
            end = start + int(rng.integers(1, 10) * fs)
            inside = np.flatnonzero((whole.r_peaks >= start) & (whole.r_peaks < end))
            runs += 1
            for context in contexts:
                lo = max(0, start - round(context * fs))
                hi = min(len(signal), end + round(context * fs))
                began = time.process_time()
                r_peaks, labels, _, _ = detect_and_classify_beats(signal[lo:hi], fs)
                total = totals[context]
                total["cpu_s"] += time.process_time() - began
                r_peaks = np.asarray(r_peaks) + lo
                total["beats"] += len(inside)
                for i in inside:
                    if not len(r_peaks):
                        continue
                    j = int(np.argmin(np.abs(r_peaks - whole.r_peaks[i])))
                    if abs(r_peaks[j] - whole.r_peaks[i]) <= MATCH_S * fs:
                        total["found"] += 1
                        total["same_label"] += labels[j] == whole.labels[i]
    print(f"{len(records)} DS1 records x {args.gaps} gaps of 1-9 s, first {args.seconds:g} s")
    print(f"{'context':>8} {'beats':>6} {'found':>8} {'same label':>11} {'CPU/backfill':>13}")
    for context, total in totals.items():
        found = total["found"] / max(total["beats"], 1)
        same = total["same_label"] / max(total["found"], 1)
        cpu_s = total["cpu_s"] / max(runs, 1)
        print(f"{context:>7g}s {total['beats']:>6} {found:>8.2%} {same:>11.2%} {cpu_s:>12.3f}s")
    if args.json:
        Path(args.json).write_text(json.dumps({str(k): v for k, v in totals.items()}, indent=1))


if __name__ == "__main__":
    main()
