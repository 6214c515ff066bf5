"""``python -m inference.evaluation.af_tuning --data DIR [--json OUT]``: choosing AF settings.

Runs the AF detector of ``inference.rhythm`` over a grid of settings on every MIT-BIH record
outside DS2 (DS1 and the paced records 102, 104, 107, 217; 217 holds 252 s of AF) and on
vfdb's AF records 609 and 615, and ranks the settings by the worst of AF duration Se and +P
(EC57 style, gross) on our beats with our classifier's labels and on the reference beats with
the reference labels. MIT-BIH DS2 is never read: it is the test set (de Chazal 2004).

Each record is read on the lead ``evaluate rhythm`` and the product analyse (``analysis_lead``:
MLII, else II, else the first channel; on the tuning set only MIT-BIH 114 has MLII second).

The P-wave rule (``RhythmConfig.af_p_wave_present``, ``inference.atrial``) is one more axis
of the grid, None meaning no such rule.

It also prints the chosen settings' figures per set, RR only (no labels) too, and on every
vfdb record (vfdb has no beat annotations: our beats only; false AF inside ``(VF``, ``(VFL``,
``(VFIB``, ``(VT``, ``(NOISE`` and ``(ASYS`` is not counted, as the product clips AF out of VF
time and beats there are not beats).
"""

import argparse
import itertools
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inference import atrial
from inference.aami import AAMI_CLASSES, DS1, DS2, aami_class
from inference.beats import beat_features, beat_p_waves, get_beat_classifier
from inference.datasets import data_dir
from inference.datasets.mitdb import rhythm_intervals
from inference.datasets.wfdb_record import analysis_lead, read_header
from inference.evaluation.common import json_text, read_record, read_reference
from inference.evaluation.rhythm import AF_LABELS, duration_scores
from inference.qrs import detect_qrs
from inference.rhythm import RhythmConfig, af_episodes_from_mask, af_irregularity

PACED = ("102", "104", "107", "217")
VFDB_AF = ("609", "615")
NOT_SCORED = ("(VF", "(VFL", "(VFIB", "(VT", "(NOISE", "(ASYS")
# (beats, labels) of each way the detector is run
WAYS = {
    "classified": ("detected", "classified"),
    "rr_only": ("detected", None),
    "reference": ("reference", "reference"),
}
GRID = {
    "window_beats": (64, 96, 128),
    "lags": ((1, 2, 3), (1, 2)),
    "v_early_share": (None, 0.05),
    "threshold": tuple(round(x, 3) for x in np.arange(0.03, 0.0901, 0.005)),
    # P-wave presence at or above which an irregular stretch is not AF (None: no such rule)
    "p_wave_present": (None, 0.7, 0.75, 0.8, 0.85, 0.9),
}


def load(folder: Path, database: str, name: str) -> dict:
    """Beats, labels and rhythm intervals (seconds) of one record's analysed lead (MLII, else
    II, else the first channel: the lead ``evaluate rhythm`` and the product analyse; the
    beat model was trained on MLII)."""
    path = folder / database / name
    try:
        lead = analysis_lead(read_header(path).sig_name)
    except ValueError as exc:
        raise SystemExit(f"{path.name}: {exc}") from None
    record = read_record(path, channels=[lead])  # in mV whatever the header's unit
    annotation = read_reference(path, "atr")
    fs = float(record.fs)
    signal = np.nan_to_num(record.p_signal[:, 0])
    symbols = list(annotation.symbol)
    rhythms = rhythm_intervals(
        annotation.sample, symbols, list(annotation.aux_note), record.sig_len
    )
    is_beat = np.array([aami_class(symbol) is not None for symbol in symbols], dtype=bool)
    detected = detect_qrs(signal, fs)
    reference = np.asarray(annotation.sample)[is_beat]
    # two annotations on one sample (rare): the features need increasing R peaks
    first = np.concatenate([[True], np.diff(reference) > 0])
    reference_p_wave = (
        beat_p_waves(*beat_features(signal, fs, reference[first]))[np.cumsum(first) - 1]
        if first.sum() > 2
        else np.full(len(reference), np.nan)
    )
    probabilities, p_wave = (
        get_beat_classifier().classify_beats(signal, fs, detected)
        if len(detected)
        else ([], np.empty(0))
    )
    return {
        "name": f"{database}/{name}",
        "lead": record.sig_name[0],
        "beats": {
            "detected": detected / fs,
            "reference": reference / fs,
        },
        "p_wave": {
            "detected": p_wave,
            "reference": reference_p_wave,
        },
        "labels": {
            "classified": np.array(
                [AAMI_CLASSES[i] for i in np.argmax(probabilities, axis=1)], dtype=object
            )
            if len(detected)
            else np.array([], dtype=object),
            "reference": np.array(
                [aami_class(s) for s, beat in zip(symbols, is_beat, strict=True) if beat],
                dtype=object,
            ),
        },
        "af": [(a / fs, b / fs) for a, b, label in rhythms if label in AF_LABELS],
        # as in 'evaluate rhythm', every second counts on MIT-BIH; vfdb's VF, VT and noise not
        "not_scored": [(a / fs, b / fs) for a, b, label in rhythms if label in NOT_SCORED]
        if database == "vfdb"
        else [],
    }


def score(record: dict, way: str, settings: dict, merge_s: float, min_s: float) -> dict | None:
    beats_key, labels_key = WAYS[way]
    times_s = record["beats"][beats_key]
    if len(times_s) < 20:
        return None
    labels = record["labels"][labels_key] if labels_key else None
    irregularity = af_irregularity(
        times_s, labels, settings["window_beats"], settings["lags"], settings["v_early_share"]
    )
    irregular = irregularity > settings["threshold"]
    if settings.get("p_wave_present") is not None:
        is_ventricular = labels == "V" if labels is not None else np.zeros(len(times_s), bool)
        presence = atrial.p_wave_presence(record["p_wave"][beats_key], is_ventricular)
        irregular &= ~(presence[1:] >= settings["p_wave_present"])
    episodes = af_episodes_from_mask(times_s, irregular, merge_s, min_s)
    detected = [(e.start_s, e.end_s) for e in episodes]
    scores = duration_scores(record["af"], detected)
    scores["detected_s"] -= duration_scores(record["not_scored"], detected)["overlap_s"]
    return scores


def gross(records: list[dict], way: str, settings: dict, merge_s: float, min_s: float) -> dict:
    total = {"reference_s": 0.0, "detected_s": 0.0, "overlap_s": 0.0}
    for record in records:
        scores = score(record, way, settings, merge_s, min_s)
        for key in total if scores else ():
            total[key] += scores[key]
    ref, det, both = total["reference_s"], total["detected_s"], total["overlap_s"]
    return {
        **total,
        "se": both / ref if ref else float("nan"),
        "ppv": both / det if det else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.evaluation.af_tuning")
    parser.add_argument("--data", help="folder holding mitdb/ and vfdb/ (default: data_dir())")
    parser.add_argument("--json", help="write the grid and the chosen settings' figures here")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    folder = Path(args.data) if args.data else data_dir()
    names = [("mitdb", name) for name in (*DS1, *PACED)]
    names += [("vfdb", path.stem) for path in sorted((folder / "vfdb").glob("*.hea"))]
    assert not any(db == "mitdb" and name in DS2 for db, name in names), "DS2 is the test set"
    records = [load(folder, db, name) for db, name in tqdm(names, desc="records")]
    tuning = [r for r in records if r["name"].startswith("mitdb/") or r["name"][5:] in VFDB_AF]
    config = RhythmConfig()
    merge_s, min_s = config.af_merge_s, config.af_min_s

    rows = []
    combos = list(itertools.product(*GRID.values()))
    for values in tqdm(combos, desc="settings"):
        settings = dict(zip(GRID, values, strict=True))
        figures = {way: gross(tuning, way, settings, merge_s, min_s) for way in WAYS}
        worst = min(
            figures[way][key] for way in ("classified", "reference") for key in ("se", "ppv")
        )
        rows.append({**settings, "worst": worst, "figures": figures})
    rows.sort(key=lambda row: -row["worst"])
    print(
        "| window | lags | V early share | threshold | P wave present at | worst | "
        "classified Se/+P | RR only Se/+P | reference Se/+P |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows[:10]:
        f = row["figures"]
        print(
            f"| {row['window_beats']} | {row['lags']} | {row['v_early_share']} | "
            f"{row['threshold']} | {row['p_wave_present']} | {100 * row['worst']:.1f} | "
            + " | ".join(f"{100 * f[w]['se']:.1f} / {100 * f[w]['ppv']:.1f}" for w in WAYS)
            + " |"
        )

    from inference.rhythm import AF_LAGS, V_EARLY_SHARE

    shipped = {
        "window_beats": int(config.af_window_beats),
        "lags": AF_LAGS,
        "v_early_share": V_EARLY_SHARE,
        "p_wave_present": config.af_p_wave_present,
    }
    sets = {
        "tuning set (DS1, paced, vfdb 609 615)": tuning,
        "DS1": [r for r in records if r["name"][6:] in DS1],
        "vfdb, all 22 records": [r for r in records if r["name"].startswith("vfdb/")],
    }
    old = {
        "window_beats": 96,
        "lags": (1, 2, 3),
        "v_early_share": None,
        "threshold": 0.06,
        "p_wave_present": None,
    }
    chosen = {}
    print("\n| detector | records | way | AF ref. s | AF det. s | Se | +P |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for label, settings in (("shipped", shipped), ("before 2026-11-25", old)):
        for set_name, members in sets.items():
            for way in WAYS:
                threshold = old["threshold"]
                if label == "shipped":
                    threshold = (
                        config.af_threshold if WAYS[way][1] else (config.af_threshold_unlabelled)
                    )
                result = gross(members, way, {**settings, "threshold": threshold}, merge_s, min_s)
                if not result["reference_s"] and not result["detected_s"]:
                    continue
                chosen[f"{label} | {set_name} | {way}"] = result
                print(
                    f"| {label} | {set_name} | {way} | {result['reference_s']:.0f} | "
                    f"{result['detected_s']:.0f} | {100 * result['se']:.1f} | "
                    f"{100 * result['ppv']:.1f} |"
                )
    if args.json:
        Path(args.json).write_text(json_text({"grid": rows, "figures": chosen}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
