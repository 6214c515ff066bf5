import json
import subprocess
import sys

import pytest

from inference.registry import list_models
from tests.conftest import PROJECT_ROOT


def test_it_imports_every_inference_module_without_django():
    code = (
        "import importlib, pkgutil, sys, inference\n"
        "names = [m.name for m in pkgutil.walk_packages(inference.__path__, 'inference.')\n"
        "         if not m.name.endswith('__main__')]\n"
        "for name in names: importlib.import_module(name)\n"
        "assert not any(m == 'django' or m.startswith('django.') for m in sys.modules), "
        "'inference imported django'\n"
        "print(len(names))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 10  # signal, synthetic, models, predictor, ...


def test_it_lists_model_cards_with_their_weights(tmp_path):
    (tmp_path / "b.pt").write_bytes(b"weights")
    (tmp_path / "b.json").write_text(json.dumps({"name": "b", "version": "2", "weights": "b.pt"}))
    (tmp_path / "a.pt").write_bytes(b"weights")
    (tmp_path / "a.json").write_text(json.dumps({"name": "a", "version": "1", "weights": "a.pt"}))
    assert [card["name"] for card in list_models(tmp_path)] == ["a", "b"]


@pytest.mark.parametrize(
    ("card", "message"),
    [
        ("{not json", "unreadable"),
        ('{"name": "a", "weights": "a.pt"}', "lacks version"),
        ('{"name": "a", "version": "1", "weights": "missing.pt"}', "missing.pt not found"),
    ],
)
def test_it_refuses_a_broken_model_card(tmp_path, card, message):
    (tmp_path / "a.json").write_text(card)
    with pytest.raises(ValueError, match=message):
        list_models(tmp_path)


SHIPPED_JSON = sorted(
    path
    for folder in ("inference/weights", "inference/examples", "docs")
    for path in (PROJECT_ROOT / folder).rglob("*.json")
)


def test_every_shipped_json_file_is_json_other_programs_can_read():
    # Python writes and reads a bare NaN, but JavaScript's JSON.parse, jq and PostgreSQL refuse
    # it: an undefined score (Se of a class without beats) belongs in these files as null
    def refuse(constant):
        raise ValueError(f"holds {constant}")

    assert len(SHIPPED_JSON) >= 80  # the model cards, the cross-validation results, examples
    unreadable = []
    for path in SHIPPED_JSON:
        try:
            json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)
        except ValueError as exc:
            unreadable.append(f"{path.relative_to(PROJECT_ROOT)}: {exc}")
    assert unreadable == []
