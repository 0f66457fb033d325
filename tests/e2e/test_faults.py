"""Faults other than kills, with real processes: PostgreSQL restarted under a study, a worker
cut off from its database by the network, a database far away.

The database is a private cluster (`tests.utils.private_postgres`), never the shared server; the
network faults run a worker in a network namespace joined by a veth pair
(`tests.utils.netns`) whose link is cut; latency comes from a relay that holds every byte
(`tests.utils.delay_proxy`: this kernel has no ``netem``). Every study must end exact
(`tests.e2e.ledger`). Figures and commands: docs/reliability.md.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from storage import Database, TrialRepository, TrialRow
from storage.migrate import upgrade
from storage.models import utcnow
from tests.e2e.helpers import WorkerProcess, wait_completed, wait_for
from tests.e2e.ledger import Ledger, assert_exact
from tests.mtlsearch.worker.helpers import submit
from tests.utils.delay_proxy import DelayProxy
from tests.utils.netns import network_namespace
from tests.utils.private_postgres import PrivatePostgres, StopMode, private_postgres_cluster
from tests.utils.server import start_server
from tests.utils.specs import quick_spec

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

IDLE_EXIT = ("--idle-exit", "8")


def _env(grace_s: float) -> dict[str, str]:
    return {"MTLSEARCH_WORKER_HEARTBEAT_S": "0.5", "MTLSEARCH_STALE_AFTER_S": str(grace_s)}


def _complete_rows(
    database: Database, study_id: str, worker_id: str | None = None
) -> list[TrialRow]:
    with database.session() as session:
        rows = TrialRepository(session).rows(study_id, ["complete"])
    return [r for r in rows if worker_id is None or r.worker_id == worker_id]


def _worker_id(proc: WorkerProcess) -> str:
    wait_for(lambda: " on cpu (" in proc.text, timeout=60, what="the worker registered")
    match = re.search(r"worker (\S+) on cpu \(", proc.text)
    assert match, proc.text
    return match.group(1)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_database_restart_mid_study_loses_and_repeats_nothing(
    private_postgres: PrivatePostgres, tmp_path: Path, mode: StopMode
) -> None:
    url = private_postgres.url
    upgrade(url)
    database = Database(url)
    procs: list[WorkerProcess] = []
    try:
        with start_server(url) as api:
            info = submit(database, quick_spec("restart", n_trials=12, search_space={"epochs": 8}))
            procs = [
                WorkerProcess(url, tmp_path / f"w{i}.log", *IDLE_EXIT, env=_env(60))
                for i in range(2)
            ]
            wait_for(lambda: len(_complete_rows(database, info.id)) >= 2, timeout=120)
            database.dispose()
            private_postgres.stop(mode)
            started = time.monotonic()
            answer = httpx.get(f"{api}/api/v1/studies/{info.id}", timeout=10)
            assert time.monotonic() - started < 5
            assert answer.status_code == 503 and "unreachable" in answer.json()["detail"]
            time.sleep(4)  # the workers train on; their writes wait for the database
            private_postgres.start()
            done = wait_completed(database, info.id, timeout=180)
            assert httpx.get(f"{api}/api/v1/studies/{info.id}", timeout=10).status_code == 200
        for proc in procs:
            assert proc.wait(timeout=60) == 0, proc.text
        ledger = assert_exact(database, done, 12)
        assert ledger.lost_with_worker == 0  # back well within the grace: nobody was lost
        logs = "".join(proc.text for proc in procs)
        assert "the database is unreachable" in logs and "the database answers again" in logs
    finally:
        for proc in procs:
            proc.kill()
        database.dispose()


def _partition(
    tmp_path: Path, *, cut_s: float, grace_s: float, n_trials: int
) -> tuple[Ledger, WorkerProcess, list[TrialRow], datetime]:
    """A worker in a namespace and a peer on this machine; the namespace is cut off from the
    database for ``cut_s`` while its worker trains. The ledger, the victim, its complete rows
    finished after the cut healed, and when it healed."""
    with (
        network_namespace() as namespace,
        private_postgres_cluster(extra_addresses=[namespace.host_address]) as cluster,
    ):
        upgrade(cluster.url)
        database = Database(cluster.url)
        victim = peer = None
        try:
            spec = quick_spec("partition", n_trials=n_trials, search_space={"epochs": 8})
            info = submit(database, spec)
            victim = WorkerProcess(
                cluster.url_at(namespace.host_address),
                tmp_path / "victim.log",
                *IDLE_EXIT,
                env=_env(grace_s),
                prefix=namespace.prefix,
            )
            victim_id = _worker_id(victim)
            peer = WorkerProcess(cluster.url, tmp_path / "peer.log", *IDLE_EXIT, env=_env(grace_s))
            wait_for(
                lambda: len(_complete_rows(database, info.id, victim_id)) >= 1,
                timeout=120,
                what="the victim finished a trial",
            )
            namespace.cut()
            time.sleep(cut_s)
            namespace.heal()
            healed = utcnow()
            done = wait_completed(database, info.id, timeout=240)
            assert victim.wait(timeout=90) == 0, victim.text
            assert peer.wait(timeout=90) == 0, peer.text
            ledger = assert_exact(database, done, n_trials)
            after = [
                row
                for row in _complete_rows(database, info.id, victim_id)
                if row.finished_at is not None and row.finished_at > healed
            ]
            return ledger, victim, after, healed
        finally:
            for proc in (victim, peer):
                if proc is not None:
                    proc.kill()
            database.dispose()


def test_a_worker_cut_off_for_less_than_the_grace_carries_on(tmp_path: Path) -> None:
    ledger, victim, after, _ = _partition(tmp_path, cut_s=20, grace_s=60, n_trials=14)
    assert ledger.lost_with_worker == 0, victim.text  # nobody took its trials
    assert after, victim.text  # it went on training and recording after the cut


def test_a_worker_cut_off_longer_than_the_grace_has_its_late_results_refused(
    tmp_path: Path,
) -> None:
    ledger, victim, after, _ = _partition(tmp_path, cut_s=25, grace_s=6, n_trials=20)
    assert ledger.lost_with_worker >= 1 and ledger.retries >= 1  # its peer took its trials
    assert "failed as lost by a peer meanwhile; its outcome is dropped" in victim.text
    assert "Traceback" not in victim.text
    assert after, victim.text  # and it went on with new trials


def _round_trip_s(url: str) -> float:
    """Seconds of one ``SELECT 1`` on an open connection of ``url``."""
    probe = Database(url)
    try:
        with probe.session() as session:
            session.execute(text("SELECT 1"))  # connects
            started = time.monotonic()
            session.execute(text("SELECT 1"))
            return time.monotonic() - started
    finally:
        probe.dispose()


def test_a_study_completes_with_50_ms_to_the_database(postgres_url: str, tmp_path: Path) -> None:
    upgrade(postgres_url)
    database = Database(postgres_url)
    host, port = database.url.host or "127.0.0.1", database.url.port or 5432
    procs: list[WorkerProcess] = []
    try:
        with DelayProxy(host, port, one_way_s=0.025) as proxy:
            far = database.url.set(host="127.0.0.1", port=proxy.port)
            far_url = far.render_as_string(hide_password=False)
            assert _round_trip_s(far_url) >= 0.05  # the relay adds 25 ms each way
            info = submit(database, quick_spec("far", n_trials=6, search_space={"epochs": 3}))
            procs = [
                WorkerProcess(far_url, tmp_path / f"w{i}.log", *IDLE_EXIT, env=_env(30))
                for i in range(2)
            ]
            done = wait_completed(database, info.id, timeout=240)
            for proc in procs:
                assert proc.wait(timeout=60) == 0, proc.text
        assert_exact(database, done, 6)
    finally:
        for proc in procs:
            proc.kill()
        database.dispose()
