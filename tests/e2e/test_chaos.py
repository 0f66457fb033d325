"""Chaos: real worker processes (or their training processes) SIGKILLed at seeded random
moments, a kill between ``ask()``
and recording the trial, the API server killed mid-study. The study must still end exact
(`tests.e2e.ledger`); ``tests/soak/chaos_soak.py`` repeats the scenarios of `tests.e2e.chaos`
with random seeds.

Figures and the command that reproduces them: docs/reliability.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from mtlsearch.worker import STALE_REASON
from storage import Database
from tests.e2e import chaos
from tests.e2e.helpers import optuna_trials

pytestmark = [pytest.mark.slow]


@pytest.mark.postgres
def test_postgres_four_workers_two_killed_repeatedly(postgres_url: str, tmp_path: Path) -> None:
    run = chaos.kills(
        postgres_url, tmp_path, n_workers=4, n_victims=2, rounds=5, seed=1, n_trials=40
    )
    print(f"postgres: {run.kills} kills, {run.ledger.summary()}")
    assert run.ledger.exact, (run.ledger.lost, run.ledger.duplicated, run.ledger.stuck)
    assert run.kills >= 2 and run.ledger.retries >= 1  # the kills did hit trials


@pytest.mark.postgres
def test_postgres_workers_and_their_training_processes_killed(
    postgres_url: str, tmp_path: Path
) -> None:
    run = chaos.kills(
        postgres_url,
        tmp_path,
        n_workers=3,
        n_victims=2,
        rounds=6,
        seed=3,
        n_trials=30,
        trainers=True,
    )
    print(f"postgres, trainers: {run.kills} kills ({run.trainer_kills} of training processes)")
    assert run.ledger.exact, (run.ledger.lost, run.ledger.duplicated, run.ledger.stuck)
    assert run.trainer_kills >= 2 and run.kills > run.trainer_kills
    assert run.ledger.retries >= 1


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


@pytest.mark.postgres
def test_the_api_server_killed_mid_study(postgres_url: str, tmp_path: Path) -> None:
    run = chaos.server_kill(postgres_url, tmp_path)
    assert run.ledger.exact, (run.ledger.lost, run.ledger.duplicated, run.ledger.stuck)
    assert run.ledger.retries == 0  # only the server died: no trial was lost
