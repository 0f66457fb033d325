"""A study's population: the spec's checks and the explore step within the search space."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mtl_core.config import TrialConfig
from mtl_core.experiments import get_experiment
from mtlsearch.search.population import PopulationPlan
from mtlsearch.search.spec import SpecError, StudySpec
from mtlsearch.search.spec_checks import validate_against_experiment
from tests.utils.specs import quick_spec

EXPERIMENT = get_experiment("synthetic")  # tasks: regression (reference), classification


def _spec(**population: Any) -> StudySpec:
    return StudySpec.model_validate(
        quick_spec(
            "pbt",
            population=population,
            search_space={"weights": {"classification": {"lo": 0.1, "hi": 10.0}}},
        )
    )


def _config(strategy: str = "fixed") -> TrialConfig:
    return TrialConfig(experiment="synthetic", strategy=strategy)


@settings(max_examples=40, deadline=None, database=None)
@given(
    weight=st.floats(0.1, 10.0),
    seed=st.integers(0, 2**31 - 1),
    resample=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_explored_weights_stay_within_their_range(
    weight: float, seed: int, resample: float
) -> None:
    plan = PopulationPlan(_spec(resample_probability=resample))
    weights = {"regression": 1.0, "classification": weight}
    new = plan.explore(weights, _config(), EXPERIMENT, torch.Generator().manual_seed(seed))
    assert new["regression"] == 1.0  # the reference task's weight is not searched
    assert 0.1 <= new["classification"] <= 10.0
    if resample == 0.0:  # perturbed: one of the factors, clipped to the range
        candidates = [min(max(weight * f, 0.1), 10.0) for f in (0.8, 1.2)]
        assert any(math.isclose(new["classification"], c) for c in candidates)


def test_weight_choices_move_to_a_neighbouring_choice() -> None:
    spec = StudySpec.model_validate(
        quick_spec(
            "pbt",
            population={"resample_probability": 0.0, "perturb": [1.5]},
            search_space={"weights": {"classification": {"choices": [0.5, 1.0, 2.0, 4.0]}}},
        )
    )
    plan = PopulationPlan(spec)
    generator = torch.Generator().manual_seed(0)
    up = plan.explore({"regression": 1.0, "classification": 1.0}, _config(), EXPERIMENT, generator)
    top = plan.explore({"regression": 1.0, "classification": 4.0}, _config(), EXPERIMENT, generator)
    assert up["classification"] == 2.0 and top["classification"] == 4.0


def test_a_dynamic_strategy_s_weights_are_not_explored_unless_searched() -> None:
    plan = PopulationPlan(_spec(resample_probability=1.0))
    weights = {"regression": 1.0, "classification": 1.0}
    same = plan.explore(weights, _config("dwa"), EXPERIMENT, torch.Generator().manual_seed(1))
    assert same == weights


def test_the_generator_depends_on_the_study_seed_and_the_members() -> None:
    plan = PopulationPlan(_spec())
    first = torch.rand(3, generator=plan.generator([4, 5, 6]))
    assert torch.equal(first, torch.rand(3, generator=plan.generator([6, 5, 4])))
    assert not torch.equal(first, torch.rand(3, generator=plan.generator([7, 8])))


def test_the_interval_says_when_a_step_is_due() -> None:
    plan = PopulationPlan(_spec(interval_epochs=2))
    assert [plan.due(epoch, 6) for epoch in range(1, 7)] == [False, True, False, True, False, False]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"pruner": "median"}, "pruner: a population's members train to the end"),
        (
            {"objective": {"kind": "multi"}, "sampler": "nsga2"},
            "population: a population is ranked",
        ),
        (
            {"search_space": {"strategies": [{"name": "fixed"}, {"name": "dwa"}]}},
            "search_space.strategies: a population's members copy each other's strategy state",
        ),
        ({"confirmation": {"enabled": True}}, "confirmation.enabled: confirmation retrains"),
        ({"population": {"quantile": 0.7}}, "quantile"),
        ({"population": {"perturb": [1.0]}}, "perturb factors are all 1"),
        ({"population": {"interval_epochs": 0}}, "interval_epochs"),
    ],
)
def test_a_bad_population_spec_names_the_problem(overrides: dict[str, Any], message: str) -> None:
    spec = quick_spec("pbt", population={})
    spec.update(overrides)
    with pytest.raises(ValidationError, match=message):
        StudySpec.model_validate(spec)


def test_a_population_study_neither_prunes_nor_confirms_by_default() -> None:
    spec = quick_spec("pbt", population={})
    del spec["pruner"], spec["confirmation"]
    checked = StudySpec.model_validate(spec)
    assert checked.pruner == "none" and not checked.confirmation.enabled


@pytest.mark.parametrize(
    "search_space",
    [
        {"weights": {"classification": 2.0}},  # a fixed number
        {"strategies": [{"name": "dwa"}]},  # weights of a dynamic strategy stay at 1
    ],
)
def test_a_population_with_no_weight_to_explore_is_refused(search_space: dict[str, Any]) -> None:
    spec = StudySpec.model_validate(quick_spec("pbt", population={}, search_space=search_space))
    with pytest.raises(SpecError, match="population: no weight to explore"):
        validate_against_experiment(spec)
