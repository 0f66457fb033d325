"""Real `mtlsearch worker` processes for the end-to-end tests, and what they left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from mtlsearch.client import Client
from storage import Database, StudyInfo, StudyRepository, StudyStatus

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Heartbeats every second, stale after 4 s: a killed worker's trial is retried quickly.
FAST_HEARTBEATS = {"MTLSEARCH_WORKER_HEARTBEAT_S": "1", "MTLSEARCH_STALE_AFTER_S": "4"}


def child_env(db_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTLSEARCH_")}
    if "MTLSEARCH_DATA_DIR" in os.environ:
        env["MTLSEARCH_DATA_DIR"] = os.environ["MTLSEARCH_DATA_DIR"]
    env["MTLSEARCH_DB_URL"] = db_url
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


class WorkerProcess:
    """One `mtlsearch worker` subprocess logging into ``log``; ``prefix`` runs it elsewhere
    (e.g. in a network namespace: `tests.utils.netns.NetNamespace.prefix`)."""

    def __init__(
        self,
        db_url: str,
        log: Path,
        *args: str,
        env: Mapping[str, str] | None = None,
        prefix: Sequence[str] = (),
    ):
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*prefix, sys.executable, "-m", "mtlsearch", "worker", "--db", db_url, *args],
                cwd=log.parent,
                env=child_env(db_url, env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = 120.0) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(
                f"worker still running after {timeout} s; log:\n{self.text}"
            ) from None

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextmanager
def workers(
    db_url: str, tmp_path: Path, count: int, *args: str, **kw: Any
) -> Iterator[list[WorkerProcess]]:
    """``count`` workers; any still running at the end is killed."""
    started = [
        WorkerProcess(db_url, tmp_path / f"worker{i}.log", *args, **kw) for i in range(count)
    ]
    try:
        yield started
    finally:
        for worker in started:
            worker.kill()


def wait_for(
    condition: Callable[[], bool], timeout: float = 120.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met after {timeout} s")
        time.sleep(0.1)


def study_row(database: Database, study_id: str) -> StudyInfo:
    with database.session() as session:
        return StudyRepository(session).get(study_id)


def wait_completed(database: Database, study_id: str, timeout: float) -> StudyInfo:
    """Wait until the study is no longer running; its row."""
    wait_for(
        lambda: study_row(database, study_id).status is not StudyStatus.RUNNING,
        timeout=timeout,
        what=f"study {study_id} finished",
    )
    return study_row(database, study_id)


def optuna_trials(database: Database, study_id: str) -> list[FrozenTrial]:
    """The study's Optuna trials, read straight from the database."""
    with database.session() as session:
        info = StudyRepository(session).get(study_id)
    study = optuna.load_study(study_name=info.optuna_study_name, storage=database.optuna_storage())
    return study.get_trials(deepcopy=False)


def wait_done(client: Client, study_id: str, timeout: float = 180.0) -> dict[str, Any]:
    return client.wait(study_id, timeout=timeout, poll_s=0.3)
