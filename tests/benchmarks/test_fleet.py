"""benchmarks/fleet.py measures a real fleet: two worker processes on one PostgreSQL study
finish every trial exactly once, and the figures it reports are real numbers."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from fleet import measure_fleet, prefilled_database

PREFILL, TRIALS, WORKERS = 50, 20, 2


@pytest.mark.postgres
@pytest.mark.slow
def test_two_workers_finish_every_trial_once_and_report_real_figures() -> None:
    # Without the server this fails with StorageError ("PostgreSQL is not reachable ...").
    with prefilled_database(PREFILL, TRIALS, epochs=3, sampler="tpe") as template:
        run = measure_fleet(template, WORKERS, prefill=PREFILL, trials=TRIALS, train_ms=1.0)

    assert run.trials == TRIALS
    for states in (run.optuna_states, run.row_states):
        assert set(states) <= {"COMPLETE", "PRUNED"}
        assert sum(states.values()) == PREFILL + TRIALS
    # Each worker slept in every epoch of its trials: 1 to 3 epochs of 1 ms per trial.
    assert TRIALS * 0.001 <= run.slept_s < run.wall_s * WORKERS
    for figure in (run.wall_s, run.overhead_s, run.per_hour, run.worker_cpu_s):
        assert math.isfinite(figure) and figure > 0
    assert run.pg_cpu_s is not None and math.isfinite(run.pg_cpu_s) and run.pg_cpu_s > 0
    assert run.peak_connections >= WORKERS
    assert run.samples >= 2
    assert run.counters.commits >= TRIALS
    assert run.counters.deadlocks == 0
