"""TrialOutcome: one set of keys for Optuna user attributes and our trial rows."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from mtlsearch.search.results import TrialOutcome, set_user_attrs
from tests.utils.trials import population_record


def test_attrs_round_trip_through_a_stored_trial() -> None:
    study = optuna.create_study()
    trial = study.ask()
    outcome = TrialOutcome(config={"lr": 0.1}, val_metrics={"a": 0.5}, epochs_run=3)
    set_user_attrs(trial, outcome.as_attrs())
    study.tell(trial, 1.0)
    stored = study.trials[0].user_attrs
    assert stored == {"config": {"lr": 0.1}, "val_metrics": {"a": 0.5}, "epochs_run": 3}
    assert TrialOutcome.from_attrs({**stored, "repeat_of": 7}) == outcome


def test_a_result_records_what_determines_its_run_and_its_weights() -> None:
    from mtl_core.config import TrialConfig
    from mtl_core.trainer import train_trial

    config = TrialConfig(experiment="synthetic", strategy="dwa", epochs=2, seed=4)
    result = train_trial(config.model_copy(update={"max_train_samples": 64}))
    outcome = TrialOutcome.from_result(result)
    assert outcome.seed == 4 and outcome.num_slots == 1
    assert outcome.config is not None and outcome.config["data_seed"] == 4
    assert outcome.weights_trajectory == [report.weights for report in result.history]
    assert outcome.strategy_weights == result.history[-1].weights


def test_unset_fields_are_no_attrs() -> None:
    assert TrialOutcome().as_attrs() == {}
    assert TrialOutcome(fail_reason="nan").as_attrs() == {"fail_reason": "nan"}


MEMBER: dict[str, Any] = population_record(source=3)


def test_a_population_member_round_trips_through_user_attrs_and_its_result() -> None:
    from mtl_core.config import TrialConfig
    from mtl_core.experiments import get_experiment
    from mtl_core.results import TrialResult
    from mtl_core.trial_setup import resolve_config

    config = resolve_config(
        TrialConfig(experiment="synthetic", weights={"classification": 0.5}),
        get_experiment("synthetic"),
    )
    result = TrialResult(config, 2, {}, {}, {}, population=MEMBER)
    outcome = TrialOutcome.from_result(result)
    assert outcome.population == MEMBER
    assert TrialOutcome.from_result(TrialResult(config, 2, {}, {}, {})).population is None

    study = optuna.create_study()
    trial = study.ask()
    set_user_attrs(trial, outcome.json_safe().as_attrs())
    study.tell(trial, 1.0)
    stored = study.trials[0].user_attrs
    assert stored["population"] == MEMBER  # what the dashboard shows
    assert TrialOutcome.from_attrs(stored).population == MEMBER


def test_a_non_finite_weight_in_a_population_is_stored_as_null() -> None:
    broken = {**MEMBER, "trajectory": [{"epoch": 0, "weights": {"regression": float("nan")}}]}
    safe = TrialOutcome(population=broken).json_safe()
    assert safe.population is not None
    assert safe.population["trajectory"] == [{"epoch": 0, "weights": {"regression": None}}]
    assert safe.population["lineage"] == MEMBER["lineage"]


def test_the_local_best_record_carries_the_best_members_population() -> None:
    from mtl_core.experiments import get_experiment
    from mtlsearch.search.best import best_record
    from mtlsearch.search.spec import StudySpec

    spec = StudySpec.model_validate({"name": "s", "experiment": "synthetic", "n_trials": 2})
    study = optuna.create_study(direction="maximize")
    # Explored after its last epoch: config.weights are weights it never trained with.
    last = {"regression": 3.0, "classification": 1.0}
    member = {**MEMBER, "trajectory": [*MEMBER["trajectory"], {"epoch": 2, "weights": last}]}
    config = {"strategy": "fixed", "weights": last}
    for value, population in ((0.2, None), (0.9, member)):
        outcome = TrialOutcome(
            config=config,
            strategy_weights={"regression": 1.0, "classification": 1.0},
            epochs_run=2,
            population=population,
        )
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs=outcome.as_attrs()))
    record = best_record(study, spec, get_experiment("synthetic"))
    assert record is not None and record["number"] == 1
    assert record["population"] == member
    # The weights it applied in its last epoch: those of epoch 1 on (1 : 0.5), Σ = tasks.
    assert record["effective_weights"] == pytest.approx(
        {"regression": 4 / 3, "classification": 2 / 3}
    )
