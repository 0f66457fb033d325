"""Chaos scenarios with real processes, each returning what the study left behind.

`kills` SIGKILLs workers (or their training processes) at random moments and restarts them;
`ask_kill` kills a worker right
after its first ``ask()`` (``MTLSEARCH_TEST_HOOK=exit-after-ask``) and lets another finish;
`server_kill` SIGKILLs the API server mid-study, has the workers go on without it and starts it
again. Each returns a `ChaosRun`: the ledger of the study (`tests.e2e.ledger`) and the kills that
landed.
``tests/e2e/test_chaos.py`` asserts on one seeded run of each; ``tests/soak/chaos_soak.py``
repeats them with random seeds and counts.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from optuna.trial import TrialState

from mtlsearch.client import Client, ClientError
from storage import Database, StudyStatus
from storage.migrate import upgrade
from tests.e2e.helpers import WorkerProcess, optuna_trials, study_row, wait_completed, wait_for
from tests.e2e.ledger import Ledger, read_ledger
from tests.mtlsearch.worker.helpers import submit
from tests.utils.server import _server_env, _wait_healthy, free_port
from tests.utils.specs import quick_spec

#: Beats every 0.5 s; a worker is dead 2 s after its last beat.
CHAOS_ENV = {"MTLSEARCH_WORKER_HEARTBEAT_S": "0.5", "MTLSEARCH_STALE_AFTER_S": "2"}
#: Idle workers stay long enough to fail the last stale trials and complete the study.
IDLE_EXIT = ("--idle-exit", "6")
#: Longest wait for a study to end: generous, for a loaded 2-core machine.
STUDY_TIMEOUT_S = 300.0


@dataclass
class ChaosRun:
    """One run of a scenario: the study, its ledger, kills that landed, the workers' logs."""

    study_id: str
    ledger: Ledger
    kills: int
    logs: list[Path]
    #: Of the kills, those of a training process alone (its worker lived on).
    trainer_kills: int = 0


def _busy_or_done(proc: WorkerProcess, database: Database, study_id: str) -> bool:
    """The worker has registered (it is about to train), or the study is over."""
    if " on cpu (" in proc.text:
        return True
    return study_row(database, study_id).status is not StudyStatus.RUNNING


def training_process(proc: WorkerProcess) -> int | None:
    """The pid of the worker's training process (``--trainer process``), if it has one now."""
    pid = proc.process.pid
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for child in children:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
    except OSError:  # it exited meanwhile
        pass
    return None


def kills(
    db_url: str,
    tmp_path: Path,
    *,
    n_workers: int,
    n_victims: int,
    rounds: int,
    seed: int,
    n_trials: int,
    trainers: bool = False,
) -> ChaosRun:
    """``n_workers`` workers on a study; ``rounds`` times, one of the first ``n_victims`` is
    SIGKILLed at a random moment of its work and a fresh worker started in its place.

    ``trainers``: each kill picks at random the worker or only its training process (the
    worker then starts another one itself)."""
    upgrade(db_url)
    database = Database(db_url)
    # Long enough that every kill round lands before the study ends (the pipeline is fast);
    # the confirmation at the end is killed into as well.
    spec = quick_spec(
        "chaos",
        n_trials=n_trials,
        search_space={"epochs": 20},
        confirmation={"enabled": True, "top": 2, "seeds": 2},
    )
    info = submit(database, spec)
    rng = random.Random(seed)
    procs = [
        WorkerProcess(db_url, tmp_path / f"w{i}.log", *IDLE_EXIT, env=CHAOS_ENV)
        for i in range(n_workers)
    ]
    logs = [proc.log for proc in procs]
    landed = trainer_kills = 0
    try:
        for round_ in range(rounds):
            victim = rng.randrange(n_victims)
            # Once it has registered, at a random moment of its work.
            wait_for(partial(_busy_or_done, procs[victim], database, info.id), timeout=60)
            if study_row(database, info.id).status is not StudyStatus.RUNNING:
                break
            time.sleep(rng.uniform(0.5, 2.5))  # asking, training or telling
            if trainers and rng.random() < 0.5:
                trainer = training_process(procs[victim])
                if trainer is not None:
                    os.kill(trainer, signal.SIGKILL)  # its worker hands its trials back
                    landed += 1
                    trainer_kills += 1
                continue
            procs[victim].kill()  # SIGKILL: no tell, no release, no stop mark
            landed += 1
            log = tmp_path / f"w{victim}-{round_}.log"
            procs[victim] = WorkerProcess(db_url, log, *IDLE_EXIT, env=CHAOS_ENV)
            logs.append(log)
        wait_completed(database, info.id, timeout=STUDY_TIMEOUT_S)
        for proc in procs:
            proc.wait(timeout=60)
        ledger = read_ledger(database, info.id, n_trials)
        return ChaosRun(info.id, ledger, landed, logs, trainer_kills)
    finally:
        for proc in procs:
            proc.kill()
        database.dispose()


def ask_kill(db_url: str, tmp_path: Path, n_trials: int = 3) -> ChaosRun:
    """A worker dies right after its first ``ask()``, before recording the trial in its row;
    a second worker runs the study to its end."""
    upgrade(db_url)
    database = Database(db_url)
    info = submit(database, quick_spec("ask-kill", n_trials=n_trials))
    hooked = WorkerProcess(
        db_url,
        tmp_path / "hooked.log",
        env={**CHAOS_ENV, "MTLSEARCH_TEST_HOOK": "exit-after-ask"},
    )
    worker = None
    try:
        code = hooked.wait(timeout=60)
        if code != 3:
            raise AssertionError(f"the hooked worker exited {code}, not 3:\n{hooked.text}")
        worker = WorkerProcess(db_url, tmp_path / "worker.log", *IDLE_EXIT, env=CHAOS_ENV)
        wait_completed(database, info.id, timeout=STUDY_TIMEOUT_S)
        if worker.wait(timeout=60) != 0:
            raise AssertionError(worker.text)
        ledger = read_ledger(database, info.id, n_trials)
        return ChaosRun(info.id, ledger, 1, [hooked.log, worker.log])
    finally:
        if worker is not None:
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
    if not _wait_healthy(process, f"http://127.0.0.1:{port}", log):
        raise AssertionError(f"the API server did not come up:\n{log.read_text()}")
    return process


def _completed(database: Database, study_id: str) -> int:
    return sum(t.state is TrialState.COMPLETE for t in optuna_trials(database, study_id))


def server_kill(db_url: str, tmp_path: Path, n_trials: int = 8) -> ChaosRun:
    """The API server is SIGKILLed once the study has trials; the client gets a clear error,
    the workers go on without the server (they talk to the database) and complete a trial
    meanwhile; the server is started again and the study ends."""
    upgrade(db_url)
    port = free_port()
    server = _uvicorn(db_url, port, tmp_path / "server1.log")
    database = Database(db_url)
    procs: list[WorkerProcess] = []
    try:
        with Client(f"http://127.0.0.1:{port}") as client:
            spec = quick_spec("server-kill", n_trials=n_trials, search_space={"epochs": 6})
            study = client.submit(spec)
            procs = [
                WorkerProcess(db_url, tmp_path / f"w{i}.log", *IDLE_EXIT, env=CHAOS_ENV)
                for i in range(2)
            ]
            wait_for(lambda: bool(optuna_trials(database, study["id"])), timeout=60)
            server.send_signal(signal.SIGKILL)
            server.wait()
            try:
                client.status(study["id"])
            except ClientError as exc:
                if "cannot reach the mtlsearch server" not in str(exc):
                    raise AssertionError(f"unclear error with the server down: {exc}") from exc
            else:
                raise AssertionError("the client reached a killed server")
            done_before = _completed(database, study["id"])
            wait_for(
                lambda: _completed(database, study["id"]) > done_before,
                timeout=60,
                what="a trial completed while the server was down",
            )
            server = _uvicorn(db_url, port, tmp_path / "server2.log")
            done = client.wait(study["id"], timeout=STUDY_TIMEOUT_S, poll_s=0.3)
        if done["status"] != "completed":
            raise AssertionError(f"the study ended {done['status']}: {done}")
        for proc in procs:
            if proc.wait(timeout=60) != 0:
                raise AssertionError(proc.text)
        ledger = read_ledger(database, study["id"], n_trials)
        return ChaosRun(study["id"], ledger, 1, [proc.log for proc in procs])
    finally:
        for proc in procs:
            proc.kill()
        if server.poll() is None:
            server.kill()
            server.wait()
        database.dispose()


__all__ = [
    "CHAOS_ENV",
    "IDLE_EXIT",
    "STUDY_TIMEOUT_S",
    "ChaosRun",
    "ask_kill",
    "kills",
    "server_kill",
]
