"""What a new study carries for the dashboard: objective names, the importances hint, a note."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna_dashboard import get_note, save_note

from mtl_core.experiments import get_experiment
from mtlsearch.search.optuna_factory import create_optuna_study
from mtlsearch.search.spec import StudySpec
from mtlsearch.search.study_labels import IMPORTANCES_ATTR, IMPORTANCES_HINT, metric_names


def make_spec(kind: str, experiment: str = "adult_mixed") -> StudySpec:
    objective: dict[str, Any] = {"kind": kind}
    return StudySpec.model_validate(
        {"name": f"labels-{kind}", "experiment": experiment, "n_trials": 4, "objective": objective}
    )


@pytest.mark.parametrize(
    ("kind", "names"),
    [
        ("delta_m", ["delta_m"]),
        ("weighted_mean", ["weighted_mean"]),
        ("multi", ["income_auc", "hours_mae"]),  # task order, metric in the name
    ],
)
def test_a_new_study_names_its_objectives_and_says_how_to_read_importances(
    kind: str, names: list[str]
) -> None:
    spec = make_spec(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # set_metric_names is "experimental": kept quiet
        study = create_optuna_study(optuna.storages.InMemoryStorage(), spec)
    assert study.metric_names == names == metric_names(spec, get_experiment("adult_mixed"))
    assert study.user_attrs[IMPORTANCES_ATTR] == IMPORTANCES_HINT
    note = get_note(study)
    for name in names:
        assert f"`{name}`" in note
    assert "sum to 1" in note and "`repeat_of`" in note and "--seed" in note
    if kind == "multi":
        assert "`income_auc` (maximised), `hours_mae` (minimised)" in note


def test_loading_a_study_again_writes_nothing_more(tmp_path: Path) -> None:
    # A resumed local run (load_if_exists) keeps the note a user may have edited since.
    url = f"sqlite:///{tmp_path / 'labels.db'}"
    spec = make_spec("delta_m", experiment="synthetic")
    first = create_optuna_study(url, spec)
    edited = "my own note"
    save_note(first, edited)
    again = create_optuna_study(url, spec, load_if_exists=True)
    assert get_note(again) == edited
    assert again.metric_names == ["delta_m"]
