"""The complete plugin of docs/experiments.md (examples/census_plugin.py), loaded as a worker
loads it: its own data file, loss and metric, a study spec checked against it, trials trained
alone and two at a time, and a worker that runs a study of it on SQLite."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from mtl_core.batched import train_batch
from mtl_core.config import TrialConfig
from mtl_core.experiments import (
    EXPERIMENTS,
    DataShapes,
    describe_experiment,
    get_experiment,
    list_experiments,
    load_plugins,
)
from mtl_core.experiments.data import sha256_of
from mtl_core.tasks import LOSSES, METRICS, build_metric, list_losses, list_metrics
from mtl_core.trainer import train_trial
from mtlsearch.search.objective import higher_is_better
from mtlsearch.search.spec import SpecError, StudySpec
from mtlsearch.search.spec_checks import validate_against_experiment
from mtlsearch.settings import Settings
from mtlsearch.worker import Worker, WorkerOptions
from storage import StudyRepository, StudyStatus
from tests.mtl_core.batched._helpers import assert_same_result
from tests.mtlsearch.worker.helpers import submit
from tests.utils.databases import migrated_database
from tests.utils.specs import quick_spec

ROOT = Path(__file__).resolve().parents[3]
MODULE = "examples.census_plugin"
NAME = "census_sample"
DATA_DIR = ROOT / "examples" / "data"


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The plugin registered as a worker registers it: from its settings, read from the
    environment; the registries and the module are forgotten afterwards."""
    for registry in (EXPERIMENTS, LOSSES, METRICS):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    monkeypatch.setenv("MTLSEARCH_ALLOWED_EXPERIMENT_MODULES", json.dumps([MODULE]))
    monkeypatch.setenv("MTLSEARCH_DATA_DIR", str(DATA_DIR))
    sys.modules.pop(MODULE, None)
    settings = Settings()
    assert NAME not in list_experiments() and "focal" not in list_losses()
    assert load_plugins(settings.allowed_experiment_modules) == [NAME]
    yield settings
    sys.modules.pop(MODULE, None)  # so that the next import registers it again


def test_importing_it_registers_its_loss_metric_and_experiment(settings: Settings) -> None:
    assert "focal" in list_losses() and "f2" in list_metrics()
    assert build_metric("f2").higher_is_better is True
    tasks = {task["name"]: task for task in describe_experiment(NAME).tasks}
    assert tasks["income"]["loss"] == "focal" and tasks["income"]["metric"] == "f2"
    assert tasks["income"]["higher_is_better"] is True
    assert tasks["hours"]["higher_is_better"] is False
    assert higher_is_better(get_experiment(NAME)) == {"income": True, "hours": False}


def test_it_reads_its_checked_file_and_builds_the_network_for_its_width(
    settings: Settings,
) -> None:
    experiment = get_experiment(NAME)
    (file,) = experiment.files
    assert settings.data_dir is not None
    assert sha256_of(settings.data_dir / file.relative_path) == file.sha256
    splits = experiment.load(settings.data_dir)  # verifies the file, then the checks
    assert [len(s) for s in (splits.train, splits.val, splits.test)] == [600, 100, 100]
    # 4 numeric columns + the training rows' workclass (7 values, '?' included) and sex (2).
    shapes = DataShapes.of(splits)
    assert shapes == DataShapes((13,), ((), ()))
    assert experiment.parts_for(splits).input_dim == 13


def test_a_study_spec_is_checked_against_it(settings: Settings) -> None:
    spec = StudySpec.model_validate(
        quick_spec("census", experiment=NAME, search_space={"weights": {"hours": 0.5}})
    )
    assert validate_against_experiment(spec).name == NAME
    bad = StudySpec.model_validate(
        quick_spec("census", experiment=NAME, search_space={"weights": {"hour": 0.5}})
    )
    with pytest.raises(SpecError, match=r"unknown task 'hour'.*income, hours"):
        validate_against_experiment(bad)


@pytest.fixture
def deterministic() -> Iterator[None]:
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


@pytest.mark.usefixtures("deterministic")
def test_a_short_trial_trains_alone_and_two_at_a_time_to_the_same_result(
    settings: Settings,
) -> None:
    """K = 2 runs the focal loss under vmap; K = 1 calls it directly: same trials, same numbers."""
    configs = [
        TrialConfig(experiment=NAME, epochs=2, seed=1, data_seed=7),
        TrialConfig(experiment=NAME, epochs=2, seed=2, data_seed=7, weights={"hours": 0.3}),
    ]
    alone = [train_trial(config, settings.data_dir) for config in configs]
    together = train_batch(configs, settings.data_dir)
    for one, batched in zip(alone, together, strict=True):
        assert one.epochs_run == 2 and one.stop_reason is None
        assert set(one.val_metrics) == {"income", "hours"}
        assert all(math.isfinite(v) for v in one.test_metrics.values()), one.test_metrics
        assert math.isfinite(one.test_extra["income/auc"])
        assert_same_result(one, batched, tol=1e-4)


def test_a_worker_runs_a_study_of_it_two_trials_at_a_time(
    settings: Settings, sqlite_url: str
) -> None:
    with migrated_database(sqlite_url, settings) as database:
        spec = quick_spec("census", experiment=NAME, n_trials=2, search_space={"epochs": 1})
        info = submit(database, spec)
        options = WorkerOptions(batch=2, idle_exit_s=0.0, heartbeat_s=1.0)
        Worker(database, options, settings=settings).run()
        with database.session() as session:
            row = StudyRepository(session).get(info.id)
    assert row.status is StudyStatus.COMPLETED, row.message


def test_the_doc_shows_the_plugin_whole() -> None:
    code = (ROOT / "examples" / "census_plugin.py").read_text(encoding="utf-8")
    doc = (ROOT / "docs" / "experiments.md").read_text(encoding="utf-8")
    assert f"```python\n{code}```" in doc
