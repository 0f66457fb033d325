"""Contract tests of ArtifactRepository, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from storage import ArtifactRepository, Database, NotFoundError, StudyRepository


def _study(database: Database) -> str:
    with database.session() as session:
        return StudyRepository(session).create(name="s", experiment="e", spec={}).id


def test_put_replaces_and_get_returns_the_latest(database: Database) -> None:
    study_id = _study(database)
    with database.session() as session:
        ArtifactRepository(session).put(study_id, "best", {"weights": [1.0, 2.0]})
    with database.session() as session:
        ArtifactRepository(session).put(study_id, "best", {"weights": [3.0, 4.0]})
        ArtifactRepository(session).put(study_id, "pareto", {"front": []})
    with database.session() as session:
        repo = ArtifactRepository(session)
        best = repo.get(study_id, "best")
        assert repo.get(study_id, "missing") is None
        assert repo.get(study_id, "pareto") is not None
    assert best is not None
    assert best.payload == {"weights": [3.0, 4.0]}
    assert best.created_at.tzinfo is not None


def test_delete_removes_one_kind(database: Database) -> None:
    study_id = _study(database)
    with database.session() as session:
        repo = ArtifactRepository(session)
        repo.put(study_id, "best", {"x": 1})
        repo.put(study_id, "other", {"x": 2})
        assert repo.delete(study_id, "best")
        assert not repo.delete(study_id, "best")
        assert repo.get(study_id, "best") is None
        assert repo.get(study_id, "other") is not None


def test_put_refuses_unknown_study_and_bad_payload(database: Database) -> None:
    study_id = _study(database)
    with database.session() as session:
        repo = ArtifactRepository(session)
        with pytest.raises(NotFoundError, match="nope"):
            repo.put("nope", "best", {})
        with pytest.raises(ValueError, match="payload"):
            repo.put(study_id, "best", {"x": float("nan")})
        with pytest.raises(ValueError, match="kind"):
            repo.put(study_id, "", {})
