"""Shared helpers of the batched-trainer tests."""

from __future__ import annotations

import math

from mtl_core.results import TrialResult

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
