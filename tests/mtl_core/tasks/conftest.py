"""Fixtures of the loss and metric tests."""

from __future__ import annotations

import pytest

from mtl_core.tasks import LOSSES, METRICS


@pytest.fixture(autouse=True)
def restore_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Losses and metrics registered by a test are forgotten when it ends."""
    monkeypatch.setattr(LOSSES, "_entries", dict(LOSSES._entries))
    monkeypatch.setattr(METRICS, "_entries", dict(METRICS._entries))
