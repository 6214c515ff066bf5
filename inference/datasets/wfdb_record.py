"""What every reader of a WFDB record for analysis shares: the checked header, the lead to
analyse, and whether the record's ``.atr`` holds beats.

The command line (``inference.analyze``, ``inference.evaluate``) and the upload
(``monitoring.uploads``) both use these, so a record is read the same way wherever it comes in.
"""

import math
from pathlib import Path

from inference.aami import aami_class

# The lead the beat models were trained on (MIT-BIH's modified lead II), then lead II itself
# (the same lead on a 12-lead record, e.g. PTB-XL); a record with neither gives its first channel.
PREFERRED_LEADS = ("MLII", "II")


def analysis_lead(sig_names) -> int:
    """Index of the channel to analyse: MLII, else II, else the first channel."""
    names = list(sig_names or [])
    for preferred in PREFERRED_LEADS:
        if preferred in names:
            return names.index(preferred)
    return 0


def read_header(record_path: str | Path):
    """The header of the WFDB record at ``record_path`` (no extension), checked.

    Raises ``ValueError`` naming the ``.hea`` file and the problem when wfdb cannot parse it or
    when its first line does not state the sampling rate as a number: wfdb silently falls back
    to 250 Hz there (``100 2 abc 650000`` reads as 250 Hz), and a record analysed at the wrong
    rate gives wrong heart rates and beats without any error.
    """
    import wfdb

    record_path = Path(record_path)
    header_name = f"{record_path.name}.hea"
    try:
        header = wfdb.rdheader(str(record_path))
    except Exception as exc:  # wfdb raises many types for a malformed header
        raise ValueError(f"{header_name} is not a valid WFDB header: {exc}") from None
    text = record_path.with_name(header_name).read_text(encoding="latin-1")
    record_line = next(
        (line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")),
        "",
    )
    fields = record_line.split()
    if len(fields) < 3:
        raise ValueError(
            f"{header_name} does not state its sampling rate: its first line is "
            f"{record_line!r} (name, number of signals, sampling rate in Hz, number of samples)"
        )
    # the field is fs[/counter frequency[(base counter value)]]
    fs_text = fields[2].split("/")[0]
    try:
        fs_hz = float(fs_text)
    except ValueError:
        fs_hz = math.nan
    if not (math.isfinite(fs_hz) and fs_hz > 0):
        raise ValueError(
            f"{header_name}: the sampling rate on its first line, {fields[2]!r}, is not a "
            "positive number of Hz"
        )
    return header


def no_beat_annotations_message(annotation_name: str) -> str:
    """Why an annotation file gives no beat reference (the upload's wording)."""
    return f"{annotation_name} holds no beat annotations (only rhythm or other marks)"


def has_beat_annotations(record_path: str | Path, annotator: str = "atr") -> bool:
    """Whether the record's annotation file holds at least one beat (vfdb's hold only rhythm
    marks: scored as beats, every detection would count as a false positive)."""
    annotation = read_annotation(record_path, annotator)
    return any(aami_class(symbol) is not None for symbol in annotation.symbol)


def read_annotation(record_path: str | Path, annotator: str = "atr"):
    """``wfdb.rdann`` of the record's annotation file; ``ValueError`` naming the file when
    wfdb cannot read it (a truncated or corrupt file raises IndexError and others there)."""
    import wfdb

    try:
        return wfdb.rdann(str(record_path), annotator)
    except Exception as exc:  # wfdb raises many types for a corrupt file
        name = f"{Path(record_path).name}.{annotator}"
        raise ValueError(f"{name} is not a readable WFDB annotation file: {exc!r}") from None
