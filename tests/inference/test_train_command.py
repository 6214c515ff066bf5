"""The training command refuses to rewrite a committed model card without its real-data row."""

import pytest

from inference import train
from inference.registry import WEIGHTS_DIR


def test_the_synthetic_recipe_will_not_drop_the_cards_real_ecg_row(tmp_path, capsys):
    card = WEIGHTS_DIR / "window-cnn-synthetic.json"
    before = card.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        train.main(["synthetic", "--data", str(tmp_path / "no-such-folder")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "real MIT-BIH DS2 row" in error and "--without-real-check" in error
    assert card.read_bytes() == before  # nothing trained, nothing written
    # a data folder without MIT-BIH in it is refused the same way
    with pytest.raises(SystemExit):
        train.main(["synthetic", "--data", str(tmp_path)])
    assert card.read_bytes() == before
