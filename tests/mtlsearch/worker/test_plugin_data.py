"""A user experiment whose data do not fit: the worker records one line, not a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch import nn

from mtl_core.experiments import (
    EXPERIMENTS,
    DataShapes,
    DataSplits,
    Experiment,
    NetworkParts,
    Split,
    register_experiment,
)
from mtl_core.tasks import Task
from mtlsearch.settings import Settings
from mtlsearch.worker import Worker, WorkerOptions
from storage import Database, StudyRepository, StudyStatus
from tests.mtlsearch.worker.helpers import submit, synthetic_spec
from tests.utils.databases import migrated_database

SETTINGS = Settings(worker_heartbeat_s=1.0, stale_after_s=1.0)
NAME = "float64_plugin"
WIDTH = 4


class Float64Plugin(Experiment):
    """A plugin that forgot ``.float()``: numpy's float64 inputs reach `load_splits`' result."""

    name = NAME
    tasks = (Task("level", "mse", "rmse", 1), Task("kind", "cross_entropy", "accuracy", 3))

    def load_splits(self, data_dir: Path | None) -> DataSplits:
        def split(n: int) -> Split:
            x = torch.randn(n, WIDTH, dtype=torch.float64)
            return Split(x, [torch.randn(n), torch.randint(0, 3, (n,))])

        return DataSplits(split(64), split(16), split(16))

    def network_parts(self, data: DataShapes) -> NetworkParts:
        return NetworkParts(
            make_blocks=lambda: [nn.Sequential(nn.Linear(data.input_dim, 8), nn.ReLU())],
            representation_dim=8,
            make_head=lambda task: nn.Linear(8, 1 if task == 0 else 3),
            input_dim=data.input_dim,
            num_tasks=2,
        )


@pytest.fixture
def database(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    monkeypatch.setattr(EXPERIMENTS, "_entries", dict(EXPERIMENTS._entries))
    register_experiment(Float64Plugin)
    with migrated_database(sqlite_url, SETTINGS) as database:
        yield database


def test_float64_inputs_fail_the_study_with_one_line_naming_the_problem(
    database: Database,
) -> None:
    info = submit(database, synthetic_spec("bad-data", experiment=NAME, n_trials=3))
    options = WorkerOptions(idle_exit_s=0.0, heartbeat_s=1.0, max_consecutive_failures=2)
    Worker(database, options, settings=SETTINGS).run()

    with database.session() as session:
        row = StudyRepository(session).get(info.id)
    assert row.status is StudyStatus.FAILED
    message = row.message
    assert message is not None
    assert "\n" not in message and "Traceback" not in message, message
    for part in (f"experiment {NAME!r}", "inputs must be float32", "float64", "2 trials failed"):
        assert part in message, message

    study = optuna.load_study(study_name=info.optuna_study_name, storage=database.optuna_storage())
    # A failed trial gives its slot back, and the asker runs ahead of the teller: trials asked
    # before the study was marked failed are told FAIL too ("study failed").
    assert len(study.trials) >= 2
    assert all(t.state is TrialState.FAIL for t in study.trials)
    for trial in study.trials[:2]:
        reason = trial.user_attrs["fail_reason"]
        assert reason.startswith(f"experiment {NAME!r} (train split): inputs must be float32")
        assert "\n" not in reason and "Traceback" not in reason
