"""VT gate: is a candidate VT episode supported by the signal, or is it noise read as beats?

Noise detected as beats and labelled V makes false VT episodes (``inference.rhythm._vt_episodes``)
and so false critical VT alarms: MIT-BIH nstdb 118e00 gives about 100 in 30 min, and the pure
noise records ``ma`` and ``bw`` about 110 and 350 per channel. The learned per-2-s quality model
(``inference.quality``) flagged 30-84 % of real VT as noise, so this gate is two fixed spectral
rules of the literature (Li, Mark & Clifford 2008; Behar et al. 2013; PhysioNet/CinC Challenge
2015), read on the episode's own signal span and no model:

- ``qrs_band_power_share`` (pSQI): the power in 5-15 Hz over that in 5-40 Hz. QRS complexes,
  narrow or wide (also VT's), keep most of their power in 5-15 Hz; muscle noise spreads evenly up
  to 40 Hz and beyond. Below ``MIN_QRS_BAND_SHARE`` the span is not QRS-dominated.
- ``baseline_power_share`` (1 - basSQI): the power below 1 Hz over that in 0-40 Hz. A ventricular
  rhythm at 100 bpm or faster puts its power at 1.7 Hz and above; a span whose power is mostly
  below 1 Hz is baseline wander or electrode motion. Above ``MAX_BASELINE_SHARE`` it is not VT.

The span is the episode (first to last beat) with ``MARGIN_S`` on each side (``episode_span``),
so an offline analysis and a stream that keeps the last few seconds of signal give the same
answer. Thresholds were chosen on development data only (MIT-BIH DS1, nstdb 118e*, nstdb noise
mixed into DS1 records; never DS2, never vfdb): see docs/models/vt-gate.md.

    python -m inference.vt_gate evaluate --mitdb DIR --nstdb DIR --vfdb DIR --json OUT

Not wired into ``inference.rhythm``, streaming or alarms.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import signal

# Seconds of signal before the episode's first beat and after its last that the gate reads:
# enough for a 2-s Welch segment even on a 3-beat run, short enough to stay on the episode.
MARGIN_S = 2.0
WELCH_SEGMENT_S = 2.0
QRS_BAND_HZ = (5.0, 15.0)
WIDE_BAND_HZ = (5.0, 40.0)
BASELINE_BAND_HZ = (0.0, 1.0)
ECG_BAND_HZ = (0.0, 40.0)
# Chosen on development data (docs/models/vt-gate.md): every clean DS1 VT episode that is real
# had a pSQI of at least 0.74 and a baseline share of at most 0.26 (0.14 at the 90th centile);
# the thresholds leave a margin below and above those.
MIN_QRS_BAND_SHARE = 0.70
MAX_BASELINE_SHARE = 0.30


def episode_span(start_s: float, end_s: float, fs_hz: float, n_samples: int) -> tuple[int, int]:
    """Sample range ``[first, stop)`` the gate reads for an episode from ``start_s`` (its first
    beat) to ``end_s`` (its last): ``MARGIN_S`` either side, cut to the signal."""
    first = max(0, int(np.floor((start_s - MARGIN_S) * fs_hz)))
    stop = min(n_samples, int(np.ceil((end_s + MARGIN_S) * fs_hz)) + 1)
    return first, stop


def _power_spectrum(ecg_mv: np.ndarray, fs_hz: float) -> tuple[np.ndarray, np.ndarray]:
    ecg = np.asarray(ecg_mv, dtype=np.float64)
    if ecg.ndim != 1 or len(ecg) < 2 or not np.all(np.isfinite(ecg)):
        raise ValueError("the span must be a finite 1-D signal of at least 2 samples")
    nperseg = min(len(ecg), round(WELCH_SEGMENT_S * fs_hz))
    return signal.welch(ecg - ecg.mean(), fs_hz, nperseg=nperseg)


def _band_share(freq_hz, power, numerator_hz, denominator_hz) -> float:
    def band(low_hz, high_hz):
        return float(power[(freq_hz >= low_hz) & (freq_hz < high_hz)].sum())

    total = band(*denominator_hz)
    # a flat span has no power anywhere: 0, so it is not called QRS-dominated (nor baseline)
    return band(*numerator_hz) / total if total > 0 else 0.0


def qrs_band_power_share(ecg_mv: np.ndarray, fs_hz: float) -> float:
    """pSQI: Welch power in 5-15 Hz over power in 5-40 Hz (0-1). High for QRS complexes
    (their energy peaks near 10 Hz, wide ventricular complexes too), low for muscle noise."""
    freq_hz, power = _power_spectrum(ecg_mv, fs_hz)
    return _band_share(freq_hz, power, QRS_BAND_HZ, WIDE_BAND_HZ)


def baseline_power_share(ecg_mv: np.ndarray, fs_hz: float) -> float:
    """Welch power below 1 Hz over power in 0-40 Hz (0-1). Low for a rhythm at 100 bpm or
    faster (its fundamental is 1.7 Hz or more), high for baseline wander and electrode motion."""
    freq_hz, power = _power_spectrum(ecg_mv, fs_hz)
    return _band_share(freq_hz, power, BASELINE_BAND_HZ, ECG_BAND_HZ)


def vt_episode_features(ecg_mv: np.ndarray, fs_hz: float, start_s: float, end_s: float) -> dict:
    """The gate's two features on the episode's span (``episode_span``) of ``ecg_mv``."""
    ecg = np.asarray(ecg_mv, dtype=np.float64)
    first, stop = episode_span(start_s, end_s, fs_hz, len(ecg))
    span = ecg[first:stop]
    return {
        "qrs_band_share": qrs_band_power_share(span, fs_hz),
        "baseline_share": baseline_power_share(span, fs_hz),
    }


def vt_episode_supported(
    ecg_mv: np.ndarray, fs_hz: float, start_s: float, end_s: float
) -> tuple[bool, dict]:
    """Whether the signal supports a VT episode from ``start_s`` to ``end_s`` (seconds from the
    first sample of ``ecg_mv``, one lead in mV): its span's power is QRS-dominated and not
    mostly baseline. Returns the decision and the features it read."""
    features = vt_episode_features(ecg_mv, fs_hz, start_s, end_s)
    supported = (
        features["qrs_band_share"] >= MIN_QRS_BAND_SHARE
        and features["baseline_share"] <= MAX_BASELINE_SHARE
    )
    return supported, features


# --- Evaluation ---------------------------------------------------------------------------------

DEV_NOISY = ("118e00", "118e_6", "119em0", "119em-6")  # the removal target, with the pure noise


def _product_vt(ecg_mv: np.ndarray, fs_hz: float) -> list[tuple[float, float]]:
    from inference.analysis import analyze_signal

    analysis = analyze_signal(ecg_mv, fs_hz)
    return [(e.start_s, e.end_s) for e in analysis.episodes if e.kind == "VT"]


def _overlaps(start_s, end_s, spans_s) -> bool:
    return any(s < end_s and e > start_s for s, e in spans_s)


def _score_record(ecg_mv, fs_hz, truth, progress_name, timings_ms) -> dict:
    """Product VT episodes of one signal, each with its truth (``truth(start_s, end_s)``, or
    False for pure noise) and the gate's decision."""
    episodes = []
    for start_s, end_s in _product_vt(ecg_mv, fs_hz):
        t0 = time.perf_counter()
        kept, features = vt_episode_supported(ecg_mv, fs_hz, start_s, end_s)
        timings_ms.append(1000 * (time.perf_counter() - t0))
        episodes.append(
            {
                "start_s": round(start_s, 3),
                "end_s": round(end_s, 3),
                "true": bool(truth(start_s, end_s)),
                "kept": bool(kept),
                **{k: round(v, 4) for k, v in features.items()},
            }
        )
    row = {
        "before": len(episodes),
        "after": sum(e["kept"] for e in episodes),
        "true": sum(e["true"] for e in episodes),
        "true_kept": sum(e["true"] and e["kept"] for e in episodes),
        "false": sum(not e["true"] for e in episodes),
        "false_removed": sum(not e["true"] and not e["kept"] for e in episodes),
    }
    print(f"  {progress_name}: {row}", flush=True)
    return {**row, "episodes": episodes}


def _mitdb_truth(folder: Path, name: str, fs_hz: float):
    """A product episode is true when it overlaps a reference ``(VT`` or spans 3 or more
    reference V beats (100 ms slack either side)."""
    from inference.datasets.wfdb_record import read_annotation
    from inference.quality import read_mitdb

    reference = read_mitdb(folder, name)
    annotation = read_annotation(Path(folder) / name, "atr")
    symbols = np.asarray(annotation.symbol)
    v_s = np.asarray(annotation.sample)[symbols == "V"] / fs_hz
    vt_s = [(s / fs_hz, e / fs_hz) for s, e in reference["vt"]]

    def truth(start_s, end_s):
        n_v = np.count_nonzero((v_s >= start_s - 0.1) & (v_s <= end_s + 0.1))
        return _overlaps(start_s - 0.1, end_s + 0.1, vt_s) or n_v >= 3

    return reference, truth


def electrode_motion_from_118(mitdb: Path, nstdb: Path) -> np.ndarray:
    """nstdb's electrode-motion noise as it was added to 118e_6 (the ``em`` record is absent
    here): 118e_6 minus 118 in nst's noisy blocks, each block's first value taken off (the two
    records also differ by a constant 5.12 mV ADC offset)."""
    from inference.datasets.wfdb_record import read_record_mv
    from inference.quality import noisy_block_mask, read_mitdb

    clean = read_mitdb(mitdb, "118")["ecg"]
    noisy = read_record_mv(Path(nstdb) / "118e_6", [0]).p_signal[:, 0].astype(np.float64)
    difference = noisy - clean
    mask = noisy_block_mask(len(noisy), 360.0)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return np.concatenate(
        [difference[s:e] - difference[s] for s, e in zip(edges[::2], edges[1::2], strict=True)]
    )


def evaluate(args) -> int:
    from inference.datasets.mitdb import rhythm_intervals
    from inference.datasets.wfdb_record import read_annotation, read_record_mv
    from inference.quality import (
        DS1_RECORDS,
        add_noise_blocks,
        qrs_size_mv,
        read_noise,
    )

    mitdb, nstdb = Path(args.mitdb), Path(args.nstdb)
    timings_ms: list[float] = []
    result = {
        "rule": {
            "margin_s": MARGIN_S,
            "min_qrs_band_share": MIN_QRS_BAND_SHARE,
            "max_baseline_share": MAX_BASELINE_SHARE,
        },
        "sets": {},
    }
    sets = result["sets"]
    print("clean DS1 (development)", flush=True)
    sets["ds1_clean"] = {}
    for name in DS1_RECORDS:
        reference, truth = _mitdb_truth(mitdb, name, 360.0)
        sets["ds1_clean"][name] = _score_record(
            reference["ecg"], reference["fs"], truth, name, timings_ms
        )
    print("nstdb 118 + electrode motion (development)", flush=True)
    sets["nstdb_118"] = {}
    _, truth_118 = _mitdb_truth(mitdb, "118", 360.0)
    for name in ("118e24", "118e12", "118e00", "118e_6"):
        ecg = read_record_mv(nstdb / name, [0]).p_signal[:, 0].astype(np.float64)
        sets["nstdb_118"][name] = _score_record(ecg, 360.0, truth_118, name, timings_ms)
    print("119 + electrode motion / muscle noise as nst adds it (development)", flush=True)
    sets["mixed_119"] = {}
    reference, truth_119 = _mitdb_truth(mitdb, "119", 360.0)
    size_mv = qrs_size_mv(reference["ecg"], reference["normal"], 360.0)
    noises = {"em": electrode_motion_from_118(mitdb, nstdb), "ma": read_noise(nstdb, "ma")[0][:, 0]}
    for noise_name, noise in noises.items():
        for snr_db in (12, 6, 0, -6):
            ecg, _ = add_noise_blocks(reference["ecg"], noise, 360.0, snr_db, size_mv)
            name = f"119{noise_name}{snr_db}"
            sets["mixed_119"][name] = _score_record(ecg, 360.0, truth_119, name, timings_ms)
    print("pure noise (development)", flush=True)
    sets["pure_noise"] = {}
    for noise_name in ("ma", "bw"):
        noise, fs_hz = read_noise(nstdb, noise_name)
        for channel in range(noise.shape[1]):
            name = f"{noise_name}{channel}"
            sets["pure_noise"][name] = _score_record(
                noise[:, channel], fs_hz, lambda *_: False, name, timings_ms
            )
    sets["pure_noise"]["em_from_118e_6"] = _score_record(
        noises["em"], 360.0, lambda *_: False, "em_from_118e_6", timings_ms
    )
    if args.vfdb:
        print("vfdb (held out, channel 0)", flush=True)
        sets["vfdb"] = {}
        for path in sorted(Path(args.vfdb).glob("*.hea")):
            record = read_record_mv(path.with_suffix(""), [0])
            annotation = read_annotation(path.with_suffix(""), "atr")
            ecg, fs_hz = np.nan_to_num(record.p_signal[:, 0].astype(np.float64)), float(record.fs)
            spans = [
                (s / fs_hz, e / fs_hz)
                for s, e, rhythm in rhythm_intervals(
                    annotation.sample, list(annotation.symbol), list(annotation.aux_note), len(ecg)
                )
                if rhythm in ("(VT", "(VFL", "(VF")
            ]
            sets["vfdb"][path.stem] = _score_record(
                ecg, fs_hz, lambda a, b, spans=spans: _overlaps(a, b, spans), path.stem, timings_ms
            )
    result["summary"] = summarize(sets)
    result["ms_per_episode"] = {
        "median": round(float(np.median(timings_ms)), 3) if timings_ms else None,
        "p95": round(float(np.percentile(timings_ms, 95)), 3) if timings_ms else None,
    }
    print(format_table(result["summary"]), flush=True)
    print(f"gate cost per episode: {result['ms_per_episode']} ms", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


def summarize(sets: dict) -> dict:
    """Totals per record set, and the removal target (118e00, 118e_6, 119em0, 119em-6 and the
    pure noise records together)."""
    keys = ("before", "after", "true", "true_kept", "false", "false_removed")
    summary = {
        set_name: {key: sum(row[key] for row in rows.values()) for key in keys}
        for set_name, rows in sets.items()
    }
    target = [
        row
        for set_name, rows in sets.items()
        for name, row in rows.items()
        if set_name == "pure_noise" or name in DEV_NOISY
    ]
    summary["removal_target"] = {key: sum(row[key] for row in target) for key in keys}
    return summary


def format_table(summary: dict) -> str:
    lines = [
        "| set | VT before | after | true (kept) | false (removed) |",
        "|---|---|---|---|---|",
    ]
    for name, row in summary.items():
        lines.append(
            f"| {name} | {row['before']} | {row['after']} | {row['true']} ({row['true_kept']}) "
            f"| {row['false']} ({row['false_removed']}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.vt_gate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    scoring = commands.add_parser("evaluate", help="gate the product's VT episodes, by record set")
    scoring.add_argument("--mitdb", required=True, help="the mitdb folder (DS1 only is read)")
    scoring.add_argument("--nstdb", required=True, help="the nstdb folder")
    scoring.add_argument("--vfdb", help="the vfdb folder (held-out set)")
    scoring.add_argument("--json", help="write the per-record results here")
    args = parser.parse_args(argv)
    return evaluate(args)


if __name__ == "__main__":
    sys.exit(main())
