"""Loaders for the PhysioNet databases CardioSpike trains and evaluates on."""

import os
from pathlib import Path

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The PhysioNet data folder: ``path``, else ``$CARDIOSPIKE_DATA_DIR``, else ../shared/data."""
    chosen = Path(path or os.environ.get("CARDIOSPIKE_DATA_DIR") or DEFAULT_DATA_DIR)
    if not chosen.is_dir():
        raise FileNotFoundError(
            f"PhysioNet data folder {chosen} not found: pass --data DIR or set "
            "CARDIOSPIKE_DATA_DIR to a folder holding mitdb/, vfdb/, nstdb/ or ptbxl/"
        )
    return chosen
