"""Samplers, pruners and studies built from a spec."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from mtl_core.experiments import get_experiment
from mtlsearch.search.batch_tpe import BatchTPESampler
from mtlsearch.search.optuna_factory import (
    SPEC_ATTR,
    build_pruner,
    build_sampler,
    create_optuna_study,
    should_consider_pruning,
    spec_from_study,
)
from mtlsearch.search.spec import SpecError, StudySpec

SYNTHETIC = get_experiment("synthetic")


def make_spec(**overrides: Any) -> StudySpec:
    data: dict[str, Any] = {"name": "s", "experiment": "synthetic", "n_trials": 4, "seed": 11}
    data.update(overrides)
    return StudySpec.model_validate(data)


GRID = {"weights": {"classification": {"choices": [0.5, 2.0]}}}


@pytest.mark.parametrize(
    ("sampler", "cls"),
    [
        ("tpe", optuna.samplers.TPESampler),
        ("tpe_batch", BatchTPESampler),
        ("gp", optuna.samplers.GPSampler),
        ("random", optuna.samplers.RandomSampler),
        ("nsga2", optuna.samplers.NSGAIISampler),
        ("grid", optuna.samplers.GridSampler),
    ],
)
def test_build_sampler(sampler: str, cls: type) -> None:
    spec = make_spec(sampler=sampler, search_space=GRID if sampler == "grid" else {})
    assert isinstance(build_sampler(spec, SYNTHETIC), cls)


@pytest.mark.parametrize("sampler", ["tpe", "tpe_batch", "random", "nsga2"])
def test_samplers_are_seeded(sampler: str) -> None:
    def draws() -> list[float]:
        study = optuna.create_study(sampler=build_sampler(make_spec(sampler=sampler), SYNTHETIC))
        out = []
        for _ in range(3):
            trial = study.ask()
            out.append(trial.suggest_float("w", 0.1, 10, log=True))
            study.tell(trial, 0.0)
        return out

    assert draws() == draws()


def test_grid_sampler_looks_up_the_experiment_by_name() -> None:
    sampler = build_sampler(make_spec(sampler="grid", search_space=GRID))
    assert isinstance(sampler, optuna.samplers.GridSampler)


def test_build_pruner() -> None:
    median = build_pruner(make_spec(pruner="median"))
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert median._n_startup_trials == 5 and median._n_warmup_steps == 2
    hyperband = build_pruner(make_spec(pruner="hyperband", search_space={"epochs": 7}))
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert hyperband._max_resource == 7 and hyperband._min_resource == 1
    by_default = build_pruner(make_spec(pruner="hyperband"), SYNTHETIC)
    assert isinstance(by_default, optuna.pruners.HyperbandPruner)
    assert by_default._max_resource == SYNTHETIC.defaults.epochs
    ranged = build_pruner(
        make_spec(pruner="hyperband", search_space={"epochs": {"low": 2, "high": 9}})
    )
    assert isinstance(ranged, optuna.pruners.HyperbandPruner) and ranged._max_resource == 9
    assert isinstance(build_pruner(make_spec(pruner="none")), optuna.pruners.NopPruner)
    multi = make_spec(objective={"kind": "multi"})
    assert isinstance(build_pruner(multi), optuna.pruners.NopPruner)


def test_create_study_stores_spec_and_directions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    spec = make_spec(objective={"kind": "multi"}, sampler="nsga2")
    study = create_optuna_study(url, spec, experiment=SYNTHETIC)
    assert study.study_name == "s"
    assert [d.name for d in study.directions] == ["MINIMIZE", "MAXIMIZE"]
    assert study.user_attrs[SPEC_ATTR]["sampler"] == "nsga2"
    loaded = optuna.load_study(study_name="s", storage=url)
    assert spec_from_study(loaded) == spec


def test_create_study_resumes_same_spec_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    create_optuna_study(url, make_spec(), "study-a", experiment=SYNTHETIC)
    with pytest.raises(optuna.exceptions.DuplicatedStudyError):
        create_optuna_study(url, make_spec(), "study-a", experiment=SYNTHETIC)
    # a larger budget resumes the same study
    again = create_optuna_study(
        url, make_spec(n_trials=40), "study-a", experiment=SYNTHETIC, load_if_exists=True
    )
    assert again.study_name == "study-a"
    with pytest.raises(SpecError) as info:
        create_optuna_study(
            url, make_spec(sampler="random"), "study-a", experiment=SYNTHETIC, load_if_exists=True
        )
    assert info.value.field == "name"


def _in_flight_spread(sampler: optuna.samplers.BaseSampler) -> float:
    """Std of 8 proposals asked at once (none told) after 12 completed trials."""
    study = optuna.create_study(sampler=sampler)
    for _ in range(12):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, (x - 0.3) ** 2)
    asked = [study.ask().suggest_float("x", 0.0, 1.0) for _ in range(8)]
    return float(np.std(asked))


def test_tpe_spreads_trials_asked_together() -> None:
    # Workers ask K trials before telling any: the constant liar keeps them apart.
    spec = make_spec(sampler="tpe")
    sampler = build_sampler(spec, SYNTHETIC)
    assert isinstance(sampler, optuna.samplers.TPESampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        plain = optuna.samplers.TPESampler(
            seed=spec.seed, multivariate=True, group=True, constant_liar=False
        )
    lying, honest = _in_flight_spread(sampler), _in_flight_spread(plain)
    assert lying > 2 * honest, (lying, honest)


@pytest.mark.parametrize(
    ("strategy", "judged_from"), [("fixed", 1), ("pcgrad", 1), ("gradnorm", 2), ("dwa", 3)]
)
def test_pruning_waits_for_the_strategys_warm_up(strategy: str, judged_from: int) -> None:
    judged = [epoch for epoch in range(1, 6) if should_consider_pruning(epoch, strategy)]
    assert judged == list(range(judged_from, 6))
