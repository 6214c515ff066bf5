"""MIT-BIH Arrhythmia Database: records, annotations and labelled 2-second windows.

Moody GB, Mark RG. The impact of the MIT-BIH Arrhythmia Database. IEEE Eng in Med and Biol
20(3):45-50 (2001). Goldberger AL, et al. PhysioBank, PhysioToolkit, and PhysioNet.
Circulation 101(23):e215-e220 (2000).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb

from inference.aami import NORMAL_RHYTHM, aami_class
from inference.signal import resample, resample_indices


@dataclass
class MitdbRecord:
    """One lead of one record, in millivolts, with its beat and rhythm annotations.

    ``beat_samples`` and rhythm interval bounds are sample indices at ``fs``.
    """

    name: str
    fs: float
    lead: str
    signal_mv: np.ndarray
    beat_samples: np.ndarray
    beat_symbols: list[str]
    rhythms: list[tuple[int, int, str]]

    @property
    def beat_classes(self) -> list[str]:
        return [aami_class(symbol) for symbol in self.beat_symbols]

    def resampled(self, fs_out: float) -> "MitdbRecord":
        """The same record at another sampling rate (polyphase), annotations mapped."""
        if fs_out == self.fs:
            return self
        n_out = round(len(self.signal_mv) * fs_out / self.fs)
        return MitdbRecord(
            name=self.name,
            fs=float(fs_out),
            lead=self.lead,
            signal_mv=resample(self.signal_mv, self.fs, fs_out),
            beat_samples=np.minimum(
                resample_indices(self.beat_samples, self.fs, fs_out), n_out - 1
            ),
            beat_symbols=self.beat_symbols,
            rhythms=[
                (
                    int(resample_indices([start], self.fs, fs_out)[0]),
                    int(resample_indices([end], self.fs, fs_out)[0]),
                    label,
                )
                for start, end, label in self.rhythms
            ],
        )


def rhythm_intervals(
    samples: np.ndarray, symbols: list[str], aux_notes: list[str], n_samples: int
) -> list[tuple[int, int, str]]:
    """Rhythm episodes ``(start, end, label)`` from the '+' annotations of a record.

    Each rhythm lasts from its annotation to the next rhythm annotation (or the end of the
    record). The part before the first rhythm annotation is left unlabelled.
    """
    changes = [
        (int(sample), note.strip("\x00 "))
        for sample, symbol, note in zip(samples, symbols, aux_notes, strict=True)
        if symbol == "+" and note and note.strip("\x00 ").startswith("(")
    ]
    intervals = []
    for index, (start, label) in enumerate(changes):
        end = changes[index + 1][0] if index + 1 < len(changes) else n_samples
        if end > start:
            intervals.append((start, end, label))
    return intervals


def load_record(directory: str | Path, name: str, lead: str = "MLII") -> MitdbRecord:
    """Read one lead of a MIT-BIH record and its reference annotations (``.atr``).

    Raises ``ValueError`` when the record has no such lead (records 102 and 104 have no
    MLII) and ``FileNotFoundError`` when the record is missing.
    """
    path = Path(directory) / name
    if not path.with_suffix(".hea").is_file():
        raise FileNotFoundError(f"MIT-BIH record {name} not found in {directory}")
    record = wfdb.rdrecord(str(path))
    if lead not in record.sig_name:
        raise ValueError(f"record {name} has no lead {lead}; it has {', '.join(record.sig_name)}")
    channel = record.sig_name.index(lead)
    annotation = wfdb.rdann(str(path), "atr")
    symbols = list(annotation.symbol)
    samples = np.asarray(annotation.sample, dtype=np.int64)
    is_beat = np.array([aami_class(symbol) is not None for symbol in symbols], dtype=bool)
    signal_mv = record.p_signal[:, channel].astype(np.float64)
    return MitdbRecord(
        name=name,
        fs=float(record.fs),
        lead=lead,
        signal_mv=signal_mv,
        beat_samples=samples[is_beat],
        beat_symbols=[symbol for symbol, beat in zip(symbols, is_beat, strict=True) if beat],
        rhythms=rhythm_intervals(samples, symbols, list(annotation.aux_note), len(signal_mv)),
    )


@dataclass
class WindowSet:
    """Fixed-length windows of one or more records with binary labels.

    ``windows`` are raw millivolts (preprocessing belongs to the model), ``labels`` 1 for
    arrhythmia, ``records`` and ``starts`` say where each window came from.
    """

    windows: np.ndarray
    labels: np.ndarray
    records: np.ndarray
    starts: np.ndarray
    fs: float

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def concatenate(cls, parts: list["WindowSet"]) -> "WindowSet":
        return cls(
            windows=np.concatenate([part.windows for part in parts]),
            labels=np.concatenate([part.labels for part in parts]),
            records=np.concatenate([part.records for part in parts]),
            starts=np.concatenate([part.starts for part in parts]),
            fs=parts[0].fs,
        )


def window_labels(record: MitdbRecord, starts: np.ndarray, window_len: int) -> np.ndarray:
    """1 where a window holds a beat other than AAMI N or overlaps a non-sinus rhythm.

    A window that overlaps no rhythm annotation at all (the start of some records) counts
    as sinus rhythm: MIT-BIH annotates the first rhythm at the first beat.
    """
    ends = starts + window_len
    labels = np.zeros(len(starts), dtype=np.int64)
    abnormal_beats = record.beat_samples[
        np.array([cls != "N" for cls in record.beat_classes], dtype=bool)
    ]
    if len(abnormal_beats):
        first = np.searchsorted(abnormal_beats, starts, side="left")
        after_last = np.searchsorted(abnormal_beats, ends, side="left")
        labels[after_last > first] = 1
    for start, end, label in record.rhythms:
        if label != NORMAL_RHYTHM:
            labels[(starts < end) & (ends > start)] = 1
    return labels


def record_windows(
    record: MitdbRecord, fs_out: float = 250.0, window_s: float = 2.0, step_s: float | None = None
) -> WindowSet:
    """Windows of a record at ``fs_out`` Hz, labelled by ``window_labels``.

    ``step_s`` defaults to ``window_s`` (non-overlapping windows, as evaluated); a shorter
    step gives overlapping windows, a cheap shift augmentation for training.
    """
    resampled = record.resampled(fs_out)
    window_len = round(window_s * fs_out)
    step = round((step_s or window_s) * fs_out)
    starts = np.arange(0, len(resampled.signal_mv) - window_len + 1, step, dtype=np.int64)
    windows = resampled.signal_mv[starts[:, np.newaxis] + np.arange(window_len)]
    return WindowSet(
        windows=windows.astype(np.float32),
        labels=window_labels(resampled, starts, window_len),
        records=np.full(len(starts), record.name),
        starts=starts,
        fs=float(fs_out),
    )


def load_windows(
    directory: str | Path,
    names: Iterable[str],
    fs_out: float = 250.0,
    window_s: float = 2.0,
    step_s: float | None = None,
    progress=None,
) -> WindowSet:
    """Labelled windows of several records; ``progress`` wraps the record list (e.g. tqdm)."""
    names = list(names)
    iterable = progress(names, desc="MIT-BIH records", unit="record") if progress else names
    parts = [
        record_windows(load_record(directory, name), fs_out, window_s, step_s) for name in iterable
    ]
    return WindowSet.concatenate(parts)
