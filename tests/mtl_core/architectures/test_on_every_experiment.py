"""Every architecture trains on every shipped experiment and on the user experiment of
docs/experiments.md, alone and batched with another trial (the batched slot equals the trial
alone), on a few hundred real rows of each."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mtl_core.architectures import ARCHITECTURES
from mtl_core.batched import train_batch
from mtl_core.config import TrialConfig
from mtl_core.experiments import EXPERIMENTS, DataSplits, Split, get_experiment, load_plugins
from mtl_core.trainer import train_trial
from tests.mtl_core.batched._helpers import assert_same_result

EXPERIMENT_NAMES = ["adult", "adult_mixed", "multi_mnist", "sensors"]
ROWS = {"train": 256, "val": 128, "test": 128}


def _head(split: Split, rows: int) -> Split:
    return Split(split.x[:rows], [t[:rows] for t in split.targets])


@pytest.fixture(scope="module")
def small_splits(data_dir: Path) -> Iterator[dict[str, DataSplits]]:
    """The first rows of each experiment's real splits (the user experiment registered as a
    worker registers it, then forgotten)."""
    assert load_plugins(["examples.my_experiment"]) == ["sensors"]
    try:
        splits = {}
        for name in EXPERIMENT_NAMES:
            full = get_experiment(name).load(data_dir)
            splits[name] = DataSplits(
                *(_head(getattr(full, part), rows) for part, rows in ROWS.items())
            )
        yield splits
    finally:
        EXPERIMENTS.remove("sensors")
        sys.modules.pop("examples.my_experiment", None)


@pytest.mark.parametrize("experiment", EXPERIMENT_NAMES)
@pytest.mark.parametrize("architecture", ARCHITECTURES.names())
def test_trains_alone_and_batched(
    architecture: str, experiment: str, small_splits: dict[str, DataSplits]
) -> None:
    data = small_splits[experiment]
    configs = [
        TrialConfig(
            experiment=experiment,
            architecture=architecture,
            epochs=1,
            batch_size=64,
            seed=seed,
            data_seed=0,
        )
        for seed in (1, 2)
    ]
    alone = train_trial(configs[-1], data=data)
    assert alone.epochs_run == 1 and alone.stop_reason is None
    assert all(math.isfinite(v) for v in alone.test_metrics.values()), alone.test_metrics
    assert_same_result(alone, train_batch(configs, data=data)[-1], tol=1e-4)
