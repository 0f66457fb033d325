"""Several real workers on one PostgreSQL study: the budget, a SIGKILLed worker's retry."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from optuna.trial import TrialState

from mtlsearch.client import Client
from mtlsearch.worker import STALE_REASON
from mtlsearch.worker.asking import RETRY_OF_ATTR
from storage import Database, TrialRepository
from tests.e2e.helpers import (
    FAST_HEARTBEATS,
    WorkerProcess,
    optuna_trials,
    wait_done,
    wait_for,
    workers,
)
from tests.utils.server import start_server
from tests.utils.specs import quick_spec

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_two_workers_train_each_trial_once(postgres_url: str, tmp_path: Path) -> None:
    with start_server(postgres_url) as url, Client(url) as client:
        study = client.submit(quick_spec("shared", n_trials=6))
        with workers(postgres_url, tmp_path, 2, "--idle-exit", "3") as procs:
            done = wait_done(client, study["id"])
            for proc in procs:
                assert proc.wait() == 0, proc.text
        registered = {w["id"] for w in client.workers()}
    assert done["status"] == "completed"
    database = Database(postgres_url)
    trials = optuna_trials(database, study["id"])
    with database.session() as session:
        rows = TrialRepository(session).rows(study["id"])
    database.dispose()
    assert sorted(t.number for t in trials) == list(range(6))  # none duplicated or lost
    assert all(t.state is TrialState.COMPLETE for t in trials)
    assert {r.worker_id for r in rows} <= registered
    # each trial was trained (and told) by exactly one worker
    told = Counter(
        int(n)
        for proc in procs
        for n in re.findall(rf"trial (\d+) of study {study['id']} complete", proc.text)
    )
    assert told == Counter(range(6))


def test_a_killed_workers_trial_is_retried_by_another(postgres_url: str, tmp_path: Path) -> None:
    spec = quick_spec("killed", search_space={"epochs": 60, "max_train_samples": 1000})
    database = Database(postgres_url)
    with start_server(postgres_url) as url, Client(url) as client:
        study = client.submit(spec)
        victim = WorkerProcess(postgres_url, tmp_path / "victim.log", env=FAST_HEARTBEATS)
        try:

            def training() -> bool:
                trials = optuna_trials(database, study["id"])
                return any(t.state is TrialState.RUNNING and t.intermediate_values for t in trials)

            wait_for(training, what="a trial in training")
        finally:
            victim.kill()  # SIGKILL: no chance to tell anything
        # The trial in training and the next one, queued while it trained.
        held = optuna_trials(database, study["id"])
        assert 1 <= len(held) <= 2 and all(t.state is TrialState.RUNNING for t in held)
        (killed,) = [t for t in held if t.intermediate_values]
        with workers(postgres_url, tmp_path, 1, "--idle-exit", "15", env=FAST_HEARTBEATS) as (
            rescuer,
        ):
            # Two trials may be lost (one training, one asked ahead), each re-run for 60
            # epochs by the one rescuer: room for a loaded 2-core machine.
            done = wait_done(client, study["id"], timeout=400)
            assert rescuer.wait() == 0, rescuer.text
    trials = optuna_trials(database, study["id"])
    with database.session() as session:
        workers_of = {r.number: r.worker_id for r in TrialRepository(session).rows(study["id"])}
    database.dispose()
    assert done["status"] == "completed"
    failed = trials[killed.number]
    assert failed.state is TrialState.FAIL
    assert failed.user_attrs["fail_reason"] == STALE_REASON
    (retry,) = [t for t in trials if t.user_attrs.get(RETRY_OF_ATTR) == killed.number]
    assert retry.state is TrialState.COMPLETE
    assert retry.params == killed.params
    assert workers_of[retry.number] != workers_of[killed.number]
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 2
