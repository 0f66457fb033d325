"""Fixtures of the service tests: a real uvicorn server per backend and test module."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import optuna
import pytest

from storage import StudyRepository, close_database, get_database
from tests.conftest import postgres_database_or_fail
from tests.utils.server import start_server


@dataclass(frozen=True)
class Served:
    """A running server, its database URL and an HTTP client on it."""

    base_url: str
    db_url: str
    client: httpx.Client

    def study_names(self) -> list[str]:
        """Names of our study records in the database (read directly, not through the API)."""
        with get_database(self.db_url).session() as session:
            infos, _ = StudyRepository(session).list(limit=1000)
        return sorted(info.name for info in infos)

    def optuna_study_names(self) -> list[str]:
        """Names of every Optuna study in the database."""
        return sorted(optuna.get_all_study_names(get_database(self.db_url).optuna_storage()))


@pytest.fixture(scope="module")
def module_postgres_url() -> Iterator[str]:
    """A PostgreSQL database shared by one test module (one server start per module)."""
    with postgres_database_or_fail() as url:
        yield url


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def module_db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Each backend in turn, shared by a test module."""
    if request.param == "postgres":
        yield str(request.getfixturevalue("module_postgres_url"))
        return
    url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'mtlsearch.db'}"
    yield url
    close_database(url)


TOKEN = "test-token-" + "x" * 8


@pytest.fixture(scope="module")
def served(module_db_url: str) -> Iterator[Served]:
    """The real server (uvicorn subprocess) on each backend, with a bearer token."""
    with (
        start_server(module_db_url, token=TOKEN) as base_url,
        httpx.Client(
            base_url=base_url, timeout=30.0, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client,
    ):
        yield Served(base_url=base_url, db_url=module_db_url, client=client)
