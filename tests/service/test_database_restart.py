"""The API while its PostgreSQL restarts, on the real server and a private cluster.

While the database is down every route that needs it answers 503 with one JSON line naming
the database as unreachable, at once (never a hang, never a 500); once it is back the same
server process answers again (its pool reconnects). A POST cut off by the stop leaves neither
our record nor its Optuna study behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import optuna
import psycopg
import pytest

from storage import Database, StudyRepository
from storage.migrate import upgrade
from tests.service.conftest import TOKEN
from tests.utils.private_postgres import PrivatePostgres, StopMode
from tests.utils.server import start_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

#: Trust auth ignores it; it must never show in an answer.
PASSWORD = "pw-never-shown"
#: The most seconds a request may take while the database is down.
DOWN_BOUND_S = 5.0
MODES: list[StopMode] = ["fast", "immediate"]


@dataclass(frozen=True)
class Restarting:
    """A server on a private cluster, a client, and one study created while all was well."""

    cluster: PrivatePostgres
    url: str
    client: httpx.Client
    study: dict[str, Any]

    def libpq(self) -> str:
        return self.cluster.url.replace("postgresql+psycopg://", "postgresql://")


def spec(name: str) -> dict[str, Any]:
    return {"name": name, "experiment": "synthetic", "n_trials": 4}


@pytest.fixture
def restarting(private_postgres: PrivatePostgres) -> Iterator[Restarting]:
    url = private_postgres.url.replace("postgres@", f"postgres:{PASSWORD}@")
    upgrade(url)
    with (
        start_server(url, token=TOKEN) as base_url,
        httpx.Client(
            base_url=base_url, timeout=30.0, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client,
    ):
        created = client.post("/api/v1/studies", json=spec("before"))
        assert created.status_code == 201, created.text
        yield Restarting(private_postgres, url, client, created.json())


def routes(study: dict[str, Any]) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every route that reads or writes the database (the dashboard's too)."""
    sid, optuna_id = study["id"], study["optuna_study_id"]
    return [
        ("GET", "/healthz", None),
        ("GET", "/api/v1/studies", None),
        ("GET", f"/api/v1/studies/{sid}", None),
        ("GET", f"/api/v1/studies/{sid}/trials", None),
        ("GET", f"/api/v1/studies/{sid}/best", None),
        ("GET", "/api/v1/workers", None),
        ("GET", "/metrics", None),
        ("POST", "/api/v1/studies", spec("while-down")),
        ("POST", f"/api/v1/studies/{sid}/cancel", None),
        ("DELETE", f"/api/v1/studies/{sid}", None),
        ("GET", "/dashboard", None),
        ("GET", "/api/studies", None),
        ("GET", f"/api/studies/{optuna_id}", None),
    ]


def assert_unreachable_answer(response: httpx.Response, elapsed_s: float, port: int) -> None:
    where = f"{response.request.method} {response.request.url.path}"
    assert response.status_code == 503, (where, response.text)
    assert elapsed_s < DOWN_BOUND_S, (where, elapsed_s)
    assert response.headers["content-type"] == "application/json", where
    detail = response.json()["detail"]
    shown = f"postgresql+psycopg://postgres:***@127.0.0.1:{port}/mtl"
    assert detail.startswith(f"database unreachable: {shown} ("), (where, detail)
    assert "\n" not in detail and "Traceback" not in response.text, where
    assert PASSWORD not in response.text, where


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not {what} after {timeout_s:.0f} s")
        time.sleep(0.1)


@pytest.mark.parametrize("mode", MODES)
def test_every_route_is_503_while_down_and_answers_again_after(
    restarting: Restarting, mode: StopMode
) -> None:
    client, cluster, study = restarting.client, restarting.cluster, restarting.study
    cluster.stop(mode=mode)
    for method, path, body in routes(study):
        started = time.monotonic()
        response = client.request(method, path, json=body)
        assert_unreachable_answer(response, time.monotonic() - started, cluster.port)
    assert client.get("/api/v1/experiments").status_code == 200  # needs no database

    cluster.start()  # the same server process: its pool reconnects
    for method, path, _ in routes(study):
        if method == "GET":
            expected = 404 if path.endswith("/best") else 200  # no trial has completed
            assert client.get(path).status_code == expected, path
    assert client.post("/api/v1/studies", json=spec("after")).status_code == 201
    cancelled = client.post(f"/api/v1/studies/{study['id']}/cancel")
    assert cancelled.json()["status"] == "cancelled", cancelled.text
    assert client.delete(f"/api/v1/studies/{study['id']}").status_code == 204
    names = [s["name"] for s in client.get("/api/v1/studies").json()["data"]]
    assert names == ["after"]  # the POST while down wrote nothing


def _insert_waits(libpq: str) -> bool:
    with psycopg.connect(libpq, autocommit=True, connect_timeout=5) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO mtl_studies%'"
        ).fetchone()
    return row is not None and row[0] > 0


@pytest.mark.parametrize("mode", MODES)
def test_a_post_cut_off_by_the_stop_leaves_nothing_behind(
    restarting: Restarting, mode: StopMode
) -> None:
    cluster, client = restarting.cluster, restarting.client
    # Our record's INSERT waits on this lock, after the Optuna study was written.
    locker = psycopg.connect(restarting.libpq(), connect_timeout=5)
    locker.execute("LOCK TABLE mtl_studies IN SHARE MODE")
    with ThreadPoolExecutor(max_workers=1) as pool:
        posted = pool.submit(client.post, "/api/v1/studies", json=spec("cut"))
        wait_until(lambda: _insert_waits(restarting.libpq()), 15, "waiting on the lock")
        stopped = time.monotonic()
        cluster.stop(mode=mode)
        response = posted.result(timeout=30)
    assert_unreachable_answer(response, time.monotonic() - stopped, cluster.port)
    locker.close()

    cluster.start()
    database = Database(restarting.url)
    try:

        def optuna_names() -> list[str]:
            return optuna.get_all_study_names(database.optuna_storage())

        wait_until(
            lambda: not [n for n in optuna_names() if n.startswith("cut-")],
            20,
            "the Optuna study of the cut POST deleted",
        )
        with database.session() as session:
            assert StudyRepository(session).get_by_name("cut") is None
        assert [n for n in optuna_names() if n.startswith("before-")]  # the whole one stays
    finally:
        database.dispose()
    again = client.post("/api/v1/studies", json=spec("cut"))
    assert again.status_code == 201, again.text
