"""``python -m inference.analyze`` refuses a signal whose size is not an ECG's in millivolts
(volts, microvolts, a wrong WFDB gain), naming its amplitude, and accepts a flat lead with a
note; the rule passes every real record of the databases in the data folder."""

import json
from pathlib import Path

import numpy as np
import pytest
import wfdb

from inference import analyze
from inference.datasets import data_dir
from inference.datasets.wfdb_record import analysis_lead
from inference.signal import (
    MAX_ECG_AMPLITUDE_MV,
    MIN_ECG_AMPLITUDE_MV,
    ecg_amplitude_mv,
    ecg_amplitude_problem,
)
from inference.synthetic import generate

STRIP_MV = generate(30.0, fs=250.0, seed=5).signal_mv


def write_csv(path: Path, values: np.ndarray) -> Path:
    np.savetxt(path, values)
    return path


def write_record(folder: Path, leads: dict, units: str = "mV", gain: float = 200.0) -> Path:
    wfdb.wrsamp(
        "rec",
        fs=250,
        units=[units] * len(leads),
        sig_name=list(leads),
        p_signal=np.column_stack(list(leads.values())),
        fmt=["16"] * len(leads),
        adc_gain=[gain] * len(leads),
        baseline=[0] * len(leads),
        write_dir=str(folder),
    )
    return folder / "rec"


def test_a_csv_in_volts_is_refused_naming_its_amplitude(tmp_path):
    # it was analysed: 0 beats and one PAUSE over the whole record, without a word
    path = write_csv(tmp_path / "ecg.csv", STRIP_MV / 1000.0)
    with pytest.raises(
        SystemExit, match=r"ecg\.csv's amplitude .* is 0\.00\d+ mV.*looks like volts"
    ):
        analyze.main([str(path), "--fs", "250", "--json", str(tmp_path / "out.json")])
    assert not (tmp_path / "out.json").exists()


def test_a_record_whose_gain_makes_it_tiny_is_refused(tmp_path):
    path = write_record(tmp_path, {"MLII": STRIP_MV / 1000.0}, units="mV", gain=200_000.0)
    with pytest.raises(SystemExit, match=r"record rec \(MLII\)'s amplitude .*looks like volts"):
        analyze.main([str(path)])


def test_a_record_in_microvolts_labelled_mv_is_refused(tmp_path):
    path = write_record(tmp_path, {"MLII": STRIP_MV * 1000.0}, units="mV", gain=0.2)
    with pytest.raises(SystemExit, match=r"looks like microvolts"):
        analyze.main([str(path)])


def test_a_flat_csv_is_analysed_with_a_note(tmp_path, capsys):
    path = write_csv(tmp_path / "flat.csv", np.zeros(7500))
    output = tmp_path / "out.json"
    assert analyze.main([str(path), "--fs", "250", "--json", str(output)]) == 0
    result = json.loads(output.read_text())
    assert result["summary"]["n_beats"] == 0
    assert "the signal is flat (constant at 0 mV)" in result["note"]
    assert "note: no beats were found" in capsys.readouterr().out


def test_a_lead_that_was_off_beside_an_ecg_lead_is_analysed(tmp_path):
    noise_mv = np.random.default_rng(2).normal(0.0, 0.003, len(STRIP_MV))
    path = write_record(tmp_path, {"MLII": noise_mv, "V1": STRIP_MV}, gain=1000.0)
    output = tmp_path / "out.json"
    assert analyze.main([str(path), "--json", str(output)]) == 0
    assert "amplitude" in json.loads(output.read_text())["note"]


def test_a_mostly_flat_record_with_some_ecg_passes():
    # 99.5 % flat (asystole, a lead off) and 0.5 % ECG: not volts
    values = np.zeros(100_000)
    values[:500] = STRIP_MV[:500]
    assert ecg_amplitude_problem(values) is None


def _real_records():
    try:
        root = data_dir()
    except FileNotFoundError:
        return
    for database in ("mitdb", "nstdb", "vfdb", "ptbxl"):
        folder = root / database
        for header in sorted(folder.rglob("*.hea")) if folder.is_dir() else []:
            yield header.with_suffix("")


def test_no_real_record_trips_the_amplitude_rule():
    records = list(_real_records())
    if not records:
        pytest.skip("no WFDB records in the data folder (mitdb, nstdb, vfdb, ptbxl)")
    amplitudes = []
    for path in records:
        record = wfdb.rdrecord(str(path))
        lead = analysis_lead(list(record.sig_name))
        values = record.p_signal[:, lead]
        values = values[np.isfinite(values)]
        assert ecg_amplitude_problem(values, path.name) is None
        amplitudes.append(ecg_amplitude_mv(values))
    # a margin of 2.5 or more on either side (figures in inference.signal)
    assert min(amplitudes) > 2.5 * MIN_ECG_AMPLITUDE_MV
    assert max(amplitudes) < MAX_ECG_AMPLITUDE_MV / 2.4
