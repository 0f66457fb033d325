"""An experiment plugin with its own loss and metric, through the real API server.

The server imports ``examples.census_plugin`` (the complete plugin of docs/experiments.md) from
its own settings, as the docs tell: its loss, metric and experiment are then known to the API,
which lists them and checks study specs against them. SQLite only: nothing here depends on the
backend.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from storage import close_database
from tests.utils.server import start_server

API = "/api/v1"
TOKEN = "plugin-token-" + "x" * 8


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    url = f"sqlite:///{tmp_path_factory.mktemp('plugin-api') / 'mtlsearch.db'}"
    env = {"MTLSEARCH_ALLOWED_EXPERIMENT_MODULES": json.dumps(["examples.census_plugin"])}
    with (
        start_server(url, token=TOKEN, env=env) as base_url,
        httpx.Client(
            base_url=base_url, timeout=30.0, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client,
    ):
        yield client
    close_database(url)


def test_the_plugin_is_listed_with_its_own_loss_metric_and_direction(
    client: httpx.Client,
) -> None:
    body = client.get(f"{API}/experiments").json()
    census = {e["name"]: e for e in body["data"]}["census_sample"]
    tasks = {task["name"]: task for task in census["tasks"]}
    assert tasks["income"]["loss"] == "focal" and tasks["income"]["metric"] == "f2"
    assert tasks["income"]["higher_is_better"] is True
    assert tasks["hours"]["metric"] == "mae" and tasks["hours"]["higher_is_better"] is False


def test_a_study_of_the_plugin_is_checked_and_created(client: httpx.Client) -> None:
    spec = {
        "name": "census-weights",
        "experiment": "census_sample",
        "n_trials": 4,
        "search_space": {"weights": {"hours": {"lo": 0.1, "hi": 10}}},
    }
    created = client.post(f"{API}/studies", json=spec)
    assert created.status_code == 201, created.text
    bad = client.post(
        f"{API}/studies",
        json={**spec, "name": "census-typo", "search_space": {"weights": {"hour": 2.0}}},
    )
    assert bad.status_code == 422, bad.text
    assert "unknown task 'hour'" in bad.text and "income, hours" in bad.text
