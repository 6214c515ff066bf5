"""Pieces every evaluation command shares: choosing records, writing JSON and tables."""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from inference.aami import DS1, DS2, aami_class
from inference.datasets import data_dir
from inference.datasets.wfdb_record import (
    analysis_lead,
    check_record,
    missing_samples_message,
    mv_per_unit,
    no_beat_annotations_message,
    read_annotation,
    read_header,
    read_record_mv,
)

NAMED_SETS = {"ds1": DS1, "ds2": DS2}
ALL = "all"  # every annotated record of the folder


def data_folder(given: str | None) -> Path:
    """The database folder to evaluate: ``--data`` when given, else ``mitdb`` under the
    PhysioNet data folder (``$CARDIOSPIKE_DATA_DIR``, else ../shared/data)."""
    if given:
        return Path(given)
    try:
        return data_dir() / "mitdb"
    except FileNotFoundError as exc:
        raise SystemExit(str(exc)) from None


def mitdb_folder(given: str | None, names) -> Path:
    """``mitdb`` under the PhysioNet data folder (``--data``, else ``$CARDIOSPIKE_DATA_DIR``,
    else ../shared/data) for a training command, once it is known to hold the headers of
    ``names``: a wrong ``--data`` ends the command with one line, not a traceback minutes in."""
    try:
        folder = data_dir(given) / "mitdb"
    except FileNotFoundError as exc:
        raise SystemExit(str(exc)) from None
    missing = [name for name in names if not (folder / f"{name}.hea").is_file()]
    if missing:
        raise SystemExit(f"MIT-BIH records not found in {folder}: {', '.join(missing)}")
    return folder


def add_data_argument(parser) -> None:
    parser.add_argument(
        "--data",
        help="folder of WFDB records with annotation files, subfolders included (default: "
        "mitdb/ under $CARDIOSPIKE_DATA_DIR, else ../shared/data/mitdb)",
    )


def annotator_name(value: str) -> str:
    """``--annotator``'s value checked: a WFDB annotator name is a file extension without its
    dot. An empty value or one with a dot or a slash would end in a traceback from pathlib or
    wfdb, or look for a file that cannot exist."""
    if not value:
        raise argparse.ArgumentTypeError("an annotator name is needed, e.g. atr or qrs")
    if "." in value or "/" in value or "\\" in value:
        hint = value.strip("./\\").rsplit(".", 1)[-1]
        suggestion = f": give --annotator {hint}" if hint else ""
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an annotator name: the extension without its dot{suggestion}"
        )
    return value


def add_annotator_argument(parser) -> None:
    """``--annotator EXT``: the reference annotation files' extension (WFDB's annotator name)."""
    parser.add_argument(
        "--annotator",
        default="atr",
        type=annotator_name,
        help="extension of the reference annotation files, e.g. qrs or ecg (default: atr)",
    )


def add_lead_argument(parser) -> None:
    """``--lead NAME [NAME ...]``: the lead to analyse, by name (``record_lead``)."""
    parser.add_argument(
        "--lead",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="lead to analyse: the first of these names each record has, any case (default: "
        "MLII, else II, else the first channel); a record with none of them is refused",
    )


def record_lead(header, record: str, leads: list[str] | None = None) -> int:
    """Index of the channel to analyse in the record whose header is ``header``.

    Without ``leads``: ``analysis_lead`` (MLII, else II, else the first channel: the upload's
    rule). With ``leads`` (``--lead``): the first of those names the record has, each name
    tried in turn, exactly or in any case (``--lead ii MLII`` reads II on a record that has
    both). ``ValueError`` naming ``record`` when it
    has none of them, or when the chosen channel is not in a voltage unit (an ``ABP`` channel
    in mmHg first): read as an ECG it would be refused for its unit with no hint of a way
    out, or worse analysed.
    """
    names = [str(name) for name in header.sig_name or []]
    if not leads:
        index = analysis_lead(names)
    else:
        index = None
        for lead in leads:  # the first name the record has wins, whatever its case
            if lead in names:
                index = names.index(lead)
                break
            lowered = [name.lower() for name in names]
            if lead.lower() in lowered:
                index = lowered.index(lead.lower())
                break
        if index is None:
            raise ValueError(
                f"record {record} has no lead {' or '.join(leads)}; it has {', '.join(names)}"
            )
    units = header.units[index] if header.units else None
    if mv_per_unit(units) is None:
        raise ValueError(
            f"{record}.hea: signal {index + 1} ({names[index]}) is in {units!r}; ECG channels "
            f"must be in mV, uV or V: name the ECG lead with --lead (it has {', '.join(names)})"
        )
    return index


def read_record_lead(path: Path, leads: list[str] | None = None, header=None) -> int:
    """``record_lead`` of the record at ``path`` (its ``header`` when the caller has read it,
    else read here); a problem ends the command naming it."""
    try:
        if header is None:
            header = read_header(path)
        return record_lead(header, Path(path).name, leads)
    except ValueError as exc:
        raise SystemExit(f"{Path(path).name}: {exc}") from None


def add_records_argument(parser, help: str, required: bool = False) -> None:
    """``--records``: one or more names, repeatable (``--records 101 --records 106`` is both)."""
    parser.add_argument("--records", nargs="+", action="extend", required=required, help=help)


def selected_names(
    folder: Path, requested: list[str] | None, annotator: str = "atr", protected=()
) -> list[str]:
    """The records ``requested`` stands for, in the order given, each once; reads no file but
    the folder's listing.

    ``requested`` may name records, the sets ``ds1`` / ``ds2`` (MIT-BIH inter-patient split)
    or ``all`` (every record with a header and ``annotator`` annotations, in subfolders too:
    a record there is named by its path from ``folder``, ``p01/106``); None or empty is
    ``all``. A RECORDS file is not needed, nor read: the headers are the listing. A name
    given twice (``101 101 ds1``) is scored once: counted twice, it would weigh double in the
    gross figures. ``all`` refuses to take in the ``protected`` records
    (``evaluate beats``: DS2, the reserved test set), which must be named. Exits with a
    message naming the missing records rather than evaluating a subset silently.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"data folder {folder} not found")
    # every header under the folder: a database may keep its records in subfolders (p00/...)
    available = sorted(
        path.relative_to(folder).with_suffix("").as_posix()
        for path in folder.rglob("*.hea")
        if path.with_suffix(f".{annotator}").is_file()
    )
    names: list[str] = []
    for item in requested or [ALL]:
        if item.lower() == ALL:
            if not available:
                raise SystemExit(
                    f"no WFDB record with .{annotator} annotations in {folder}"
                    + _other_annotators_hint(folder, annotator)
                )
            # the record's own name, not its path: mitdb/100 under a parent folder is DS2's 100
            reserved = [name for name in available if record_stem(name) in set(protected)]
            if reserved:
                raise SystemExit(
                    f"'{ALL}' would take in {', '.join(reserved)} of {folder}, records of the "
                    "reserved test set (DS2): name them, or ds2, to read them"
                )
            names.extend(available)
        else:
            names.extend(NAMED_SETS.get(item.lower(), (item,)))
    names = list(dict.fromkeys(names))  # once each, in the order first given
    missing = [name for name in names if name not in available]
    if missing:
        # a record in a subfolder is named by its path: say so when the bare name is there
        in_subfolders = [path for path in available if path.rsplit("/", 1)[-1] in missing]
        hint = f" (in subfolders: {', '.join(in_subfolders)})" if in_subfolders else ""
        raise SystemExit(
            f"not found in {folder} (with .{annotator} annotations): {', '.join(missing)}"
            + hint
            + _other_annotators_hint(folder, annotator)
        )
    return names


def record_stem(name: str) -> str:
    """A record's own name, without the subfolders it is named by (``p01/106`` -> ``106``)."""
    return name.rsplit("/", 1)[-1]


def vf_channel(header, lead: int, leads: list[str] | None) -> int:
    """The channel ``evaluate rhythm`` scores VF/VFL on, in the record whose header is
    ``header`` and whose analysed lead is channel ``lead``: that lead when ``--lead`` named it
    (``leads``), else the first channel, where the VF detector was cross-validated, unless it
    is not in a voltage unit (an ``ABP`` channel first), when it is the analysed lead too.

    The one place this rule is written: the checks before any work (``record_headers``) and
    the scoring (``rhythm.evaluate_record``) must read the same channel."""
    if leads:
        return lead
    units = header.units[0] if header.units else None
    return 0 if mv_per_unit(units) is not None else lead


def _other_annotators_hint(folder: Path, annotator: str) -> str:
    """ "; its annotation files end in .qrs (--annotator qrs)" when the folder's records have
    annotation files of another extension, else "": a database annotated in ``.qrs`` files
    otherwise reads as a folder without records."""
    headers = {path.with_suffix("") for path in folder.rglob("*.hea")}
    other = sorted(
        {
            path.suffix[1:]
            for path in folder.rglob("*")
            if path.with_suffix("") in headers
            and path.suffix[1:] not in ("", "hea", "dat", "mat", "edf", annotator)
            and path.is_file()
        }
    )
    if not other:
        return ""
    given = ", ".join(f".{ext}" for ext in other)
    return f"; its records have {given} files: name one with --annotator {other[0]}"


def record_names(folder: Path, requested: list[str] | None, *args, **kwargs) -> list[str]:
    """The names of ``record_headers`` (same arguments), in order, for a command that reads
    each record's header again itself."""
    return list(record_headers(folder, requested, *args, **kwargs))


def record_headers(
    folder: Path,
    requested: list[str] | None,
    annotator: str = "atr",
    need_beats: bool = True,
    protected=(),
    gaps_refused: str | None = None,
    leads: list[str] | None = None,
    beat_symbols=None,
    with_vf_channel: bool = False,
) -> dict:
    """Records of ``folder`` that have a header and ``annotator`` annotations, chosen by
    ``requested`` (``selected_names``) and checked: their names, in order, each with its
    header (``read_header``, read once here), for the caller to pass on rather than read again.

    With ``need_beats`` (scoring beats), a record whose annotations hold no beat (no symbol
    of ``beat_symbols``; default: a symbol with an AAMI class; vfdb's hold only rhythm marks)
    has no reference: left out with a line saying so when the folder is evaluated whole,
    refused when it is named. Every chosen record is checked first: the lead to analyse
    (``record_lead`` of ``leads``: it exists and is in a voltage unit), its header against its
    signal files (``check_record``), that lead (and, with ``with_vf_channel``, the VF
    channel of ``evaluate rhythm`` too: ``vf_channel``) read in mV (``read_record_mv``:
    units, checksums; with ``gaps_refused``, the reason, no missing sample) and its
    annotation file. A bad one stops the command with its
    name and problem before any work, rather than giving figures over fewer records than
    asked or a traceback half-way. Reading the signals twice costs under a second for
    MIT-BIH's 48.
    """
    folder = Path(folder)
    names = selected_names(folder, requested, annotator, protected)
    whole_folder = not requested or {item.lower() for item in requested} == {ALL}
    headers, annotations = {}, {}
    for name in names:
        try:
            header = headers[name] = read_header(folder / name)
            lead = record_lead(header, name, leads)
            channels = [lead]
            if with_vf_channel:
                channels = sorted({vf_channel(header, lead, leads), lead})
            check_record(folder / name, channels, header)
            record = read_record_mv(folder / name, channels, header)
            annotations[name] = read_annotation(folder / name, annotator)
        except ValueError as exc:
            raise SystemExit(f"{folder}: {exc}") from None
        missing = missing_samples_message(record.p_signal, float(record.fs))
        if gaps_refused and missing:
            raise SystemExit(f"{folder}: record {name} has {missing}; {gaps_refused}")
    if not need_beats:
        return headers
    without_beats = [
        name for name in names if not holds_beats(annotations[name].symbol, beat_symbols)
    ]
    reasons = [no_beat_annotations_message(f"{name}.{annotator}") for name in without_beats]
    if not whole_folder and without_beats:
        raise SystemExit(f"no beat reference: {'; '.join(reasons)}")
    for reason in reasons:
        print(f"left out: {reason}", file=sys.stderr)
    names = [name for name in names if name not in without_beats]
    if not names:
        raise SystemExit(f"no record in {folder} has beat annotations to score against")
    return {name: headers[name] for name in names}


def holds_beats(symbols, beat_symbols=None) -> bool:
    """Whether annotation ``symbols`` hold a beat: a symbol of ``beat_symbols``, or (None) a
    symbol with an AAMI class."""
    if beat_symbols is None:
        return any(aami_class(symbol) is not None for symbol in symbols)
    return any(symbol in beat_symbols for symbol in symbols)


def finite_json(value):
    """``value`` made plain JSON: numpy scalars and arrays as Python values, NaN and infinity
    (undefined scores, e.g. Se of a class without reference beats) as None, since bare
    ``NaN`` / ``Infinity`` are not JSON and other readers refuse them."""
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    if isinstance(value, np.ndarray):
        return finite_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    elif not isinstance(value, bool | int | float | str | None) and hasattr(value, "__float__"):
        value = float(value)  # another library's scalar (a torch tensor): checked as a float
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(value, indent: int = 2) -> str:
    """``value`` as valid JSON text (``finite_json``), ending in a newline.

    ``allow_nan=False`` makes a NaN that slips past ``finite_json`` an error, not a file other
    programs cannot read.
    """
    # default=float: another library's number type (a torch scalar) as a float, as before
    return json.dumps(finite_json(value), indent=indent, allow_nan=False, default=float) + "\n"


def writable_output(json_path: str | Path | None) -> Path | None:
    """``json_path`` as a Path once it is known it can be written, checked before a long
    evaluation rather than after it; None when no output was asked for."""
    if not json_path:
        return None
    output = Path(json_path)
    existed = output.exists()
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("a"):
            pass
    except OSError as exc:
        raise SystemExit(f"cannot write {output}: {exc.strerror or exc}") from None
    if not existed:
        output.unlink()  # only a probe: leave no empty file if the command fails later
    return output


def report_output(json_path: str | Path | None) -> Path | None:
    """``writable_output`` for an evaluation's ``--json``, which also gets its table beside it
    (same name, ``.md``): a path that already ends in ``.md`` would be written twice, the table
    over the JSON, so it is refused."""
    if json_path and Path(json_path).suffix.lower() == ".md":
        raise SystemExit(
            f"--json {json_path}: the JSON's path must not end in .md; the markdown table is "
            "written beside it with that ending (give OUT.json to get OUT.json and OUT.md)"
        )
    return writable_output(json_path)


def write_report(json_path: str | Path | None, result: dict, markdown: str) -> Path | None:
    """Write ``result`` as JSON and ``markdown`` beside it (same name, ``.md``)."""
    output = report_output(json_path)
    if output is None:
        return None
    output.write_text(json_text(result))
    output.with_suffix(".md").write_text(markdown)
    print(f"wrote {output} and {output.with_suffix('.md')}")
    return output


def read_record(path: Path, channels: list[int] | None = None, header=None):
    """``read_record_mv`` (the signal in mV; ``header`` when the caller has read it) for an
    evaluation: a record that cannot be read ends the command with its name and the problem,
    not a traceback."""
    try:
        return read_record_mv(path, channels, header)
    except ValueError as exc:
        raise SystemExit(f"{Path(path).name}: {exc}") from None


def read_reference(path: Path, annotator: str = "atr"):
    """``read_annotation`` for an evaluation: one line naming the file when it is unreadable."""
    try:
        return read_annotation(path, annotator)
    except ValueError as exc:
        raise SystemExit(f"{Path(path).name}: {exc}") from None


def finite_stretches(
    signal_mv: np.ndarray, min_samples: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The stretches of ``signal_mv`` between gaps, and what is left out, as [start, end)
    sample ranges.

    A gap is a run of missing samples (NaN: WFDB's most negative value, which the project's
    own export writes where nothing was stored). The detector cannot run across one, so each
    stretch is analysed alone; a stretch shorter than ``min_samples`` (the detector's
    learning phase) is left out with the gaps. Without a gap the one stretch is the whole
    signal, and the figures are those of the whole record.
    """
    finite = np.isfinite(np.asarray(signal_mv, dtype=np.float64))
    edges = np.flatnonzero(np.diff(np.concatenate([[False], finite, [False]]).astype(np.int8)))
    runs = list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
    stretches = [(start, end) for start, end in runs if end - start >= min_samples]
    excluded, position = [], 0
    for start, end in stretches:
        if start > position:
            excluded.append((position, start))
        position = end
    if position < len(finite):
        excluded.append((position, len(finite)))
    return stretches, excluded


def in_ranges(positions: np.ndarray, ranges: list[tuple[int, int]]) -> np.ndarray:
    """Which ``positions`` (sample indices) lie in one of the [start, end) ``ranges``."""
    positions = np.asarray(positions, dtype=np.int64)
    inside = np.zeros(len(positions), dtype=bool)
    for start, end in ranges:
        inside |= (positions >= start) & (positions < end)
    return inside


def excluded_note(rows: list[dict]) -> str:
    """A line naming the records whose gaps were left out, or "" when none had any."""
    parts = [
        f"{row['record']} {row['excluded_s']:.1f} s ({row['excluded_reference_beats']} "
        "reference beats)"
        for row in rows
        if row.get("excluded_s")
    ]
    if not parts:
        return ""
    return (
        "Left out, missing signal (gaps, and stretches between gaps too short to analyse; "
        "their reference beats are not counted): " + "; ".join(parts) + "\n"
    )
