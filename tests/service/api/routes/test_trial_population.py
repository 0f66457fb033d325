"""A population member's trajectory and lineage on /trials, /trials/{n} and /best, through
the real server (uvicorn subprocess) on SQLite and PostgreSQL, and the Python client."""

from __future__ import annotations

import secrets
from typing import Any

from mtlsearch.client import Client
from storage import TrialRepository, get_database
from tests.service.conftest import TOKEN, Served
from tests.utils.trials import population_record

API = "/api/v1/studies"
TASKS = ("regression", "classification")
MEMBER: dict[str, Any] = population_record(source=1)


def _study(served: Served) -> dict[str, Any]:
    spec = {"name": f"pbt-{secrets.token_hex(4)}", "experiment": "synthetic", "n_trials": 4}
    response = served.client.post(API, json=spec)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _finish(served: Served, study_id: str, number: int, value: float, population: Any) -> None:
    """A trial row as a worker writes it (reserve, start, finish)."""
    weights = {"regression": 1.0, "classification": 0.5}
    with get_database(served.db_url).session() as session:
        repository = TrialRepository(session)
        row_id = repository.reserve(study_id, "w")
        assert row_id is not None
        repository.start(
            row_id,
            number=number,
            optuna_trial_id=number,
            params={},
            config={"experiment": "synthetic", "strategy": "fixed", "weights": weights},
            weights_normalised=None,
        )
        assert repository.finish(
            row_id,
            state="complete",
            values=[value],
            val_metrics={"regression": 0.5, "classification": 0.7},
            strategy_weights=dict.fromkeys(TASKS, 1.0),
            epochs_run=2,
            population=population,
        )


def test_trials_and_best_show_a_members_population(served: Served) -> None:
    study = _study(served)
    _finish(served, study["id"], 0, 0.9, MEMBER)
    _finish(served, study["id"], 1, 0.4, None)

    member = served.client.get(f"{API}/{study['id']}/trials/0")
    assert member.status_code == 200, member.text
    assert member.json()["population"] == MEMBER
    plain = served.client.get(f"{API}/{study['id']}/trials/1").json()
    assert "population" in plain and plain["population"] is None
    page = served.client.get(f"{API}/{study['id']}/trials").json()["data"]
    assert [t["population"] for t in page] == [MEMBER, None]
    best = served.client.get(f"{API}/{study['id']}/best")
    assert best.status_code == 200, best.text
    assert best.json()["number"] == 0 and best.json()["population"] == MEMBER

    with Client(served.base_url, token=TOKEN) as client:
        assert client.trial(study["id"], 0)["population"] == MEMBER
        assert client.best(study["id"])["population"] == MEMBER


def test_the_openapi_document_describes_the_population(served: Served) -> None:
    schemas = served.client.get("/openapi.json").json()["components"]["schemas"]
    population = schemas["TrialPopulation"]["properties"]
    assert set(population) == {"trajectory", "lineage", "epochs"}
    for name in ("WeightsStep", "LineageStep"):
        for field in schemas[name]["properties"].values():
            assert field["description"], name
    assert "population" in schemas["TrialPublic"]["required"]
    assert "population" in schemas["BestPublic"]["properties"]
