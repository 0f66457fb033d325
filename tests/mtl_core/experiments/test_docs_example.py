"""The user experiment of docs/experiments.md (examples/my_experiment.py) works as shown."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from mtl_core.config import TrialConfig
from mtl_core.experiments import EXPERIMENTS, get_experiment, list_experiments, load_plugins
from mtl_core.trainer import train_trial

MODULE = "examples.my_experiment"
NAME = "sensors"


@pytest.fixture
def registered() -> Iterator[str]:
    """The example registered the way a worker does it (an allowed module), then forgotten."""
    assert NAME not in list_experiments()
    assert load_plugins([MODULE]) == [NAME]
    yield NAME
    EXPERIMENTS.remove(NAME)
    sys.modules.pop(MODULE, None)  # so the next import registers it again


def test_the_example_registers_and_loads_checked_splits(registered: str) -> None:
    experiment = get_experiment(registered)
    assert experiment.task_names == ("temperature", "fault", "mode")
    splits = experiment.load(None)  # runs the same checks as a worker's first load
    assert [len(s) for s in (splits.train, splits.val, splits.test)] == [1000, 200, 200]
    assert splits.train.x.dtype == torch.float32
    assert [t.dtype for t in splits.train.targets] == [torch.float32, torch.float32, torch.int64]
    assert experiment.parts_for(splits).input_dim == splits.train.x.shape[1]


def test_one_short_trial_trains_with_finite_metrics_for_every_task(registered: str) -> None:
    result = train_trial(
        TrialConfig(experiment=registered, epochs=1, batch_size=64, max_train_samples=256)
    )
    assert result.epochs_run == 1
    assert set(result.val_metrics) == {"temperature", "fault", "mode"}
    assert all(math.isfinite(v) for v in result.val_metrics.values()), result.val_metrics
    assert all(math.isfinite(v) for v in result.test_metrics.values()), result.test_metrics


def test_the_doc_shows_the_example_as_it_is() -> None:
    root = Path(__file__).resolve().parents[3]
    code = (root / "examples" / "my_experiment.py").read_text(encoding="utf-8")
    assert f"```python\n{code}```" in (root / "docs" / "experiments.md").read_text(encoding="utf-8")
