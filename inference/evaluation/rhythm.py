"""``python -m inference.evaluate rhythm --data DIR [--records ...] [--json OUT] [--vf-folds N]``

Scores the rhythm episodes of ``inference.rhythm`` against the rhythm annotations (aux notes
of '+' annotations) of a WFDB folder. What is scored follows from the annotations:

- records with beat annotations (MIT-BIH): AF duration sensitivity and positive predictivity
  (EC57 style: the overlap of detected and reference AF time over the reference AF time and
  over the detected AF time, summed over records, so false AF in records without AF counts),
  three times: on our own detected beats (``inference.qrs.detect_qrs``) with our beat
  classifier's labels (``inference.beats``; what the product runs), on the same beats without
  labels (RR only), and on the reference beats with their reference AAMI labels. The
  reference for AF is ``(AFIB`` plus ``(AFL`` (see docs/rhythm.md); ``(AFIB`` alone is
  reported too. VT episodes from the reference labels against ``(VT`` annotations (episode
  sensitivity and +P).
- every record: VF/VFL per 2-second segment (positive: more than half of the segment inside
  ``(VF``, ``(VFL`` or ``(VFIB``), sensitivity and specificity, gross and per record, on the
  first channel; and reference VF episodes that overlap a detected VF episode.

Leads: beats, their classes and the AF, VT, rate and pause episodes are found on the lead the
product and ``evaluate beats`` analyse (MLII, else II, else the first channel; the beat model was
trained on MLII); the VF/VFL scores stay on the first channel, where the VF detector was
cross-validated and its figures were published. The two differ in MIT-BIH 114 only (102 and
104 have no MLII: both read V5, the first channel). A first channel not in a voltage unit (an
``ABP`` channel) gives way to the analysed lead for VF/VFL too. A record whose beats are all
coded 'B' or '?' has its AF scored on our beats; only the run on reference labels (and VT)
needs AAMI classes, and the table names the records without. With ``--lead`` (the first of
its names the record has, any case) everything, VF/VFL included, is read on that lead. The
reference is the ``--annotator`` files (default ``atr``).

The shipped VF detector was fit on all of vfdb, so its vfdb figures here are in-sample;
``--vf-folds N`` adds the leave-records-out cross-validated figures (N record folds) over the
chosen records only, in the ``--annotator`` files, on the channel each record's VF/VFL was
scored on and the other of its first two channels when that is an ECG.

A record with gaps (missing samples) is refused with its name: the rhythm rules read RR
intervals and 2-second segments across the record, and a gap would read as a pause or a
segment of nothing (``evaluate qrs`` and ``beats`` score the stretches between gaps). So is a
record shorter than the QRS detector's 2 s: it has no beats to find nor a VF segment to score.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inference.aami import AAMI_CLASSES, DS1, DS2, aami_class
from inference.beats import get_beat_classifier
from inference.datasets.mitdb import rhythm_intervals
from inference.datasets.wfdb_record import missing_samples_message, mv_per_unit
from inference.evaluation.common import (
    add_annotator_argument,
    add_data_argument,
    add_lead_argument,
    add_records_argument,
    data_folder,
    read_record,
    read_record_lead,
    read_reference,
    record_headers,
    record_stem,
    report_output,
    vf_channel,
    write_report,
)
from inference.evaluation.qrs import QRS_SYMBOLS
from inference.qrs import MIN_DURATION_S, detect_qrs
from inference.rhythm import RhythmConfig, detect_episodes, vf_episodes_from_probability
from inference.vf import SEGMENT_S, VF_LABELS, segment_labels, shipped_model, vf_probability

AF_LABELS = ("(AFIB", "(AFL")
AF_RECORDS = ("201", "202", "203", "210", "219", "221", "222")
# How the AF detector is run in evaluation: our beats + our classifier's labels (the product),
# our beats without labels (RR only), the reference beats + reference labels.
AF_BEATS = ("classified", "detected", "reference")
GAPS_REFUSED = (
    "evaluate rhythm needs records without gaps (evaluate qrs and beats score the stretches "
    "between them)"
)


def _overlap_s(first: list[tuple[float, float]], second: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(b1, b2) - max(a1, a2)) for a1, b1 in first for a2, b2 in second)


def _length_s(intervals: list[tuple[float, float]]) -> float:
    return sum(end - start for start, end in intervals)


def duration_scores(reference: list, detected: list) -> dict:
    """Reference, detected and overlapping seconds of two lists of (start_s, end_s)."""
    return {
        "reference_s": _length_s(reference),
        "detected_s": _length_s(detected),
        "overlap_s": _overlap_s(reference, detected),
    }


def _ratios(counts: dict) -> dict:
    ref, det, both = counts["reference_s"], counts["detected_s"], counts["overlap_s"]
    return {
        **counts,
        "se": both / ref if ref else float("nan"),
        "ppv": both / det if det else float("nan"),
    }


def episode_hits(reference: list, detected: list) -> dict:
    """Episodes of each list that overlap at least one of the other."""

    def overlaps(a: tuple[float, float], others: list) -> bool:
        return any(min(a[1], b[1]) > max(a[0], b[0]) for b in others)

    return {
        "n_reference": len(reference),
        "reference_detected": sum(overlaps(episode, detected) for episode in reference),
        "n_detected": len(detected),
        "detected_true": sum(overlaps(episode, reference) for episode in detected),
    }


def _intervals(rhythms: list, labels: tuple[str, ...], fs: float) -> list[tuple[float, float]]:
    return [(start / fs, end / fs) for start, end, label in rhythms if label in labels]


def _episodes(episodes: list, kind: str) -> list[tuple[float, float]]:
    return [(e.start_s, e.end_s) for e in episodes if e.kind == kind]


def vf_segment_scores(probability: np.ndarray, threshold: float, fs: float, rhythms: list) -> dict:
    labels, _ = segment_labels(len(probability), fs, rhythms)
    predicted = probability >= threshold
    return {
        "segments": int(len(labels)),
        "tp": int((predicted & (labels == 1)).sum()),
        "fn": int((~predicted & (labels == 1)).sum()),
        "tn": int((~predicted & (labels == 0)).sum()),
        "fp": int((predicted & (labels == 0)).sum()),
    }


def evaluate_record(
    path: Path,
    header,
    config: RhythmConfig,
    annotator: str = "atr",
    leads: list[str] | None = None,
    name: str | None = None,
) -> dict:
    """Every score of one record, in a row named ``name`` (its path from the data folder,
    ``p01/106``; default the file's name): VF on the first channel (``vf_channel``: the
    analysed lead when the first channel is not an ECG), the rest on the analysed lead;
    everything on the lead ``leads`` names when given. ``header`` is the record's header, as
    ``record_headers`` read it: passed in, so that the command reads it once."""
    lead = read_record_lead(path, leads, header)
    vf_index = vf_channel(header, lead, leads)
    channels = sorted({vf_index, lead})
    record = read_record(path, channels=channels, header=header)
    annotation = read_reference(path, annotator)
    fs = float(record.fs)
    vf_signal = record.p_signal[:, channels.index(vf_index)]
    signal = record.p_signal[:, channels.index(lead)]
    for checked in (vf_signal, signal):
        missing = missing_samples_message(checked, fs)
        if missing:
            raise SystemExit(f"{path.name}: {missing}; {GAPS_REFUSED}")
    symbols = list(annotation.symbol)
    rhythms = rhythm_intervals(
        annotation.sample, symbols, list(annotation.aux_note), record.sig_len
    )
    row: dict = {
        "record": name or path.name,
        "fs": fs,
        "duration_s": round(record.sig_len / fs, 1),
        "lead": record.sig_name[channels.index(lead)],
        "vf_lead": record.sig_name[channels.index(vf_index)],
        "vf_channel": vf_index,  # 0: the first channel
    }

    model = shipped_model()
    probability = vf_probability(vf_signal, fs, model)
    row["vf_segments"] = vf_segment_scores(probability, model.threshold, fs, rhythms)
    row["vf_trace"] = {
        "probability": probability.round(3).tolist(),
        "threshold": model.threshold,
        "reference_vf": _intervals(rhythms, VF_LABELS, fs),
        "reference_vt": _intervals(rhythms, ("(VT",), fs),
    }
    # VF episodes from the same first-channel probabilities (detect_episodes' own rule)
    row["vf_episodes"] = episode_hits(
        _intervals(rhythms, VF_LABELS, fs),
        _episodes(vf_episodes_from_probability(probability, config), "VF"),
    )

    # every beat code, 'B' and '?' included: a database marking all its beats 'B' has AF to
    # score on our beats; only the run on reference labels needs AAMI classes
    is_beat = np.array([symbol in QRS_SYMBOLS for symbol in symbols], dtype=bool)
    if is_beat.sum() < 2:
        return row
    is_classed = np.array([aami_class(symbol) is not None for symbol in symbols], dtype=bool)
    beats = np.asarray(annotation.sample)[is_classed]
    labels = [aami_class(symbol) for symbol, beat in zip(symbols, is_classed, strict=True) if beat]
    with_labels = len(beats) >= 2
    detected_beats = detect_qrs(signal, fs)
    # the P waves of our beats, computed once with their classes (the product's path)
    probabilities, p_wave = get_beat_classifier().classify_beats(signal, fs, detected_beats)
    classified = [AAMI_CLASSES[i] for i in probabilities.argmax(axis=1)]
    on_detected = detect_episodes(signal, fs, detected_beats, None, config, p_wave=p_wave)
    on_classified = detect_episodes(signal, fs, detected_beats, classified, config, p_wave=p_wave)
    runs = [("classified", on_classified), ("detected", on_detected)]
    if with_labels:
        on_reference = detect_episodes(signal, fs, beats, labels, config)
        runs.append(("reference", on_reference))
        row["vt_reference_labels"] = episode_hits(
            _intervals(rhythms, ("(VT",), fs), _episodes(on_reference, "VT")
        )
    for af_name, reference_labels in (("af", AF_LABELS), ("afib", ("(AFIB",))):
        reference = _intervals(rhythms, reference_labels, fs)
        for beats_name, episodes in runs:
            row[f"{af_name}_{beats_name}_beats"] = duration_scores(
                reference, _episodes(episodes, "AF")
            )
    reference_beats = beats if with_labels else np.asarray(annotation.sample)[is_beat]
    row["tachogram"] = {
        "beat_s": (reference_beats / fs).round(3).tolist(),
        "reference_af": _intervals(rhythms, AF_LABELS, fs),
        "detected_af": _episodes(on_classified, "AF"),
    }
    return row


def _sum(rows: list[dict], key: str) -> dict:
    total: dict = {}
    for row in rows:
        for name, value in row.get(key, {}).items():
            total[name] = total.get(name, 0) + value
    return total


def _se_sp(counts: dict) -> dict:
    tp, fn, tn, fp = (counts.get(key, 0) for key in ("tp", "fn", "tn", "fp"))
    return {
        **counts,
        "se": tp / (tp + fn) if tp + fn else float("nan"),
        "sp": tn / (tn + fp) if tn + fp else float("nan"),
    }


def summarize(rows: list[dict]) -> dict:
    summary: dict = {"vf_segments": _se_sp(_sum(rows, "vf_segments"))}
    summary["vf_episodes"] = _sum(rows, "vf_episodes")
    beat_rows = [row for row in rows if "af_detected_beats" in row]
    if not beat_rows:
        return summary
    # MIT-BIH's sets by the record's own name: mitdb/201 under a parent folder is 201
    subsets = {
        "all": beat_rows,
        "af_records": [row for row in beat_rows if record_stem(row["record"]) in AF_RECORDS],
        "ds1": [row for row in beat_rows if record_stem(row["record"]) in DS1],
        "ds2": [row for row in beat_rows if record_stem(row["record"]) in DS2],
    }
    for key in [f"{af}_{beats}_beats" for af in ("af", "afib") for beats in AF_BEATS]:
        # the run on reference labels needs records whose beats have AAMI classes
        summary[key] = {
            name: _ratios(_sum([row for row in subset if key in row], key))
            for name, subset in subsets.items()
            if any(key in row for row in subset)
        }
    summary["vt_reference_labels"] = _sum(beat_rows, "vt_reference_labels")
    unlabelled = [row["record"] for row in beat_rows if "af_reference_beats" not in row]
    if unlabelled:
        summary["without_reference_labels"] = unlabelled
    return summary


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f}"


def markdown(rows: list[dict], summary: dict, cv: dict | None) -> str:
    lines = []
    if "af_detected_beats" in summary:
        lines += [
            "AF duration (EC57 style, gross over records; reference (AFIB + (AFL; "
            "(AFIB alone in brackets)",
            "",
            "| records | beats | AF ref. s | AF det. s | Se | +P | Se (AFIB) | +P (AFIB) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for beats in AF_BEATS:
            both = summary[f"af_{beats}_beats"]  # {} when no record has reference labels
            alone = summary[f"afib_{beats}_beats"]
            for subset, scores in both.items():
                lines.append(
                    f"| {subset} | {beats} | {scores['reference_s']:.0f} | "
                    f"{scores['detected_s']:.0f} | {_pct(scores['se'])} | {_pct(scores['ppv'])} "
                    f"| {_pct(alone[subset]['se'])} | {_pct(alone[subset]['ppv'])} |"
                )
        lines += [
            "",
            "AF per record (our beats with our classifier's labels; then RR only)",
            "",
            "| record | AF ref. s | AF det. s | overlap s | Se | +P | Se (RR) | +P (RR) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in rows:
            if "af_classified_beats" not in row:
                continue  # a record without beat annotations (vfdb's): scored for VF only
            scores = _ratios(row["af_classified_beats"])
            alone = _ratios(row["af_detected_beats"])
            if scores["reference_s"] or scores["detected_s"] or alone["detected_s"]:
                lines.append(
                    f"| {row['record']} | {scores['reference_s']:.0f} | "
                    f"{scores['detected_s']:.0f} | {scores['overlap_s']:.0f} | "
                    f"{_pct(scores['se'])} | {_pct(scores['ppv'])} | {_pct(alone['se'])} | "
                    f"{_pct(alone['ppv'])} |"
                )
        unlabelled = summary.get("without_reference_labels")
        if unlabelled:
            lines += [
                "",
                "No beat with an AAMI class (all 'B' or '?'), so no run on reference labels "
                f"(AF on our beats only, no VT): {', '.join(unlabelled)}",
            ]
        vt = summary["vt_reference_labels"]
        if vt:
            lines += [
                "",
                f"VT from reference beat labels: {vt['reference_detected']} of the "
                f"{vt['n_reference']} annotated (VT episodes detected; {vt['detected_true']} "
                f"of the {vt['n_detected']} detected VT episodes overlap an annotated one.",
            ]
    vf = summary["vf_segments"]
    channel = vf_channel_words(rows)
    lines += [
        "",
        f"VF/VFL per 2-second segment ({channel}, shipped detector)",
        "",
        "| record | segments | VF segments | TP | FN | FP | Se | Sp |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        scores = _se_sp(row["vf_segments"])
        lines.append(
            f"| {row['record']} | {scores['segments']} | {scores['tp'] + scores['fn']} | "
            f"{scores['tp']} | {scores['fn']} | {scores['fp']} | {_pct(scores['se'])} | "
            f"{_pct(scores['sp'])} |"
        )
    lines.append(
        f"| **gross** | {vf['segments']} | {vf['tp'] + vf['fn']} | {vf['tp']} | {vf['fn']} | "
        f"{vf['fp']} | **{_pct(vf['se'])}** | **{_pct(vf['sp'])}** |"
    )
    episodes = summary["vf_episodes"]
    if episodes.get("n_reference"):
        lines.append(
            f"\nVF episodes: {episodes['reference_detected']} of {episodes['n_reference']} "
            f"reference episodes overlap a detected one; {episodes['detected_true']} of "
            f"{episodes['n_detected']} detected episodes overlap a reference one."
        )
    if cv:
        lines.append(
            f"\nVF/VFL leave-records-out cross-validation ({cv['folds']} record folds, "
            f"{channel}): Se {_pct(cv['se'])}, Sp {_pct(cv['sp'])} "
            f"(TP {cv['tp']}, FN {cv['fn']}, TN {cv['tn']}, FP {cv['fp']})."
        )
    return "\n".join(lines) + "\n"


def vf_channel_words(rows: list[dict]) -> str:
    """The channel the VF/VFL scores were read on, in words for the table's headings."""
    if all(row.get("vf_channel", 0) == 0 for row in rows):
        return "first channel"
    leads = sorted({row["vf_lead"] for row in rows})
    if all(row["vf_lead"] == row["lead"] for row in rows):
        return f"analysed lead: {', '.join(leads)}"
    others = [f"{row['record']} {row['vf_lead']}" for row in rows if row.get("vf_channel")]
    return f"first channel; {', '.join(others)} where the first is not an ECG"


def picture_name(record: str) -> str:
    """A record's name as part of a file name: ``p01/106`` -> ``p01-106``."""
    return record.replace("/", "-")


def plot_tachogram(row: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    beat_s = np.asarray(row["tachogram"]["beat_s"])
    figure, axis = plt.subplots(figsize=(12, 3.5))
    axis.plot(beat_s[1:] / 60, np.diff(beat_s), ".", markersize=2, color="black")
    for start, end in row["tachogram"]["reference_af"]:
        axis.axvspan(start / 60, end / 60, ymin=0.5, ymax=1, color="tab:red", alpha=0.25)
    for start, end in row["tachogram"]["detected_af"]:
        axis.axvspan(start / 60, end / 60, ymin=0, ymax=0.5, color="tab:blue", alpha=0.25)
    axis.set_ylim(0, 2.0)
    axis.set_xlabel("time (min)")
    axis.set_ylabel("RR (s)")
    axis.set_title(
        f"record {row['record']}: RR tachogram; AF reference (top, red) and detected on our "
        "beats and labels (bottom, blue)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_vf_trace(row: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trace = row["vf_trace"]
    probability = np.asarray(trace["probability"])
    minutes = (np.arange(len(probability)) + 0.5) * SEGMENT_S / 60
    figure, axis = plt.subplots(figsize=(12, 3.5))
    for start, end in trace["reference_vf"]:
        axis.axvspan(start / 60, end / 60, color="tab:red", alpha=0.25, lw=0)
    for start, end in trace["reference_vt"]:
        axis.axvspan(start / 60, end / 60, color="tab:orange", alpha=0.25, lw=0)
    axis.plot(minutes, probability, lw=0.8, color="black")
    axis.axhline(trace["threshold"], color="tab:blue", ls="--", lw=1)
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel("time (min)")
    axis.set_ylabel("VF probability")
    axis.set_title(
        f"record {row['record']}: VF detector per 2-s segment; reference VF/VFL (red), "
        "VT (orange), threshold (dashed)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def vf_fold_channels(header, row: dict) -> list[int]:
    """The channels ``--vf-folds`` reads of the record whose header is ``header``: the one its
    VF/VFL was scored on (``row``, the one cross-validation scores), then the other of the
    first two channels when it is in a voltage unit (the shipped model was fit on both
    channels of vfdb)."""
    channels = [row["vf_channel"]]
    for other in range(min(2, header.n_sig)):
        units = header.units[other] if header.units else None
        if other not in channels and mv_per_unit(units) is not None:
            channels.append(other)
    return channels


def refuse_short_records(folder: Path, headers: dict) -> None:
    """End the command naming the first record of ``headers`` (name: header) shorter than the
    QRS detector's 2 s: it has no beats to find nor a 2-second VF segment, and scored it would
    add nothing without a word."""
    for name, header in headers.items():
        duration_s = header.sig_len / header.fs
        if duration_s < MIN_DURATION_S:
            raise SystemExit(
                f"{folder}: record {name} is {duration_s:.2f} s long; evaluate rhythm needs at "
                f"least {MIN_DURATION_S:g} s (the QRS detector's learning phase)"
            )


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("rhythm", help="AF, VT and VF/VFL episodes")
    add_data_argument(parser)
    add_records_argument(parser, "record names, or ds1/ds2/all (default: all); repeatable")
    add_annotator_argument(parser)
    add_lead_argument(parser)
    parser.add_argument(
        "--json",
        help="write the results here (and a .md table and PNGs beside it: OUT.json gives "
        "OUT.md, so OUT must not end in .md)",
    )
    parser.add_argument(
        "--vf-folds",
        type=int,
        default=0,
        help="also cross-validate the VF detector on these records with N record folds "
        "(2 to the number of records)",
    )


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    folder = data_folder(args.data)
    report_output(args.json)
    # rhythm marks are the reference here: a record without beats (vfdb) is scored for VF.
    # Each header is read once, here, and passed on to everything that reads the record.
    headers = record_headers(
        folder,
        args.records,
        args.annotator,
        need_beats=False,
        gaps_refused=GAPS_REFUSED,
        leads=args.lead,
        with_vf_channel=True,
    )
    names = list(headers)
    refuse_short_records(folder, headers)
    if args.vf_folds:
        from inference.vf import check_folds

        try:
            check_folds(args.vf_folds, len(names))
        except ValueError as exc:
            raise SystemExit(f"--vf-folds: {exc}") from None
    config = RhythmConfig()
    rows = [
        evaluate_record(folder / name, headers[name], config, args.annotator, args.lead, name)
        for name in tqdm(names, desc="records")
    ]
    summary = summarize(rows)
    cv = None
    if args.vf_folds:
        from inference.vf import WEIGHTS_PATH, cross_validate, load_vfdb

        # the chosen records only, in the --annotator files, on the channel each was scored
        # on above (scored here too) and the other of its first two when that is an ECG
        data = load_vfdb(
            folder,
            progress=tqdm,
            names=names,
            annotator=args.annotator,
            record_channels={
                row["record"]: vf_fold_channels(headers[row["record"]], row) for row in rows
            },
            headers=headers,
        )
        # the shipped model's own recipe, from its card, so these figures are its figures
        card = json.loads(WEIGHTS_PATH.with_suffix(".json").read_text())
        recipe = {key: card[key] for key in ("hidden", "epochs", "seed", "weight_decay")}
        result = cross_validate(data, args.vf_folds, shipped_model().threshold, **recipe)
        cv = {"folds": args.vf_folds, **result["gross"]}
        summary["vf_cross_validated"] = cv
    table = markdown(rows, summary, cv)
    print(table)
    output = write_report(
        args.json,
        {
            "records": [
                {k: v for k, v in row.items() if k not in ("tachogram", "vf_trace")} for row in rows
            ],
            "summary": summary,
            "segment_s": SEGMENT_S,
        },
        table,
    )
    if output is not None:
        with_af = [row for row in rows if "tachogram" in row and row["tachogram"]["reference_af"]]
        if with_af:
            picture = output.with_name(f"{output.stem}-af-{picture_name(with_af[0]['record'])}.png")
            plot_tachogram(with_af[0], picture)
            print(f"wrote {picture}")
        with_vf = [row for row in rows if row["vf_trace"]["reference_vf"]]
        if with_vf:
            row = max(with_vf, key=lambda item: _length_s(item["vf_trace"]["reference_vf"]))
            picture = output.with_name(f"{output.stem}-vf-{picture_name(row['record'])}.png")
            plot_vf_trace(row, picture)
            print(f"wrote {picture}")
    return 0
