"""Chaos: real worker processes SIGKILLed at seeded random moments, a kill between ``ask()``
and recording the trial, the API server killed mid-study. The study must still end exact
(`tests.e2e.ledger`); ``tests/soak/chaos_soak.py`` repeats the scenarios of `tests.e2e.chaos`
with random seeds.

Figures and the command that reproduces them: docs/reliability.md.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState

from mtlsearch.client import Client, ClientError
from mtlsearch.worker import STALE_REASON
from storage import Database
from tests.e2e import chaos
from tests.e2e.chaos import CHAOS_ENV, IDLE_EXIT
from tests.e2e.helpers import WorkerProcess, optuna_trials, study_row, wait_for
from tests.e2e.ledger import assert_exact
from tests.utils.server import _server_env, _wait_healthy, free_port
from tests.utils.specs import quick_spec

pytestmark = [pytest.mark.slow]


@pytest.mark.postgres
def test_postgres_four_workers_two_killed_repeatedly(postgres_url: str, tmp_path: Path) -> None:
    run = chaos.kills(
        postgres_url, tmp_path, n_workers=4, n_victims=2, rounds=5, seed=1, n_trials=40
    )
    print(f"postgres: {run.kills} kills, {run.ledger.summary()}")
    assert run.ledger.exact, (run.ledger.lost, run.ledger.duplicated, run.ledger.stuck)
    assert run.kills >= 2 and run.ledger.retries >= 1  # the kills did hit trials


def test_sqlite_three_workers_two_killed_repeatedly(sqlite_url: str, tmp_path: Path) -> None:
    run = chaos.kills(sqlite_url, tmp_path, n_workers=3, n_victims=2, rounds=4, seed=2, n_trials=20)
    print(f"sqlite: {run.kills} kills, {run.ledger.summary()}")
    assert run.ledger.exact, (run.ledger.lost, run.ledger.duplicated, run.ledger.stuck)
    assert run.kills >= 2 and run.ledger.retries >= 1  # the kills did hit trials


def test_a_kill_between_ask_and_recording_gives_the_slot_back(
    sqlite_url: str, tmp_path: Path
) -> None:
    run = chaos.ask_kill(sqlite_url, tmp_path)
    assert run.ledger.exact, (run.ledger.lost, run.ledger.duplicated, run.ledger.stuck)
    assert run.ledger.retries == 0  # it never trained: its slot went back to the budget
    database = Database(sqlite_url)
    try:
        orphan = optuna_trials(database, run.study_id)[0]
    finally:
        database.dispose()
    assert orphan.state is TrialState.FAIL  # the orphan's row never recorded it
    assert orphan.user_attrs["fail_reason"] == STALE_REASON


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
