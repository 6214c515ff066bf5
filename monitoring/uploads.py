"""Parsing and storing uploaded recordings: WFDB records and the CSV formats.

Every check runs before anything is written: :func:`parse_upload` reads and validates the
whole upload into a :class:`ParsedUpload` (or raises :class:`UploadError` naming the problem
and the line, row or sample at fault), and only then :func:`store_upload` writes the
recording and its samples in one transaction. A bad file therefore never leaves a partial
recording behind.

Formats (docs/upload.md has the user's version):

- WFDB: a ``.hea`` header with the ``.dat`` file(s) it names, optionally ``.atr`` beat
  annotations of the same record (reference labels, mapped to AAMI classes). A header that
  gives a base time and date starts the recording then (``header_start``).
- CSV continuous signal: one numeric column in millivolts, or in the unit its header cell
  names (``ecg_mv``, ``ecg_uv``, ``ecg_v``), with the sampling rate given separately
  (100-2000 Hz).
- CSV beat rows, one beat per row: 187 values (Kaggle "ECG Heartbeat Categorization",
  Kachuee et al., IEEE ICHI 2018: 125 Hz, starting at the R peak, normalized 0..1,
  zero-padded) or 216 values (0.6 s at 360 Hz, R peak at value 90, millivolts), each with an
  optional last-column label (0-4 or N, S, V, F, Q).
"""

import codecs
import io
import math
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
from django.db import transaction
from django.utils import timezone

from inference.aami import AAMI_CLASSES, aami_class
from inference.beat_rows import ROW_LAYOUTS, layout_for_width
from inference.datasets.wfdb_record import (
    CSV_UNIT_CELLS,
    analysis_lead,
    check_header_signals,
    check_signal_file,
    check_units,
    csv_signal_unit,
    mv_per_unit,
    no_beat_annotations_message,
    read_header,
    sample_check_problem,
    signal_files,
)
from inference.qrs import MAX_FS_HZ as QRS_MAX_FS_HZ
from inference.qrs import MIN_DURATION_S as QRS_MIN_DURATION_S
from inference.qrs import MIN_FS_HZ as QRS_MIN_FS_HZ
from inference.signal import (
    MAX_ECG_ABS_MV,
    MIN_ECG_AMPLITUDE_MV,
    ecg_amplitude_mv,
    ecg_amplitude_problem,
    first_beyond_ecg_range,
)
from monitoring.models import (
    MAX_CHANNELS,
    AnalysisStatus,
    Patient,
    Recording,
    SampleChunk,
    UploadFormat,
)
from monitoring.review import OURS_ANNOTATOR, clock_change_around, clock_moments
from monitoring.samples import INT16_MAX, MAX_GAIN_ADC_PER_MV, MIN_GAIN_ADC_PER_MV

# The analysis sets the limits: an upload it would refuse is refused before anything is stored.
MIN_FS_HZ, MAX_FS_HZ = QRS_MIN_FS_HZ, QRS_MAX_FS_HZ
MIN_SIGNAL_S = QRS_MIN_DURATION_S
CHUNK_SAMPLES = 65_536  # frames per stored chunk: ~0.5 MB for 4 leads
# Keep quantized samples a little inside int16 so that rounding never overflows.
ADC_FULL_SCALE = 32_000
# The earliest start a WFDB header may give: ambulatory ECG began with Holter's recorder
# (1961), and PhysioNet's databases were recorded from the 1970s on. An earlier date (1900,
# a year written as 0026) is a placeholder or a typo, and every clock time would be wrong.
EARLIEST_RECORDING_DATE = date(1960, 1, 1)


# Line ends as editors and pandas' C parser count them: \r\n, \n, or a lone \r (old Mac files).
LINE_END = re.compile(r"\r\n|\r|\n")
# A line (after another) written as a whole number: no decimal point, exponent, nan or inf.
INTEGER_LINE = re.compile(r"[\r\n][ \t]*[+-]?[0-9]+[ \t]*(?=[\r\n]|\Z)")
# pandas' unnamed column header 0,1,...,n-1 is looked for up to the widest layout and a label.
MAX_INDEX_HEADER_CELLS = 1000
# The careful read takes about this many characters of lines at a time: a batch's cells as
# Python strings stay in tens of megabytes.
CAREFUL_BATCH_CHARS = 1 << 20
# What the beat-row values can be: the Kaggle rows are min-max normalized to 0..1 (values
# past the window are clipped, inference.beat_rows), window216 rows are an ECG in millivolts.
# A file in other units (or a header read as data) would be classified as something it is not.
ROW_VALUE_RANGES = {
    "kaggle187": (
        0.0,
        1.0,
        "kaggle187 rows (187 values) are normalized to 0..1; scale each beat's 10-s window "
        "to 0..1 as the Kaggle files do",
    ),
    "window216": (
        -MAX_ECG_ABS_MV,
        MAX_ECG_ABS_MV,
        f"window216 rows (216 values) are in millivolts, and an ECG stays within "
        f"{MAX_ECG_ABS_MV:g} mV; convert microvolts or ADC counts to millivolts first",
    ),
}

# Row labels: the Kaggle files' 0-4 (as integers or floats such as 0.0e+00) or the letters.
LABEL_NUMBERS = dict(enumerate(AAMI_CLASSES))

# No path separators, control characters or leading dot ("..", ".hea"); spaces and brackets
# are fine ("ecg (1).csv" is what browsers save).
SAFE_FILE_NAME = re.compile(r"^[^.\x00-\x1f\\/][^\x00-\x1f\\/]{0,200}$")


class UploadError(ValueError):
    """An upload that cannot be stored; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class ParsedUpload:
    """A fully validated upload, ready to store.

    ``adc`` holds every channel as integers (shape (n_samples, n_channels)) that fit int16;
    ``adc / gain_adc_per_mv - baseline`` gives millivolts (for Kaggle rows, their 0..1 units).
    """

    format: str
    source_name: str
    fs_hz: float
    adc: np.ndarray
    gain_adc_per_mv: float
    baseline_adc: int
    lead_names: list[str]
    analysis_lead: int
    reference: dict | None = None
    # when sample 0 was taken, from a WFDB header's base time and date; None: the file gave
    # no start, and the recording starts at its upload
    started_at: datetime | None = None

    @property
    def n_samples(self) -> int:
        return int(self.adc.shape[0])


# --- Entry points -----------------------------------------------------------------------


def parse_upload(files: Sequence[tuple[str, bytes]], fs_hz: float | None = None) -> ParsedUpload:
    """Validate an upload given as ``(file name, content)`` pairs and return it parsed.

    A ``.hea`` among the files makes it a WFDB record; otherwise exactly one ``.csv`` (or
    ``.txt``) file is expected, its kind told by its column count. ``fs_hz`` is the sampling
    rate of a one-column signal CSV (ignored otherwise: WFDB headers and the beat-row
    layouts state theirs). Raises :class:`UploadError` with a message for the user.
    """
    if not files:
        raise UploadError("no file was uploaded: choose a WFDB record (.hea + .dat) or a CSV file")
    names = [Path(name).name for name, _ in files]
    for name in names:
        # the names become files in a temporary folder and WFDB record names
        if not SAFE_FILE_NAME.match(name):
            raise UploadError(
                f"file name {_show(name)} is not allowed: it must not start with '.' or "
                "contain control characters or backslashes"
            )
    if len(set(names)) != len(names):
        raise UploadError(f"the same file name was uploaded twice: {', '.join(sorted(names))}")
    contents = {Path(name).name: data for name, data in files}
    headers = [name for name in names if name.lower().endswith(".hea")]
    if headers:
        return parse_wfdb(contents)
    if any(name.lower().endswith((".dat", ".atr")) for name in names):
        raise UploadError(
            "a WFDB record needs its .hea header file: upload the .hea together with the "
            ".dat (and optionally the .atr)"
        )
    if len(files) != 1:
        raise UploadError(
            f"{len(files)} files uploaded without a .hea header: upload one CSV file, or a "
            "WFDB record as .hea + .dat (+ .atr)"
        )
    ((name, data),) = contents.items()
    if not name.lower().endswith((".csv", ".txt")):
        raise UploadError(
            f"{name}: unsupported file type; upload a .csv file or a WFDB record (.hea + .dat)"
        )
    return parse_csv(name, data, fs_hz)


def quantize(signals_mv: np.ndarray) -> tuple[np.ndarray, float]:
    """Integer ADC values and the gain (ADC units per mV) that stores ``signals_mv`` in int16.

    The gain puts the largest absolute value near full scale (32,000 of 32,767), so the
    resolution is the best int16 allows for this signal; it is rounded to 4 significant
    digits so that it reads well. Baseline is 0.
    """
    peak = float(np.max(np.abs(signals_mv))) if signals_mv.size else 0.0
    if peak == 0.0:
        gain = 200.0  # an all-zero signal: any gain stores it exactly
    else:
        gain = min(ADC_FULL_SCALE / peak, MAX_GAIN_ADC_PER_MV)
        if gain < MIN_GAIN_ADC_PER_MV:
            # the uploads' range checks come first; this keeps any other caller in the limits
            raise UploadError(
                f"values up to {peak:g} mV are too large to store (at most "
                f"{ADC_FULL_SCALE / MIN_GAIN_ADC_PER_MV:g} mV): the file is not in millivolts"
            )
        exponent = math.floor(math.log10(gain)) - 3
        gain = math.floor(gain / 10**exponent) * 10**exponent
    adc = np.round(signals_mv * gain).astype(np.int16)
    return adc, gain


@transaction.atomic
def store_upload(patient: Patient, parsed: ParsedUpload, uploaded_by=None) -> Recording:
    """Write an upload (by the user ``uploaded_by``) as a closed Recording with its samples,
    in one transaction.

    The analysis is queued for when the transaction commits (a Celery task; run eagerly in
    the default setup), so a worker never sees a recording without its samples.
    """
    from monitoring.analysis import queue_analysis

    # One instant for both ends, the end a duration after the start: ended_at was now() taken
    # before the model's default took started_at, so a recording ended before it began.
    # Without a start in the file, the upload's moment (Recording.start_is_upload_time tells which).
    started_at = parsed.started_at or timezone.now()
    recording = Recording.objects.create(
        patient=patient,
        source=Recording.Source.UPLOAD,
        source_name=parsed.source_name[:255],
        uploaded_by=uploaded_by,
        sampling_rate_hz=parsed.fs_hz,
        gain_adc_per_mv=parsed.gain_adc_per_mv,
        baseline_adc=parsed.baseline_adc,
        n_channels=parsed.adc.shape[1],
        lead_names=parsed.lead_names,
        status=Recording.Status.CLOSED,
        started_at=started_at,
        ended_at=started_at + timedelta(seconds=parsed.n_samples / parsed.fs_hz),
        upload_format=parsed.format,
        analysis_lead=parsed.analysis_lead,
        analysis_status=AnalysisStatus.PENDING,
        reference_annotations=parsed.reference,
        next_seq=-(-parsed.n_samples // CHUNK_SAMPLES),
        end_sample=parsed.n_samples,
        stored_samples=parsed.n_samples,
    )
    starts = range(0, parsed.n_samples, CHUNK_SAMPLES)
    chunks = [
        SampleChunk.from_samples(recording, seq, start, parsed.adc[start : start + CHUNK_SAMPLES])
        for seq, start in enumerate(starts)
    ]
    SampleChunk.objects.bulk_create(chunks)
    transaction.on_commit(lambda: queue_analysis(recording.pk))
    return recording


# --- CSV --------------------------------------------------------------------------------


def _decode_text(name: str, data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UploadError(
            f"{name} is not a text CSV file (byte {exc.start} is not UTF-8 text)"
        ) from None
    # The decoded text, not the bytes: a byte-order mark or a no-break space alone is not
    # blank as bytes, but leaves no line to read.
    if not text or text.isspace():
        raise UploadError(f"{name} is empty")
    return text


def _text_lines(data: bytes) -> io.TextIOWrapper:
    """The file's lines, read lazily; CRLF and a lone CR end a line as LF does (``LINE_END``)."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline=None)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _first_lines(text: str, count: int) -> list[tuple[int, int, int, str]]:
    """``(line number, start, end, stripped text)`` of the first ``count`` non-blank lines;
    start and end are offsets in ``text``."""
    found, offset, number = [], 0, 0
    while offset < len(text) and len(found) < count:
        match = LINE_END.search(text, offset)
        end = match.start() if match else len(text)
        number += 1
        line = text[offset:end].strip()
        if line:
            found.append((number, offset, end, line))
        offset = match.end() if match else len(text)
    return found


def _starts_with_header(text: str, first: list[tuple[int, int, int, str]]) -> bool:
    """Whether the first non-blank line is a header (docs/upload.md, "Header line").

    A header is a line whose first cell is not a number (column names), or the column
    numbers pandas writes for unnamed columns (``to_csv(index=False)``): ``0,1,...,n-1``, and
    for one column a bare ``0`` when no other line is written as an integer. A signal that
    truly starts at 0 mV written by pandas or numpy reads ``0.0``, never ``0``; a file written
    in whole numbers keeps its ``0`` as data.
    """
    _, _, end, line = first[0]
    if not _is_number(line.split(",", 1)[0].strip()):
        return True
    n_cells = line.count(",") + 1
    if 1 < n_cells <= MAX_INDEX_HEADER_CELLS:
        if line.replace(" ", "") == ",".join(str(i) for i in range(n_cells)):
            return True
    if line == "0" and len(first) > 1 and "," not in first[1][3]:
        return INTEGER_LINE.search(text, end) is None
    return False


# A tab between two cells (not whitespace next to a comma): a tab-separated file.
TAB_SEPARATED = re.compile(r"[^\s,]\t+[^\s,]")


def _separator_problem(name: str, first: list[tuple[int, int, int, str]]) -> str | None:
    """What to say about a file separated by semicolons or tabs, or None.

    Read as comma-separated, such a file got a message about something else: a header
    ``ecg_mv;`` was read as naming the unit ``mv;``. It is refused, not read: spreadsheets
    write ``;`` where the decimal separator is a comma (``0,25``), and guessing which comma
    is which could read numbers wrong without a word.
    """
    for line_number, _, _, line in first:
        if ";" in line:
            shown = "';' (semicolons)"
        elif TAB_SEPARATED.search(line):
            shown = "tabs"
        else:
            continue
        return (
            f"{name} line {line_number} is separated by {shown}: CardioSpike reads "
            "comma-separated CSV with a decimal point (0.25, not 0,25); save it as "
            "comma-separated CSV (CSV UTF-8) and upload it again"
        )
    return None


def _refuse_our_csv_export(name: str, header_line: tuple[int, int, int, str]) -> None:
    """Refuse our own signal CSV export (``monitoring.review.signal_csv_lines``: ``time_s,
    sample, <lead>_mv, ..., lead_off``) naming it: it was refused as "line 2 has 4 values",
    which says nothing of why. Reading it would take a lead to choose, the rate from
    ``time_s`` (6 decimals) and its gaps' blank cells (docs/review.md says which exports
    upload again)."""
    cells = [cell.strip().strip("'").lower() for cell in header_line[3].split(",")]
    if cells[:2] != ["time_s", "sample"]:
        return
    example = f" (such as {header_line[3].split(',')[2].strip()})" if len(cells) > 2 else ""
    raise UploadError(
        f"{name} is a CardioSpike signal CSV export (time_s, sample, a column per lead, "
        "lead_off), which does not upload again as it is: upload the recording's WFDB export "
        f"(.hea + .dat, and its .atr), or one lead's column alone{example} as a one-column "
        "signal CSV with its sampling rate"
    )


def parse_csv(name: str, data: bytes, fs_hz: float | None) -> ParsedUpload:
    """A one-column signal CSV or a beat-per-row CSV; told apart by the first data line."""
    text = _decode_text(name, data)
    first = _first_lines(text, 2)
    problem = _separator_problem(name, first)
    if problem is not None:
        raise UploadError(problem)
    header = _starts_with_header(text, first)
    if header:
        _refuse_our_csv_export(name, first[0])
    if header and len(first) < 2:
        raise UploadError(f"{name} has a header line but no data")
    line_number, start, _, line = first[1] if header else first[0]
    # where the data starts in the bytes (after a byte-order mark, and the header)
    data_offset = len(text[:start].encode()) + (3 if data.startswith(codecs.BOM_UTF8) else 0)
    # The tables are read from the bytes: a 60 MB file is never held as text twice, nor as
    # millions of Python strings.
    del text
    # count, not split: split would make a string per value of a (possibly huge) line
    n_columns = line.count(",") + 1
    unit = None
    if n_columns == 1:
        layout, labelled = None, False
        fs_hz = check_fs(fs_hz, "the sampling rate of the signal CSV (fs_hz)")
        if header:
            header_line, _, _, header_text = first[0]
            try:
                unit = csv_signal_unit(header_text.split(",", 1)[0])
            except ValueError as exc:
                raise UploadError(f"{name} line {header_line}: {exc}") from None
    else:
        try:
            layout, labelled = layout_for_width(n_columns)
        except ValueError:
            raise UploadError(
                f"{name} line {line_number} has {n_columns} values: a signal CSV has one column "
                "(mV); a beat-per-row CSV has 187 values (Kaggle layout) or 216 values (0.6 s at "
                "360 Hz), each optionally followed by a label column"
            ) from None
    # The fast path reads well-formed files with pandas' C parser (a 60 MB file in seconds);
    # anything it does not take cleanly is read again line by line, which names the problem.
    table = _fast_table(data, data_offset, n_columns, labelled)
    if table is None:
        table = _careful_table(name, data, header, n_columns, labelled)
    values, labels = table

    def line_of_row(row: int) -> int:
        return _line_of_row(data, header, row)

    if layout is None:
        return _signal_upload(name, values[:, 0], fs_hz, line_of_row, unit)
    return _rows_upload(name, values, layout, labels, line_of_row)


def _fast_table(data: bytes, data_offset: int, n_columns: int, labelled: bool):
    """``(values, labels)`` of a clean table from byte ``data_offset`` on, or None when
    anything looks off."""
    import pandas as pd

    n_values = n_columns - int(labelled)
    dtypes = {column: np.float64 for column in range(n_values)}
    if labelled:
        dtypes[n_values] = str
    # The bytes themselves, not a copy: a StringIO of the text held it again at 4 bytes a
    # character. pandas reads from where the stream stands, past the header; its own header
    # handling would drop the extra cells of rows wider than a wide header, without a word.
    stream = io.BytesIO(data)
    stream.seek(data_offset)
    try:
        frame = pd.read_csv(
            stream,
            encoding="utf-8-sig",
            header=None,
            engine="c",
            dtype=dtypes,
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=True,
        )
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    if frame.shape[1] != n_columns or frame.shape[0] == 0:
        return None
    values = frame.iloc[:, :n_values].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        return None
    labels = None
    if labelled:
        labels = [_parse_label(cell) if isinstance(cell, str) else None for cell in frame[n_values]]
        if any(label is None for label in labels):
            return None
    return values, labels


def _careful_table(name: str, data: bytes, header: bool, n_columns: int, labelled: bool):
    """The table read again a megabyte of lines at a time: the first problem raises an error
    naming its line (1-based, as editors show it). Only numbers are kept from one batch to
    the next: the cells of a whole 54 MB file as Python strings took 2.4 GB and 20 s."""
    signal = n_columns == 1
    n_values = n_columns - int(labelled)
    blocks, labels = [], []
    line_number, row_number, header_left = 0, 0, header
    lines = _text_lines(data)
    while batch := lines.readlines(CAREFUL_BATCH_CHARS):
        texts = list(map(str.strip, batch))
        numbers = list(range(line_number + 1, line_number + 1 + len(batch)))
        line_number += len(batch)
        if header_left or not all(texts):
            # blank lines and the header are not rows, but they count as lines
            kept = [(number, text) for number, text in zip(numbers, texts, strict=True) if text]
            if header_left and kept:
                kept, header_left = kept[1:], False
            numbers, texts = [number for number, _ in kept], [text for _, text in kept]
        first_row, row_number = row_number + 1, row_number + len(texts)
        # A signal's line stays one string: a list per line made the cyclic garbage collector
        # walk millions of them.
        rows = texts if signal else [text.split(",") for text in texts]
        problem = _first_shape_problem(name, rows, numbers, first_row, n_columns, labelled)
        if problem:
            index, message = problem
            # a bad number on an earlier line is the first problem
            earlier = [cells[:-1] for cells in rows[:index]] if labelled else rows[:index]
            _to_floats(name, earlier, numbers, first_row, signal)
            raise UploadError(message)
        if labelled:
            labels.extend(_parse_label(row.pop()) for row in rows)
        if rows:
            blocks.append(_to_floats(name, rows, numbers, first_row, signal))
    values = np.concatenate(blocks) if blocks else np.zeros((0, n_values))
    return values, labels if labelled else None


def _first_shape_problem(
    name: str, rows: list, numbers: list[int], first_row: int, n_columns: int, labelled: bool
) -> tuple[int, str] | None:
    """``(index in rows, message)`` of the first row with the wrong width or label, or None."""
    if n_columns == 1:
        if "," not in "\n".join(rows):  # one C-level scan of the batch
            return None
        index = next(index for index, text in enumerate(rows) if "," in text)
        width = rows[index].count(",") + 1
        return index, _width_problem(name, numbers[index], first_row + index, width, 1, False)
    for index, cells in enumerate(rows):
        line_number, row_number = numbers[index], first_row + index
        if len(cells) != n_columns:
            return index, _width_problem(
                name, line_number, row_number, len(cells), n_columns, labelled
            )
        if labelled and _parse_label(cells[-1]) is None:
            return index, (
                f"{name} line {line_number} (row {row_number}): label "
                f"{_show(cells[-1].strip())} is not one of 0-4 or N, S, V, F, Q"
            )
    return None


def _width_problem(
    name: str, line_number: int, row_number: int, width: int, n_columns: int, labelled: bool
) -> str:
    if n_columns == 1:
        return (
            f"{name} line {line_number} has {width} columns: a signal CSV has one column of "
            "millivolts on every line"
        )
    return (
        f"{name} line {line_number} (row {row_number}) has {width} values; the rows above have "
        f"{n_columns} ({n_columns - int(labelled)} samples{' + a label' if labelled else ''})"
    )


def _to_floats(name: str, rows: list, numbered: list[int], first_row: int, signal: bool):
    """``rows`` (a signal's lines, or each row's cells) as float64 of shape (rows, values); on
    failure name the first bad cell, its line and value."""

    def where(row: int, column: int) -> str:
        if signal:
            return f"line {numbered[row]}"
        return f"line {numbered[row]} (row {first_row + row}, value {column + 1})"

    if not rows:
        return np.zeros((0, 1))
    try:
        values = np.array(rows, dtype=np.float64).reshape(len(rows), -1)
    except ValueError:
        values = None
    if values is not None and np.isfinite(values).all():
        return values
    # something is wrong in this batch (a megabyte at most): find the first bad cell in order
    for row, cells in enumerate(rows):
        for column, cell in enumerate([cells] if signal else cells):
            if not _is_number(cell):
                raise UploadError(f"{name} {where(row, column)}: {_show(cell)} is not a number")
            if not math.isfinite(float(cell)):
                raise UploadError(
                    f"{name} {where(row, column)}: {_show(cell)} is not a finite number "
                    "(NaN and infinity are not allowed)"
                )
    raise AssertionError("unreachable: the conversion failed but every cell is a finite number")


def _line_of_row(data: bytes, header: bool, row: int) -> int:
    """The line number (1-based, as editors show it) of data row ``row`` (0-based).

    Counted again, only for an error message: the fast read does not keep line numbers.
    """
    skip = row + int(header)  # non-blank lines before the row
    for number, line in enumerate(_text_lines(data), 1):
        if line.strip():
            if skip == 0:
                return number
            skip -= 1
    raise AssertionError(f"unreachable: data row {row} is past the end of the file")


def _show(cell) -> str:
    """A cell quoted for an error message, cut short: the file may hold anything."""
    text = str(cell)
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _signal_upload(
    name: str, values: np.ndarray, fs_hz: float, line_of_row, unit: tuple[str, float] | None
) -> ParsedUpload:
    """A signal CSV's values, in its header's ``unit`` (``(name, mV per unit)``; None: mV)."""
    duration_s = len(values) / fs_hz
    if duration_s < MIN_SIGNAL_S:
        raise UploadError(
            f"{name} holds {len(values)} samples, {duration_s:.2f} s at {fs_hz:g} Hz: upload "
            f"at least {MIN_SIGNAL_S:g} s of signal"
        )
    values_mv = values if unit is None else values * unit[1]
    # The amplitude first: it names the likely unit (volts, microvolts) from the whole signal;
    # the sample limit then catches a stray value (ADC counts, a second header) by its line.
    problem = ecg_amplitude_problem(values_mv, f"{name}: the signal")
    if problem is not None:
        if unit is None:
            raise UploadError(
                f"{problem}; a signal CSV is in millivolts unless its header line names the "
                f"unit ({CSV_UNIT_CELLS}): convert it first, or name its unit"
            )
        raise UploadError(
            f"{problem}; the values were read in {unit[0]}, as the header line says: check "
            "that unit"
        )
    sample = first_beyond_ecg_range(values_mv)
    if sample is not None:
        if unit is None:
            raise UploadError(
                f"{name} line {line_of_row(sample)} (sample {sample + 1}) is "
                f"{values[sample]:g}: a signal CSV is in millivolts (unless its header line "
                f"names the unit: {CSV_UNIT_CELLS}), and an ECG stays within "
                f"{MAX_ECG_ABS_MV:g} mV; convert microvolts or ADC counts to millivolts first"
            )
        raise UploadError(
            f"{name} line {line_of_row(sample)} (sample {sample + 1}) is {values[sample]:g} "
            f"{unit[0]} ({values_mv[sample]:g} mV; the header line gives the unit): an ECG "
            f"stays within {MAX_ECG_ABS_MV:g} mV; check that unit"
        )
    adc, gain = quantize(values_mv[:, np.newaxis])
    return ParsedUpload(
        format=UploadFormat.CSV_SIGNAL,
        source_name=name,
        fs_hz=fs_hz,
        adc=adc,
        gain_adc_per_mv=gain,
        baseline_adc=0,
        lead_names=["ECG"],
        analysis_lead=0,
    )


def _parse_label(cell: str) -> str | None:
    cell = cell.strip()
    if cell.upper() in AAMI_CLASSES:
        return cell.upper()
    try:
        number = float(cell)
    except ValueError:
        return None
    if number.is_integer() and int(number) in LABEL_NUMBERS:
        return LABEL_NUMBERS[int(number)]
    return None


def _rows_upload(
    name: str, values: np.ndarray, layout: str, labels: list[str] | None, line_of_row
) -> ParsedUpload:
    spec = ROW_LAYOUTS[layout]
    low, high, meaning = ROW_VALUE_RANGES[layout]
    beyond = np.flatnonzero(((values < low) | (values > high)).ravel())
    if len(beyond):
        row, column = np.unravel_index(int(beyond[0]), values.shape)
        raise UploadError(
            f"{name} line {line_of_row(int(row))} (row {row + 1}, value {column + 1}) is "
            f"{values[row, column]:g}: {meaning}"
        )
    units = "mV" if spec.units == "mV" else "0..1"
    adc, gain = quantize(values.reshape(-1, 1))
    return ParsedUpload(
        format=layout,
        source_name=name,
        fs_hz=spec.fs_hz,
        adc=adc,
        gain_adc_per_mv=gain,
        baseline_adc=0,
        lead_names=[f"beat rows ({units})"],
        analysis_lead=0,
        reference={"labels": labels} if labels is not None else None,
    )


def check_fs(fs_hz, what: str = "the sampling rate") -> float:
    """``fs_hz`` as a float in the accepted range, or :class:`UploadError` saying why not."""
    if fs_hz is None or (isinstance(fs_hz, str) and not fs_hz.strip()):
        raise UploadError(
            f"{what} is missing: a one-column CSV is a continuous signal, so give its "
            f"sampling rate in Hz ({MIN_FS_HZ:g}-{MAX_FS_HZ:g})"
        )
    try:
        value = float(fs_hz)
    except (TypeError, ValueError):
        raise UploadError(f"{what} must be a number of Hz, got {fs_hz!r}") from None
    if not MIN_FS_HZ <= value <= MAX_FS_HZ:  # also refuses NaN
        raise UploadError(
            f"{what} is {value:g} Hz: it must be between {MIN_FS_HZ:g} and {MAX_FS_HZ:g} Hz"
        )
    return value


# --- WFDB -------------------------------------------------------------------------------


def parse_wfdb(contents: dict[str, bytes]) -> ParsedUpload:
    """A WFDB record from its uploaded files, read with wfdb from a temporary folder."""
    import wfdb

    headers = [name for name in contents if name.lower().endswith(".hea")]
    if len(headers) != 1:
        raise UploadError(f"upload one WFDB record at a time; got headers {', '.join(headers)}")
    header_name = headers[0]
    record_name = header_name[: -len(".hea")]
    for name, data in contents.items():
        if not data:
            raise UploadError(f"{name} is empty")
    with tempfile.TemporaryDirectory(prefix="cardiospike-upload-") as folder:
        # wfdb opens <record>.hea, the signal files spelled as the header names them and
        # <record>.atr: the files are written under those names, whatever the case of the
        # uploaded ones (208.HEA, 208.DAT), so that wfdb finds them on any file system.
        (Path(folder) / f"{record_name}.hea").write_bytes(contents[header_name])
        path = os.path.join(folder, record_name)
        try:
            # the command line's checks too (inference.datasets.wfdb_record): the sampling
            # rate (wfdb reads an unreadable one as 250 Hz), the signal names as UTF-8, the
            # signal lines, units, and each signal file's format and size
            header = read_header(path)
            check_header_signals(header, header_name)
            _check_header(header, header_name, record_name, contents)
        except UploadError:
            raise
        except ValueError as exc:
            raise UploadError(_without_folder(exc, folder)) from None
        uploaded = {name: _uploaded_name(contents, name) for name in set(header.file_name)}
        for file_name, uploaded_name in uploaded.items():
            (Path(folder) / file_name).write_bytes(contents[uploaded_name])
        try:
            record = wfdb.rdrecord(path, physical=False, return_res=32)
        except Exception as exc:
            raise UploadError(
                f"could not read record {record_name}: {_without_folder(exc, folder)}"
            ) from None
        # wfdb drops a header's non-ASCII bytes: the names as read_header read them (UTF-8)
        record.sig_name = list(header.sig_name)
        problem = sample_check_problem(record, path, header_name)
        if problem is not None:
            raise UploadError(problem)
        reference = None
        annotation_names = [name for name in contents if name.lower().endswith(".atr")]
        if annotation_names:
            reference = _read_annotations(
                folder, annotation_names, record_name, header.fs, header.sig_len, contents
            )
    unexpected = [
        name
        for name in contents
        if name != header_name
        and name not in set(uploaded.values())
        and not name.lower().endswith(".atr")
        # our own labels in an export of ours (monitoring.review.OURS_ANNOTATOR): the
        # analysis labels the record afresh, so they are left out, and an export uploads as is
        and not name.lower().endswith(f".{OURS_ANNOTATOR}")
    ]
    if unexpected:
        raise UploadError(
            f"{', '.join(unexpected)}: not part of record {record_name} (its header names "
            f"{', '.join(sorted(set(header.file_name)))})"
        )
    adc, gain, baseline = _wfdb_samples(record, header_name)
    lead_names = [name or f"ch{i + 1}" for i, name in enumerate(record.sig_name)]
    lead_index = analysis_lead(lead_names)
    _check_amplitude(adc, gain, baseline, lead_names, lead_index, header_name)
    # last: what is wrong with the signal itself comes first (a device recording's export with
    # gaps is refused for its gaps, whenever it started)
    started_at = header_start(header, header_name, contents[header_name])
    return ParsedUpload(
        format=UploadFormat.WFDB,
        source_name=record_name,
        fs_hz=float(header.fs),
        adc=adc,
        gain_adc_per_mv=gain,
        baseline_adc=baseline,
        lead_names=lead_names,
        analysis_lead=lead_index,
        reference=reference,
        started_at=started_at,
    )


def header_start(header, header_name: str, data: bytes, now=None) -> datetime | None:
    """When the record's sample 0 was taken, from its header's base time and date; None when
    the header gives no date (a time alone, or neither): the recording then starts at its
    upload, as before.

    WFDB times are local wall-clock times with no zone: they are read in the server's
    ``TIME_ZONE``. Except when the header carries our export's comment ``started_at <ISO 8601
    with its offset>`` (``monitoring.review.write_wfdb``) for that very date and time: its
    offset says which clock it is, so that an exported record uploaded again keeps its start
    on any server, and in the hour a clock change repeats. A time the clocks of the zone
    skipped, a start before ``EARLIEST_RECORDING_DATE`` (1900: a placeholder) or a recording
    that would end after ``now`` (the upload) is refused naming the header's line: every clock
    time of the recording would be wrong. One that the clocks showed twice (put back) is the
    first of the two.
    """
    if header.base_date is None or header.base_time is None:
        return None
    now = now or timezone.now()
    line_number, time_text, date_text = _record_line_times(data)
    where = f"{header_name} line {line_number}"
    written = f"its base time and date ({time_text} {date_text})"
    leave_out = (
        "; or delete the base time and date from that line to have the recording start at "
        "the upload time"
    )
    if time_text.count(":") != 2:
        # WFDB reads 08:00 as minutes and seconds: 8 minutes past midnight, not 8 o'clock
        raise UploadError(
            f"{where}: the base time {time_text!r} has no hours: WFDB reads it as "
            f"{header.base_time:%H:%M:%S} (minutes:seconds past midnight); write the time of "
            f"day as HH:MM:SS (such as 08:00:00){leave_out}"
        )
    wall = datetime.combine(header.base_date, header.base_time)
    if header.base_date < EARLIEST_RECORDING_DATE:
        raise UploadError(
            f"{where}: {written} put the recording's start in {header.base_date.year}, "
            f"before {EARLIEST_RECORDING_DATE.year}, when no ambulatory ECG was recorded: "
            f"the date is a placeholder or a typo; fix it (dates are DD/MM/YYYY){leave_out}"
        )
    zone = timezone.get_default_timezone()
    start = _exported_start(header.comments, wall)
    if start is None:
        try:
            moments = clock_moments(wall, zone)
        except OverflowError:  # a year such as 9999: past the end of the calendar in UTC
            moments = [datetime.max.replace(tzinfo=UTC)]
        if not moments:
            before, after = clock_change_around(wall, zone)
            raise UploadError(
                f"{where}: {written} did not happen in {zone}, the server's time zone, in "
                f"which WFDB times are read: on {wall:%Y-%m-%d} the clocks went from "
                f"{before:%H:%M %Z} to {after:%H:%M %Z}; fix the time{leave_out}"
            )
        start = moments[0]
    duration = timedelta(seconds=header.sig_len / header.fs)
    if start > now - duration:
        # the end, not the start: a recording cannot go on after it was uploaded
        raise UploadError(
            f"{where}: {written} put the recording's start at {wall:%Y-%m-%d %H:%M:%S} "
            f"({zone}, the server's time zone, in which WFDB times are read) and its end, "
            f"{duration.total_seconds() / 60:.1f} min later, after the upload "
            f"({timezone.localtime(now, zone):%Y-%m-%d %H:%M:%S %Z}): a recording cannot end "
            f"after it is uploaded. Fix the date or time (dates are DD/MM/YYYY){leave_out}"
        )
    return start.astimezone(UTC)


def _record_line_times(data: bytes) -> tuple[int, str, str]:
    """The header's record line number (1-based; comment lines may come before it) and its
    base time and date as written, read with wfdb's own pattern of that line."""
    from wfdb.io.header import rx_record

    for number, line in enumerate(LINE_END.split(data.decode("latin-1")), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            fields = rx_record.match(line)
            return number, fields["base_time"], fields["base_date"]
    raise AssertionError("read_header found the record line")  # pragma: no cover


def _exported_start(comments, wall: datetime) -> datetime | None:
    """The moment our WFDB export's comment ``started_at <ISO 8601 with offset>`` gives, when
    its wall clock is the header's base date and time (the export writes both from the same
    start); None otherwise: a header edited since, or not ours, is read in TIME_ZONE."""
    for comment in comments or []:
        key, _, value = comment.strip().partition(" ")
        if key != "started_at":
            continue
        try:
            stated = datetime.fromisoformat(value.strip())
        except ValueError:
            continue
        if stated.tzinfo is not None and stated.replace(tzinfo=None) == wall:
            return stated
    return None


def _check_header(header, header_name: str, record_name: str, contents: dict) -> None:
    """The upload's own checks of a header that ``check_header_signals`` passed, and its
    signal files against it (``signal_files``, ``check_signal_file``: the command line's
    checks). ``UploadError``, or ``ValueError`` from the shared checks."""
    if header.record_name != record_name:
        raise UploadError(
            f"{header_name} describes record {header.record_name!r}; name the header "
            f"{header.record_name}.hea or fix its first line"
        )
    n_sig = header.n_sig
    if n_sig > MAX_CHANNELS:
        raise UploadError(f"{header_name} has {n_sig} signals; at most {MAX_CHANNELS} are stored")
    for index, name in enumerate(header.sig_name):
        # stored as the lead's name (JSON): PostgreSQL refuses a NUL in it (a 500), and no
        # lead is named with control characters (C0, DEL or, now that names are UTF-8, C1)
        if name and re.search(r"[\x00-\x1f\x7f-\x9f]", name):
            raise UploadError(
                f"{header_name}: the name of signal {index + 1} ({name!r}) holds a control "
                "character"
            )
    check_fs(header.fs, f"{header_name}: the sampling rate")
    if header.sig_len / header.fs < MIN_SIGNAL_S:
        raise UploadError(
            f"{header_name}: {header.sig_len} samples at {header.fs:g} Hz is "
            f"{header.sig_len / header.fs:.2f} s; upload at least {MIN_SIGNAL_S:g} s"
        )
    # every channel is stored, so every channel must be a voltage
    check_units(header, header_name, range(n_sig))
    for file_name, indices in signal_files(header, header_name).items():
        uploaded_name = _uploaded_name(contents, file_name)
        if uploaded_name is None:
            raise UploadError(
                f"missing {file_name}: {header_name} stores signal(s) "
                f"{', '.join(str(i + 1) for i in indices)} in it; upload it with the header"
            )
        # no FLAC (508, 516, 524), as before: its size says nothing of its samples, so the
        # size check, which catches a cut or padded file, cannot run
        check_signal_file(
            header, header_name, file_name, len(contents[uploaded_name]), compressed_ok=False
        )


def _uploaded_name(contents: dict[str, bytes], wanted: str) -> str | None:
    """The uploaded file a header names: that very name, else the one uploaded name that
    differs from it in case only (208.DAT for 208.dat), else None."""
    if wanted in contents:
        return wanted
    matches = [name for name in contents if name.lower() == wanted.lower()]
    return matches[0] if len(matches) == 1 else None


def _without_folder(exc: Exception, folder: str) -> str:
    """wfdb's error text without the server's temporary folder: a user needs the file's name,
    and the server's paths are nobody's business."""
    return str(exc).replace(folder + os.sep, "").replace(folder, "")


def _wfdb_samples(record, header_name: str) -> tuple[np.ndarray, float, int]:
    """All channels as int16 ADC values with one gain and baseline for the recording.

    When every channel shares a gain, baseline and voltage unit (MIT-BIH, PTB-XL), the
    file's own integers are kept: the upload is stored losslessly and can be written back
    as the same WFDB record. Otherwise the channels are converted to mV and re-quantized.
    """
    digital = np.asarray(record.d_signal, dtype=np.int64)
    if digital.ndim == 1:
        digital = digital[:, np.newaxis]
    # WFDB marks a missing sample with the most negative value of its format
    invalid = [
        (channel, np.flatnonzero(digital[:, channel] == marker))
        for channel, marker in enumerate(_invalid_values(record))
        if marker is not None
    ]
    for channel, where in invalid:
        if len(where):
            raise UploadError(
                f"{header_name}: signal {channel + 1} ({record.sig_name[channel]}) has "
                f"{len(where)} missing samples (first at sample {int(where[0])}, the value "
                f"{_invalid_values(record)[channel]} that WFDB reads as missing; a CardioSpike "
                "WFDB export writes a device recording's gaps so); an upload cannot hold "
                "gaps: fill or cut them before uploading"
            )
    scales = [mv_per_unit(units) for units in (record.units or [])] or [1.0] * digital.shape[1]
    gains = [float(g) / scale for g, scale in zip(record.adc_gain, scales, strict=True)]
    baselines = [int(b) for b in record.baseline]
    if any(g <= 0 for g in gains):
        raise UploadError(f"{header_name}: every signal needs a positive ADC gain")
    fits = digital.min() >= -INT16_MAX - 1 and digital.max() <= INT16_MAX
    same = len(set(gains)) == 1 and len(set(baselines)) == 1
    if same and fits and MIN_GAIN_ADC_PER_MV <= gains[0] <= MAX_GAIN_ADC_PER_MV:
        return digital.astype(np.int16), gains[0], baselines[0]
    millivolts = (digital - np.asarray(baselines)) / np.asarray(gains)
    adc, gain = quantize(millivolts)
    return adc, gain, 0


def _check_amplitude(
    adc: np.ndarray,
    gain_adc_per_mv: float,
    baseline_adc: int,
    lead_names: list[str],
    lead_index: int,
    header_name: str,
) -> None:
    """Refuse a record whose analysed lead, in the header's units and gain, cannot be an ECG
    in millivolts (``inference.signal.ecg_amplitude_problem``), or has a sample beyond
    ``MAX_ECG_ABS_MV`` (the signal CSV's limit).

    A wrong unit or gain in a header scales every channel alike; an analysed lead that is
    tiny beside another channel of ECG size is a lead that was off, which may be real: it
    is stored, and the analysis says it found no beats.
    """

    def channel_mv(channel: int) -> np.ndarray:
        # one channel at a time: all of a 64 MB upload as float64 would take 256 MB
        return (adc[:, channel].astype(np.float64) - baseline_adc) / gain_adc_per_mv

    what = f"{header_name}: signal {lead_index + 1} ({lead_names[lead_index]})"
    lead_mv = channel_mv(lead_index)
    problem = ecg_amplitude_problem(lead_mv, what)
    if problem is None:
        # the signal CSV's sample limit, so that one signal gets one answer in either format
        sample = first_beyond_ecg_range(lead_mv)
        if sample is not None:
            raise UploadError(
                f"{what} is {lead_mv[sample]:g} mV at sample {sample}: no ECG in millivolts "
                f"reaches {MAX_ECG_ABS_MV:g} mV; check the header's units and gain (ADC units "
                "per unit) for this signal"
            )
        return
    if ecg_amplitude_mv(lead_mv) < MIN_ECG_AMPLITUDE_MV:
        for channel in range(adc.shape[1]):
            other_mv = channel_mv(channel)
            if (
                channel != lead_index
                and ecg_amplitude_mv(other_mv) >= MIN_ECG_AMPLITUDE_MV
                and ecg_amplitude_problem(other_mv) is None
            ):
                return
    raise UploadError(
        f"{problem}; check the header's units and gain (ADC units per unit) for this signal"
    )


def _invalid_values(record) -> list[int]:
    # wfdb's own table of the sample value that means "missing" in each format
    from wfdb.io._signal import INVALID_SAMPLE_VALUE

    return [INVALID_SAMPLE_VALUE.get(fmt) for fmt in record.fmt]


# WFDB annotation files (MIT format, PhysioNet's annot(5)): little-endian 16-bit words, the
# top 6 bits a code, the low 10 a number. Code 0 with number 0 ends the file; SKIP (59) is
# followed by a 4-byte interval and AUX (63) by its number of bytes of text, padded to even.
ANNOTATION_SKIP_CODE, ANNOTATION_AUX_CODE = 59, 63


def annotation_file_problem(name: str, data: bytes) -> str | None:
    """Why ``data`` is not a whole WFDB annotation file, or None.

    wfdb.rdann reads whatever words it finds and never checks for the end-of-file marker,
    so a cut file reads as the annotations before the cut, without a word: the first 100
    bytes of MIT-BIH 119.atr gave 37 beats of 1987, and the agreement then counted every
    later beat we found as extra (+P 0.019), which read as a broken detector. The words are
    walked here as the format lays them out, and the marker must end the file. Every .atr of
    mitdb, nstdb and vfdb in the data folder (75 files) and every file wfdb.wrann writes
    (our exports) ends so.
    """
    position = 0
    while position + 2 <= len(data):
        word = data[position] | (data[position + 1] << 8)
        code, number = word >> 10, word & 0x3FF
        position += 2
        if code == 0 and number == 0:
            if not any(data[position:]):
                return None  # the end (zero padding after it, as some writers add, is harmless)
            return (
                f"{name} is not a valid WFDB annotation file: {len(data) - position} bytes "
                f"follow its end-of-file marker (at byte {position - 2}); the file is damaged "
                "or two files were joined"
            )
        if code == ANNOTATION_SKIP_CODE:
            position += 4
        elif code == ANNOTATION_AUX_CODE:
            position += number + (number & 1)
    return (
        f"{name} is cut short: it ends without the end-of-file marker (two zero bytes) that "
        f"ends every WFDB annotation file ({len(data)} bytes read); its annotations would stop "
        "where the file was cut. Upload the whole file, or the record without it"
    )


def _read_annotations(
    folder: str,
    annotation_names: list[str],
    record_name: str,
    fs: float,
    sig_len: int,
    contents: dict[str, bytes],
) -> dict:
    import wfdb

    if len(annotation_names) > 1:
        raise UploadError(f"upload one annotation file; got {', '.join(annotation_names)}")
    name = annotation_names[0]
    if name[: -len(".atr")] != record_name:
        raise UploadError(
            f"{name} is not for this record: annotation files are named after their record "
            f"({record_name}.atr)"
        )
    problem = annotation_file_problem(name, contents[name])
    if problem is not None:
        raise UploadError(problem)
    (Path(folder) / f"{record_name}.atr").write_bytes(contents[name])  # 208.ATR too
    try:
        annotation = wfdb.rdann(os.path.join(folder, record_name), "atr")
    except Exception as exc:
        raise UploadError(
            f"{name} is not a valid WFDB annotation file: {_without_folder(exc, folder)}"
        ) from None
    if annotation.fs and abs(float(annotation.fs) - float(fs)) > 1e-6:
        raise UploadError(
            f"{name} is not for this record: it was made at {annotation.fs:g} Hz, the record "
            f"is at {fs:g} Hz"
        )
    samples = np.asarray(annotation.sample, dtype=np.int64)
    if len(samples) and (samples.max() >= sig_len or samples.min() < 0):
        raise UploadError(
            f"{name} is not for this record: it has annotations up to sample "
            f"{int(samples.max())}, but record {record_name} has {sig_len} samples"
        )
    beat_samples, beat_labels = [], []
    for sample, symbol in zip(samples, annotation.symbol, strict=True):
        label = aami_class(symbol)
        if label is not None:
            beat_samples.append(int(sample))
            beat_labels.append(label)
    if not beat_samples:
        raise UploadError(no_beat_annotations_message(name))
    return {"samples": beat_samples, "labels": beat_labels}


# --- From a request ---------------------------------------------------------------------


def declared_oversize(request, limit: int) -> int | None:
    """The body length the request declares (Content-Length) when it exceeds ``limit`` bytes,
    else None. Checked before the body is read, so an oversize body is refused unread; each
    caller words its own 413. A Content-Length that is not a whole number of bytes is an
    ``UploadError`` (400): Django would read such a body as empty and the caller would then
    complain about missing data instead of the header."""
    raw = request.META.get("CONTENT_LENGTH") or "0"
    try:
        declared = int(raw)
    except ValueError:
        declared = -1
    if declared < 0:
        raise UploadError(f"Content-Length {raw!r} is not a number of bytes")
    return declared if declared > limit else None


def files_from_request(request, limit: int | None = None) -> list[tuple[str, bytes]]:
    """The uploaded files of a page or API request as ``(name, content)`` pairs.

    Refuses an upload over ``limit`` bytes (default ``settings.UPLOAD_MAX_BYTES``) with status
    413: by its declared length before the body is read, and by the files' sizes before their
    content is.
    """
    from django.conf import settings

    hint = ""
    if limit is None:
        limit = settings.UPLOAD_MAX_BYTES
        hint = "; split the recording or ask the administrator to raise UPLOAD_MAX_BYTES"
    too_big = (
        f"the upload is larger than the limit of {limit:,} bytes ({limit / 2**20:g} MiB){hint}"
    )
    if declared_oversize(request, limit) is not None:
        raise UploadError(too_big, status=413)
    files = request.FILES.getlist("files") or request.FILES.getlist("file")
    if sum(upload.size for upload in files) > limit:
        raise UploadError(too_big, status=413)
    return [(upload.name, upload.read()) for upload in files]
