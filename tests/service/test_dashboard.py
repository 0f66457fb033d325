"""optuna-dashboard served by the API server, rendered by a real headless Chromium."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from mtlsearch.search.spec import StudySpec
from storage import close_database, get_database
from tests.utils.browser import chromium, rendered_text
from tests.utils.server import start_server
from tests.utils.trials import add_finished_trials


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
