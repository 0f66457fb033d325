"""Suggestions ↔ params ↔ TrialConfig, weight normalisation, the grid search space."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest

from mtl_core.experiments import get_experiment
from mtlsearch.search.optuna_factory import build_sampler
from mtlsearch.search.space import (
    grid_search_space,
    normalised_weights,
    suggest_trial_config,
    trial_config_from_params,
)
from mtlsearch.search.spec import SpecError, StudySpec
from mtlsearch.search.spec_checks import validate_against_experiment

SYNTHETIC = get_experiment("synthetic")  # tasks: regression (reference), classification


def make_spec(**overrides: Any) -> StudySpec:
    data: dict[str, Any] = {"name": "s", "experiment": "synthetic", "n_trials": 10}
    data.update(overrides)
    spec = StudySpec.model_validate(data)
    validate_against_experiment(spec, SYNTHETIC)
    return spec


RICH_SPACE = {
    "weights": {"classification": {"lo": 0.05, "hi": 20}},
    "strategies": [
        {"name": "fixed"},
        {"name": "dwa", "params": {"tau": {"low": 0.5, "high": 5, "log": True}}},
        {"name": "cagrad", "params": {"c": {"choices": [0.2, 0.4]}, "rescale": 1}},
    ],
    "architectures": [
        {"name": "hard"},
        {"name": "mmoe", "params": {"num_experts": {"low": 2, "high": 6}}},
    ],
    "lr": {"low": 1e-4, "high": 1e-2, "log": True},
    "epochs": {"choices": [1, 2, 3]},
    "batch_size": 64,
    "max_train_samples": 100,
}


def test_suggested_params_rebuild_the_same_config() -> None:
    spec = make_spec(search_space=RICH_SPACE, seed=3)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_strategies = set()
    for _ in range(30):
        trial = study.ask()
        config = suggest_trial_config(trial, spec, SYNTHETIC, device="cpu")
        study.tell(trial, 0.0)
        rebuilt = trial_config_from_params(study.trials[-1].params, spec, SYNTHETIC, device="cpu")
        assert rebuilt == config
        seen_strategies.add(config.strategy)
        assert config.seed == 3 and config.batch_size == 64 and config.max_train_samples == 100
    assert seen_strategies == {"fixed", "dwa", "cagrad"}


def test_param_names_are_conditional_and_readable() -> None:
    spec = make_spec(search_space=RICH_SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(30):
        trial = study.ask()
        config = suggest_trial_config(trial, spec, SYNTHETIC)
        study.tell(trial, 0.0)
        params = study.trials[-1].params
        assert params["strategy"] == config.strategy
        assert ("dwa.tau" in params) == (config.strategy == "dwa")
        assert ("cagrad.c" in params) == (config.strategy == "cagrad")
        assert "cagrad.rescale" not in params  # fixed values are not suggested
        assert ("w_classification" in params) == (config.strategy == "fixed")
        assert "w_regression" not in params  # the reference task
        assert ("architecture.mmoe.num_experts" in params) == (config.architecture == "mmoe")
        if config.architecture == "mmoe":
            assert isinstance(config.architecture_params["num_experts"], int)
        assert {"lr", "epochs", "architecture"} <= set(params)


def test_reference_weight_is_exactly_one_and_ratios_stay_in_range() -> None:
    spec = make_spec(search_space={"weights": {"classification": {"lo": 0.05, "hi": 20}}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    logs = []
    for _ in range(40):
        config = suggest_trial_config(study.ask(), spec, SYNTHETIC)
        assert config.weights["regression"] == 1.0
        w = config.weights["classification"]
        assert 0.05 <= w <= 20
        logs.append(math.log(w))
    # log-uniform: about half the draws below the geometric midpoint ln 1 = 0
    assert 10 <= sum(x < 0 for x in logs) <= 30


def test_reference_task_can_be_chosen() -> None:
    spec = make_spec(search_space={"reference_task": "classification"})
    config = suggest_trial_config(optuna.create_study().ask(), spec, SYNTHETIC)
    assert config.weights["classification"] == 1.0
    assert 0.1 <= config.weights["regression"] <= 10  # the default range of unnamed tasks


def test_dynamic_strategies_train_with_unit_searched_weights() -> None:
    spec = make_spec(
        search_space={
            "reference_task": "classification",
            "weights": {"regression": {"choices": [0.5, 2.0]}},
            "strategies": [{"name": "dwa"}],
        }
    )
    trial = optuna.create_study().ask()
    config = suggest_trial_config(trial, spec, SYNTHETIC)
    assert config.weights == {"regression": 1.0, "classification": 1.0}
    assert trial.params == {}
    spec = make_spec(
        search_space={
            "reference_task": "classification",
            "weights": {"regression": {"choices": [0.5, 2.0]}},
            "strategies": [{"name": "dwa"}],
            "weights_for_dynamic": True,
        }
    )
    config = suggest_trial_config(optuna.create_study().ask(), spec, SYNTHETIC)
    assert config.weights["regression"] in (0.5, 2.0)


def test_fixed_weights_apply_under_every_strategy() -> None:
    spec = make_spec(
        search_space={"weights": {"classification": 0.0}, "strategies": [{"name": "dwa"}]}
    )
    config = suggest_trial_config(optuna.create_study().ask(), spec, SYNTHETIC)
    assert config.weights == {"regression": 1.0, "classification": 0.0}


def test_missing_param_is_named() -> None:
    spec = make_spec(search_space={"weights": {"classification": {"lo": 0.5, "hi": 2}}})
    with pytest.raises(ValueError, match="w_classification"):
        trial_config_from_params({}, spec, SYNTHETIC)


@pytest.mark.parametrize(
    "weights",
    [
        {"a": 1.0, "b": 2.0, "c": 5.0},
        {"a": 1.0, "b": 0.01, "c": 100.0},
        {"a": 1.0},
        {"a": 0.0, "b": 3.0},
    ],
)
def test_normalised_weights_sum_to_task_count(weights: dict[str, float]) -> None:
    tasks = ["a", "b", "c"]
    normalised = normalised_weights(weights, tasks)
    assert list(normalised) == tasks
    assert sum(normalised.values()) == pytest.approx(3.0)
    raw = {t: weights.get(t, 1.0) for t in tasks}
    # ratios are kept
    assert normalised["c"] * raw["b"] == pytest.approx(normalised["b"] * raw["c"])


def test_normalised_weights_reject_all_zero() -> None:
    with pytest.raises(ValueError, match="all be 0"):
        normalised_weights({"a": 0.0, "b": 0.0}, ["a", "b"])


GRID_SPACE = {
    "weights": {"classification": {"choices": [0.5, 1.0, 2.0]}},
    "strategies": [
        {"name": "fixed"},
        {"name": "dwa", "params": {"tau": {"low": 1.0, "high": 3.0, "step": 1.0}}},
    ],
    "epochs": {"low": 1, "high": 2},
}


def test_grid_search_space() -> None:
    spec = make_spec(sampler="grid", search_space=GRID_SPACE)
    grid = grid_search_space(spec, SYNTHETIC.task_names)
    assert grid == {
        "strategy": ["fixed", "dwa"],
        "dwa.tau": [1.0, 2.0, 3.0],
        "w_classification": [0.5, 1.0, 2.0],
        "epochs": [1, 2],
    }


def test_grid_sampler_visits_every_config() -> None:
    spec = make_spec(sampler="grid", search_space=GRID_SPACE)
    grid = grid_search_space(spec, SYNTHETIC.task_names)
    assert math.prod(len(v) for v in grid.values()) == 36
    # ask/tell, as the workers do (the factory's grid sampler does not fail `tell` at the end)
    study = optuna.create_study(sampler=build_sampler(spec, SYNTHETIC))
    configs = set()
    for _ in range(36):
        trial = study.ask()
        config = suggest_trial_config(trial, spec, SYNTHETIC)
        study.tell(trial, 0.0)
        configs.add(config.model_dump_json())
    # fixed: 3 weights x 2 epochs; dwa: 3 taus x 2 epochs (weights 1 under dwa)
    assert len(configs) == 6 + 6


def test_grid_too_large_with_experiment_tasks() -> None:
    # The spec alone names no searched weight; over the experiment's tasks the default weight
    # (100 choices for "classification") times 101 epochs is 10,100 points.
    spec = StudySpec.model_validate(
        {
            "name": "s",
            "experiment": "synthetic",
            "n_trials": 1,
            "sampler": "grid",
            "search_space": {
                "default_weight": {"choices": list(range(1, 101))},
                "epochs": {"low": 1, "high": 101},
            },
        }
    )
    with pytest.raises(SpecError, match="10,100 points") as info:
        grid_search_space(spec, SYNTHETIC.task_names)
    assert info.value.field == "search_space"
    with pytest.raises(SpecError, match="10,100 points"):
        validate_against_experiment(spec, SYNTHETIC)
