"""The models CardioSpike ships: weights next to a JSON model card in ``inference/weights/``.

A model card is ``<name>.json`` with at least ``name``, ``version`` and ``weights`` (a file
name in the same folder); training commands write it together with the weights, with the
data, split, seed, metrics, date and the command that reproduces them. Its ``task`` says what
kind of model it is ("window", "beats", "beat-rows", "rhythm-vf"); cards without one are the
seed's 2-second window models.
"""

import json
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
REQUIRED_CARD_KEYS = ("name", "version", "weights")


def list_models(weights_dir: Path = WEIGHTS_DIR, task: str | None = None) -> list[dict]:
    """Model cards of every shipped model (of ``task``, when given), sorted by name.

    Raises ``ValueError`` naming the file when a card is unreadable, lacks a required key,
    or points at weights that are not there: a broken model must not pass as loaded.
    """
    cards = []
    for card_path in sorted(Path(weights_dir).glob("*.json")):
        try:
            card = json.loads(card_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"model card {card_path.name} is unreadable: {exc}") from exc
        missing = [key for key in REQUIRED_CARD_KEYS if key not in card]
        if missing:
            raise ValueError(f"model card {card_path.name} lacks {', '.join(missing)}")
        if not (card_path.parent / card["weights"]).is_file():
            raise ValueError(f"model card {card_path.name}: weights {card['weights']} not found")
        if task is None or card.get("task", "window") == task:
            cards.append(card)
    return sorted(cards, key=lambda card: card["name"])
