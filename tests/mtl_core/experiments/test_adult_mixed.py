"""Adult with mixed loss scales: shapes, hours in raw units and not an input, training, Δm%."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from mtl_core import TrialConfig, train_trial
from mtl_core.experiments import DataSplits, describe_experiment, get_experiment
from mtl_core.experiments.adult import NUMERIC
from mtl_core.experiments.adult_mixed import AdultMixed
from mtl_core.metrics_delta import delta_m
from mtlsearch.search.objective import higher_is_better


@pytest.fixture(scope="module")
def splits(data_dir: Path) -> DataSplits:
    return get_experiment("adult_mixed").load(data_dir)


def test_shapes_and_row_counts(splits: DataSplits) -> None:
    assert len(splits.train) == 29_305 and len(splits.val) == 3_256 and len(splits.test) == 16_281
    for split in (splits.train, splits.val, splits.test):
        assert split.x.shape == (len(split), 100)  # adult's 101 less hours-per-week
        assert split.x.dtype == torch.float32 and not torch.isnan(split.x).any()
        income, hours = split.targets
        assert income.shape == hours.shape == (len(split),)
        assert set(income.unique().tolist()) == {0.0, 1.0}
        assert hours.dtype == torch.float32


def test_hours_are_raw_and_not_an_input(splits: DataSplits, data_dir: Path) -> None:
    hours = torch.cat([splits.train.targets[1], splits.val.targets[1]])
    # Raw hours per week (1..99, mean about 40), not standardised.
    assert hours.min() >= 1 and hours.max() <= 99
    assert 39 < float(hours.mean()) < 42
    names = AdultMixed().feature_names(data_dir)
    assert len(names) == splits.train.x.shape[1]
    assert "hours-per-week" not in names
    assert names[: len(NUMERIC) - 1] == [n for n in NUMERIC if n != "hours-per-week"]
    # No input column is the target, standardised or not.
    hours_train = splits.train.targets[1]
    standardised = (hours_train - hours_train.mean()) / hours_train.std(unbiased=False)
    for j in range(len(NUMERIC) - 1):
        assert not torch.allclose(splits.train.x[:, j], standardised, atol=1e-4)


def test_same_rows_as_adult(splits: DataSplits, data_dir: Path) -> None:
    adult = get_experiment("adult").load(data_dir)
    torch.testing.assert_close(adult.val.targets[0], splits.val.targets[0])
    hours_column = NUMERIC.index("hours-per-week")
    kept = [j for j in range(adult.val.x.shape[1]) if j != hours_column]
    torch.testing.assert_close(adult.val.x[:, kept], splits.val.x)


def test_mae_is_lower_is_better() -> None:
    info = describe_experiment("adult_mixed")
    assert [(t["name"], t["metric"], t["higher_is_better"]) for t in info.tasks] == [
        ("income", "auc", True),
        ("hours", "mae", False),
    ]
    directions = higher_is_better(get_experiment("adult_mixed"))
    assert directions == {"income": True, "hours": False}
    baselines = {"income": 0.90, "hours": 8.0}
    # A lower MAE than the baseline is a gain; a higher one a loss.
    assert delta_m({"income": 0.90, "hours": 6.0}, baselines, directions) == pytest.approx(12.5)
    assert delta_m({"income": 0.90, "hours": 10.0}, baselines, directions) == pytest.approx(-12.5)


def test_one_epoch_gives_finite_metrics(data_dir: Path) -> None:
    config = TrialConfig(
        experiment="adult_mixed",
        epochs=1,
        max_train_samples=2048,
        weights={"income": 1.0, "hours": 0.01},
    )
    result = train_trial(config, data_dir)
    for metrics in (result.val_metrics, result.test_metrics):
        assert set(metrics) == {"income", "hours"}
        assert all(math.isfinite(v) for v in metrics.values())
    assert 0.5 < result.test_metrics["income"] <= 1.0
    # One epoch from a zero-mean head: the MAE is still in hours, between 0 and the mean.
    assert 0 < result.test_metrics["hours"] < 45
