"""The models CardioSpike ships: weights next to a JSON model card in ``inference/weights/``.

A model card is ``<name>.json`` with at least ``name``, ``version`` and ``weights`` (a file
name in the same folder); training commands write it together with the weights, with the
data, split, seed, metrics, date and the command that reproduces them (a run writes to its
own folder under ``runs/`` unless told ``--replace-shipped``: ``run_dirs``). Its ``task`` says what
kind of model it is ("window", "beats", "beat-rows", "rhythm-vf"); cards without one are the
seed's 2-second window models.
"""

import json
from datetime import UTC, datetime
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


# --- Where a training run writes ------------------------------------------------------------
# A training command used to write straight over the shipped model (weights here, card in
# docs/models/), so following a card's "reproduce" line silently changed what the server loads.
# Now a run writes to a folder of its own; replacing the shipped files takes --replace-shipped.

ROOT = WEIGHTS_DIR.parent.parent
SHIPPED_DOCS_DIR = ROOT / "docs" / "models"
RUNS_DIR = ROOT / "runs"


def add_output_options(parser, name: str):
    """``--out-dir DIR`` and ``--replace-shipped`` (one or the other) on a training command
    whose model is ``name``; returns their mutually exclusive group."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--out-dir",
        type=Path,
        metavar="DIR",
        help="write the weights, the model card and its pictures here (default: a new folder "
        f"runs/{name}-<UTC date and time>/ in the checkout, which git ignores)",
    )
    group.add_argument(
        "--replace-shipped",
        action="store_true",
        help="write over the shipped model in inference/weights/ and its card in docs/models/ "
        "(to ship the result: the server loads these)",
    )
    return group


def run_dirs(out_dir: Path | None, replace_shipped: bool, name: str) -> tuple[Path, Path]:
    """The folders a run writes its weights and its card (with pictures) to: the shipped
    ones with ``replace_shipped``, else ``out_dir`` for both, else a new folder under
    ``runs/`` named after the model and the UTC time (to the second)."""
    if replace_shipped:
        return WEIGHTS_DIR, SHIPPED_DOCS_DIR
    if out_dir is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        out_dir = RUNS_DIR / f"{name}-{stamp}"
    return Path(out_dir), Path(out_dir)


def make_run_dirs(*folders: Path) -> None:
    """Create the output folders (``runs/`` is in .gitignore). A folder that cannot be made
    ends the command with one line, not a traceback."""
    for folder in folders:
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SystemExit(f"cannot write {folder}: {exc.strerror or exc}") from None
