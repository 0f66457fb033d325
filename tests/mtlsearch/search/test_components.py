"""Component choices with ``default_ranges``: the declared ranges join the search, given
parameters win, and the grid and the spec checks see the same parameters."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from pydantic import ValidationError

from mtl_core.components import search_ranges, searched
from mtl_core.experiments import get_experiment
from mtl_core.weighting import STRATEGIES, list_strategies
from mtlsearch.search.components import component_params
from mtlsearch.search.space import grid_search_space, suggest_trial_config
from mtlsearch.search.spec import StudySpec
from mtlsearch.search.spec_checks import validate_against_experiment
from mtlsearch.search.spec_values import ComponentChoice, ParamChoices, ParamRange

SYNTHETIC = get_experiment("synthetic")


def _spec(strategies: list[dict[str, Any]], **overrides: Any) -> StudySpec:
    data: dict[str, Any] = {
        "name": "s",
        "experiment": "synthetic",
        "n_trials": 4,
        "search_space": {"strategies": strategies},
    }
    data.update(overrides)
    spec = StudySpec.model_validate(data)
    validate_against_experiment(spec, SYNTHETIC)
    return spec


def test_default_ranges_add_the_declared_ranges_and_keep_given_params() -> None:
    loss_balance = ComponentChoice(name="loss_balance", default_ranges=True, params={"gamma": 2})
    params = component_params("strategy", loss_balance)
    assert params["gamma"] == 2  # given: fixed, not searched
    assert params["beta"] == ParamRange(low=0.5, high=0.99, log=False)
    mgda = ComponentChoice(name="mgda", default_ranges=True)
    assert component_params("strategy", mgda) == {
        "upper_bound": ParamChoices(choices=[False, True])
    }
    # Without the flag a choice searches only what it names.
    assert component_params("strategy", ComponentChoice(name="mgda")) == {}


def test_the_study_suggests_the_default_ranges() -> None:
    spec = _spec([{"name": "dwa", "default_ranges": True}])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    taus = []
    for _ in range(20):
        trial = study.ask()
        config = suggest_trial_config(trial, spec, SYNTHETIC)
        study.tell(trial, 0.0)
        taus.append(config.strategy_params["tau"])
        assert study.trials[-1].distributions["dwa.tau"] == FloatDistribution(0.5, 5.0, log=True)
    assert all(0.5 <= tau <= 5.0 for tau in taus) and len(set(taus)) == 20


def test_every_declared_range_is_a_valid_search_space() -> None:
    # Each registered strategy with its default ranges passes the spec checks (both ends of
    # each range build the typed config) and suggests one distribution per declared range.
    spec = _spec([{"name": name, "default_ranges": True} for name in list_strategies()])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen: set[str] = set()
    for _ in range(15 * len(list_strategies())):
        trial = study.ask()
        config = suggest_trial_config(trial, spec, SYNTHETIC)
        study.tell(trial, 0.0)
        seen.add(config.strategy)
        ranges = search_ranges(STRATEGIES.get(config.strategy).config_cls)
        assert set(config.strategy_params) == set(ranges)
        for param, declared in ranges.items():
            distribution = study.trials[-1].distributions[f"{config.strategy}.{param}"]
            if "choices" in declared:
                assert distribution == CategoricalDistribution(declared["choices"])
            else:
                assert isinstance(distribution, FloatDistribution | IntDistribution)
                assert (distribution.low, distribution.high) == (declared["low"], declared["high"])
    assert seen == set(list_strategies())


def test_the_grid_names_a_continuous_default_range() -> None:
    with pytest.raises(ValidationError, match=r"strategies\.0\.default_ranges \(c\): the grid"):
        _spec([{"name": "cagrad", "default_ranges": True}], sampler="grid")
    # Choices are discrete: MGDA's default range makes a grid.
    spec = _spec([{"name": "mgda", "default_ranges": True}], sampler="grid")
    assert grid_search_space(spec, SYNTHETIC.task_names) == {"mgda.upper_bound": [False, True]}


def test_searched_rejects_an_empty_or_reversed_range() -> None:
    bad: dict[str, Any]
    for bad in ({"low": 1.0, "high": 1.0}, {"low": 0.0, "high": 1.0, "log": True}, {"choices": []}):
        with pytest.raises(ValueError, match=r"low < high|choices"):
            searched(**bad)
