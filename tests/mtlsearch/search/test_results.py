"""TrialOutcome: one set of keys for Optuna user attributes and our trial rows."""

from __future__ import annotations

import optuna

from mtlsearch.search.results import TrialOutcome, set_user_attrs


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
