"""Objective values and directions for each kind (plain numbers, real experiments)."""

from __future__ import annotations

from typing import Any

import pytest

from mtl_core.experiments import get_experiment
from mtl_core.results import EpochReport
from mtlsearch.search.objective import (
    directions,
    intermediate_value,
    values_from_metrics,
    weighted_mean,
)
from mtlsearch.search.spec import StudySpec

SYNTHETIC = get_experiment("synthetic")  # regression: rmse (lower better); classification: accuracy
METRICS = {"regression": 0.5, "classification": 0.8}


def make_spec(objective: dict[str, Any]) -> StudySpec:
    return StudySpec.model_validate(
        {"name": "s", "experiment": "synthetic", "n_trials": 1, "objective": objective}
    )


@pytest.mark.parametrize(
    ("objective", "expected"),
    [
        ({"kind": "delta_m"}, ["maximize"]),
        ({"kind": "weighted_mean"}, ["maximize"]),
        ({"kind": "multi"}, ["minimize", "maximize"]),
    ],
)
def test_directions(objective: dict[str, Any], expected: list[str]) -> None:
    assert directions(make_spec(objective), SYNTHETIC) == expected
    assert directions(make_spec(objective), get_experiment("adult")) == ["maximize"] * len(expected)


def test_delta_m_value() -> None:
    spec = make_spec({"kind": "delta_m", "baselines": {"regression": 1.0, "classification": 0.5}})
    # rmse 1.0 -> 0.5: +50 %; accuracy 0.5 -> 0.8: +60 %
    assert values_from_metrics(METRICS, spec, SYNTHETIC) == [pytest.approx(55.0)]
    # explicit baselines win over the spec's
    other = {"regression": 0.5, "classification": 0.8}
    assert values_from_metrics(METRICS, spec, SYNTHETIC, other) == [pytest.approx(0.0)]


def test_delta_m_needs_baselines() -> None:
    with pytest.raises(ValueError, match=r"objective\.baselines"):
        values_from_metrics(METRICS, make_spec({"kind": "delta_m"}), SYNTHETIC)


def test_weighted_mean_negates_lower_is_better() -> None:
    spec = make_spec({"kind": "weighted_mean"})
    assert values_from_metrics(METRICS, spec, SYNTHETIC) == [pytest.approx((-0.5 + 0.8) / 2)]
    spec = make_spec(
        {"kind": "weighted_mean", "coefficients": {"regression": 3.0, "classification": 1.0}}
    )
    assert values_from_metrics(METRICS, spec, SYNTHETIC) == [pytest.approx((-1.5 + 0.8) / 4)]


def test_weighted_mean_errors() -> None:
    with pytest.raises(ValueError, match="all be 0"):
        weighted_mean({"a": 1.0}, {"a": 0.0}, {"a": True})
    with pytest.raises(ValueError, match="task 'a'"):
        weighted_mean({}, {}, {"a": True})


def test_multi_returns_one_value_per_task_in_task_order() -> None:
    spec = make_spec({"kind": "multi"})
    assert values_from_metrics(METRICS, spec, SYNTHETIC) == [0.5, 0.8]
    with pytest.raises(ValueError, match="classification"):
        values_from_metrics({"regression": 0.5}, spec, SYNTHETIC)


def _report(metrics: dict[str, float]) -> EpochReport:
    return EpochReport(
        epoch=1, train_loss={}, val_metrics=metrics, val_extra={}, weights={}, elapsed_s=0.0
    )


def test_intermediate_value() -> None:
    report = _report(METRICS)
    assert intermediate_value(report, make_spec({"kind": "weighted_mean"}), SYNTHETIC) == (
        pytest.approx(0.15)
    )
    assert intermediate_value(report, make_spec({"kind": "multi"}), SYNTHETIC) is None
