"""Δm% against a hand-computed case, and its errors."""

from __future__ import annotations

import pytest

from mtl_core.config import TrialConfig
from mtl_core.metrics_delta import delta_m, single_task_baselines


def test_hand_computed_case() -> None:
    # accuracy 0.8 -> 0.9 (higher is better): +0.1/0.8 = +12.5 %
    # mae 1.0 -> 0.8 (lower is better): -(0.8 - 1.0)/1.0 = +20 %
    # rmse 2.0 -> 2.5 (lower is better): -(2.5 - 2.0)/2.0 = -25 %
    metrics = {"acc": 0.9, "mae": 0.8, "rmse": 2.5}
    baselines = {"acc": 0.8, "mae": 1.0, "rmse": 2.0}
    higher = {"acc": True, "mae": False, "rmse": False}
    assert delta_m(metrics, baselines, higher) == pytest.approx((12.5 + 20.0 - 25.0) / 3)


def test_equal_to_baselines_is_zero_and_better_is_positive() -> None:
    higher = {"a": True, "b": False}
    base = {"a": 0.5, "b": 3.0}
    assert delta_m(base, base, higher) == 0.0
    assert delta_m({"a": 0.6, "b": 2.0}, base, higher) > 0
    assert delta_m({"a": 0.4, "b": 4.0}, base, higher) < 0


def test_only_the_directed_tasks_count() -> None:
    assert delta_m({"a": 2.0, "x": 100.0}, {"a": 1.0}, {"a": True}) == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("metrics", "baselines", "match"),
    [
        ({"a": 1.0}, {"a": 0.0}, "baseline of task 'a'"),
        ({"a": 1.0}, {"a": float("nan")}, "baseline of task 'a'"),
        ({}, {"a": 1.0}, "metrics have no value for task 'a'"),
        ({"a": 1.0}, {}, "baselines have no value for task 'a'"),
    ],
)
def test_errors_name_the_task(
    metrics: dict[str, float], baselines: dict[str, float], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        delta_m(metrics, baselines, {"a": True})


def test_single_task_baselines_on_synthetic() -> None:
    base = TrialConfig(experiment="synthetic", epochs=2, max_train_samples=300, strategy="dwa")
    baselines = single_task_baselines("synthetic", base, None)
    assert set(baselines) == {"regression", "classification"}
    assert 0.0 < baselines["classification"] <= 1.0  # accuracy
    assert baselines["regression"] > 0.0  # rmse
