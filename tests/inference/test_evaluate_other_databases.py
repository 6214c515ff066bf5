"""The research commands on a database other than MIT-BIH: other annotation extensions, lead
names and orders, subfolders, beat codes outside the AAMI map, short records, a folder mixing
records with and without beats.

Each database is a few short synthetic strips written with wfdb, so these run in seconds
without the PhysioNet data; the last test, on a real DS1 excerpt, skips without it.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import wfdb

from inference import analyze
from inference.evaluate import main
from inference.signal import resample, resample_indices
from inference.synthetic import generate


def write_record(
    folder: Path,
    name: str,
    leads: dict,
    samples,
    symbols,
    fs: float = 250.0,
    extension: str = "atr",
    units=None,
    notes=None,
) -> None:
    """Record ``name`` with ``leads`` (name: values) and its annotations in ``.extension``."""
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        name,
        fs=fs,
        units=list(units or ["mV"] * len(leads)),
        sig_name=list(leads),
        p_signal=np.column_stack(list(leads.values())),
        fmt=["16"] * len(leads),
        adc_gain=[200.0] * len(leads),
        baseline=[0] * len(leads),
        write_dir=str(folder),
    )
    wfdb.wrann(
        name,
        extension,
        np.asarray(samples),
        np.array(symbols),
        aux_note=notes,
        write_dir=str(folder),
    )


def sinus(duration_s: float = 20.0, seed: int = 3):
    return generate(duration_s, fs=250.0, seed=seed)


def write_sinus(folder: Path, name: str = "r1", extension: str = "atr", symbol: str = "N"):
    strip = sinus()
    write_record(
        folder, name, {"MLII": strip.signal_mv}, strip.beats, [symbol] * len(strip.beats),
        extension=extension,
    )  # fmt: skip
    return strip


def qrs_result(tmp_path: Path, *args: str) -> dict:
    output = tmp_path / "out.json"
    assert main(["qrs", *args, "--json", str(output)]) == 0
    return json.loads(output.read_text())


@pytest.mark.parametrize("what", ["qrs", "beats", "rhythm"])
def test_annotations_in_another_extension_are_read_with_annotator(tmp_path, what):
    write_sinus(tmp_path / "db", extension="qrs")
    records = ["--records", "all"] if what == "beats" else []
    # without --annotator: one line that names the extension to give, not "no records"
    with pytest.raises(SystemExit, match=r"\.qrs files: name one with --annotator qrs"):
        main([what, "--data", str(tmp_path / "db"), *records])
    output = tmp_path / "out.json"
    command = [what, "--data", str(tmp_path / "db"), *records, "--annotator", "qrs"]
    assert main([*command, "--json", str(output)]) == 0
    if what == "qrs":
        assert json.loads(output.read_text())["gross"]["se"] == 1.0


def test_analyze_scores_against_the_annotator_given(tmp_path, capsys):
    write_sinus(tmp_path, extension="ecg")
    assert analyze.main([str(tmp_path / "r1"), "--annotator", "ecg"]) == 0
    assert "against the reference (r1.ecg): QRS Se 100.00 %" in capsys.readouterr().out


def test_records_in_subfolders_are_found_and_named_by_their_path(tmp_path):
    write_sinus(tmp_path / "p01", "r1")
    write_sinus(tmp_path / "p02", "r2")
    (tmp_path / "RECORDS").write_text("p01/r1\np02/r2\n")
    result = qrs_result(tmp_path, "--data", str(tmp_path))
    assert result["gross"]["n_records"] == 2 and result["gross"]["se"] == 1.0
    assert qrs_result(tmp_path, "--data", str(tmp_path), "--records", "p02/r2")["gross"]["tp"]
    with pytest.raises(SystemExit, match=r"not found .*: r2 \(in subfolders: p02/r2\)"):
        main(["qrs", "--data", str(tmp_path), "--records", "r2"])


def write_v1_then_ii(folder: Path) -> None:
    """V1 first (small, noisy: many false beats) and II second, the ECG to score."""
    strip = sinus()
    noise = np.random.default_rng(0).normal(0, 0.3, len(strip.signal_mv))
    write_record(
        folder, "r1", {"V1": noise, "II": strip.signal_mv}, strip.beats,
        ["N"] * len(strip.beats),
    )  # fmt: skip


def test_qrs_scores_the_lead_the_other_commands_analyse_not_the_first_channel(tmp_path):
    write_v1_then_ii(tmp_path)
    result = qrs_result(tmp_path, "--data", str(tmp_path))
    assert result["records"][0]["lead"] == "II"
    assert result["gross"]["se"] == 1.0 and result["gross"]["ppv"] == 1.0


def test_lead_names_the_lead_to_score_in_any_case(tmp_path):
    write_v1_then_ii(tmp_path)
    result = qrs_result(tmp_path, "--data", str(tmp_path), "--lead", "v1")
    assert result["records"][0]["lead"] == "V1"
    with pytest.raises(SystemExit, match=r"record r1 has no lead V5 or MLII; it has V1, II"):
        main(["qrs", "--data", str(tmp_path), "--lead", "V5", "MLII"])


def write_abp_then_ecg(folder: Path) -> None:
    strip = sinus()
    abp_mmhg = 100 + 20 * np.sin(np.arange(len(strip.signal_mv)) / 250 * 2 * np.pi * 1.2)
    write_record(
        folder, "r1", {"ABP": abp_mmhg, "ECG": strip.signal_mv}, strip.beats,
        ["N"] * len(strip.beats), units=["mmHg", "mV"],
    )  # fmt: skip


@pytest.mark.parametrize("what", ["qrs", "beats", "rhythm"])
def test_a_first_channel_that_is_no_ecg_asks_for_lead_and_lead_reads_the_ecg(tmp_path, what):
    write_abp_then_ecg(tmp_path)
    records = ["--records", "all"] if what == "beats" else []
    with pytest.raises(SystemExit, match=r"signal 1 \(ABP\) is in 'mmHg'.*with --lead"):
        main([what, "--data", str(tmp_path), *records])
    output = tmp_path / "out.json"
    command = [what, "--data", str(tmp_path), *records, "--lead", "ecg", "--json", str(output)]
    assert main(command) == 0
    result = json.loads(output.read_text())
    if what == "rhythm":  # VF too is read on the lead named
        assert (result["records"][0]["lead"], result["records"][0]["vf_lead"]) == ("ECG", "ECG")


def test_analyze_asks_for_lead_when_the_first_channel_is_no_ecg(tmp_path):
    write_abp_then_ecg(tmp_path)
    with pytest.raises(SystemExit, match=r"with --lead \(it has ABP, ECG\)"):
        analyze.main([str(tmp_path / "r1")])
    assert analyze.main([str(tmp_path / "r1"), "--lead", "ecg"]) == 0


def test_beats_marked_b_are_reference_beats_not_false_detections(tmp_path):
    strip = sinus()
    symbols = ["B" if index % 2 else "N" for index in range(len(strip.beats))]
    write_record(tmp_path, "r1", {"MLII": strip.signal_mv}, strip.beats, symbols)
    assert qrs_result(tmp_path, "--data", str(tmp_path))["gross"]["ppv"] == 1.0
    output = tmp_path / "beats.json"
    assert main(["beats", "--data", str(tmp_path), "--records", "all", "--json", str(output)]) == 0
    result = json.loads(output.read_text())
    assert result["end_to_end"]["qrs"]["ppv"] == 1.0
    # the class metrics count the beats with an AAMI class only
    assert result["reference"]["n_beats"] == symbols.count("N")


def test_rhythm_scores_a_folder_mixing_records_with_and_without_beats(tmp_path):
    write_sinus(tmp_path, "r1")
    strip = sinus(seed=4)
    write_record(
        tmp_path, "r2", {"MLII": strip.signal_mv}, [0, 1000], ["+", "+"], notes=["(N", "(VT"]
    )
    output = tmp_path / "out.json"
    assert main(["rhythm", "--data", str(tmp_path), "--json", str(output)]) == 0
    assert [row["record"] for row in json.loads(output.read_text())["records"]] == ["r1", "r2"]


def test_rhythm_refuses_a_record_shorter_than_the_detector_needs_by_name(tmp_path):
    strip = sinus(1.9)
    assert len(strip.beats) >= 2
    write_record(tmp_path, "r1", {"MLII": strip.signal_mv}, strip.beats, ["N"] * len(strip.beats))
    with pytest.raises(SystemExit, match=r"record r1 is 1.90 s long; evaluate rhythm needs"):
        main(["rhythm", "--data", str(tmp_path)])


def test_a_resampled_copy_with_renamed_swapped_leads_scores_as_the_original(mitdb, tmp_path):
    record = wfdb.rdrecord(str(mitdb / "106"), sampto=60 * 360)  # DS1, MLII then V1
    annotation = wfdb.rdann(str(mitdb / "106"), "atr", sampto=60 * 360)
    original = {"MLII": record.p_signal[:, 0], "V1": record.p_signal[:, 1]}
    write_record(
        tmp_path / "original", "106", original, annotation.sample, annotation.symbol, fs=360
    )
    copy = {"v1": resample(original["V1"], 360, 257), "ii": resample(original["MLII"], 360, 257)}
    samples = np.minimum(resample_indices(annotation.sample, 360, 257), len(copy["ii"]) - 1)
    write_record(
        tmp_path / "copy", "106", copy, samples, annotation.symbol, fs=257, extension="qrs"
    )
    scored = qrs_result(tmp_path, "--data", str(tmp_path / "original"))["gross"]
    copied = qrs_result(
        tmp_path, "--data", str(tmp_path / "copy"), "--annotator", "qrs", "--lead", "II"
    )
    assert copied["records"][0]["lead"] == "ii"
    assert abs(copied["gross"]["se"] - scored["se"]) < 0.01
    assert abs(copied["gross"]["ppv"] - scored["ppv"]) < 0.01
