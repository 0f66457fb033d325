"""Contract tests of StudyRepository, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from storage import (
    ArtifactRepository,
    Database,
    NotFoundError,
    StudyExistsError,
    StudyRepository,
    StudyStatus,
    TrialRepository,
)

SPEC: dict[str, Any] = {"experiment": "multi_mnist", "weights": {"left": [0.1, 10.0]}}


def _create(database: Database, name: str, **kwargs: Any) -> str:
    with database.session() as session:
        return StudyRepository(session).create(name=name, experiment="e", spec=SPEC, **kwargs).id


def test_create_and_get_round_trip(database: Database) -> None:
    with database.session() as session:
        created = StudyRepository(session).create(
            name="first", experiment="multi_mnist", spec=SPEC, n_trials=20, time_budget_s=60.0
        )
    with database.session() as session:
        study = StudyRepository(session).get(created.id)
    assert study == created
    assert len(study.id) == 12 and int(study.id, 16) >= 0
    assert study.spec == SPEC
    assert study.status is StudyStatus.RUNNING
    assert study.optuna_study_name == f"first-{study.id}"
    assert (study.n_trials, study.time_budget_s, study.trials_reserved) == (20, 60.0, 0)
    assert study.created_at.tzinfo is not None and study.finished_at is None
    with database.session() as session:
        assert StudyRepository(session).get_by_name("first") == study
        assert StudyRepository(session).get_by_name("missing") is None


def test_get_unknown_id_names_it(database: Database) -> None:
    with database.session() as session, pytest.raises(NotFoundError, match="abc123"):
        StudyRepository(session).get("abc123")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"n_trials": 0}, "n_trials"),
        ({"time_budget_s": -1.0}, "time_budget_s"),
        ({"spec": {"x": object()}}, "spec"),
    ],
)
def test_create_rejects_bad_arguments(
    database: Database, kwargs: dict[str, Any], field: str
) -> None:
    arguments: dict[str, Any] = {"name": "s", "experiment": "e", "spec": SPEC} | kwargs
    with database.session() as session, pytest.raises(ValueError, match=field):
        StudyRepository(session).create(**arguments)


def test_duplicate_name_raises_and_writes_nothing(database: Database) -> None:
    first = _create(database, "same")
    with pytest.raises(StudyExistsError, match="same"), database.session() as session:
        repo = StudyRepository(session)
        repo.set_status(first, StudyStatus.FAILED, "written in the same unit of work")
        repo.create(name="same", experiment="other", spec={})
    with database.session() as session:
        studies, total = StudyRepository(session).list()
    assert total == 1
    assert studies[0].experiment == "e"
    assert studies[0].status is StudyStatus.RUNNING  # the whole unit of work rolled back


def test_duplicate_optuna_study_name_raises(database: Database) -> None:
    _create(database, "a", optuna_study_name="shared")
    with pytest.raises(StudyExistsError, match="shared"):
        _create(database, "b", optuna_study_name="shared")


def test_list_pages_newest_first_and_filters_by_status(database: Database) -> None:
    ids = [_create(database, f"s{i}") for i in range(5)]
    with database.session() as session:
        StudyRepository(session).set_status(ids[1], "cancelled", "user asked")
    with database.session() as session:
        repo = StudyRepository(session)
        page1, total = repo.list(offset=0, limit=2)
        page2, _ = repo.list(offset=2, limit=2)
        page3, _ = repo.list(offset=4, limit=2)
        running, running_total = repo.list(status=StudyStatus.RUNNING)
        with pytest.raises(ValueError, match="running"):
            repo.list(status="paused")
        with pytest.raises(ValueError, match="limit"):
            repo.list(limit=0)
    assert total == 5
    assert [s.id for s in page1 + page2 + page3] == ids[::-1]
    assert running_total == 4 and ids[1] not in {s.id for s in running}


def test_set_status_stamps_finish_and_honours_expected(database: Database) -> None:
    study_id = _create(database, "s")
    with database.session() as session:
        repo = StudyRepository(session)
        assert repo.set_status(study_id, StudyStatus.COMPLETED, expected="running")
        assert not repo.set_status(study_id, StudyStatus.CANCELLED, "late", expected="running")
        study = repo.get(study_id)
        with pytest.raises(NotFoundError, match="nope"):
            repo.set_status("nope", StudyStatus.FAILED)
    assert study.status is StudyStatus.COMPLETED
    assert study.finished_at is not None and study.message is None


def test_delete_cascades_to_artifacts(database: Database) -> None:
    keep, gone = _create(database, "keep"), _create(database, "gone")
    with database.session() as session:
        ArtifactRepository(session).put(keep, "best", {"w": 1})
        ArtifactRepository(session).put(gone, "best", {"w": 2})
    with database.session() as session:
        StudyRepository(session).delete(gone)
    with database.session() as session:
        artifacts = ArtifactRepository(session)
        assert artifacts.get(gone, "best") is None
        assert artifacts.get(keep, "best") is not None
        with pytest.raises(NotFoundError, match=gone):
            StudyRepository(session).get(gone)
        with pytest.raises(NotFoundError, match=gone):
            StudyRepository(session).delete(gone)


def test_pick_for_worker_alternates_and_skips_spent_studies(database: Database) -> None:
    a, b = _create(database, "a"), _create(database, "b")
    full = _create(database, "full", n_trials=1)
    done = _create(database, "done")
    with database.session() as session:
        repo = StudyRepository(session)
        assert TrialRepository(session).reserve(full, None) is not None
        repo.set_status(done, StudyStatus.COMPLETED)
    picked = []
    for _ in range(4):
        with database.session() as session:
            study = StudyRepository(session).pick_for_worker()
        assert study is not None and study.last_served_at is not None
        picked.append(study.id)
    assert picked == [a, b, a, b]


def test_pick_for_worker_returns_none_without_running_studies(database: Database) -> None:
    study_id = _create(database, "s")
    with database.session() as session:
        StudyRepository(session).set_status(study_id, StudyStatus.FAILED, "diverged")
    with database.session() as session:
        assert StudyRepository(session).pick_for_worker() is None


@pytest.mark.postgres
def test_pick_for_worker_waits_for_the_only_study_while_its_row_is_locked(
    postgres_url: str,
) -> None:
    # A completion check locks the study row for a moment; a worker looking for work then must
    # not conclude there is none (it went idle and exited, leaving a confirmation unrun).
    import threading

    from sqlalchemy import select

    from storage import close_database, get_database
    from storage.migrate import upgrade
    from storage.models import StudyRecord

    upgrade(postgres_url)
    database = get_database(postgres_url)
    try:
        study_id = _create(database, "only")
        picked: list[str | None] = []
        with database.session() as holder:
            holder.execute(
                select(StudyRecord.id).where(StudyRecord.id == study_id).with_for_update()
            )

            def pick() -> None:
                with database.session() as session:
                    info = StudyRepository(session).pick_for_worker()
                picked.append(info.id if info is not None else None)

            thread = threading.Thread(target=pick)
            thread.start()
            thread.join(timeout=1.0)
            assert thread.is_alive()  # waiting for the lock, not answering "no work"
        thread.join(timeout=10.0)
        assert picked == [study_id]
    finally:
        close_database(postgres_url)
