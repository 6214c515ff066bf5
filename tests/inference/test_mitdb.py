"""The MIT-BIH loader on real records (skipped with the reason when the data are absent)."""

import numpy as np
import pytest

from inference.aami import DS1, DS2, PACED_RECORDS, SYMBOL_TO_AAMI
from inference.datasets.mitdb import load_record, record_windows


def test_it_keeps_the_inter_patient_split_disjoint_and_unpaced():
    assert len(DS1) == len(DS2) == 22
    assert not set(DS1) & set(DS2)
    assert not set(PACED_RECORDS) & (set(DS1) | set(DS2))
    assert SYMBOL_TO_AAMI["A"] == "S" and SYMBOL_TO_AAMI["E"] == "V" and "+" not in SYMBOL_TO_AAMI


def test_it_reads_mlii_beats_and_rhythms_of_a_real_record(mitdb):
    record = load_record(mitdb, "201")
    assert record.fs == 360.0 and len(record.signal_mv) == 650000
    assert len(record.beat_samples) == len(record.beat_symbols) > 1900
    assert set(record.beat_classes) <= {"N", "S", "V", "F", "Q"}
    labels = {label for _, _, label in record.rhythms}
    assert {"(AFIB", "(N"} <= labels
    assert record.rhythms[0][0] == 60  # the first rhythm annotation of record 201


def test_it_picks_mlii_where_it_is_not_the_first_channel(mitdb):
    assert load_record(mitdb, "114").lead == "MLII"
    with pytest.raises(ValueError, match="has no lead MLII"):
        load_record(mitdb, "102")


def test_it_labels_windows_by_beats_and_rhythm(mitdb):
    windows = record_windows(load_record(mitdb, "201"))
    assert windows.windows.shape == (902, 500) and windows.fs == 250.0
    # 201 starts in atrial fibrillation: its first window is arrhythmia
    assert windows.labels[0] == 1
    # record 100 is sinus rhythm with a few atrial premature beats
    normal = record_windows(load_record(mitdb, "100"))
    assert 0 < normal.labels.mean() < 0.1


def test_it_maps_beats_to_the_resampled_r_peaks(mitdb):
    record = load_record(mitdb, "100").resampled(250.0)
    signal = record.signal_mv
    peaks = record.beat_samples[5:50]
    local_max = [p - 5 + int(np.argmax(signal[p - 5 : p + 6])) for p in peaks]
    assert np.max(np.abs(np.asarray(local_max) - peaks)) <= 3


def test_it_says_which_record_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="record 999 not found"):
        load_record(tmp_path, "999")
