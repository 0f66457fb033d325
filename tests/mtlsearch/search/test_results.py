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
    assert TrialOutcome.from_attrs({**stored, "seed": 7}) == outcome


def test_unset_fields_are_no_attrs() -> None:
    assert TrialOutcome().as_attrs() == {}
    assert TrialOutcome(fail_reason="nan").as_attrs() == {"fail_reason": "nan"}
