"""``python -m inference.evaluate``: which records it scores, and how it refuses what it cannot.

The records are short synthetic strips written as WFDB records, so these run without the
PhysioNet data and in seconds.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import wfdb

from inference.evaluate import main
from inference.synthetic import generate

RHYTHM_ONLY = "418"  # named after the vfdb record whose .atr holds only rhythm marks


def write_record(folder: Path, name: str, beats: bool, sig_name=("MLII",)) -> None:
    """30 s of synthetic sinus rhythm at 250 Hz; its .atr holds the beats, or (``beats``
    False) only rhythm marks, as vfdb's do."""
    folder.mkdir(parents=True, exist_ok=True)
    strip = generate(30.0, fs=250.0, seed=3)
    signal = np.repeat(strip.signal_mv[:, np.newaxis], len(sig_name), axis=1)
    wfdb.wrsamp(
        name,
        fs=250,
        units=["mV"] * len(sig_name),
        sig_name=list(sig_name),
        p_signal=signal,
        fmt=["16"] * len(sig_name),
        write_dir=str(folder),
    )
    if beats:
        samples, symbols, notes = strip.beats, ["N"] * len(strip.beats), None
    else:
        samples, symbols, notes = np.array([10, 3000]), ["+", "+"], ["(N", "(VT"]
    wfdb.wrann(
        name, "atr", np.asarray(samples), np.array(symbols), aux_note=notes, write_dir=str(folder)
    )


def records_100(what: str) -> list[str]:
    """``beats`` needs its records named (``ds2`` is read only when asked for)."""
    return ["--records", "100"] if what == "beats" else []


def strict_json(path: Path) -> dict:
    """Parse as other programs do: bare NaN / Infinity are not JSON."""

    def refuse(constant):
        raise ValueError(f"{path.name} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.parametrize("what", ["qrs", "beats"])
def test_a_named_record_without_beat_annotations_is_refused(tmp_path, what):
    write_record(tmp_path, RHYTHM_ONLY, beats=False)
    with pytest.raises(SystemExit, match="418.atr holds no beat annotations"):
        main([what, "--data", str(tmp_path), "--records", RHYTHM_ONLY])


def test_a_folder_scores_only_the_records_with_beats_and_says_which_it_left_out(tmp_path, capsys):
    write_record(tmp_path, "100", beats=True)
    write_record(tmp_path, RHYTHM_ONLY, beats=False)
    output = tmp_path / "out" / "qrs.json"
    assert main(["qrs", "--data", str(tmp_path), "--json", str(output)]) == 0
    assert "left out: 418.atr holds no beat annotations" in capsys.readouterr().err
    result = strict_json(output)
    assert [row["record"] for row in result["records"]] == ["100"]
    assert result["gross"]["fp"] <= 1  # no rhythm-only record counting every beat as false


def test_a_folder_without_any_beat_annotations_is_refused(tmp_path):
    write_record(tmp_path, RHYTHM_ONLY, beats=False)
    with pytest.raises(SystemExit, match="no record in .* has beat annotations"):
        main(["beats", "--data", str(tmp_path), "--records", "all"])


def test_rhythm_still_scores_a_record_with_only_rhythm_marks(tmp_path):
    write_record(tmp_path, RHYTHM_ONLY, beats=False)
    output = tmp_path / "rhythm.json"
    assert main(["rhythm", "--data", str(tmp_path), "--json", str(output)]) == 0
    assert strict_json(output)["records"][0]["vf_segments"]["segments"] == 15


@pytest.mark.parametrize("folds", ["1", "-1", "3"])
def test_rhythm_refuses_vf_folds_that_cannot_cross_validate(tmp_path, folds):
    # 1 fold trains on nothing (it printed Se 0.0, Sp 100.0); 3 folds of 2 records leave one empty
    write_record(tmp_path, "418", beats=False)
    write_record(tmp_path, "419", beats=False)
    with pytest.raises(SystemExit, match="--vf-folds: .*give 2 to 2"):
        main(["rhythm", "--data", str(tmp_path), "--vf-folds", folds])


def test_cross_validation_needs_two_folds_and_no_more_than_the_records():
    from inference.vf import check_folds

    check_folds(2, 2)
    check_folds(11, 22)
    for n_folds, n_records in ((1, 22), (23, 22), (2, 1)):
        with pytest.raises(ValueError):
            check_folds(n_folds, n_records)


@pytest.mark.parametrize("what", ["qrs", "beats", "rhythm"])
def test_a_header_with_an_unreadable_sampling_rate_stops_with_its_name(tmp_path, what):
    # wfdb reads "100 1 abc 7500" as 250 Hz; here it would even be right, which hides the bug
    write_record(tmp_path, "100", beats=True)
    header = tmp_path / "100.hea"
    lines = header.read_text().splitlines()
    header.write_text("\n".join(["100 1 abc 7500", *lines[1:]]) + "\n")
    with pytest.raises(SystemExit, match=r"100\.hea: the sampling rate .*'abc'"):
        main([what, "--data", str(tmp_path), *records_100(what)])


@pytest.mark.parametrize(
    ("what", "file", "seed", "message"),
    [
        *[
            (what, "100.hea", 0, "is not a valid WFDB header")
            for what in ("qrs", "beats", "rhythm")
        ],
        # bytes wfdb cannot read as annotations (other seeds' bytes can happen to parse)
        *[
            (what, "100.atr", 1, "is not a readable WFDB annotation file")
            for what in ("qrs", "beats", "rhythm")
        ],
    ],
)
def test_a_file_of_random_bytes_stops_with_its_name(tmp_path, what, file, seed, message):
    write_record(tmp_path, "100", beats=True)
    (tmp_path / file).write_bytes(np.random.default_rng(seed).bytes(300))
    with pytest.raises(SystemExit, match=re.escape(f"{file} {message}")):
        main([what, "--data", str(tmp_path), *records_100(what)])


def test_an_unknown_beat_model_is_a_clear_error(tmp_path):
    write_record(tmp_path, "100", beats=True)
    with pytest.raises(SystemExit, match="unknown beat model 'nope'; available"):
        main(["beats", "--data", str(tmp_path), "--records", "100", "--model", "nope"])


def test_an_output_that_cannot_be_written_is_refused_before_the_evaluation(tmp_path):
    write_record(tmp_path, "100", beats=True)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(SystemExit, match="cannot write"):
        main(["qrs", "--data", str(tmp_path), "--json", str(tmp_path / "a-file" / "x.json")])


def test_undefined_scores_are_written_as_null(tmp_path):
    from inference.evaluation.common import json_text

    # the synthetic strip has N beats only: Se of S, V, F and Q is undefined (NaN)
    write_record(tmp_path, "100", beats=True)
    output = tmp_path / "beats.json"
    assert main(["beats", "--data", str(tmp_path), "--records", "100", "--json", str(output)]) == 0
    result = strict_json(output)
    assert result["reference"]["classes"]["V"]["se"] is None
    assert json.loads(json_text({"x": float("inf"), "y": np.float32(0.5)})) == {"x": None, "y": 0.5}


def test_without_data_it_reads_mitdb_under_the_data_dir(tmp_path, monkeypatch):
    write_record(tmp_path / "mitdb", "100", beats=True)
    monkeypatch.setenv("CARDIOSPIKE_DATA_DIR", str(tmp_path))
    output = tmp_path / "qrs.json"
    assert main(["qrs", "--json", str(output)]) == 0
    assert strict_json(output)["records"][0]["record"] == "100"


def test_a_comment_line_indented_before_the_record_line_is_a_valid_header(tmp_path):
    from inference.datasets.wfdb_record import read_header

    write_record(tmp_path, "100", beats=True)
    header = tmp_path / "100.hea"
    header.write_text("  # written by another tool\n" + header.read_text())
    assert read_header(tmp_path / "100").fs == 250


def test_json_holds_other_libraries_nan_as_null_and_training_reads_null_back():
    import torch

    from inference.beat_training import cv_table, selection_score
    from inference.evaluation.common import json_text

    text = json_text({"f1": torch.tensor(float("nan")), "se": torch.tensor(0.5)})
    assert json.loads(text) == {"f1": None, "se": 0.5}
    # a CV file read back (--cv-results) holds null where a score was undefined
    classes = {"S": {"se": None, "ppv": None, "f1": None}, "V": {"se": 0.8, "ppv": 0.9, "f1": 0.5}}
    metrics = {"classes": classes, "accuracy": 0.9}
    assert selection_score(metrics) == 0.25
    summary = {"label": "x", "best": metrics, "best_epoch": 3, "steps": [1, 2, 3]}
    assert "| x | 3 | – | – | – | 80.0 | 90.0 | 0.500 | 90.0 | 0.250 |" in cv_table([summary])


# --- Records that are bad in ways the header's first line does not show ---------------------


def write_signals(
    folder: Path,
    name: str,
    leads: dict[str, np.ndarray],
    atr: tuple,
    fs: float = 250.0,
    units: str = "mV",
) -> None:
    """Record ``name`` with ``leads`` (name: values in ``units``; NaN is a missing sample) and
    ``atr`` = (samples, symbols, aux notes or None)."""
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        name,
        fs=fs,
        units=[units] * len(leads),
        sig_name=list(leads),
        p_signal=np.column_stack(list(leads.values())),
        fmt=["16"] * len(leads),
        write_dir=str(folder),
    )
    samples, symbols, notes = atr
    wfdb.wrann(
        name, "atr", np.asarray(samples), np.array(symbols), aux_note=notes, write_dir=str(folder)
    )


def _edit_header(folder: Path, name: str, old: str, new: str) -> None:
    header = folder / f"{name}.hea"
    text = header.read_text()
    assert old in text
    header.write_text(text.replace(old, new, 1))


def _truncate(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


BAD_RECORDS = {
    # the review's 106.hea: no sample count and no signal lines (TypeError half-way)
    "no signal lines": (
        lambda folder: (folder / "101.hea").write_text("101 1 250\n"),
        r"101\.hea declares 1 signals .* describes 0",
    ),
    "missing .dat": (
        lambda folder: _edit_header(folder, "101", "101.dat", "gone.dat"),
        r"101\.hea stores signal\(s\) 1 in gone\.dat, which is not in",
    ),
    "wrong signal count": (
        lambda folder: _edit_header(folder, "101", "101 1 250", "101 2 250"),
        r"101\.hea declares 2 signals on its first line but describes 1",
    ),
    "format 999": (
        lambda folder: _edit_header(folder, "101", "101.dat 16 ", "101.dat 999 "),
        r"101\.dat uses format 999, which wfdb cannot read",
    ),
    "more samples than the file": (
        lambda folder: _edit_header(folder, "101", "101 1 250 7500", "101 1 250 9000"),
        r"101\.dat holds 15000 bytes, but 101\.hea says it holds 9000 samples",
    ),
    "truncated .dat": (
        lambda folder: _truncate(folder / "101.dat", 7000),
        r"101\.dat holds 7000 bytes, but 101\.hea says it holds 7500 samples",
    ),
    "another record's .dat": (
        lambda folder: (folder / "101.dat").write_bytes((folder / "other.dat").read_bytes()),
        r"101\.dat does not hold the samples 101\.hea describes: signal 1 \(MLII\) has checksum",
    ),
}


@pytest.mark.parametrize("what", ["qrs", "beats", "rhythm"])
@pytest.mark.parametrize("problem", list(BAD_RECORDS))
def test_a_record_whose_files_disagree_with_its_header_stops_before_any_work(
    tmp_path, capsys, what, problem
):
    # 100 is fine and comes first: it used to be scored before 101 crashed with a traceback
    write_record(tmp_path, "100", beats=True)
    write_record(tmp_path, "101", beats=True)
    other = generate(30.0, fs=250.0, seed=4).signal_mv
    write_signals(tmp_path / "o", "other", {"MLII": other}, ([10], ["N"], None))
    (tmp_path / "other.dat").write_bytes((tmp_path / "o" / "other.dat").read_bytes())
    damage, message = BAD_RECORDS[problem]
    damage(tmp_path)
    records = ["--records", "100", "101"] if what == "beats" else []
    with pytest.raises(SystemExit, match=message):
        main([what, "--data", str(tmp_path), *records])
    assert "| 100 |" not in capsys.readouterr().out  # nothing was scored


def test_a_record_that_cannot_be_read_mid_run_ends_with_its_name_not_a_traceback(tmp_path):
    # beat_training scores DS2 with evaluate_records, without the command's checks first
    from inference.evaluation import beats, qrs

    write_record(tmp_path, "101", beats=True)
    _truncate(tmp_path / "101.dat", 7000)
    for load in (beats.load_annotated, qrs.load_annotated):
        with pytest.raises(SystemExit, match=r"^101: wfdb cannot read record 101"):
            load(tmp_path / "101")


def test_an_annotation_file_cut_short_is_refused(tmp_path):
    write_record(tmp_path, "101", beats=True)
    atr = tmp_path / "101.atr"
    _truncate(atr, atr.stat().st_size - 2)  # wfdb reads it without a word: fewer beats
    with pytest.raises(SystemExit, match=r"101\.atr is truncated: it does not end with"):
        main(["qrs", "--data", str(tmp_path)])


# --- What is scored ------------------------------------------------------------------------


def test_beats_leaves_detections_in_ventricular_fibrillation_out_as_qrs_does(tmp_path):
    # 10 s of 5 Hz waves between '[' and ']': the detector finds "beats" there. qrs left them
    # out, beats counted each one as a false positive (record 207: +P 81.8 % against 99.4 %).
    fs = 250
    strip = generate(40.0, fs=fs, seed=3)
    signal = strip.signal_mv.copy()
    flutter = slice(15 * fs, 25 * fs)
    signal[flutter] = 0.8 * np.sin(2 * np.pi * 5.0 * np.arange(10 * fs) / fs)
    outside_flutter = [b for b in strip.beats if not 14.5 * fs <= b <= 25.5 * fs]
    marks = sorted([*outside_flutter, 15 * fs, 25 * fs])
    symbols = ["[" if s == 15 * fs else "]" if s == 25 * fs else "N" for s in marks]
    write_signals(tmp_path, "207", {"MLII": signal}, (marks, symbols, None), fs=fs)
    assert main(["qrs", "--data", str(tmp_path), "--json", str(tmp_path / "q.json")]) == 0
    assert (
        main(
            [
                "beats",
                "--data",
                str(tmp_path),
                "--records",
                "207",
                "--json",
                str(tmp_path / "b.json"),
            ]
        )
        == 0
    )
    qrs_row = strict_json(tmp_path / "q.json")["records"][0]
    beats_row = strict_json(tmp_path / "b.json")["per_record"][0]
    assert qrs_row["fp"] <= 1
    assert beats_row["n_detected"] - beats_row["tp"] == qrs_row["fp"]
    assert beats_row["tp"] == qrs_row["tp"]


def test_beats_needs_its_records_named_and_reads_ds2_only_when_asked(tmp_path, monkeypatch):
    from inference.evaluation import beats

    def no_reading(*args, **kwargs):
        raise AssertionError("a record was read")

    # records named like DS2's are written first; from here on nothing may be read
    for name in ("100", "103", "101"):
        write_record(tmp_path, name, beats=True)
    for reader in ("rdheader", "rdrecord", "rdann"):
        monkeypatch.setattr(wfdb, reader, no_reading)
    monkeypatch.setattr(beats, "evaluate_records", no_reading)
    # plain `beats`, `--records` alone and `--data` alone selected ds2 (or every record) before
    for argv in (
        ["beats"],
        ["beats", "--data", str(tmp_path)],
        ["beats", "--data", str(tmp_path), "--records"],
    ):
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code == 2  # argparse: --records is required
    with pytest.raises(SystemExit, match=r"'all' would take in 100, 103 of .*name them, or ds2"):
        main(["beats", "--data", str(tmp_path), "--records", "all"])


def test_beats_on_all_scores_every_annotated_record_where_no_ds2_record_is(tmp_path):
    write_record(tmp_path, "418", beats=False)
    write_record(tmp_path, "x1", beats=True)
    output = tmp_path / "out" / "b.json"
    assert main(["beats", "--data", str(tmp_path), "--records", "all", "--json", str(output)]) == 0
    assert strict_json(output)["records"] == ["x1"]


@pytest.mark.parametrize("what", ["qrs", "rhythm"])
def test_records_given_with_no_name_are_an_error_not_every_record(tmp_path, what):
    write_record(tmp_path, "101", beats=True)
    with pytest.raises(SystemExit) as stopped:
        main([what, "--data", str(tmp_path), "--records"])
    assert stopped.value.code == 2


def test_a_record_named_twice_is_scored_once_and_records_options_add_up(tmp_path):
    for name in ("101", "106"):
        write_record(tmp_path, name, beats=True)
    output = tmp_path / "q.json"
    argv = ["qrs", "--data", str(tmp_path), "--json", str(output), "--records"]
    assert main([*argv, "101", "101", "106", "101"]) == 0
    assert [row["record"] for row in strict_json(output)["records"]] == ["101", "106"]
    assert main([*argv, "106", "--records", "101"]) == 0
    assert [row["record"] for row in strict_json(output)["records"]] == ["106", "101"]


@pytest.mark.parametrize(("units", "scale"), [("V", 1e-3), ("uV", 1e3), ("mV", 1.0)])
def test_a_record_in_volts_or_microvolts_is_read_in_millivolts(tmp_path, units, scale):
    strip = generate(30.0, fs=250.0, seed=3)
    atr = (strip.beats, ["N"] * len(strip.beats), None)
    write_signals(tmp_path, "101", {"MLII": strip.signal_mv * scale}, atr, units=units)
    output = tmp_path / "q.json"
    assert main(["qrs", "--data", str(tmp_path), "--json", str(output)]) == 0
    assert strict_json(output)["gross"]["se"] > 0.97  # Se 0 when V was read as mV


def test_a_signal_in_another_unit_is_refused(tmp_path):
    strip = generate(30.0, fs=250.0, seed=3)
    atr = (strip.beats, ["N"] * len(strip.beats), None)
    write_signals(tmp_path, "101", {"MLII": strip.signal_mv}, atr, units="mmHg")
    with pytest.raises(SystemExit, match=r"signal 1 \(MLII\) is in 'mmHg'; ECG channels"):
        main(["qrs", "--data", str(tmp_path)])


@pytest.mark.parametrize("what", ["qrs", "beats", "rhythm"])
def test_a_json_path_ending_in_md_is_refused_before_the_evaluation(tmp_path, what, monkeypatch):
    # it wrote the JSON, then the table over it ("wrote out.md and out.md")
    write_record(tmp_path, "101", beats=True)
    monkeypatch.setattr(wfdb, "rdrecord", lambda *a, **k: pytest.fail("work started"))
    output = tmp_path / "out.md"
    argv = [what, "--data", str(tmp_path), "--records", "101", "--json", str(output)]
    with pytest.raises(SystemExit, match=r"must not end in \.md"):
        main(argv)
    assert not output.exists()


def write_record_with_gap(folder: Path, name: str = "101") -> tuple[int, int]:
    """60 s at 250 Hz with samples 20-30 s missing (NaN, written as -32768 as the project's
    export writes gaps); returns the reference beats inside and outside the gap."""
    fs = 250
    strip = generate(60.0, fs=fs, seed=3)
    signal = strip.signal_mv.copy()
    signal[20 * fs : 30 * fs] = np.nan
    atr = (strip.beats, ["N"] * len(strip.beats), None)
    write_signals(folder, name, {"MLII": signal}, atr, fs=fs)
    in_gap = int(((strip.beats >= 20 * fs) & (strip.beats < 30 * fs)).sum())
    return in_gap, len(strip.beats) - in_gap


def test_qrs_scores_the_stretches_between_gaps_and_says_what_it_left_out(tmp_path, capsys):
    in_gap, scored = write_record_with_gap(tmp_path)
    output = tmp_path / "q.json"
    assert main(["qrs", "--data", str(tmp_path), "--json", str(output)]) == 0
    row = strict_json(output)["records"][0]
    assert row["excluded_s"] == 10.0 and row["excluded_reference_beats"] == in_gap > 0
    assert row["n_reference"] == scored
    assert row["se"] > 0.97 and row["ppv"] > 0.97
    assert "Left out, missing signal" in capsys.readouterr().out


def test_beats_scores_the_stretches_between_gaps(tmp_path, capsys):
    in_gap, scored = write_record_with_gap(tmp_path)
    output = tmp_path / "b.json"
    assert main(["beats", "--data", str(tmp_path), "--records", "101", "--json", str(output)]) == 0
    result = strict_json(output)
    assert result["reference"]["n_beats"] == scored
    assert result["excluded"] == {"seconds": 10.0, "reference_beats": in_gap}
    assert result["end_to_end"]["qrs"]["se"] > 0.97
    assert "Left out, missing signal" in capsys.readouterr().out


def test_rhythm_refuses_a_record_with_gaps_by_name_before_any_work(tmp_path, monkeypatch):
    from inference.evaluation import rhythm

    write_record_with_gap(tmp_path)
    monkeypatch.setattr(rhythm, "evaluate_record", lambda *a: pytest.fail("work started"))
    with pytest.raises(SystemExit, match=r"record 101 has 2500 missing samples \(10\.0 s"):
        main(["rhythm", "--data", str(tmp_path)])


LEAD_ORDERS = (("MLII", "V1"), ("V1", "MLII"))


def write_af_in_mlii(tmp_path, subfolder: str = ""):
    """Record 201: 240 s of AF in MLII beside a flat V1, once in each order of
    ``LEAD_ORDERS``, each in its own folder (``tmp_path/<order>/<subfolder>``); returns the
    strip and the folders by order."""
    fs = 250
    strip = generate(240.0, fs=fs, rhythm="AFIB", seed=1)
    flat = np.zeros_like(strip.signal_mv)
    samples = [0, *strip.beats]
    symbols = ["+", *["N"] * len(strip.beats)]
    notes = ["(AFIB", *[""] * len(strip.beats)]
    folders = {}
    for order in LEAD_ORDERS:
        folders[order] = tmp_path / "-".join(order)
        leads = {lead: strip.signal_mv if lead == "MLII" else flat for lead in order}
        write_signals(folders[order] / subfolder, "201", leads, (samples, symbols, notes), fs=fs)
    return strip, folders


def test_rhythm_finds_beats_and_af_on_the_analysed_lead_and_vf_on_the_first(tmp_path):
    # AF in MLII; V1 first and flat. The beats were read from channel 0, where there is nothing.
    _, folders = write_af_in_mlii(tmp_path)
    results = {}
    for order, folder in folders.items():
        output = folder / "r.json"
        assert main(["rhythm", "--data", str(folder), "--json", str(output)]) == 0
        results[order] = strict_json(output)["records"][0]
    first, swapped = results[("MLII", "V1")], results[("V1", "MLII")]
    assert first["af_classified_beats"]["detected_s"] > 60
    assert swapped["af_classified_beats"] == first["af_classified_beats"]
    assert (swapped["lead"], swapped["vf_lead"]) == ("MLII", "V1")


def test_the_af_tuning_grid_reads_the_analysed_lead_as_evaluate_rhythm_does(tmp_path):
    # AF in MLII; V1 first and flat. The grid read channel 0 whatever the record held (on
    # MIT-BIH: 114, V5 first), so it tuned on another lead than the product analyses.
    from inference.evaluation import af_tuning
    from inference.rhythm import AF_LAGS, V_EARLY_SHARE, RhythmConfig

    strip, folders = write_af_in_mlii(tmp_path, "mitdb")
    loaded = {order: af_tuning.load(folder, "mitdb", "201") for order, folder in folders.items()}
    first, swapped = loaded[("MLII", "V1")], loaded[("V1", "MLII")]
    assert len(swapped["beats"]["detected"]) > 0.9 * len(strip.beats)
    np.testing.assert_array_equal(swapped["beats"]["detected"], first["beats"]["detected"])
    assert swapped["lead"] == "MLII"
    config = RhythmConfig()
    shipped = {
        "window_beats": config.af_window_beats,
        "lags": AF_LAGS,
        "v_early_share": V_EARLY_SHARE,
        "threshold": config.af_threshold,
        "p_wave_present": config.af_p_wave_present,
    }
    scores = af_tuning.score(swapped, "classified", shipped, config.af_merge_s, config.af_min_s)
    assert scores["overlap_s"] > 60


def test_vf_folds_read_only_the_chosen_records_on_the_channels_they_have(tmp_path):
    # one lead each (IndexError before), and a record without .atr beside them (nstdb's bw:
    # FileNotFoundError before, since every record of the folder was read)
    fs = 250
    for name, seed in (("418", 1), ("419", 2)):
        strip = generate(30.0, fs=fs, seed=seed)
        write_signals(
            tmp_path, name, {"ECG": strip.signal_mv}, ([10, 3000], ["+", "+"], ["(N", "(VT"])
        )
    write_record(tmp_path / "noise", "bw", beats=True)
    for suffix in (".hea", ".dat"):
        (tmp_path / f"bw{suffix}").write_bytes((tmp_path / "noise" / f"bw{suffix}").read_bytes())
    output = tmp_path / "r.json"
    argv = ["rhythm", "--data", str(tmp_path), "--records", "418", "419", "--vf-folds", "2"]
    assert main([*argv, "--json", str(output)]) == 0
    cv = strict_json(output)["summary"]["vf_cross_validated"]
    assert cv["tn"] + cv["fp"] + cv["tp"] + cv["fn"] == 30  # 15 segments each, channel 0 only


@pytest.mark.parametrize("lead", [[], ["--lead", "mlii"]])
def test_rhythm_reads_each_header_once(tmp_path, monkeypatch, lead):
    # Every step read the header again (the checks, the short-record check, the lead, the VF
    # channel, the signal, the --vf-folds channels and their signal): 7 to 9 times a record.
    from inference.datasets import wfdb_record
    from inference.evaluation import common, rhythm

    reads: dict[str, int] = {}
    original = wfdb_record.read_header

    def counting_read_header(record_path):
        name = Path(record_path).name
        reads[name] = reads.get(name, 0) + 1
        return original(record_path)

    # each module that imported read_header by name holds its own reference to it
    for module in (wfdb_record, common, rhythm):
        monkeypatch.setattr(module, "read_header", counting_read_header, raising=False)
    strip = generate(30.0, fs=250.0, seed=1)
    beats = (strip.beats, ["N"] * len(strip.beats), None)
    # V1 first: the VF channel (the first) and the analysed lead (MLII) differ without --lead
    write_signals(tmp_path, "418", {"V1": strip.signal_mv, "MLII": strip.signal_mv}, beats)
    write_record(tmp_path, "419", beats=False, sig_name=("V1", "MLII"))
    argv = ["rhythm", "--data", str(tmp_path), "--vf-folds", "2", *lead]
    assert main([*argv, "--json", str(tmp_path / "r.json")]) == 0
    assert reads == {"418": 1, "419": 1}


def test_an_undefined_qrs_score_prints_as_a_dash_as_the_other_tables_do():
    from inference.evaluation.qrs import gross, qrs_markdown

    row = {"record": "x", "lead": "MLII", "n_reference": 0, "tp": 0, "fn": 0, "fp": 0}
    row |= {"se": float("nan"), "ppv": float("nan"), "duration_s": 10.0, "detect_s": 0.01}
    table = qrs_markdown([row], gross([row]))
    assert "nan" not in table and "| – | – |" in table


@pytest.mark.parametrize("fs_hz", [128.0, 1000.0])
def test_qrs_resamples_each_record_and_its_reference_when_asked(tmp_path, fs_hz):
    write_record(tmp_path, "100", beats=True)
    output = tmp_path / "q.json"
    assert (
        main(["qrs", "--data", str(tmp_path), "--resample-hz", str(fs_hz), "--json", str(output)])
        == 0
    )
    row = strict_json(output)["records"][0]
    # scored at the new rate, every beat of the 250 Hz record still matched
    assert row["fs"] == fs_hz and row["fn"] == 0 and row["fp"] == 0 and row["tp"] > 30


def test_qrs_refuses_a_resampling_rate_out_of_range_or_a_record_with_gaps(tmp_path):
    write_record(tmp_path / "plain", "100", beats=True)
    with pytest.raises(SystemExit, match="100 to 2000 Hz"):
        main(["qrs", "--data", str(tmp_path / "plain"), "--resample-hz", "50"])
    write_record_with_gap(tmp_path / "gaps")
    with pytest.raises(SystemExit, match="needs a record without gaps"):
        main(["qrs", "--data", str(tmp_path / "gaps"), "--resample-hz", "500"])
