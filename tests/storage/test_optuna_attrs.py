"""Several trial user attributes in one transaction, on both backends."""

from __future__ import annotations

import optuna
import pytest
from sqlalchemy import event

from storage import Database
from storage.optuna_attrs import set_trial_user_attrs, set_user_attrs


def test_attributes_are_written_together_and_read_back(database: Database) -> None:
    study = optuna.create_study(storage=database.optuna_storage())
    trial = study.ask()
    commits: list[object] = []

    def count_commit(connection: object) -> None:
        commits.append(connection)

    event.listen(database.engine, "commit", count_commit)
    try:
        set_user_attrs(trial, {"config": {"lr": 0.1}, "val_metrics": {"a": 0.5}, "epochs_run": 3})
    finally:
        event.remove(database.engine, "commit", count_commit)
    assert len(commits) == 1
    assert trial.user_attrs["epochs_run"] == 3  # the trial's own view follows
    study.tell(trial, 1.0)
    stored = study.trials[0].user_attrs
    assert stored == {"config": {"lr": 0.1}, "val_metrics": {"a": 0.5}, "epochs_run": 3}


def test_overwrites_and_refuses_finished_trials(database: Database) -> None:
    storage = database.optuna_storage()
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    set_user_attrs(trial, {"fail_reason": "stale"})
    set_user_attrs(trial, {"fail_reason": None})
    assert storage.get_trial(trial._trial_id).user_attrs == {"fail_reason": None}
    study.tell(trial, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        set_trial_user_attrs(storage, trial._trial_id, {"late": 1})


def test_other_storages_fall_back_to_one_by_one() -> None:
    study = optuna.create_study()  # in memory
    trial = study.ask()
    set_user_attrs(trial, {"a": 1, "b": [1, 2]})
    study.tell(trial, 0.0)
    assert study.trials[0].user_attrs == {"a": 1, "b": [1, 2]}
