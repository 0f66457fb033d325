"""`OrphanCleaner`: the Optuna study of a failed create goes, now or once the database is back."""

from __future__ import annotations

import time
from collections.abc import Iterator

import optuna
import pytest

from mtlsearch.search.spec import StudySpec
from mtlsearch.settings import Settings
from service.services import orphans
from service.services.orphans import OrphanCleaner, drop_unless_recorded
from service.services.studies import create_study
from storage import Database, DatabaseUnavailableError
from tests.utils.databases import migrated_database
from tests.utils.specs import quick_spec


@pytest.fixture
def database(sqlite_url: str) -> Iterator[Database]:
    with migrated_database(sqlite_url, Settings()) as database:
        yield database


def names(database: Database) -> list[str]:
    return sorted(optuna.get_all_study_names(database.optuna_storage()))


def test_only_a_study_without_its_record_is_dropped(database: Database) -> None:
    public = create_study(database, StudySpec.model_validate(quick_spec(name="whole")))
    optuna.create_study(storage=database.optuna_storage(), study_name="orphan-0123456789ab")
    assert drop_unless_recorded(database, "orphan-0123456789ab")
    assert not drop_unless_recorded(database, public.optuna_study_name)  # its record exists
    assert names(database) == [public.optuna_study_name]
    assert drop_unless_recorded(database, "never-existed")  # already gone is fine


def test_it_retries_while_the_database_is_unreachable(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = orphans.drop_unless_recorded

    def flaky(db: Database, name: str) -> bool:
        calls.append(name)
        if len(calls) < 3:
            raise DatabaseUnavailableError("database unreachable: sqlite:///x (down)")
        return real(db, name)

    monkeypatch.setattr(orphans, "drop_unless_recorded", flaky)
    optuna.create_study(storage=database.optuna_storage(), study_name="cut-0123456789ab")
    cleaner = OrphanCleaner(database, retry_s=0.05)
    try:
        cleaner.discard("cut-0123456789ab")
        assert cleaner.pending() == ["cut-0123456789ab"]
        deadline = time.monotonic() + 10
        while cleaner.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert cleaner.pending() == [] and names(database) == []
        assert len(calls) == 3
    finally:
        cleaner.close()


def test_it_gives_up_after_its_deadline(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(db: Database, name: str) -> bool:
        raise DatabaseUnavailableError("database unreachable: sqlite:///x (down)")

    monkeypatch.setattr(orphans, "drop_unless_recorded", down)
    cleaner = OrphanCleaner(database, retry_s=0.02, give_up_s=0.1)
    try:
        cleaner.discard("lost-0123456789ab")
        deadline = time.monotonic() + 10
        while cleaner.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert cleaner.pending() == []
    finally:
        cleaner.close()
    with pytest.raises(ValueError, match="retry_s must be > 0"):
        OrphanCleaner(database, retry_s=0)
