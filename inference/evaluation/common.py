"""Pieces every evaluation command shares: choosing records, writing JSON and tables."""

import json
from pathlib import Path

from inference.aami import DS1, DS2

NAMED_SETS = {"ds1": DS1, "ds2": DS2}


def record_names(folder: Path, requested: list[str] | None, annotator: str = "atr") -> list[str]:
    """Records of ``folder`` that have a header and ``annotator`` annotations.

    ``requested`` may name records or the sets ``ds1`` / ``ds2`` (MIT-BIH inter-patient
    split); empty means every annotated record in the folder. Exits with a message naming the
    missing records rather than evaluating a subset silently.
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
        return available
    names: list[str] = []
    for item in requested:
        names.extend(NAMED_SETS.get(item.lower(), (item,)))
    missing = [name for name in names if name not in available]
    if missing:
        raise SystemExit(
            f"not found in {folder} (with .{annotator} annotations): {', '.join(missing)}"
        )
    return names


def write_report(json_path: str | Path | None, result: dict, markdown: str) -> Path | None:
    """Write ``result`` as JSON and ``markdown`` beside it (same name, ``.md``)."""
    if not json_path:
        return None
    output = Path(json_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, default=float) + "\n")
    output.with_suffix(".md").write_text(markdown)
    print(f"wrote {output} and {output.with_suffix('.md')}")
    return output
