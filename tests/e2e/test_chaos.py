"""Chaos: real worker processes SIGKILLed at seeded random moments, a kill between ``ask()``
and recording the trial, the API server killed mid-study. The study must still end exact.

Figures and the command that reproduces them: docs/reliability.md.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from optuna.trial import TrialState

from mtlsearch.client import Client, ClientError
from mtlsearch.worker import STALE_REASON
from storage import Database, StudyInfo, StudyRepository, StudyStatus
from storage.migrate import upgrade
from tests.e2e.helpers import WorkerProcess, optuna_trials, wait_for
from tests.e2e.ledger import Ledger, read_ledger
from tests.mtlsearch.worker.helpers import submit
from tests.utils.server import _server_env, _wait_healthy, free_port
from tests.utils.specs import quick_spec

pytestmark = [pytest.mark.slow]

#: Beats every 0.5 s; a trial is stale 2 s after its last beat (Optuna: whole seconds).
CHAOS_ENV = {"MTLSEARCH_WORKER_HEARTBEAT_S": "0.5", "MTLSEARCH_STALE_AFTER_S": "2"}
#: Idle workers stay long enough to fail the last stale trials and complete the study.
IDLE_EXIT = ("--idle-exit", "6")


@dataclass
class Chaos:
    kills: int = 0


def study_row(database: Database, study_id: str) -> StudyInfo:
    with database.session() as session:
        return StudyRepository(session).get(study_id)


def wait_completed(database: Database, study_id: str, timeout: float) -> StudyInfo:
    wait_for(
        lambda: study_row(database, study_id).status is not StudyStatus.RUNNING,
        timeout=timeout,
        what=f"study {study_id} finished",
    )
    return study_row(database, study_id)


def assert_exact(database: Database, info: StudyInfo, n_trials: int) -> Ledger:
    """Exactly ``n_trials`` COMPLETE in our rows and in Optuna's mirror, alike; nothing queued,
    reserved, RUNNING or WAITING; each trial lost with its worker re-run exactly once (a retry
    lost in its turn is not); the budget exact (`tests.e2e.ledger`)."""
    ledger = read_ledger(database, info.id, n_trials)
    assert ledger.exact, (ledger.lost, ledger.duplicated, ledger.stuck)
    return ledger


def _busy_or_done(proc: WorkerProcess, database: Database, study_id: str) -> bool:
    """The worker has registered (it is about to train), or the study is over."""
    if " on cpu (" in proc.text:
        return True
    return study_row(database, study_id).status is not StudyStatus.RUNNING


def run_with_kills(
    db_url: str,
    tmp_path: Path,
    n_workers: int,
    n_victims: int,
    rounds: int,
    seed: int,
    n_trials: int,
) -> tuple[Ledger, Chaos]:
    upgrade(db_url)
    database = Database(db_url)
    # Long enough that every kill round lands before the study ends (the pipeline is fast).
    spec = quick_spec("chaos", n_trials=n_trials, search_space={"epochs": 20})
    info = submit(database, spec)
    rng = random.Random(seed)
    chaos = Chaos()
    procs = [
        WorkerProcess(db_url, tmp_path / f"w{i}.log", *IDLE_EXIT, env=CHAOS_ENV)
        for i in range(n_workers)
    ]
    try:
        for round_ in range(rounds):
            victim = rng.randrange(n_victims)
            # Once it has registered, at a random moment of its work.
            wait_for(partial(_busy_or_done, procs[victim], database, info.id), timeout=60)
            if study_row(database, info.id).status is not StudyStatus.RUNNING:
                break
            time.sleep(rng.uniform(0.5, 2.5))  # asking, training or telling
            procs[victim].kill()  # SIGKILL: no tell, no release, no stop mark
            chaos.kills += 1
            log = tmp_path / f"w{victim}-{round_}.log"
            procs[victim] = WorkerProcess(db_url, log, *IDLE_EXIT, env=CHAOS_ENV)
        wait_completed(database, info.id, timeout=80)
        for proc in procs:
            proc.wait(timeout=30)
        ledger = assert_exact(database, info, n_trials)
    finally:
        for proc in procs:
            proc.kill()
        database.dispose()
    return ledger, chaos


@pytest.mark.postgres
def test_postgres_four_workers_two_killed_repeatedly(postgres_url: str, tmp_path: Path) -> None:
    ledger, chaos = run_with_kills(postgres_url, tmp_path, 4, 2, rounds=5, seed=1, n_trials=40)
    print(f"postgres: {chaos.kills} kills, {ledger.summary()}")
    assert chaos.kills >= 2 and ledger.retries >= 1  # the kills did hit trials


def test_sqlite_three_workers_two_killed_repeatedly(sqlite_url: str, tmp_path: Path) -> None:
    ledger, chaos = run_with_kills(sqlite_url, tmp_path, 3, 2, rounds=4, seed=2, n_trials=20)
    print(f"sqlite: {chaos.kills} kills, {ledger.summary()}")
    assert chaos.kills >= 2 and ledger.retries >= 1  # the kills did hit trials


def test_a_kill_between_ask_and_recording_gives_the_slot_back(
    sqlite_url: str, tmp_path: Path
) -> None:
    upgrade(sqlite_url)
    database = Database(sqlite_url)
    info = submit(database, quick_spec("ask-kill", n_trials=3))
    hooked = WorkerProcess(
        sqlite_url,
        tmp_path / "hooked.log",
        env={**CHAOS_ENV, "MTLSEARCH_TEST_HOOK": "exit-after-ask"},
    )
    assert hooked.wait(timeout=60) == 3, hooked.text  # died right after its first ask()
    (orphan,) = optuna_trials(database, info.id)
    assert orphan.state is TrialState.RUNNING
    worker = WorkerProcess(sqlite_url, tmp_path / "worker.log", *IDLE_EXIT, env=CHAOS_ENV)
    try:
        wait_completed(database, info.id, timeout=60)
        assert worker.wait(timeout=30) == 0, worker.text
        ledger = assert_exact(database, info, 3)
        assert ledger.retries == 0  # it never trained: its slot went back to the budget
        trials = optuna_trials(database, info.id)
        assert trials[orphan.number].state is TrialState.FAIL
        assert trials[orphan.number].user_attrs["fail_reason"] == STALE_REASON
    finally:
        worker.kill()
        database.dispose()


def _uvicorn(db_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "service.main:app_from_env",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=_server_env(db_url, None, None),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    assert _wait_healthy(process, f"http://127.0.0.1:{port}", log), log.read_text()
    return process


@pytest.mark.postgres
def test_the_api_server_killed_mid_study(postgres_url: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = _uvicorn(postgres_url, port, tmp_path / "server1.log")
    database = Database(postgres_url)
    procs: list[WorkerProcess] = []
    try:
        with Client(url) as client:
            study = client.submit(quick_spec("server-kill", n_trials=8, search_space={"epochs": 6}))
            procs = [
                WorkerProcess(postgres_url, tmp_path / f"w{i}.log", *IDLE_EXIT, env=CHAOS_ENV)
                for i in range(2)
            ]
            wait_for(lambda: bool(optuna_trials(database, study["id"])), timeout=60)
            server.send_signal(signal.SIGKILL)
            server.wait()
            with pytest.raises(ClientError, match="cannot reach the mtlsearch server"):
                client.status(study["id"])
            # The workers go on without the server: they talk to the database.
            done_before = len(
                [t for t in optuna_trials(database, study["id"]) if t.state is TrialState.COMPLETE]
            )
            wait_for(
                lambda: (
                    len(
                        [
                            t
                            for t in optuna_trials(database, study["id"])
                            if t.state is TrialState.COMPLETE
                        ]
                    )
                    > done_before
                ),
                timeout=60,
                what="a trial completed while the server was down",
            )
            server = _uvicorn(postgres_url, port, tmp_path / "server2.log")
            done = client.wait(study["id"], timeout=80, poll_s=0.3)
        assert done["status"] == "completed"
        for proc in procs:
            assert proc.wait(timeout=30) == 0, proc.text
        row = study_row(database, study["id"])
        assert_exact(database, row, 8)
    finally:
        for proc in procs:
            proc.kill()
        if server.poll() is None:
            server.kill()
            server.wait()
        database.dispose()
