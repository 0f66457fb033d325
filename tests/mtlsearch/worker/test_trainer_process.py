"""``trainer="process"``: real training processes behind a real worker on a real SQLite file.

Cancels and stops reaching the training process: tests/mtlsearch/worker/test_loop.py runs
those tests with both trainers."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from optuna.trial import TrialState

import mtl_core.batched
from storage import Database, StudyInfo, StudyRepository, StudyStatus, TrialRepository
from storage import TrialState as RowState
from storage.models import FailureKind
from tests.e2e.helpers import WorkerProcess
from tests.mtlsearch.worker.helpers import (
    load,
    make_worker,
    run_in_thread,
    submit,
    synthetic_spec,
    wait_for,
)

pytestmark = pytest.mark.slow


def trained_epochs(database: Database, info: StudyInfo) -> int:
    return sum(len(t.intermediate_values) for t in load(database, info).trials)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not reaped yet) is not training anything.
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"


def test_a_batched_study_trains_in_the_training_process(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_training_here(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained in the worker's own process")

    # The training process is spawned: it imports the real class, this process must not use it.
    monkeypatch.setattr(mtl_core.batched, "BatchedRun", no_training_here)
    spec = synthetic_spec(n_trials=5, search_space={"strategies": [{"name": "fixed"}]})
    info = submit(database, spec)
    assert make_worker(database, batch=3, trainer="process").run() == 5
    trials = load(database, info).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    assert all(sorted(t.intermediate_values) == [1, 2] for t in trials)
    with database.session() as session:
        rows = TrialRepository(session).rows(info.id)
        assert StudyRepository(session).get(info.id).status is StudyStatus.COMPLETED
    assert max(row.num_slots or 0 for row in rows) > 1  # trained together over there


def test_a_killed_training_process_has_its_trials_run_again(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=4, search_space={"epochs": 30}))
    worker = make_worker(database, batch=2, idle_exit_s=1.0, trainer="process")
    thread = run_in_thread(worker)
    wait_for(lambda: trained_epochs(database, info) > 0)
    first = worker.trainer.pid if worker.trainer is not None else None
    assert first is not None
    os.kill(first, signal.SIGKILL)
    thread.join(timeout=180)
    assert not thread.is_alive()

    with database.session() as session:
        rows = TrialRepository(session).rows(info.id)
        study = StudyRepository(session).get(info.id)
    assert study.status is StudyStatus.COMPLETED
    lost = [r for r in rows if r.failure_kind is FailureKind.LOST_WORKER]
    assert 1 <= len(lost) <= 2  # what it was training (K = 2)
    assert all("killed by SIGKILL" in (r.reason or "") for r in lost)
    retries = {r.retry_of: r for r in rows if r.retry_of is not None}
    assert {r.number for r in lost} == set(retries)  # each run again, once
    assert all(r.state is RowState.COMPLETE for r in retries.values())
    # Exactly the budget finished; Optuna agrees with the rows.
    assert len([r for r in rows if r.state is RowState.COMPLETE]) == 4
    states = [t.state for t in load(database, info).trials]
    assert states.count(TrialState.COMPLETE) == 4 and states.count(TrialState.FAIL) == len(lost)


def test_the_training_process_dies_with_its_worker(sqlite_url: str, tmp_path: Path) -> None:
    database = Database(sqlite_url)
    try:
        from storage.migrate import upgrade

        upgrade(sqlite_url)
        info = submit(database, synthetic_spec(n_trials=2, search_space={"epochs": 400}))
        worker = WorkerProcess(sqlite_url, tmp_path / "worker.log")
        children = Path(f"/proc/{worker.process.pid}/task/{worker.process.pid}/children")
        wait_for(lambda: trained_epochs(database, info) > 0, timeout=120)
        (trainer,) = [
            int(pid)
            for pid in children.read_text().split()
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert alive(trainer)
        worker.kill()
        worker.process.wait(timeout=30)
        wait_for(lambda: not alive(trainer), timeout=30)
    finally:
        database.dispose()
