"""Fault scenarios beyond kills, with real processes, each returning what the study left.

* `restart`: PostgreSQL (a private cluster) stopped fast or immediate mid-study and started
  again; the API server answers 503 while it is down.
* `partition`: a worker in a network namespace cut off from the database while it trains, a
  peer on this machine.
* `far_database`: workers 50 ms (a round trip) from the database, through a delaying relay.

``tests/e2e/test_faults.py`` asserts on one run of each; ``tests/soak/chaos_soak.py`` repeats
them. The helpers they stand on: `tests.utils.private_postgres`, `tests.utils.netns`,
`tests.utils.delay_proxy`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy import text

from storage import Database, TrialRepository, TrialRow
from storage.migrate import upgrade
from storage.models import utcnow
from storage.repositories.trials import LOST_REASON
from tests.e2e.helpers import WorkerProcess, wait_completed, wait_for
from tests.e2e.ledger import Ledger, read_ledger
from tests.mtlsearch.worker.helpers import submit
from tests.utils.delay_proxy import DelayProxy
from tests.utils.netns import network_namespace
from tests.utils.private_postgres import PrivatePostgres, StopMode, private_postgres_cluster
from tests.utils.server import start_server
from tests.utils.specs import quick_spec

IDLE_EXIT = ("--idle-exit", "8")
#: Longest wait for a study to end: generous, for a loaded 2-core machine.
STUDY_TIMEOUT_S = 300.0


@dataclass
class FaultRun:
    """One run: the study's ledger, the workers' exit codes and logs, and what was seen."""

    ledger: Ledger
    exit_codes: list[int]
    logs: str
    #: Seconds one API call took while the database was down, and its status code.
    down_answer: tuple[float, int, str] | None = None
    #: The cut-off worker's complete rows finished after the cut healed.
    victim_after: list[TrialRow] = field(default_factory=list)
    victim_log: str = ""


def worker_env(grace_s: float) -> dict[str, str]:
    """Beats every 0.5 s; a worker is dead ``grace_s`` after its last beat."""
    return {"MTLSEARCH_WORKER_HEARTBEAT_S": "0.5", "MTLSEARCH_STALE_AFTER_S": str(grace_s)}


def complete_rows(
    database: Database, study_id: str, worker_id: str | None = None
) -> list[TrialRow]:
    with database.session() as session:
        rows = TrialRepository(session).rows(study_id, ["complete"])
    return [r for r in rows if worker_id is None or r.worker_id == worker_id]


def worker_id(proc: WorkerProcess) -> str:
    wait_for(lambda: " on cpu (" in proc.text, timeout=60, what="the worker registered")
    match = re.search(r"worker (\S+) on cpu \(", proc.text)
    if match is None:
        raise AssertionError(proc.text)
    return match.group(1)


def _finish(procs: list[WorkerProcess]) -> list[int]:
    return [proc.wait(timeout=90) for proc in procs]


def restart(
    cluster: PrivatePostgres, tmp_path: Path, mode: StopMode, n_trials: int = 12
) -> FaultRun:
    """Two workers and the API on ``cluster``; once two trials are complete the cluster is
    stopped (``mode``) for about 4 s and started again."""
    url = cluster.url
    upgrade(url)
    database = Database(url)
    procs: list[WorkerProcess] = []
    try:
        with start_server(url) as api:
            spec = quick_spec("restart", n_trials=n_trials, search_space={"epochs": 8})
            info = submit(database, spec)
            procs = [
                WorkerProcess(url, tmp_path / f"w{i}.log", *IDLE_EXIT, env=worker_env(60))
                for i in range(2)
            ]
            wait_for(lambda: len(complete_rows(database, info.id)) >= 2, timeout=120)
            database.dispose()
            cluster.stop(mode)
            started = time.monotonic()
            answer = httpx.get(f"{api}/api/v1/studies/{info.id}", timeout=10)
            down = (time.monotonic() - started, answer.status_code, answer.text)
            time.sleep(4)  # the workers train on; their writes wait for the database
            cluster.start()
            wait_completed(database, info.id, timeout=STUDY_TIMEOUT_S)
            codes = _finish(procs)
        ledger = read_ledger(database, info.id, n_trials)
        return FaultRun(ledger, codes, "".join(p.text for p in procs), down_answer=down)
    finally:
        for proc in procs:
            proc.kill()
        database.dispose()


def partition(tmp_path: Path, *, cut_s: float, grace_s: float, n_trials: int = 12) -> FaultRun:
    """A worker in a namespace (the victim) alone on a study; once it has finished a trial the
    namespace is cut off from the database for ``cut_s``. A peer on this machine, started
    once ``grace_s`` has passed in the cut (a cut shorter than the grace: at once), runs its
    maintenance, which takes the victim's trials if the cut outlasted the grace (the cut then
    lasts until it has), trains one trial and exits (``--max-trials 1``): what is left after
    the cut is the victim's."""
    with (
        network_namespace() as namespace,
        private_postgres_cluster(extra_addresses=[namespace.host_address]) as cluster,
    ):
        upgrade(cluster.url)
        database = Database(cluster.url)
        procs: list[WorkerProcess] = []
        try:
            spec = quick_spec("partition", n_trials=n_trials, search_space={"epochs": 8})
            info = submit(database, spec)
            victim = WorkerProcess(
                cluster.url_at(namespace.host_address),
                tmp_path / "victim.log",
                *IDLE_EXIT,
                env=worker_env(grace_s),
                prefix=namespace.prefix,
            )
            procs.append(victim)
            victim_id = worker_id(victim)
            wait_for(
                lambda: len(complete_rows(database, info.id, victim_id)) >= 1,
                timeout=120,
                what="the victim finished a trial",
            )
            namespace.cut()
            cut_at = time.monotonic()
            # Past the grace (the victim counts as lost), or at once (it only looks silent).
            time.sleep(grace_s + 1 if cut_s > grace_s else 1.0)
            peer = WorkerProcess(
                cluster.url, tmp_path / "peer.log", "--max-trials", "1", env=worker_env(grace_s)
            )
            procs.append(peer)
            if cut_s > grace_s:
                wait_for(
                    lambda: _lost_rows(database, info.id) > 0,
                    timeout=120,
                    what="a peer took the victim's trials",
                )
            time.sleep(max(0.0, cut_s - (time.monotonic() - cut_at)))
            namespace.heal()
            healed: datetime = utcnow()
            wait_completed(database, info.id, timeout=STUDY_TIMEOUT_S)
            codes = _finish(procs)
            after = [
                row
                for row in complete_rows(database, info.id, victim_id)
                if row.finished_at is not None and row.finished_at > healed
            ]
            return FaultRun(
                read_ledger(database, info.id, n_trials),
                codes,
                "".join(p.text for p in procs),
                victim_after=after,
                victim_log=victim.text,
            )
        finally:
            for proc in procs:
                proc.kill()
            database.dispose()


def _lost_rows(database: Database, study_id: str) -> int:
    with database.session() as session:
        rows = TrialRepository(session).rows(study_id, ["fail"])
    return sum(1 for row in rows if row.reason == LOST_REASON)


def round_trip_s(url: str) -> float:
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


def far_database(
    db_url: str, tmp_path: Path, *, one_way_s: float = 0.025, n_trials: int = 6
) -> FaultRun:
    """Two workers reaching ``db_url`` through a relay ``one_way_s`` late each way."""
    upgrade(db_url)
    database = Database(db_url)
    host, port = database.url.host or "127.0.0.1", database.url.port or 5432
    procs: list[WorkerProcess] = []
    try:
        with DelayProxy(host, port, one_way_s=one_way_s) as proxy:
            far = database.url.set(host="127.0.0.1", port=proxy.port)
            far_url = far.render_as_string(hide_password=False)
            if round_trip_s(far_url) < 2 * one_way_s:
                raise AssertionError("the relay did not delay the round trip")
            info = submit(
                database, quick_spec("far", n_trials=n_trials, search_space={"epochs": 3})
            )
            procs = [
                WorkerProcess(far_url, tmp_path / f"w{i}.log", *IDLE_EXIT, env=worker_env(30))
                for i in range(2)
            ]
            wait_completed(database, info.id, timeout=STUDY_TIMEOUT_S)
            codes = _finish(procs)
        return FaultRun(
            read_ledger(database, info.id, n_trials), codes, "".join(p.text for p in procs)
        )
    finally:
        for proc in procs:
            proc.kill()
        database.dispose()


__all__ = ["FaultRun", "far_database", "partition", "restart", "round_trip_s", "worker_env"]
