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


# Review of 0af0675 / 2988b7b: the reserved test set under a parent folder, rows named by
# path, the order of --lead's names, --vf-folds with --annotator and --lead, beats coded B.
# Records named like DS2's are synthetic strips: no real DS2 annotation is read here.


def test_all_refuses_records_named_like_ds2_in_a_subfolder(tmp_path):
    write_sinus(tmp_path / "mitdb", "100")  # a DS2 name, synthetic signal
    write_sinus(tmp_path / "mitdb", "101")
    with pytest.raises(SystemExit, match=r"mitdb/100 of .*reserved test set \(DS2\)"):
        main(["beats", "--data", str(tmp_path), "--records", "all"])


@pytest.mark.parametrize("what", ["qrs", "beats", "rhythm"])
def test_the_same_record_name_in_two_subfolders_gives_two_rows_named_by_path(tmp_path, what):
    write_sinus(tmp_path / "a", "r1")
    write_sinus(tmp_path / "b", "r1")
    output = tmp_path / "out.json"
    records = ["--records", "all"] if what == "beats" else []
    assert main([what, "--data", str(tmp_path), *records, "--json", str(output)]) == 0
    result = json.loads(output.read_text())
    rows = result["per_record"] if what == "beats" else result["records"]
    assert [row["record"] for row in rows] == ["a/r1", "b/r1"]


def test_lead_names_are_tried_in_order_each_in_any_case(tmp_path):
    strip = sinus()
    write_record(
        tmp_path, "r1", {"MLII": strip.signal_mv, "II": 0.5 * strip.signal_mv}, strip.beats,
        ["N"] * len(strip.beats),
    )  # fmt: skip
    assert (
        qrs_result(tmp_path, "--data", str(tmp_path), "--lead", "ii", "MLII")["records"][0]["lead"]
        == "II"
    )


def write_abp_ecg_pair(folder: Path, ecg_name: str = "ECG", extension: str = "atr") -> None:
    """Two records with ABP first and an ECG second, a VFL mark half-way."""
    for index in range(2):
        strip = generate(30.0, fs=250.0, seed=20 + index)
        abp_mmhg = 100 + 20 * np.sin(np.arange(len(strip.signal_mv)) / 250 * 2 * np.pi * 1.2)
        write_record(
            folder, f"r{index}", {"ABP": abp_mmhg, ecg_name: strip.signal_mv},
            [0, *strip.beats], ["+"] + ["N"] * len(strip.beats), units=["mmHg", "mV"],
            notes=["(N"] + [""] * len(strip.beats), extension=extension,
        )  # fmt: skip


def test_vf_folds_read_the_annotator_and_the_lead_given(tmp_path):
    write_abp_ecg_pair(tmp_path, extension="qrs")
    output = tmp_path / "out.json"
    command = ["rhythm", "--data", str(tmp_path), "--annotator", "qrs", "--lead", "ecg"]
    assert main([*command, "--vf-folds", "2", "--json", str(output)]) == 0
    result = json.loads(output.read_text())
    assert result["summary"]["vf_cross_validated"]["tn"] > 0
    table = output.with_suffix(".md").read_text()
    # the headings name the channel read, not "first channel"
    assert "first channel" not in table
    assert "segment (analysed lead: ECG, shipped detector)" in table
    assert "2 record folds, analysed lead: ECG)" in table


def test_rhythm_scores_vf_on_the_analysed_lead_when_the_first_channel_is_no_ecg(tmp_path):
    write_abp_ecg_pair(tmp_path, ecg_name="MLII")
    output = tmp_path / "out.json"
    assert main(["rhythm", "--data", str(tmp_path), "--json", str(output)]) == 0
    rows = json.loads(output.read_text())["records"]
    assert [(row["lead"], row["vf_lead"]) for row in rows] == [("MLII", "MLII")] * 2


def write_af_marked_b(folder: Path) -> None:
    strip = generate(60.0, fs=250.0, seed=7, rhythm="AFIB")
    write_record(
        folder, "r1", {"MLII": strip.signal_mv}, [0, *strip.beats],
        ["+"] + ["B"] * len(strip.beats), notes=["(AFIB"] + [""] * len(strip.beats),
    )  # fmt: skip


def test_rhythm_scores_af_on_our_beats_when_every_reference_beat_is_b(tmp_path):
    write_af_marked_b(tmp_path)
    output = tmp_path / "out.json"
    assert main(["rhythm", "--data", str(tmp_path), "--json", str(output)]) == 0
    result = json.loads(output.read_text())
    row = result["records"][0]
    assert row["af_classified_beats"]["reference_s"] > 50
    assert row["af_detected_beats"]["reference_s"] > 50
    assert "af_reference_beats" not in row  # no AAMI class to run the reference labels on
    assert result["summary"]["without_reference_labels"] == ["r1"]
    assert "so no run on reference labels (AF on our beats only, no VT): r1" in (
        output.with_suffix(".md").read_text()
    )


def test_analyze_scores_beats_marked_b_for_qrs_and_says_why_no_classes(tmp_path, capsys):
    write_sinus(tmp_path, symbol="B")
    output = tmp_path / "out.json"
    assert analyze.main([str(tmp_path / "r1"), "--json", str(output)]) == 0
    assert "QRS Se 100.00 % +P 100.00 %; no class agreement" in capsys.readouterr().out
    assert json.loads(output.read_text())["reference"]["qrs"]["se"] == 1.0


def test_beats_all_scores_a_record_marked_b_for_detection_and_says_so(tmp_path, capsys):
    write_sinus(tmp_path, symbol="B")
    output = tmp_path / "out.json"
    assert main(["beats", "--data", str(tmp_path), "--records", "all", "--json", str(output)]) == 0
    assert json.loads(output.read_text())["end_to_end"]["qrs"]["se"] == 1.0
    assert "scored for QRS detection only: r1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("given", "message"),
    [("", "an annotator name is needed"), (".qrs", "give --annotator qrs")],
)
def test_an_empty_or_dotted_annotator_is_refused_with_a_hint(tmp_path, capsys, given, message):
    write_sinus(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["qrs", "--data", str(tmp_path), "--annotator", given])
    assert exited.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        analyze.main([str(tmp_path / "r1"), "--annotator", given])
    assert message in capsys.readouterr().err
