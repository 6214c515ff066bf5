"""Where the training commands write: a run goes to its own folder (``--out-dir``, by default a
new one under ``runs/``); only ``--replace-shipped`` writes over the shipped weights and cards.

Following a card's "reproduce" line used to overwrite the model the server loads. Nothing here
trains for real or reads the PhysioNet data: the fits are cut to one epoch or replaced."""

import argparse
from pathlib import Path

import numpy as np
import pytest

from inference import (
    beat_rows_training,
    beat_training,
    ptbxl_training,
    registry,
    train,
    vf,
)
from inference.aami import DS1
from inference.registry import SHIPPED_DOCS_DIR, WEIGHTS_DIR


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    """The default runs/ folder, moved out of the checkout for the test."""
    folder = tmp_path / "runs"
    monkeypatch.setattr(registry, "RUNS_DIR", folder)
    return folder


def shipped_bytes(prefix: str) -> dict[Path, bytes]:
    """Every shipped weights, card and picture file of the model(s) named ``prefix*``."""
    paths = [*WEIGHTS_DIR.glob(f"{prefix}*"), *SHIPPED_DOCS_DIR.glob(f"{prefix}*")]
    assert paths, f"no shipped files for {prefix}"
    return {path: path.read_bytes() for path in sorted(paths)}


def assert_outside_shipped(folder: Path, runs: Path) -> None:
    folder = folder.resolve()
    assert folder.is_relative_to(runs.resolve())
    assert not folder.is_relative_to(WEIGHTS_DIR) and not folder.is_relative_to(
        SHIPPED_DOCS_DIR.parent
    )


class Stop(Exception):
    """Raised by a replaced training function once it has seen the arguments."""


def capture(seen: dict):
    def replaced(*args, **kwargs):
        seen["args"] = next(arg for arg in args if isinstance(arg, argparse.Namespace))
        raise Stop

    return replaced


# --- The parsers' defaults --------------------------------------------------------------------


@pytest.mark.parametrize("recipe", ["synthetic", "mitdb"])
def test_window_cnn_writes_to_a_run_folder_unless_told_to_replace_the_shipped_one(
    recipe, runs_dir, monkeypatch
):
    seen = {}
    monkeypatch.setattr(train, f"train_{recipe}", capture(seen))
    extra = ["--without-real-check"] if recipe == "synthetic" else []
    with pytest.raises(Stop):
        train.main([recipe, *extra])
    assert_outside_shipped(seen["args"].weights_dir, runs_dir)
    assert seen["args"].weights_dir.name.startswith(f"window-cnn-{recipe}-")
    assert seen["args"].docs_dir == seen["args"].weights_dir
    with pytest.raises(Stop):
        train.main([recipe, *extra, "--replace-shipped"])
    assert (seen["args"].weights_dir, seen["args"].docs_dir) == (WEIGHTS_DIR, SHIPPED_DOCS_DIR)
    with pytest.raises(Stop):
        train.main([recipe, *extra, "--out-dir", "somewhere"])
    assert seen["args"].weights_dir == seen["args"].docs_dir == Path("somewhere")
    with pytest.raises(SystemExit) as refused:  # one or the other
        train.main([recipe, *extra, "--out-dir", "somewhere", "--replace-shipped"])
    assert refused.value.code == 2


def test_beat_classifier_and_beat_rows_resolve_a_run_folder(runs_dir, monkeypatch):
    seen = {}
    monkeypatch.setattr(beat_training, "mitdb_folder", lambda *a: Path("."))
    monkeypatch.setattr(beat_training, "load_set", lambda *a, **k: {"labels": np.zeros(1, int)})
    monkeypatch.setattr(beat_training, "fit", capture(seen))
    for argv, expected in (([], None), (["--replace-shipped"], WEIGHTS_DIR)):
        with pytest.raises(Stop):
            beat_training.main(argv)
        if expected is None:
            assert_outside_shipped(seen["args"].weights_dir, runs_dir)
            assert seen["args"].weights_dir.name.startswith("beat-cnn-mitdb-")
        else:
            assert seen["args"].weights_dir == expected
            assert seen["args"].docs_dir == SHIPPED_DOCS_DIR

    import inference.evaluation.common as common

    monkeypatch.setattr(common, "mitdb_folder", lambda *a: Path("."))
    monkeypatch.setattr(beat_rows_training, "load_rows", lambda *a: {})
    monkeypatch.setattr(beat_rows_training, "train_layout", capture(seen))
    with pytest.raises(Stop):
        beat_rows_training.main(["--layout", "kaggle187"])
    assert_outside_shipped(seen["args"].weights_dir, runs_dir)
    with pytest.raises(Stop):
        beat_rows_training.main(["--layout", "kaggle187", "--replace-shipped"])
    assert (seen["args"].weights_dir, seen["args"].docs_dir) == (WEIGHTS_DIR, SHIPPED_DOCS_DIR)


def test_ptbxl_writes_to_a_run_folder_and_resumes_only_in_a_named_one(runs_dir, monkeypatch):
    seen = {}

    def no_run(*args, checkpoint, **kwargs):
        seen["checkpoint"] = checkpoint
        raise Stop

    monkeypatch.setattr(ptbxl_training, "checked_data", lambda *a, **k: None)
    monkeypatch.setattr(ptbxl_training, "run", no_run)
    with pytest.raises(Stop):
        ptbxl_training.main(["model01"])
    assert_outside_shipped(seen["checkpoint"].parent, runs_dir)
    assert seen["checkpoint"].parent.name.startswith("ptbxl-model01-")
    with pytest.raises(Stop):
        ptbxl_training.main(["model01", "--replace-shipped"])
    assert seen["checkpoint"].parent == WEIGHTS_DIR
    # a new folder holds no checkpoint: --resume names the interrupted run's folder
    with pytest.raises(SystemExit) as refused:
        ptbxl_training.main(["model01", "--resume"])
    assert refused.value.code == 2
    with pytest.raises(Stop):
        ptbxl_training.main(["model01", "--resume", "--out-dir", str(runs_dir / "earlier")])
    assert seen["checkpoint"].parent == runs_dir / "earlier"


# --- Runs with the fit cut short: the shipped files keep their bytes --------------------------


def test_a_window_cnn_run_leaves_the_shipped_model_alone(runs_dir, tmp_path, monkeypatch, capsys):
    before = shipped_bytes("window-cnn-synthetic")
    real_fit = train.fit
    monkeypatch.setattr(
        train, "fit", lambda model, *a, **k: real_fit(model, *a, **{**k, "epochs": 1})
    )
    argv = ["synthetic", "--without-real-check", "--data", str(tmp_path / "no-data")]
    assert train.main(argv) == 0
    assert shipped_bytes("window-cnn-synthetic") == before
    (run,) = [path for path in runs_dir.iterdir() if path.is_dir()]
    for name in ("window-cnn-synthetic.pt", "window-cnn-synthetic.json", "window-cnn-synthetic.md"):
        assert (run / name).is_file()
    assert str(run) in capsys.readouterr().out  # says where the files went


def test_a_beat_classifier_run_leaves_the_shipped_model_alone(runs_dir, monkeypatch):
    before = shipped_bytes("beat-cnn-mitdb")
    labels = np.arange(10) % 5
    monkeypatch.setattr(beat_training, "mitdb_folder", lambda *a: Path("."))
    monkeypatch.setattr(beat_training, "load_set", lambda *a, **k: {"labels": labels})
    monkeypatch.setattr(beat_training, "fit", lambda *a: [])  # the untrained network
    assert beat_training.main(["--no-test", "--out-dir", str(runs_dir / "mine")]) == 0
    assert shipped_bytes("beat-cnn-mitdb") == before
    assert (runs_dir / "mine" / "beat-cnn-mitdb.pt").is_file()
    assert (runs_dir / "mine" / "beat-cnn-mitdb.md").is_file()


def test_a_beat_rows_run_leaves_the_shipped_model_alone(runs_dir, monkeypatch):
    before = shipped_bytes("beat-rows-kaggle187")
    import inference.evaluation.common as common

    rng = np.random.default_rng(0)
    records = np.array([DS1[0]] * 10 + [beat_rows_training.MITDB_VALIDATION[0]] * 10)
    rows = rng.random((20, beat_rows_training.ROW_LAYOUTS["kaggle187"].n_samples), np.float32)
    fake = {"kaggle187": (rows, np.arange(20) % 5, records)}
    monkeypatch.setattr(common, "mitdb_folder", lambda *a: Path("."))
    monkeypatch.setattr(beat_rows_training, "load_rows", lambda *a: fake)
    assert beat_rows_training.main(["--layout", "kaggle187", "--epochs", "1"]) == 0
    assert shipped_bytes("beat-rows-kaggle187") == before
    (run,) = [path for path in runs_dir.iterdir() if path.is_dir()]
    assert (run / "beat-rows-kaggle187.json").is_file()
    assert (run / "beat-rows-kaggle187.md").is_file()


def test_the_vf_reproduce_command_leaves_the_shipped_detector_alone(
    runs_dir, tmp_path, monkeypatch, capsys
):
    before = shipped_bytes("rhythm-vf")
    data = tmp_path / "vfdb"
    data.mkdir()
    for record in ("418", "419"):
        (data / f"{record}.hea").write_text("")
    y = np.array([0, 1, 0, 1])
    monkeypatch.setattr(
        vf, "load_vfdb", lambda *a, **k: {"x": np.zeros((4, 1)), "y": y, "channel": y * 0}
    )
    monkeypatch.setattr(vf, "cross_validate", lambda *a, **k: {"gross": {}, "probability": y * 0.9})
    shipped = vf.VfModel.load(vf.WEIGHTS_PATH)
    monkeypatch.setattr(vf, "fit_model", lambda *a, **k: shipped)
    # the card's reproduce line, as it stands
    argv = ["train", "--data", str(data), "--folds", "2", "--threshold", "0.7"]
    assert vf.main(argv) == 0
    assert shipped_bytes("rhythm-vf") == before
    (run,) = [path for path in runs_dir.iterdir() if path.is_dir()]
    assert (run / "rhythm-vf.npz").is_file() and (run / "rhythm-vf.json").is_file()
    assert f"wrote {run / 'rhythm-vf.npz'}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:  # --out and --replace-shipped: one or the other
        vf.main([*argv, "--out", str(tmp_path / "v.npz"), "--replace-shipped"])
    assert refused.value.code == 2


def test_the_signal_quality_detector_writes_to_a_run_folder_unless_told(runs_dir, monkeypatch):
    from inference import quality

    seen = {}
    monkeypatch.setattr(quality, "train", capture(seen))
    with pytest.raises(Stop):
        quality.main(["train", "--mitdb", "m", "--nstdb", "n"])
    out = Path(seen["args"].out)
    assert_outside_shipped(out.parent, runs_dir)
    # its card beside the weights, not in inference/weights (every json there is a product
    # model's card) nor over docs/models' card
    assert Path(seen["args"].json) == out.with_suffix(".json")
    with pytest.raises(Stop):
        quality.main(["train", "--mitdb", "m", "--nstdb", "n", "--replace-shipped"])
    assert Path(seen["args"].out) == quality.WEIGHTS_PATH
    assert Path(seen["args"].json) == quality.CARD_PATH


def test_runs_are_ignored_by_git():
    ignored = (registry.ROOT / ".gitignore").read_text().splitlines()
    assert "/runs/" in ignored
