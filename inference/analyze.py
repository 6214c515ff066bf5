"""Analyze one recording: beats, AAMI labels, heart rate, rhythm episodes and a summary.

    python -m inference.analyze RECORD [--lead MLII] [--annotator atr] [--json OUT]
    python -m inference.analyze signal.csv --fs 250 [--json OUT]

RECORD is a WFDB record (the path without extension, or its ``.hea`` or ``.dat``); the lead is
MLII when the record has it, else II, else the first channel (the upload's rule), unless
``--lead`` names it (spelled as in the header, or in another case: ``ii``); a lead that is not
in a voltage unit (an ``ABP`` channel first) is refused, saying to name the ECG lead. The
sampling rate is the header's (``--fs`` is refused). When reference beat annotations (``.atr``,
or the extension ``--annotator`` gives) sit beside the record, the output also scores our beats
against them (EC57 matching, 150 ms) and gives the class agreement; an annotation file with
only rhythm marks (vfdb) gives no beat reference, and the output says so; one whose beats are
all coded 'B' or '?' gives the QRS scores without class agreement, saying why. A CSV file holds one
column of millivolts (a header line is allowed; ``ecg_uv`` or ``ecg_v`` there names another
unit, as an upload's does) and needs ``--fs``.

The signal is read in millivolts whatever voltage unit (mV, uV, V) the header gives. A record
with missing samples (gaps) or a CSV with a blank line among its samples is refused, naming
where: the analysis runs over one continuous signal. So is a lead that cannot be an ECG in
millivolts (``inference.signal.ecg_amplitude_problem``: volts, microvolts, a header's wrong unit
or gain), naming its amplitude and the unit it suggests; a flat lead, or one that was off beside
another channel of ECG size, is analysed, and when no beat is found the output adds a ``note``
saying how large the signal is (docs/upload.md, "Signal amplitude"). Problems (a missing file,
a corrupt header or one that disagrees with its signal files, an unknown lead, a gap) end the
command with a one-line message and exit status 1.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from inference.aami import AAMI_CLASSES, aami_class
from inference.analysis import RecordAnalysis, analyze_signal
from inference.beat_match import detection_scores, match_beats
from inference.datasets.wfdb_record import (
    CSV_UNIT_CELLS,
    check_record,
    csv_signal_unit,
    missing_samples_message,
    no_beat_annotations_message,
    read_annotation,
    read_record_mv,
)
from inference.evaluation.beats import beat_metrics
from inference.evaluation.common import (
    annotator_name,
    json_text,
    record_lead,
    writable_output,
)
from inference.evaluation.qrs import QRS_SYMBOLS, outside, vf_episodes
from inference.signal import MIN_ECG_AMPLITUDE_MV, ecg_amplitude_mv, ecg_amplitude_problem


def load_wfdb(path: Path, lead: str | None) -> tuple[np.ndarray, float, str]:
    """One lead of a WFDB record in mV (whatever the header's voltage unit), its rate, and the
    lead's name. Every problem with the record (a header that disagrees with its files, a
    unit that is not a voltage, missing samples) ends the command with one line."""
    try:
        # the header against its signal files (units: checked below, for the lead read)
        header = check_record(path, channels=[])
    except (ValueError, OSError) as exc:
        raise SystemExit(f"record {path}: {exc}") from None
    names = list(header.sig_name)
    try:
        # MLII, else II, else the first channel; or --lead in any case; in a voltage unit
        channel = record_lead(header, path.name, [lead] if lead else None)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    lead = names[channel]
    try:
        record = read_record_mv(path, channels=[channel])
    except (ValueError, OSError) as exc:
        raise SystemExit(f"record {path}: {exc}") from None
    ecg_mv = record.p_signal[:, 0].astype(np.float64)
    fs = float(record.fs)
    missing = missing_samples_message(ecg_mv, fs)
    if missing:
        # the analysis runs over the whole signal: a gap has no beats and would read as a pause
        raise SystemExit(
            f"record {path.name} ({lead}) has {missing}; analyze needs a signal without gaps: "
            "cut the record at them"
        )
    problem = ecg_amplitude_problem(ecg_mv, f"record {path.name} ({lead})")
    if problem is not None and not _lead_off_beside_ecg(path, names, channel, ecg_mv):
        raise SystemExit(f"{problem}; check the header's units and gain for this signal")
    return ecg_mv, fs, lead


def _lead_off_beside_ecg(path: Path, names: list[str], channel: int, ecg_mv: np.ndarray) -> bool:
    """Whether a lead too small to be an ECG sits beside another channel of ECG size: a lead
    that was off (it may be real, and is analysed), not a header with the wrong unit or gain,
    which would scale every channel alike (the upload's rule)."""
    if ecg_amplitude_mv(ecg_mv) >= MIN_ECG_AMPLITUDE_MV or len(names) == 1:
        return False
    others = [index for index in range(len(names)) if index != channel]
    try:
        record = read_record_mv(path, channels=others)
    except (ValueError, OSError):
        return False
    for index in range(len(others)):
        other_mv = record.p_signal[:, index]
        other_mv = other_mv[np.isfinite(other_mv)]
        if (
            len(other_mv)
            and ecg_amplitude_mv(other_mv) >= MIN_ECG_AMPLITUDE_MV
            and ecg_amplitude_problem(other_mv) is None
        ):
            return True
    return False


def load_csv(path: Path) -> np.ndarray:
    """A one-column CSV of millivolts; the first line may be a header, which may name the unit
    as the upload's does (``ecg_mv``, ``ecg_uv``, ``ecg_v``: ``csv_signal_unit``).

    A blank line is a missing sample: dropping it would shorten the recording and move every
    later beat earlier, so a blank line before the last sample is refused, naming it (blank
    lines at the end of the file are no samples and are fine). So are NaN and infinity."""
    values = []
    first_blank = None
    unit = None
    with path.open() as handle:
        for line_number, line in enumerate(handle, start=1):
            cells = line.strip().split(",")
            cell = cells[0].strip()
            if not cell:
                if first_blank is None:
                    first_blank = line_number
                continue
            try:
                value = float(cell)
            except ValueError:
                if line_number == 1:  # a header
                    try:
                        unit = csv_signal_unit(cell)
                    except ValueError as exc:
                        raise SystemExit(f"{path.name} line 1: {exc}") from None
                    continue
                raise SystemExit(
                    f"{path.name} line {line_number}: {cell!r} is not a number"
                ) from None
            if not np.isfinite(value):
                raise SystemExit(
                    f"{path.name} line {line_number}: {cell!r} is not a sample (NaN and "
                    "infinity are not allowed)"
                )
            if first_blank is not None:
                raise SystemExit(
                    f"{path.name} line {first_blank} is blank: a missing sample in the middle "
                    "of the signal would shift every later beat; fill the gap or cut the file "
                    "there"
                )
            if len(cells) > 1:
                # the upload's refusal: reading the first column would drop the others silently
                raise SystemExit(
                    f"{path.name} line {line_number} has {len(cells)} values: a signal CSV has "
                    "one column (mV)"
                )
            values.append(value)
    if not values:
        raise SystemExit(f"{path.name} holds no samples")
    values_mv = np.asarray(values) * (1.0 if unit is None else unit[1])
    problem = ecg_amplitude_problem(values_mv, path.name)
    if problem is not None:
        if unit is None:
            raise SystemExit(
                f"{problem}; a signal CSV is in millivolts unless its header line names the "
                f"unit ({CSV_UNIT_CELLS}): convert it first, or name its unit"
            )
        raise SystemExit(
            f"{problem}; the values were read in {unit[0]}, as the header line says: check "
            "that unit"
        )
    return values_mv


def no_beats_note(ecg_mv: np.ndarray, lead: str) -> str:
    """What an analysis that found no beat says about the lead's size: a flat lead, or one
    that was off, passes the amplitude check (it may be real) and reads as one long pause."""
    amplitude_mv = ecg_amplitude_mv(ecg_mv)
    if np.ptp(ecg_mv) == 0:
        size = f"the signal is flat (constant at {float(ecg_mv[0]):g} mV)"
    else:
        size = f"the signal's amplitude is {amplitude_mv:.3g} mV"
    return (
        f"no beats were found in lead {lead}: {size}. Asystole, a lead that was off, noise or "
        "a rhythm the QRS detector cannot follow: check the strip before reading the pause as "
        "asystole"
    )


def reference_agreement(
    path: Path, analysis: RecordAnalysis, annotator: str = "atr"
) -> tuple[dict | None, str]:
    """Our beats against the record's reference beat annotations: QRS Se/+P as ``evaluate qrs``
    scores them, and the class metrics of ``evaluate beats`` on matched beats (only the QRS
    scores, and a line saying why, when no beat has an AAMI class: all 'B' or '?'); with a line
    saying what was compared. ``(None, why)`` when there is no beat reference: no ``.atr``, or
    one with only rhythm marks (vfdb), where every detection would count as a false positive."""
    atr_name = f"{path.name}.{annotator}"
    if not path.with_name(atr_name).is_file():
        return None, f"no reference: no {atr_name} beside the record"
    try:
        annotation = read_annotation(path, annotator)
    except ValueError as exc:
        raise SystemExit(f"{path.parent}: {exc}") from None
    # QRS scores exactly as 'evaluate qrs' computes them: every QRS symbol ('B' and '?'
    # included), VF/VFL left out
    symbols = list(annotation.symbol)
    qrs_reference = np.array(
        [s for s, y in zip(annotation.sample, symbols, strict=True) if y in QRS_SYMBOLS],
        dtype=np.int64,
    )
    if not len(qrs_reference):
        return None, f"no agreement computed: {no_beat_annotations_message(atr_name)}"
    vf = vf_episodes(annotation.sample, symbols, analysis.n_samples)
    qrs = detection_scores(outside(qrs_reference, vf), outside(analysis.r_peaks, vf), analysis.fs)
    qrs_line = f"QRS Se {_percent(qrs['se'])} +P {_percent(qrs['ppv'])}"
    classes = [aami_class(symbol) for symbol in symbols]
    samples = np.array(
        [s for s, c in zip(annotation.sample, classes, strict=True) if c], dtype=np.int64
    )
    if not len(samples):
        # beats all coded 'B' or '?': found or missed, but with no class to agree with
        return {"qrs": qrs}, (
            f"against the reference ({atr_name}): {qrs_line}; no class agreement: none of "
            "its beats has an AAMI class (all 'B' or '?')"
        )
    labels = np.array([AAMI_CLASSES.index(c) for c in classes if c], dtype=np.int64)
    predicted = np.array([AAMI_CLASSES.index(label) for label in analysis.labels], dtype=np.int64)
    ref_index, det_index = match_beats(samples, analysis.r_peaks, analysis.fs)
    agreement = {
        "n_reference": len(samples),
        "matched": len(ref_index),
        "qrs": qrs,
        **beat_metrics(labels[ref_index], predicted[det_index]),
        "confusion_order": list(AAMI_CLASSES),
    }
    return agreement, (
        f"against the reference ({atr_name}): {qrs_line}, class accuracy "
        f"{_percent(agreement['accuracy'])}"
    )


def _percent(value: float) -> str:
    return "undefined" if value != value else f"{100 * value:.2f} %"  # NaN: nothing to divide


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.analyze", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "record", help="WFDB record path (no extension, or its .hea or .dat) or a .csv file"
    )
    parser.add_argument(
        "--lead",
        help="lead name of a WFDB record, any case (default MLII, else II, else the first)",
    )
    parser.add_argument(
        "--annotator",
        default="atr",
        type=annotator_name,
        help="extension of the reference beat annotations beside a WFDB record, e.g. qrs "
        "(default: atr)",
    )
    parser.add_argument("--fs", type=float, help="sampling rate in Hz, for a CSV file")
    parser.add_argument("--json", help="write the full result here")
    args = parser.parse_args(argv)

    given = Path(args.record)
    output = writable_output(args.json)  # before the analysis, not after it
    if given.suffix.lower() == ".csv":
        if not given.is_file():
            raise SystemExit(f"no CSV file {given}")
        if args.fs is None:
            raise SystemExit("a CSV file needs --fs (its sampling rate in Hz)")
        ecg_mv, fs, lead, path = load_csv(given), args.fs, "column 1", given
    else:
        # the record is named without extension; its header or signal file names it too
        path = given.with_suffix("") if given.suffix.lower() in (".hea", ".dat") else given
        header = path.with_name(f"{path.name}.hea")
        if not header.is_file():
            raise SystemExit(
                f"no WFDB header {header}: give a record path without extension (or its .hea), "
                "or a .csv file"
            )
        if args.fs is not None:
            # a second rate beside the header's would be a guess about which one is right
            raise SystemExit(
                "--fs is for a CSV file: a WFDB record's sampling rate is read from its header"
            )
        ecg_mv, fs, lead = load_wfdb(path, args.lead)

    started = time.perf_counter()
    try:
        analysis = analyze_signal(ecg_mv, fs)
    except ValueError as error:
        raise SystemExit(f"{given.name}: {error}") from None
    elapsed_s = time.perf_counter() - started

    result = {"record": path.name, "lead": lead, **analysis.to_dict()}
    result["analysis_s"] = round(elapsed_s, 4)
    if path.suffix.lower() == ".csv":
        agreement, reference_line = None, None
    else:
        agreement, reference_line = reference_agreement(path, analysis, args.annotator)
    if agreement is not None:
        result["reference"] = agreement
    elif reference_line is not None:
        result["reference_note"] = reference_line

    summary = analysis.summary
    rate = summary["heart_rate_bpm"]
    print(f"{path.name} ({lead}, {fs:g} Hz, {summary['duration_s']:.0f} s) in {elapsed_s:.3f} s")
    print(
        f"beats: {summary['n_beats']}  heart rate mean/min/max: {rate['mean']} / "
        f"{rate['min']} / {rate['max']} bpm"
    )
    print("counts: " + ", ".join(f"{k} {v}" for k, v in summary["counts"].items()))
    if summary["n_beats"] == 0:
        result["note"] = no_beats_note(ecg_mv, lead)
        print(f"note: {result['note']}")
    for episode in analysis.episodes:
        print(f"episode {episode.kind}: {episode.start_s:.1f}-{episode.end_s:.1f} s")
    if reference_line is not None:
        print(reference_line)
    if output is not None:
        output.write_text(json_text(result, indent=1))
        print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
