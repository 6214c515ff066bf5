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
        main(["beats", "--data", str(tmp_path)])


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
        main([what, "--data", str(tmp_path)])


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
            for what in ("qrs", "beats")
        ],
    ],
)
def test_a_file_of_random_bytes_stops_with_its_name(tmp_path, what, file, seed, message):
    write_record(tmp_path, "100", beats=True)
    (tmp_path / file).write_bytes(np.random.default_rng(seed).bytes(300))
    with pytest.raises(SystemExit, match=re.escape(f"{file} {message}")):
        main([what, "--data", str(tmp_path)])


def test_an_unknown_beat_model_is_a_clear_error(tmp_path):
    write_record(tmp_path, "100", beats=True)
    with pytest.raises(SystemExit, match="unknown beat model 'nope'; available"):
        main(["beats", "--data", str(tmp_path), "--model", "nope"])


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
    assert main(["beats", "--data", str(tmp_path), "--json", str(output)]) == 0
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
