"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data sets: $MTLSEARCH_DATA_DIR, else ../shared/data beside the checkout."""
    configured = os.environ.get("MTLSEARCH_DATA_DIR")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    if not (path / "mnist").is_dir():
        pytest.fail(f"data directory {path} has no mnist/; set MTLSEARCH_DATA_DIR")
    return path
