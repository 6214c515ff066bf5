"""Pieces every evaluation command shares: choosing records, writing JSON and tables."""

import json
import math
import sys
from pathlib import Path

import numpy as np

from inference.aami import DS1, DS2
from inference.datasets import data_dir
from inference.datasets.wfdb_record import (
    has_beat_annotations,
    no_beat_annotations_message,
    read_header,
)

NAMED_SETS = {"ds1": DS1, "ds2": DS2}


def data_folder(given: str | None) -> Path:
    """The database folder to evaluate: ``--data`` when given, else ``mitdb`` under the
    PhysioNet data folder (``$CARDIOSPIKE_DATA_DIR``, else ../shared/data)."""
    if given:
        return Path(given)
    try:
        return data_dir() / "mitdb"
    except FileNotFoundError as exc:
        raise SystemExit(str(exc)) from None


def add_data_argument(parser) -> None:
    parser.add_argument(
        "--data",
        help="folder of WFDB records with .atr files (default: mitdb/ under "
        "$CARDIOSPIKE_DATA_DIR, else ../shared/data/mitdb)",
    )


def record_names(
    folder: Path, requested: list[str] | None, annotator: str = "atr", need_beats: bool = True
) -> list[str]:
    """Records of ``folder`` that have a header and ``annotator`` annotations.

    ``requested`` may name records or the sets ``ds1`` / ``ds2`` (MIT-BIH inter-patient
    split); empty means every annotated record in the folder. Exits with a message naming the
    missing records rather than evaluating a subset silently.

    With ``need_beats`` (scoring beats), a record whose annotations hold no beat (vfdb's hold
    only rhythm marks) has no reference: left out with a line saying so when the folder is
    evaluated whole, refused when it is named. Every chosen header is checked first
    (``read_header``): a corrupt one stops the command with its name and problem, before any
    work, rather than giving figures over fewer records than asked.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"data folder {folder} not found")
    available = sorted(
        path.stem for path in folder.glob("*.hea") if path.with_suffix(f".{annotator}").is_file()
    )
    if not requested:
        if not available:
            raise SystemExit(f"no WFDB record with .{annotator} annotations in {folder}")
        names = available
    else:
        names = []
        for item in requested:
            names.extend(NAMED_SETS.get(item.lower(), (item,)))
        missing = [name for name in names if name not in available]
        if missing:
            raise SystemExit(
                f"not found in {folder} (with .{annotator} annotations): {', '.join(missing)}"
            )
    for name in names:
        try:
            read_header(folder / name)
        except ValueError as exc:
            raise SystemExit(f"{folder}: {exc}") from None
    if not need_beats:
        return names
    try:
        without_beats = [
            name for name in names if not has_beat_annotations(folder / name, annotator)
        ]
    except ValueError as exc:  # an annotation file wfdb cannot read
        raise SystemExit(f"{folder}: {exc}") from None
    reasons = [no_beat_annotations_message(f"{name}.{annotator}") for name in without_beats]
    if requested and without_beats:
        raise SystemExit(f"no beat reference: {'; '.join(reasons)}")
    for reason in reasons:
        print(f"left out: {reason}", file=sys.stderr)
    names = [name for name in names if name not in without_beats]
    if not names:
        raise SystemExit(f"no record in {folder} has beat annotations to score against")
    return names


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


def write_report(json_path: str | Path | None, result: dict, markdown: str) -> Path | None:
    """Write ``result`` as JSON and ``markdown`` beside it (same name, ``.md``)."""
    output = writable_output(json_path)
    if output is None:
        return None
    output.write_text(json_text(result))
    output.with_suffix(".md").write_text(markdown)
    print(f"wrote {output} and {output.with_suffix('.md')}")
    return output
