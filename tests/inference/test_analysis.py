"""The analysis pipeline and ``python -m inference.analyze``: one lead in, beats and summary out."""

import json

import numpy as np
import pytest
import wfdb

from inference import analyze
from inference.aami import AAMI_CLASSES
from inference.analysis import analyze_signal, beat_saliency, heart_rate_bpm
from inference.synthetic import generate


def test_it_gives_the_heart_rate_of_a_regular_rhythm():
    r_peaks = np.arange(0, 60 * 250, 250)  # one beat a second at 250 Hz
    assert heart_rate_bpm(r_peaks, 250.0) == {"mean": 60.0, "min": 60.0, "max": 60.0}
    assert heart_rate_bpm(np.array([10]), 250.0)["mean"] is None


def test_it_keeps_one_ectopic_beat_from_setting_the_maximum_heart_rate():
    rr_s = [1.0] * 20 + [0.4, 1.6] + [1.0] * 20  # a premature beat and its compensatory pause
    r_peaks = np.round(np.cumsum([0.0, *rr_s]) * 250).astype(int)
    rate = heart_rate_bpm(r_peaks, 250.0)
    assert rate["max"] < 70  # not 150 bpm, the coupling interval's rate


def test_the_mean_heart_rate_lies_within_its_range():
    # long first and last intervals count in one 8-beat window each, but in the mean in full:
    # the mean rate (61.1 bpm) would fall below the slowest window's (62.8 bpm)
    rr_s = [1.2] + [0.92] * 7 + [1.2]
    r_peaks = np.round(np.cumsum([0.0, *rr_s]) * 1000).astype(int)
    rate = heart_rate_bpm(r_peaks, 1000.0)
    assert rate["min"] <= rate["mean"] <= rate["max"], rate


def test_it_analyzes_a_synthetic_strip_end_to_end():
    strip = generate(60.0, fs=250.0, hr_bpm=75, seed=3)
    analysis = analyze_signal(strip.signal_mv, 250.0)
    assert abs(len(analysis.r_peaks) - len(strip.beats)) <= 2
    assert analysis.summary["n_beats"] == len(analysis.r_peaks)
    assert sum(analysis.summary["counts"].values()) == len(analysis.r_peaks)
    assert 70 <= analysis.summary["heart_rate_bpm"]["mean"] <= 80
    assert analysis.probabilities.shape == (len(analysis.r_peaks), len(AAMI_CLASSES))
    assert np.allclose(analysis.probabilities.sum(axis=1), 1.0, atol=1e-4)
    json.dumps(analysis.to_dict())  # everything in it is JSON


def test_it_finds_the_ventricular_ectopy_of_an_unseen_patient(mitdb):
    # record 233 is in DS2: the classifier never saw this patient
    record = wfdb.rdrecord(str(mitdb / "233"), channels=[0], sampto=360 * 300)
    annotation = wfdb.rdann(str(mitdb / "233"), "atr", sampto=360 * 300)
    n_reference_v = sum(symbol == "V" for symbol in annotation.symbol)
    analysis = analyze_signal(record.p_signal[:, 0], record.fs)
    found_v = analysis.summary["counts"]["V"]
    assert n_reference_v > 50
    assert 0.8 * n_reference_v <= found_v <= 1.2 * n_reference_v


def test_it_explains_a_beat_with_a_deterministic_map():
    strip = generate(20.0, fs=250.0, seed=1)
    analysis = analyze_signal(strip.signal_mv, 250.0)
    first = beat_saliency(strip.signal_mv, 250.0, analysis.r_peaks, 5)
    again = beat_saliency(strip.signal_mv, 250.0, analysis.r_peaks, 5)
    assert first["values"] == again["values"]
    assert 0.0 <= min(first["values"]) and max(first["values"]) <= 1.0
    assert first["start"] <= analysis.r_peaks[5] < first["start"] + len(first["values"])
    with pytest.raises(ValueError, match="out of range"):
        beat_saliency(strip.signal_mv, 250.0, analysis.r_peaks, len(analysis.r_peaks))


@pytest.mark.parametrize(
    ("signal", "fs", "message"),
    [
        (np.zeros((100, 2)), 250.0, "one lead"),
        (np.array([0.0, np.nan] * 1000), 250.0, "NaN"),
        (np.zeros(5000), 20.0, "fs"),
    ],
)
def test_it_rejects_bad_input_with_a_clear_message(signal, fs, message):
    with pytest.raises(ValueError, match=message):
        analyze_signal(signal, fs)


def test_the_command_analyzes_a_wfdb_record_and_scores_it(mitdb, tmp_path, capsys):
    # two minutes of record 233 (DS2) written as a record of our own, with its reference beats
    record = wfdb.rdrecord(str(mitdb / "233"), sampto=360 * 120)
    annotation = wfdb.rdann(str(mitdb / "233"), "atr", sampto=360 * 120)
    wfdb.wrsamp(
        "excerpt",
        fs=record.fs,
        units=record.units,
        sig_name=record.sig_name,
        p_signal=record.p_signal,
        fmt=["16"] * record.n_sig,
        write_dir=str(tmp_path),
    )
    wfdb.wrann(
        "excerpt", "atr", annotation.sample, np.array(annotation.symbol), write_dir=str(tmp_path)
    )
    output = tmp_path / "out.json"
    assert analyze.main([str(tmp_path / "excerpt"), "--json", str(output)]) == 0
    result = json.loads(output.read_text())
    assert result["lead"] == "MLII"
    assert result["summary"]["n_beats"] == len(result["beats"])
    assert result["reference"]["qrs"]["se"] > 0.99
    assert result["reference"]["accuracy"] > 0.9
    assert "beats:" in capsys.readouterr().out


def test_the_command_reads_a_csv_and_needs_its_rate(tmp_path):
    strip = generate(30.0, fs=360.0, seed=2)
    path = tmp_path / "strip.csv"
    path.write_text("mv\n" + "\n".join(f"{v:.4f}" for v in strip.signal_mv))
    with pytest.raises(SystemExit, match="--fs"):
        analyze.main([str(path)])
    output = tmp_path / "strip.json"
    assert analyze.main([str(path), "--fs", "360", "--json", str(output)]) == 0
    assert abs(json.loads(output.read_text())["summary"]["n_beats"] - len(strip.beats)) <= 2
    path.write_text("mv\n0.1\nabc\n0.2\n")
    with pytest.raises(SystemExit, match="line 3"):
        analyze.main([str(path), "--fs", "360"])
