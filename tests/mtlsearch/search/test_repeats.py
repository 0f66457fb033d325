"""Repeated configurations train at new seeds."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from mtl_core.experiments import get_experiment
from mtlsearch.search.optuna_factory import create_optuna_study
from mtlsearch.search.repeats import REPEAT_OF_ATTR, SEED_ATTR, distinct_seed, repeated_trial
from mtlsearch.search.space import suggest_trial_config
from mtlsearch.search.spec import StudySpec

SYNTHETIC = get_experiment("synthetic")


def make_spec(**overrides: Any) -> StudySpec:
    # Two parameter-free strategies under unsearched weights: two configurations in all.
    data: dict[str, Any] = {
        "name": "s",
        "experiment": "synthetic",
        "n_trials": 6,
        "sampler": "tpe",
        "search_space": {"strategies": [{"name": "pcgrad"}, {"name": "uncertainty"}]},
    }
    data.update(overrides)
    return StudySpec.model_validate(data)


def ask(study: optuna.Study, spec: StudySpec) -> tuple[optuna.Trial, tuple[str, int]]:
    trial = study.ask()
    config = suggest_trial_config(trial, spec, SYNTHETIC)
    config = distinct_seed(trial, config, repeated_trial(trial))
    return trial, (config.strategy, config.seed)


def test_trials_asked_together_never_share_configuration_and_seed() -> None:
    spec = make_spec(seed=7)
    study = create_optuna_study(optuna.storages.InMemoryStorage(), spec, experiment=SYNTHETIC)
    asked = [ask(study, spec) for _ in range(6)]

    runs = [run for _, run in asked]
    assert len(set(runs)) == 6
    assert len({strategy for strategy, _ in runs}) <= 2
    for trial, (_, seed) in asked:
        attrs = study.trials[trial.number].user_attrs
        assert attrs.get(SEED_ATTR, 7) == seed
        if REPEAT_OF_ATTR in attrs:
            assert attrs[SEED_ATTR] == seed
            original = study.trials[attrs[REPEAT_OF_ATTR]]
            assert original.number < trial.number and original.params == trial.params
            assert seed == 7 + trial.number
        else:
            assert seed == 7


def test_first_of_each_configuration_keeps_the_study_seed_and_failures_do_not_count() -> None:
    spec = make_spec(search_space={"strategies": [{"name": "pcgrad"}]})  # no seed: base 0
    study = create_optuna_study(optuna.storages.InMemoryStorage(), spec, experiment=SYNTHETIC)
    failed, _ = ask(study, spec)
    study.tell(failed, state=TrialState.FAIL)
    first, run = ask(study, spec)
    assert run == ("pcgrad", 0) and REPEAT_OF_ATTR not in study.trials[first.number].user_attrs
    study.tell(first, 1.0)
    second, run = ask(study, spec)
    assert run == ("pcgrad", 2)
    assert study.trials[second.number].user_attrs[REPEAT_OF_ATTR] == first.number
