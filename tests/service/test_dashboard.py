"""optuna-dashboard served by the API server, rendered by a real headless Chromium."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from mtlsearch.search.spec import StudySpec
from mtlsearch.search.study_labels import IMPORTANCES_ATTR, IMPORTANCES_HINT
from storage import close_database, get_database
from tests.service.conftest import Served
from tests.utils.browser import chromium, rendered_text
from tests.utils.server import start_server
from tests.utils.trials import add_finished_trials


@pytest.mark.parametrize(
    ("objective", "names"),
    [("delta_m", ["delta_m"]), ("multi", ["regression_rmse", "classification_accuracy"])],
)
def test_the_dashboard_gets_the_objective_names_and_the_importances_hint(
    served: Served, objective: str, names: list[str]
) -> None:
    spec = {
        "name": f"labelled-{objective}",
        "experiment": "synthetic",
        "n_trials": 4,
        "objective": {"kind": objective},
    }
    study = served.client.post("/api/v1/studies", json=spec).json()
    # The dashboard's own JSON API, which its front end renders.
    shown = served.client.get(f"/api/studies/{study['optuna_study_id']}").json()
    assert shown["objective_names"] == names
    attrs = {attr["key"]: attr["value"] for attr in shown["user_attrs"]}
    assert attrs[IMPORTANCES_ATTR] == IMPORTANCES_HINT
    assert all(f"`{name}`" in shown["note"]["body"] for name in names)
    assert "Hyperparameter Importance" in shown["note"]["body"]


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("token", [None, "browser-token"], ids=["open", "token"])
def test_dashboard_renders_the_study_and_its_trials(tmp_path: Path, token: str | None) -> None:
    # With a token the dashboard is read-only for the browser (it never sends the header),
    # and still shows everything.
    browser = chromium()
    db_url = f"sqlite:///{tmp_path / 'dashboard.db'}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with start_server(db_url, token=token) as base_url:
            spec = {"name": "browser-study", "experiment": "synthetic", "n_trials": 10}
            study = httpx.post(
                f"{base_url}/api/v1/studies", json=spec, headers=headers, timeout=30
            ).json()
            trials = add_finished_trials(
                get_database(db_url),
                study["optuna_study_name"],
                StudySpec.model_validate(study["spec"]),
                5,
            )
            best = max(trials, key=lambda t: t.values[0])
            url = f"{base_url}/dashboard/studies/{study['optuna_study_id']}"
            text = rendered_text(browser, url, tmp_path / "profile")
    finally:
        close_database(db_url)

    # Rendered by the front end from the dashboard's JSON API, not present in the HTML shell.
    assert f"{study['optuna_study_name']} (id={study['optuna_study_id']})" in text
    assert f"Best Trial (number={best.number})" in text
    assert "Trials (List)" in text
    for trial in trials:
        assert f"trial #{trial.number}" in text
    # The objective has its name, and the hint is in the table under the importances.
    assert "Trial delta_m" in text and "Objective 0" not in text
    assert f"{IMPORTANCES_ATTR} {IMPORTANCES_HINT}" in text
