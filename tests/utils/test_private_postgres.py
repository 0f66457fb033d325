"""`tests.utils.private_postgres`: a cluster of its own that stops, starts and goes away."""

from __future__ import annotations

import time

import psycopg
import pytest

from tests.utils.private_postgres import (
    PrivatePostgres,
    StopMode,
    private_postgres_cluster,
    process_alive,
)


def _select_one(cluster: PrivatePostgres) -> int:
    libpq = cluster.url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq, connect_timeout=5) as connection:
        row = connection.execute("SELECT 1").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.postgres
def test_it_stops_starts_and_restarts(private_postgres: PrivatePostgres) -> None:
    cluster = private_postgres
    assert cluster.url == f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/mtl"
    assert cluster.port != 5432 and _select_one(cluster) == 1
    # A commit acknowledged just before the stop is kept, by a fast and an immediate (a crash
    # for PostgreSQL, recovered at start) stop alike.
    libpq = cluster.url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq, autocommit=True) as connection:
        connection.execute("CREATE TABLE kept (x int)")
    modes: tuple[StopMode, ...] = ("fast", "immediate")
    for n, mode in enumerate(modes):
        with psycopg.connect(libpq, autocommit=True) as connection:
            connection.execute("INSERT INTO kept VALUES (%s)", (n,))
        started = time.monotonic()
        cluster.stop(mode=mode)
        assert not cluster.is_running() and time.monotonic() - started < 15
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(libpq, connect_timeout=2)
        cluster.start()
        with psycopg.connect(libpq) as connection:
            rows = connection.execute("SELECT x FROM kept ORDER BY x").fetchall()
        assert rows == [(i,) for i in range(n + 1)], mode
    cluster.restart("fast")
    assert _select_one(cluster) == 1
    with pytest.raises(ValueError, match="mode must be one of"):
        cluster.stop(mode="kill")  # type: ignore[arg-type]


@pytest.mark.postgres
def test_it_listens_where_asked_and_is_removed_even_when_the_test_fails() -> None:
    with (
        pytest.raises(RuntimeError, match="the test failed"),
        private_postgres_cluster(extra_addresses=["127.0.0.2"]) as c,
    ):
        cluster, pid = c, c.postmaster_pid()
        assert pid is not None
        # It listens on the extra address too.
        libpq = c.url_at("127.0.0.2").replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(libpq, connect_timeout=5) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
        raise RuntimeError("the test failed")
    assert pid is not None and not process_alive(pid)
    assert not cluster.root.exists()
