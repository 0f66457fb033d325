"""The one-trial trainer on real components: synthetic data, every registry entry, errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mtl_core import ConfigError, TrainingDiverged, TrialConfig, TrialStopped, train_trial
from mtl_core.architectures import ARCHITECTURES
from mtl_core.errors import DataError
from mtl_core.experiments import EXPERIMENTS
from mtl_core.registry import UnknownNameError
from mtl_core.results import EpochReport
from mtl_core.schedules import SCHEDULES
from mtl_core.weighting import STRATEGIES

GRADIENT_STRATEGIES = {name for name in STRATEGIES if STRATEGIES.get(name).uses_task_gradients}


def quick(**overrides: object) -> TrialConfig:
    values: dict[str, object] = {"experiment": "synthetic", "epochs": 3, "max_train_samples": 600}
    values.update(overrides)
    return TrialConfig.model_validate(values)


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_every_strategy_trains_and_reports_normalised_weights(strategy: str) -> None:
    result = train_trial(quick(strategy=strategy, epochs=4))
    first, last = result.history[0], result.history[-1]
    assert len(last.weights) == 2
    assert all(math.isfinite(w) for w in last.weights.values())
    assert sum(last.weights.values()) == pytest.approx(2.0, rel=1e-4)
    assert sum(last.train_loss.values()) < sum(first.train_loss.values())


@pytest.mark.parametrize("architecture", ARCHITECTURES.names())
@pytest.mark.parametrize("strategy", ["fixed", "pcgrad", "gradnorm"])
def test_every_architecture_trains(architecture: str, strategy: str) -> None:
    config = quick(architecture=architecture, strategy=strategy)
    if architecture == "soft" and strategy in GRADIENT_STRATEGIES | {"gradnorm"}:
        with pytest.raises(ConfigError, match="shared"):
            train_trial(config)
        return
    result = train_trial(config)
    assert result.history[-1].train_loss["regression"] < result.history[0].train_loss["regression"]


def test_a_method_on_the_representation_needs_an_architecture_that_exposes_one() -> None:
    config = quick(strategy="graddrop", architecture="mmoe", epochs=1)
    with pytest.raises(ConfigError, match="representation") as error:
        train_trial(config)
    assert "\n" not in str(error.value)


SCHEDULE_PARAMS: dict[str, dict[str, object]] = {
    "pretrain": {"task": "regression", "epochs": 1},
    "aux_decay": {"task": "classification", "until_epoch": 2},
}


@pytest.mark.parametrize("schedule", SCHEDULES.names())
def test_every_schedule_trains(schedule: str) -> None:
    result = train_trial(
        quick(schedule=schedule, schedule_params=SCHEDULE_PARAMS.get(schedule, {}))
    )
    assert result.epochs_run == 3
    assert all(math.isfinite(v) for v in result.test_metrics.values())


def test_pretrain_schedule_trains_only_the_auxiliary_task_first() -> None:
    result = train_trial(
        quick(schedule="pretrain", schedule_params={"task": "regression", "epochs": 2})
    )
    weights = [r.weights for r in result.history]
    assert weights[0]["classification"] == 0.0
    assert weights[2]["classification"] > 0.0


@pytest.mark.parametrize("experiment", EXPERIMENTS.names())
def test_every_experiment_trains_one_short_epoch(experiment: str, data_dir: Path) -> None:
    result = train_trial(
        TrialConfig(experiment=experiment, epochs=1, max_train_samples=512), data_dir
    )
    assert set(result.val_metrics) == set(result.config.weights)
    assert all(math.isfinite(v) for v in result.val_metrics.values())


def test_same_seed_same_result_and_other_seed_differs() -> None:
    a = train_trial(quick(seed=3, strategy="rlw"))
    b = train_trial(quick(seed=3, strategy="rlw"))
    c = train_trial(quick(seed=4, strategy="rlw"))
    assert [r.train_loss for r in a.history] == [r.train_loss for r in b.history]
    assert a.test_metrics == b.test_metrics
    assert [r.train_loss for r in a.history] != [r.train_loss for r in c.history]


def test_callback_can_stop_a_trial() -> None:
    seen: list[int] = []

    def prune_after_two(report: EpochReport) -> None:
        seen.append(report.epoch)
        if report.epoch == 2:
            raise TrialStopped("pruned at epoch 2")

    result = train_trial(quick(epochs=5), on_epoch=prune_after_two)
    assert seen == [1, 2]
    assert result.epochs_run == 2
    assert result.stop_reason == "pruned at epoch 2"


def test_nan_loss_stops_with_the_task_named() -> None:
    with pytest.raises(TrainingDiverged, match=r"task\(s\) .*regression.*epoch 1"):
        train_trial(quick(lr=1e12, optimizer="sgd"))


def test_fixed_weights_change_the_training() -> None:
    only_regression = train_trial(quick(weights={"classification": 0.0}))
    both = train_trial(quick())
    assert only_regression.history[-1].weights["classification"] == 0.0
    assert only_regression.val_metrics["classification"] < both.val_metrics["classification"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"strategy": "nope"},
            "unknown strategy 'nope'; valid choices: aligned_mtl, auto_lambda, cagrad",
        ),
        ({"experiment": "nope"}, "unknown experiment 'nope'; valid choices: adult"),
        ({"architecture": "nope"}, "unknown architecture 'nope'; valid choices: [a-z_, ]*hard, "),
        ({"schedule": "nope"}, "unknown schedule 'nope'; valid choices: alternating"),
        ({"weights": {"colour": 1.0}}, "unknown task 'colour'.*valid tasks: regression, classif"),
        ({"weights": {"regression": 0.0, "classification": 0.0}}, "at least one task weight"),
        ({"strategy": "dwa", "strategy_params": {"tau": 0}}, "'tau'"),
        ({"strategy": "dwa", "strategy_params": {"temp": 1}}, "no parameter 'temp'.*tau"),
    ],
)
def test_bad_config_is_one_line_naming_the_value(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises((ConfigError, UnknownNameError), match=message) as info:
        train_trial(quick(**overrides))
    assert "\n" not in str(info.value)


def test_negative_weight_is_rejected_by_the_config() -> None:
    with pytest.raises(
        ValueError, match="weight of task 'regression' must be a finite number >= 0"
    ):
        quick(weights={"regression": -1.0})


def test_missing_data_file_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "mnist").mkdir()
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz") as info:
        train_trial(TrialConfig(experiment="multi_mnist", epochs=1), tmp_path)
    assert str(tmp_path) in str(info.value)
    assert "\n" not in str(info.value)
