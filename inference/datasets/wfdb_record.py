"""What every reader of a WFDB record for analysis shares: the checked header, the lead to
analyse, and whether the record's ``.atr`` holds beats.

The command line (``inference.analyze``, ``inference.evaluate``) and the upload
(``monitoring.uploads``) both use these, so a record is read the same way wherever it comes in:
the header (``read_header``: its sampling rate, its signal names as UTF-8), its signal lines
(``check_header_signals``), units (``check_units``) and signal files (``signal_files``,
``check_signal_file``: format and size) are checked here once, for both. The command line
checks a record's files before any work (``check_record``) and reads the signal in millivolts
whatever the header's voltage unit (``read_record_mv``).
"""

import math
import os
from pathlib import Path

import numpy as np

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
    if getattr(header, "n_seg", None) is None:
        header.sig_name = _utf8_signal_names(record_path.with_name(header_name), header)
    return header


def _utf8_signal_names(header_path: Path, header) -> list[str] | None:
    """The header's signal names as its bytes spell them in UTF-8.

    wfdb reads a header as ASCII and drops every other byte without a word: a lead named
    ``Ableitung Ⅱ`` read as ``Ableitung``, ``導程`` as no name at all. A signal line's bytes
    are therefore read here as UTF-8 and parsed with wfdb's own pattern; when only the name
    differs from what wfdb read, the UTF-8 name is taken. Anything else that is not ASCII is
    refused (``ValueError`` naming the signal): a byte that is not UTF-8 text, a non-ASCII
    character in another field (``µV`` read as ``V`` would scale the signal by 10^6) or in the
    first line. Comment lines are not read, whatever their bytes.
    """
    from wfdb.io.header import parse_header_content, rx_signal

    names = list(header.sig_name or [])
    data = header_path.read_bytes()
    if data.isascii():
        return header.sig_name
    header_name = header_path.name
    # what wfdb read, and the same bytes as UTF-8 (a byte that is not UTF-8 kept as a surrogate,
    # so that it can be named)
    wfdb_lines, _ = parse_header_content(data.decode("ascii", errors="ignore"))
    our_lines, _ = parse_header_content(data.decode("utf-8-sig", errors="surrogateescape"))
    if len(our_lines) != len(wfdb_lines):
        raise ValueError(
            f"{header_name}: its non-ASCII characters split or join its lines differently "
            "when read as ASCII (as wfdb reads it) and as UTF-8; write the header in ASCII"
        )
    for number, (ours, theirs) in enumerate(zip(our_lines, wfdb_lines, strict=True)):
        if ours == theirs:
            continue
        where = "its first line" if number == 0 else f"the line of signal {number}"
        bad = [c for c in ours if "\udc80" <= c <= "\udcff"]
        if bad:
            raise ValueError(
                f"{header_name}: {where} holds the byte 0x{ord(bad[0]) - 0xDC00:02x}, which is "
                "neither ASCII nor UTF-8 text; save the header as UTF-8 or ASCII"
            )
        our_fields = rx_signal.match(ours) if number else None
        their_fields = rx_signal.match(theirs) if number else None
        if number == 0 or our_fields is None or their_fields is None:
            raise ValueError(
                f"{header_name}: {where} holds non-ASCII characters ({ours!r}); only a signal's "
                "name may be written in UTF-8"
            )
        ours_by_field, theirs_by_field = our_fields.groupdict(), their_fields.groupdict()
        for field, value in ours_by_field.items():
            if field != "sig_name" and value != theirs_by_field[field]:
                hint = "; write microvolts as uV" if field == "units" else ""
                raise ValueError(
                    f"{header_name}: {where} holds non-ASCII characters in its {field} "
                    f"({value!r}); only a signal's name may be written in UTF-8{hint}"
                )
        if number - 1 < len(names):
            names[number - 1] = ours_by_field["sig_name"]
    return names


# Millivolts per unit, for the voltage units a header may give an ECG channel (the upload's table;
# an empty unit is WFDB's default, mV).
VOLT_UNITS_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}


def mv_per_unit(units: str | None) -> float | None:
    """Millivolts per unit of a header's ``units`` field (None: not a voltage)."""
    return VOLT_UNITS_TO_MV.get((units or "mV").strip().lower())


# A one-column signal CSV names its unit in its header cell: ecg_mv, ecg_uv (ecg_µv) or ecg_v,
# any case. Any other header (ecg, MLII, pandas' 0) or none says nothing: millivolts, as before.
CSV_UNIT_PREFIX = "ecg_"
CSV_UNIT_CELLS = "ecg_mv, ecg_uv or ecg_v"


def csv_signal_unit(header_cell: str | None) -> tuple[str, float] | None:
    """``(unit as written, millivolts per unit)`` that a signal CSV's header cell names, or
    None when the values are millivolts: said so (``ecg_mv``) or by default (no unit named).

    ``ValueError`` for an ``ecg_`` cell whose unit is not a voltage (``ecg_mmhg``, ``ecg_``):
    read as millivolts it would be analysed at the wrong scale without a word.
    """
    if header_cell is None:
        return None
    cell = header_cell.strip().strip("\"'").strip()
    if not cell.lower().startswith(CSV_UNIT_PREFIX):
        return None
    unit = cell[len(CSV_UNIT_PREFIX) :]
    scale = VOLT_UNITS_TO_MV.get(unit.lower()) if unit else None
    if scale is None:
        raise ValueError(
            f"the header cell {cell!r} names the unit {unit!r}, which is not a voltage: a signal "
            f"CSV names its unit as {CSV_UNIT_CELLS} (millivolts, microvolts, volts)"
        )
    return None if scale == 1.0 else (unit, scale)


def check_header_signals(header, header_name: str) -> None:
    """What every reader checks in a header (``read_header``) before its signal files: one
    segment, at least one signal, a signal line for each signal the first line declares, and
    the number of samples stated. ``ValueError`` naming ``header_name`` and the problem."""
    if getattr(header, "n_seg", None):
        raise ValueError(f"{header_name}: multi-segment records are not supported")
    n_sig = header.n_sig or 0
    if n_sig < 1:
        raise ValueError(f"{header_name} declares no signals")
    n_lines = len(header.sig_name or [])
    if n_lines != n_sig:
        raise ValueError(
            f"{header_name} declares {n_sig} signals on its first line but describes "
            f"{n_lines}: the signal count and the signal lines disagree"
        )
    if not header.sig_len:
        # wfdb reads a missing or non-numeric count as None; the size check needs it
        raise ValueError(
            f"{header_name} does not state the number of samples per signal (the fourth "
            "field of its first line, a whole number)"
        )


def check_units(header, header_name: str, channels) -> None:
    """``ValueError`` when one of ``channels`` is not in a voltage unit (mV, uV or V)."""
    for channel in channels:
        units = header.units[channel] if header.units else None
        if mv_per_unit(units) is None:
            raise ValueError(
                f"{header_name}: signal {channel + 1} ({header.sig_name[channel]}) is in "
                f"{units!r}; ECG channels must be in mV, uV or V"
            )


def signal_files(header, header_name: str) -> dict[str, list[int]]:
    """Each signal file the header names, with the signals (0-based) it stores.

    ``ValueError`` for a name that is not a plain file name: a path (``../x.dat``) would read
    a file outside the record's folder, and ``~`` (no file) is not supported."""
    per_file: dict[str, list[int]] = {}
    for index, file_name in enumerate(header.file_name):
        if not file_name or os.path.basename(file_name) != file_name or file_name == "~":
            raise ValueError(
                f"{header_name}: signal {index + 1} is stored in {file_name!r}; only signal "
                "files next to the header (a plain file name) are supported"
            )
        per_file.setdefault(file_name, []).append(index)
    return per_file


def check_signal_file(
    header, header_name: str, file_name: str, size_bytes: int, compressed_ok: bool = True
) -> None:
    """``ValueError`` unless the signal file ``file_name`` of ``header``, ``size_bytes`` long,
    is in a format wfdb reads and holds exactly the bytes the header describes: ``sig_len``
    frames of its signals (wfdb's own rule, ``_required_byte_num``: formats 310 and 311 pack
    three samples in 4 bytes, one left over takes 2 bytes, two 4 (310) or 3 (311), and 311 may
    be padded to 4 as wfdb and the WFDB C library write it).

    A FLAC-compressed file (formats 508, 516, 524) has no size to check; ``compressed_ok``
    False (the upload) refuses one.
    """
    from wfdb.io._signal import COMPRESSED_FMTS, DAT_FMTS, _required_byte_num

    indices = [index for index, name in enumerate(header.file_name) if name == file_name]
    supported = sorted(
        (fmt for fmt in DAT_FMTS if compressed_ok or fmt not in COMPRESSED_FMTS), key=int
    )
    formats = {header.fmt[i] for i in indices}
    fmt = next(iter(formats))
    if len(formats) != 1 or fmt not in DAT_FMTS:
        raise ValueError(
            f"{header_name}: {file_name} uses format {'/'.join(sorted(formats))}, which wfdb "
            f"cannot read; supported formats are {', '.join(supported)}"
        )
    if fmt not in supported:
        raise ValueError(
            f"{header_name}: {file_name} uses format {fmt} (FLAC compressed), which is not "
            f"taken here; supported formats are {', '.join(supported)}"
        )
    if fmt in COMPRESSED_FMTS:
        return  # FLAC: its size says nothing about the number of samples
    n_sig = header.n_sig
    samples_per_frame = sum((header.samps_per_frame or [1] * n_sig)[i] or 1 for i in indices)
    n_values = header.sig_len * samples_per_frame
    offset = max((header.byte_offset or [None] * n_sig)[i] or 0 for i in indices)
    # what wfdb reads, or what it writes (310/311 may be padded)
    sizes = sorted(
        {offset + int(_required_byte_num(mode, fmt, n_values)) for mode in ("read", "write")}
    )
    if size_bytes not in sizes:
        raise ValueError(
            f"{file_name} holds {size_bytes} bytes, but {header_name} says it holds "
            f"{header.sig_len} samples of {len(indices)} signal(s) in format {fmt} "
            f"({sizes[0]} bytes): the header and the data disagree"
        )


def check_record(record_path: str | Path, channels: list[int] | None = None, header=None):
    """The header of the WFDB record at ``record_path``, checked against its signal files.

    ``read_header`` checks the header's first line only; a header can still name a signal
    file that is not there, declare more signals than it describes, use a format wfdb cannot
    read, or promise more samples than its ``.dat`` holds, and each of those used to crash an
    evaluation half-way, after other records had been scored. Checked here, cheaply (no signal
    is read but its first sample), with the upload's checks (``check_header_signals``,
    ``check_units``, ``signal_files``, ``check_signal_file``): every signal line is there, the
    number of samples is stated, each signal file exists and holds exactly the bytes the
    header describes, the ``channels`` to be read (default: the first and the analysed lead)
    are in mV, uV or V, and wfdb reads the first sample.

    ``header`` is the record's ``read_header`` when the caller has read it already (read
    here when None): a command that checks and then reads a record parses its header once.

    Raises ``ValueError`` naming the file and the problem.
    """
    import wfdb

    record_path = Path(record_path)
    if header is None:
        header = read_header(record_path)
    header_name = f"{record_path.name}.hea"
    check_header_signals(header, header_name)
    if channels is None:
        channels = sorted({0, analysis_lead(header.sig_name)})
    check_units(header, header_name, channels)
    for file_name, indices in signal_files(header, header_name).items():
        data_path = record_path.with_name(file_name)
        if not data_path.is_file():
            raise ValueError(
                f"{header_name} stores signal(s) {', '.join(str(i + 1) for i in indices)} in "
                f"{file_name}, which is not in {record_path.parent}"
            )
        check_signal_file(header, header_name, file_name, data_path.stat().st_size)
    try:
        wfdb.rdrecord(str(record_path), sampto=1, physical=False)
    except Exception as exc:  # wfdb raises many types for a record it cannot read
        raise ValueError(f"wfdb cannot read record {record_path.name}: {exc!r}") from None
    return header


def read_record_mv(record_path: str | Path, channels: list[int] | None = None, header=None):
    """``wfdb.rdrecord`` of ``channels`` (default all) with ``p_signal`` in millivolts.

    wfdb gives each channel in its header's unit: a record stored in V or uV read as if it
    were mV gives no beats at all (a QRS of 0.001 "mV" is under the detector's floor) or a
    false pause. Missing samples (WFDB's most negative value, which the project's own export
    writes for gaps) are NaN, as wfdb gives them. The data are also compared with the
    header's checksums and initial values, when it has them: a ``.dat`` of the right size can
    still be damaged or belong to another record. ``header`` is the record's ``read_header``
    when the caller has read it already (read here when None).

    Raises ``ValueError`` saying what is wrong when the header is not valid (``read_header``),
    wfdb cannot read the record, a channel is not in mV, uV or V, or the data disagree with the
    header.
    """
    import wfdb

    record_path = Path(record_path)
    if header is None:
        # the header's own checks, and its signal names as UTF-8 (wfdb drops non-ASCII bytes)
        header = read_header(record_path)
    try:
        record = wfdb.rdrecord(str(record_path), channels=channels, physical=False, return_res=64)
    except Exception as exc:  # wfdb raises many types for a record it cannot read
        raise ValueError(f"wfdb cannot read record {record_path.name}: {exc!r}") from None
    if getattr(header, "n_seg", None) is None:  # a multi-segment header names no signals
        read = range(record.n_sig) if channels is None else channels
        record.sig_name = [header.sig_name[channel] for channel in read]
    scales = []
    for index, units in enumerate(record.units or [None] * record.n_sig):
        scale = mv_per_unit(units)
        if scale is None:
            raise ValueError(
                f"signal {record.sig_name[index]} is in {units!r}; ECG channels must be in mV, "
                "uV or V"
            )
        scales.append(scale)
    problem = sample_check_problem(record, record_path, f"{record_path.name}.hea", channels)
    if problem is not None:
        raise ValueError(problem)
    record.dac(inplace=True)  # wfdb's own conversion (NaN where missing), then to mV
    for index, scale in enumerate(scales):
        if scale != 1.0:
            record.p_signal[:, index] *= scale
    record.units = ["mV"] * record.n_sig
    return record


def sample_check_problem(
    record, record_path: str | Path, header_name: str, channels: list[int] | None = None
) -> str | None:
    """What is wrong when ``record``'s samples (``wfdb.rdrecord(..., physical=False)`` of
    ``channels``) disagree with its header's checksums or initial values, or None.

    A .dat of the right size can still be damaged (a bad copy, bytes overwritten) or belong to
    another record of the same length. WFDB headers may carry each signal's first sample and a
    16-bit checksum (the sum of its samples modulo 65536) for exactly this check; wfdb-python
    reads them but never compares them with the data. Shared by the upload
    (``monitoring.uploads``) and the evaluation commands (``read_record_mv``).
    """
    checksums = record.checksum or [None] * record.n_sig
    initial_values = record.init_value or [None] * record.n_sig
    if all(value is None for value in [*checksums, *initial_values]):
        return None
    if any((count or 1) > 1 for count in record.samps_per_frame or []):
        # several samples per frame: the checksum covers all of them, not the frame averages
        import wfdb

        expanded = wfdb.rdrecord(
            str(record_path), channels=channels, physical=False, smooth_frames=False, return_res=32
        )
        signals = [np.asarray(samples) for samples in expanded.e_d_signal]
    else:
        signals = [record.d_signal[:, index] for index in range(record.n_sig)]
    skews = record.skew or [None] * record.n_sig
    for index, samples in enumerate(signals):
        if skews[index]:
            continue  # wfdb shifts a skewed signal: its samples are not the file's from the start
        signal = f"signal {index + 1} ({record.sig_name[index]})"
        problem = f"{record.file_name[index]} does not hold the samples {header_name} describes"
        expected = checksums[index]
        if expected is not None:
            actual = _signed_16(int(np.sum(samples, dtype=np.int64)))
            if actual != _signed_16(int(expected)):
                return (
                    f"{problem}: {signal} has checksum {actual}, but the header says "
                    f"{expected}; the file is damaged or belongs to another record"
                )
        first = initial_values[index]
        if first is not None and len(samples) and int(samples[0]) != int(first):
            return (
                f"{problem}: {signal} starts at {int(samples[0])}, but the header says its "
                f"initial value is {first}; the file is damaged or belongs to another record"
            )
    return None


def _signed_16(value: int) -> int:
    # WFDB headers write checksums as signed 16-bit numbers (100.hea: -22131)
    return (value + 32768) % 65536 - 32768


def missing_samples_message(signal_mv: np.ndarray, fs: float) -> str | None:
    """How much of ``signal_mv`` (samples, or samples × channels) is missing (NaN: a gap), or
    None when nothing is."""
    missing = ~np.isfinite(signal_mv)
    if missing.ndim == 2:
        missing = missing.any(axis=1)  # a sample time with any channel missing
    if not missing.any():
        return None
    first = int(np.argmax(missing))
    return (
        f"{int(missing.sum())} missing samples ({missing.sum() / fs:.1f} s; the first at sample "
        f"{first}, {first / fs:.1f} s)"
    )


def no_beat_annotations_message(annotation_name: str) -> str:
    """Why an annotation file gives no beat reference (the upload's wording)."""
    return f"{annotation_name} holds no beat annotations (only rhythm or other marks)"


def read_annotation(record_path: str | Path, annotator: str = "atr"):
    """``wfdb.rdann`` of the record's annotation file; ``ValueError`` naming the file when
    wfdb cannot read it (a truncated or corrupt file raises IndexError and others there) or
    when it lacks the end-of-file marker."""
    import wfdb

    name = f"{Path(record_path).name}.{annotator}"
    try:
        annotation = wfdb.rdann(str(record_path), annotator)
    except Exception as exc:  # wfdb raises many types for a corrupt file
        raise ValueError(f"{name} is not a readable WFDB annotation file: {exc!r}") from None
    # A WFDB annotation file ends with a zero word. wfdb reads a file cut short without
    # complaint and returns the annotations up to the cut: the beats after it would be
    # missing from the reference, and every detection there would count as a false one.
    with Path(record_path).with_name(name).open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(size - 2, 0))
        ending = handle.read()
    if ending != b"\x00\x00":
        raise ValueError(
            f"{name} is truncated: it does not end with the end-of-file marker (two zero "
            "bytes), so annotations after the cut would be missing"
        )
    return annotation
