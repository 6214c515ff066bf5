"""The training commands' arguments and outputs: checked before the minutes of work, with a
one-line error, not a traceback at the end. Nothing here trains or reads the PhysioNet data."""

import pytest

from inference import beat_rows_training, beat_training, ptbxl_training, vf


def _no_loading(*args, **kwargs):
    raise AssertionError("data were loaded before the arguments were checked")


@pytest.fixture
def a_file(tmp_path):
    """A regular file: nothing can be written under it."""
    path = tmp_path / "a-file"
    path.write_text("")
    return path


def test_vf_compare_checks_its_json_before_reading_vfdb(tmp_path, a_file, monkeypatch):
    monkeypatch.setattr(vf, "load_vfdb", _no_loading)
    with pytest.raises(SystemExit, match="cannot write"):
        vf.main(["compare", "--data", str(tmp_path), "--json", str(a_file / "x.json")])


def test_vf_train_checks_its_weights_and_card_paths_before_reading_vfdb(
    tmp_path, a_file, monkeypatch
):
    monkeypatch.setattr(vf, "load_vfdb", _no_loading)
    with pytest.raises(SystemExit, match="cannot write"):
        vf.main(["train", "--data", str(tmp_path), "--out", str(a_file / "vf.npz")])
    # numpy wrote vf.pt.npz while the card said "weights": "vf.pt"
    with pytest.raises(SystemExit) as refused:
        vf.main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "vf.pt")])
    assert refused.value.code == 2
    with pytest.raises(SystemExit, match="data folder .*missing not found"):
        vf.main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "v.npz")])


def test_beat_training_checks_its_cv_outputs_before_reading_ds1(a_file, monkeypatch):
    monkeypatch.setattr(beat_training, "load_set", _no_loading)
    for option in ("--cv-json", "--cv-out"):
        with pytest.raises(SystemExit, match="cannot write"):
            beat_training.main(["--cv", "2", option, str(a_file / "cv.json")])


def test_training_commands_name_a_wrong_data_folder_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(beat_training, "load_set", _no_loading)
    monkeypatch.setattr(beat_rows_training, "load_rows", _no_loading)
    with pytest.raises(SystemExit, match=r"PhysioNet data folder .*nowhere not found"):
        beat_training.main(["--cv", "2", "--data", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit, match=r"MIT-BIH records not found in .*mitdb: 101, 106"):
        beat_training.main(["--cv", "2", "--data", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"MIT-BIH records not found in .*mitdb: 101, 106"):
        beat_rows_training.main(["--tune", "--data", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"PTB-XL file .* not found"):
        ptbxl_training.main(
            [
                "model01",
                "--data",
                str(tmp_path),
                "--weights-dir",
                str(tmp_path / "w"),
                "--docs-dir",
                str(tmp_path / "d"),
            ]
        )


@pytest.mark.parametrize("option", ["--epochs", "--patience"])
def test_ptbxl_training_refuses_zero_epochs_instead_of_training_the_default(
    tmp_path, monkeypatch, option
):
    # --epochs 0 trained the default 40 epochs and wrote a card
    monkeypatch.setattr(ptbxl_training, "load_data", _no_loading)
    with pytest.raises(SystemExit) as refused:
        ptbxl_training.main(
            [
                "model01",
                option,
                "0",
                "--weights-dir",
                str(tmp_path / "w"),
                "--docs-dir",
                str(tmp_path / "d"),
            ]
        )
    assert refused.value.code == 2
    assert not (tmp_path / "w").exists()
