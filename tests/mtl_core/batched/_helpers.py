"""Shared helpers of the batched-trainer tests."""

from __future__ import annotations

import math
from typing import Any

from mtl_core.batched import can_batch_together, train_batch
from mtl_core.config import TrialConfig
from mtl_core.results import TrialResult
from mtl_core.trainer import train_trial

TOL = 1e-5


def assert_same_result(one: TrialResult, batched: TrialResult, tol: float = TOL) -> None:
    """Per-epoch train losses, val metrics and weights, and test metrics agree to ``tol``."""
    assert batched.epochs_run == one.epochs_run
    assert batched.config.data_seed == one.config.data_seed
    for a, b in zip(one.history, batched.history, strict=True):
        assert a.epoch == b.epoch
        for field in ("train_loss", "val_metrics", "weights"):
            left, right = getattr(a, field), getattr(b, field)
            assert left.keys() == right.keys()
            for key in left:
                assert math.isclose(left[key], right[key], rel_tol=tol, abs_tol=tol), (
                    f"epoch {a.epoch} {field}[{key}]: {left[key]} alone, {right[key]} batched"
                )
    for key, value in one.test_metrics.items():
        assert math.isclose(value, batched.test_metrics[key], rel_tol=tol, abs_tol=tol)


#: One strategy of each kind: fixed weights, learned loss weights, a gradient method on the
#: shared parameters, GradNorm (the last shared layer), epoch-level loss history.
STRATEGY_KINDS = ("fixed", "uncertainty", "pcgrad", "gradnorm", "dwa")


def synthetic_config(**overrides: Any) -> TrialConfig:
    """A two-epoch trial of the generated `synthetic` experiment on 128 samples."""
    base: dict[str, Any] = {
        "experiment": "synthetic",
        "epochs": 2,
        "data_seed": 5,
        "max_train_samples": 128,
        "batch_size": 64,
        "lr": 1e-2,
    }
    return TrialConfig.model_validate({**base, **overrides})


def assert_batched_equals_alone(configs: list[TrialConfig], tol: float = 1e-4) -> None:
    """The last slot of the batch equals its trial alone (the last: slot indexing shows)."""
    assert can_batch_together(configs)
    assert_same_result(train_trial(configs[-1]), train_batch(configs)[-1], tol=tol)


def architecture_configs(
    architecture: str, strategy: str, params: dict[str, Any], seeds: tuple[int, ...] = (3, 4)
) -> list[TrialConfig]:
    """`synthetic_config` trials of one architecture and strategy, one per seed."""
    return [
        synthetic_config(
            strategy=strategy, architecture=architecture, architecture_params=params, seed=seed
        )
        for seed in seeds
    ]
