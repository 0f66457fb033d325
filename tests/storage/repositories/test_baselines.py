"""Contract tests of BaselineRepository, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from storage import BaselineRepository, Database


def test_put_then_get_and_replace(database: Database) -> None:
    with database.session() as session:
        repo = BaselineRepository(session)
        assert repo.get("multi_mnist", "k1") is None
        repo.put("multi_mnist", "k1", {"left": 0.95, "right": 0.93})
        repo.put("multi_mnist", "k2", {"left": 0.5, "right": 0.5})
    with database.session() as session:
        BaselineRepository(session).put("multi_mnist", "k1", {"left": 0.96, "right": 0.94})
    with database.session() as session:
        repo = BaselineRepository(session)
        first, second = repo.get("multi_mnist", "k1"), repo.get("multi_mnist", "k2")
        assert repo.get("uci_adult", "k1") is None
    assert first is not None and second is not None
    assert first.metrics == {"left": 0.96, "right": 0.94}
    assert second.metrics == {"left": 0.5, "right": 0.5}


def test_put_refuses_empty_or_non_finite_metrics(database: Database) -> None:
    with database.session() as session:
        repo = BaselineRepository(session)
        with pytest.raises(ValueError, match="metrics"):
            repo.put("e", "k", {})
        with pytest.raises(ValueError, match="metrics"):
            repo.put("e", "k", {"t": float("inf")})
