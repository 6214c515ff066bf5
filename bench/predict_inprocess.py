"""In-process speed of the window model: one 2-second window, and batched throughput, on 1 core.

    python bench/predict_inprocess.py [--model NAME] [--runs 7] [--json FILE]

Prints a table of medians over ``--runs`` runs (these machines are shared and noisy) and writes
the raw runs as JSON.
"""

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.models import prepare_windows  # noqa: E402
from inference.predictor import get_predictor  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_calls(function, n_calls: int) -> list[float]:
    """Milliseconds per call."""
    durations = []
    for _ in range(n_calls):
        started = time.perf_counter()
        function()
        durations.append((time.perf_counter() - started) * 1000.0)
    return durations


def one_run(predictor, window: np.ndarray, batch: np.ndarray, n_calls: int) -> dict:
    prepared_one = prepare_windows(window)
    forward = time_calls(lambda: predictor.probabilities(prepared_one), n_calls)
    end_to_end = time_calls(lambda: predictor.predict(window, 250.0), n_calls)
    started = time.perf_counter()
    predictor.probabilities(prepare_windows(batch))
    batch_s = time.perf_counter() - started
    return {
        "forward_p50_ms": percentile(forward, 50),
        "forward_p99_ms": percentile(forward, 99),
        "predict_p50_ms": percentile(end_to_end, 50),
        "predict_p99_ms": percentile(end_to_end, 99),
        "batch_windows_per_s": len(batch) / batch_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--calls", type=int, default=500, help="single-window calls per run")
    parser.add_argument("--batch", type=int, default=1024, help="windows in the batched run")
    parser.add_argument("--json", default="bench/results/predict_inprocess.json")
    args = parser.parse_args()

    torch.set_num_threads(1)  # "on 1 core"
    predictor = get_predictor(args.model)
    rng = np.random.default_rng(0)
    window = rng.normal(0, 0.1, 500)
    batch = rng.normal(0, 0.1, (args.batch, 500))
    predictor.predict(window, 250.0)  # warm up allocations and caches

    runs = [one_run(predictor, window, batch, args.calls) for _ in range(args.runs)]
    medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}

    print(
        f"model {predictor.name} v{predictor.version}, torch {torch.__version__}, 1 thread, "
        f"median of {args.runs} runs"
    )
    print("| measure | median |")
    print("| --- | ---: |")
    print(f"| one window, model forward only, p50 | {medians['forward_p50_ms']:.3f} ms |")
    print(f"| one window, model forward only, p99 | {medians['forward_p99_ms']:.3f} ms |")
    print(
        f"| one window, predict() end to end (validate, filter, normalize, forward), p50 | "
        f"{medians['predict_p50_ms']:.3f} ms |"
    )
    print(f"| one window, predict() end to end, p99 | {medians['predict_p99_ms']:.3f} ms |")
    print(
        f"| batched ({args.batch} windows incl. preprocessing) | "
        f"{medians['batch_windows_per_s']:,.0f} windows/s |"
    )

    output = Path(args.json)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "benchmark": "predict_inprocess",
                "model": {"name": predictor.name, "version": predictor.version},
                "machine": {
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "processor": platform.processor(),
                    "threads": 1,
                },
                "medians": medians,
                "runs": runs,
            },
            indent=2,
        )
    )
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
