"""Fixtures for tests on the real PhysioNet databases.

Each fixture is the database's folder under ``CARDIOSPIKE_DATA_DIR`` (default ../shared/data).
Without it the tests that need it skip and say why; CI has the data.
"""

from pathlib import Path

import pytest

from inference.datasets import data_dir


def physionet_folder(database: str, probe_record: str) -> Path:
    """The folder of ``database``, or a skip naming what is missing."""
    try:
        folder = data_dir() / database
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    if not (folder / f"{probe_record}.hea").is_file():
        pytest.skip(f"{database} record {probe_record} not found in {folder}")
    return folder


@pytest.fixture(scope="session")
def mitdb() -> Path:
    return physionet_folder("mitdb", "100")


@pytest.fixture(scope="session")
def vfdb() -> Path:
    return physionet_folder("vfdb", "422")


@pytest.fixture(scope="session")
def ptbxl() -> Path:
    return physionet_folder("ptbxl", "records100/00000/00001_lr")
