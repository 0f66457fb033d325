"""/api/v1/studies through the real server (uvicorn subprocess) on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from mtlsearch.search.spec import StudySpec
from storage import ArtifactRepository, TrialRepository, get_database
from tests.service.conftest import Served
from tests.utils.trials import add_finished_trials

API = "/api/v1/studies"


def spec_json(name: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A small valid spec on the synthetic experiment (unique name by default)."""
    spec: dict[str, Any] = {
        "name": name or f"s-{secrets.token_hex(4)}",
        "experiment": "synthetic",
        "search_space": {"weights": {"classification": {"lo": 0.1, "hi": 10}}},
        "n_trials": 40,
    }
    spec.update(overrides)
    return spec


def create(served: Served, **overrides: Any) -> dict[str, Any]:
    response = served.client.post(API, json=spec_json(**overrides))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def fill(served: Served, study: dict[str, Any], n: int, **kwargs: Any) -> list[FrozenTrial]:
    spec = StudySpec.model_validate(study["spec"])
    return add_finished_trials(
        get_database(served.db_url), study["optuna_study_name"], spec, n, **kwargs
    )


def test_create_get_list_trials_best_cancel_delete(served: Served) -> None:
    client = served.client
    study = create(served)
    assert study["status"] == "running"
    assert study["experiment"] == "synthetic"
    assert study["directions"] == ["maximize"]
    assert study["trials"] == dict.fromkeys(
        ("complete", "pruned", "fail", "cancelled", "running", "waiting"), 0
    )
    assert study["phase"] == "searching" and study["confirmation"] is None
    assert study["best_value"] is None and study["progress"] == 0.0
    assert study["spec"]["sampler"] == "tpe_batch"  # defaults are filled in
    assert study["optuna_study_name"] in served.optuna_study_names()

    states = (TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    trials = fill(served, study, 25, states=states)

    got = client.get(f"{API}/{study['id']}").json()
    expected = {"complete": 13, "pruned": 6, "fail": 6, "cancelled": 0, "running": 0, "waiting": 0}
    assert got["trials"] == expected
    best_value = max(t.values[0] for t in trials if t.state is TrialState.COMPLETE)
    assert got["best_value"] == pytest.approx(best_value)
    assert got["progress"] == pytest.approx(25 / 40)
    assert got["dashboard_url"] == f"/dashboard/studies/{got['optuna_study_id']}"

    listed = client.get(API, params={"limit": 1000}).json()
    assert study["id"] in [s["id"] for s in listed["data"]]
    assert listed["count"] == len(listed["data"])

    page = client.get(f"{API}/{study['id']}/trials", params={"offset": 0, "limit": 10}).json()
    assert page["count"] == 25
    assert [t["number"] for t in page["data"]] == list(range(10))
    first = page["data"][0]
    assert first["state"] == "complete"
    assert first["values"] == pytest.approx(trials[0].values)
    assert first["params"]["w_classification"] == pytest.approx(
        trials[0].params["w_classification"]
    )
    assert first["config"]["experiment"] == "synthetic"
    assert set(first["val_metrics"]) == {"regression", "classification"}
    assert sum(first["weights_normalised"].values()) == pytest.approx(2.0)
    assert first["duration_s"] is not None and first["duration_s"] >= 0
    last = client.get(f"{API}/{study['id']}/trials", params={"offset": 20, "limit": 10}).json()
    assert [t["number"] for t in last["data"]] == [20, 21, 22, 23, 24]
    failed = client.get(f"{API}/{study['id']}/trials", params={"state": "fail"}).json()
    assert failed["count"] == 6
    assert all(t["fail_reason"] for t in failed["data"])
    both = client.get(f"{API}/{study['id']}/trials", params={"state": ["fail", "pruned"]}).json()
    assert both["count"] == 12

    best = client.get(f"{API}/{study['id']}/best").json()
    best_trial = max(
        (t for t in trials if t.state is TrialState.COMPLETE), key=lambda t: t.values[0]
    )
    assert best["number"] == best_trial.number
    assert best["values"] == pytest.approx(best_trial.values)
    assert best["strategy"] == "fixed"
    assert best["weights"]["classification"] == pytest.approx(best_trial.params["w_classification"])
    assert best["config"] == best_trial.user_attrs["config"]
    assert best["tasks"] == ["regression", "classification"]
    assert best["experiment"] == "synthetic" and best["objective"] == "delta_m"
    assert "pareto" not in best

    cancelled = client.post(f"{API}/{study['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None
    again = client.post(f"{API}/{study['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["detail"] == (
        f"study {study['id']!r} is cancelled, not running; only a running study can be cancelled"
    )
    resumed = client.post(f"{API}/{study['id']}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "running"
    twice = client.post(f"{API}/{study['id']}/resume")
    assert twice.status_code == 409
    assert twice.json()["detail"] == (
        f"study {study['id']!r} is running; only a failed or cancelled study can be resumed"
    )
    assert client.post(f"{API}/{study['id']}/cancel").status_code == 200
    assert client.get(API, params={"status": "cancelled", "limit": 1000}).json()["count"] >= 1

    assert client.delete(f"{API}/{study['id']}").status_code == 204
    assert client.get(f"{API}/{study['id']}").status_code == 404
    assert study["name"] not in served.study_names()
    assert study["optuna_study_name"] not in served.optuna_study_names()


def test_multi_objective_best_is_the_pareto_set(served: Served) -> None:
    study = create(served, objective={"kind": "multi"}, sampler="nsga2")
    assert study["directions"] == ["minimize", "maximize"]  # rmse down, accuracy up
    fill(served, study, 30)
    storage = get_database(served.db_url).optuna_storage()
    optuna_study = optuna.load_study(study_name=study["optuna_study_name"], storage=storage)
    expected = sorted(t.number for t in optuna_study.best_trials)

    best = served.client.get(f"{API}/{study['id']}/best").json()
    assert [entry["number"] for entry in best["pareto"]] == expected
    assert best["directions"] == ["minimize", "maximize"]
    assert "number" not in best
    got = served.client.get(f"{API}/{study['id']}").json()
    assert got["pareto_size"] == len(expected)
    assert got["best_value"] is None


def test_best_is_404_until_a_trial_completes(served: Served) -> None:
    study = create(served)
    fill(served, study, 2, states=(TrialState.FAIL,))
    response = served.client.get(f"{API}/{study['id']}/best")
    assert response.status_code == 404
    assert "no completed trial yet" in response.json()["detail"]


def test_best_serves_the_stored_artifact(served: Served) -> None:
    study = create(served)
    payload = {
        "experiment": "synthetic",
        "tasks": ["regression", "classification"],
        "objective": "delta_m",
        "directions": ["maximize"],
        "baselines": None,
        "number": 7,
        "values": [1.5],
        "strategy": "dwa",
    }
    with get_database(served.db_url).session() as session:
        ArtifactRepository(session).put(study["id"], "best", payload)
    assert served.client.get(f"{API}/{study['id']}/best").json() == payload


def test_duplicate_name_is_409_and_writes_nothing(served: Served) -> None:
    study = create(served)
    optuna_before = served.optuna_study_names()
    response = served.client.post(API, json=spec_json(name=study["name"]))
    assert response.status_code == 409
    assert study["name"] in response.json()["detail"]
    assert served.optuna_study_names() == optuna_before
    assert served.study_names().count(study["name"]) == 1


GRID_TOO_LARGE = spec_json(
    sampler="grid",
    search_space={
        "weights": {"classification": {"choices": [0.1 * k for k in range(1, 102)]}},
        "lr": {"choices": [1e-4 * k for k in range(1, 101)]},
    },
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b'{"name": "x", ', "not valid JSON", id="malformed-json"),
        pytest.param(b"", "body is missing", id="empty-body"),
        pytest.param(
            spec_json(experiment="os.system"), "unknown experiment 'os.system'", id="module-path"
        ),
        pytest.param(
            spec_json(experiment="nope"),
            "valid choices: adult, adult_mixed, multi_mnist, synthetic",
            id="unknown-experiment",
        ),
        pytest.param(
            spec_json(search_space={"weights": {"classification": {"lo": 5, "hi": 1}}}),
            "search_space.weights.classification.range: hi must be >= lo",
            id="lo-above-hi",
        ),
        pytest.param(
            spec_json(search_space={"weights": {"depth": {"lo": 1, "hi": 2}}}),
            "search_space.weights.depth: unknown task 'depth'",
            id="unknown-task-weight",
        ),
        pytest.param(GRID_TOO_LARGE, "grid", id="grid-too-large"),
        pytest.param(
            spec_json(experiment_module="os"), "experiment_module: Extra inputs", id="extra-field"
        ),
        pytest.param(
            spec_json(search_space={"strategies": [{"name": "magic"}]}),
            "search_space.strategies.0.name: unknown strategy 'magic'",
            id="unknown-strategy",
        ),
        pytest.param(
            spec_json(n_trials=0), "n_trials: must be an integer between 1", id="n-trials"
        ),
        # Trust: bodies that once reached a 500 or a 503.
        pytest.param(spec_json(n_trials=2**31), "between 1 and 2147483647", id="n-trials-int32"),
        pytest.param(
            b'{"name": "inf", "experiment": "synthetic", "n_trials": 1e19}',
            "between 1 and 2147483647",
            id="n-trials-1e19",
        ),
        pytest.param(spec_json(seed=-5), "seed: must be an integer between 0", id="seed"),
        pytest.param(
            b'{"name": "inf", "experiment": "synthetic", "time_budget_s": Infinity}',
            "time_budget_s: Input should be a finite number",
            id="time-budget-inf",
        ),
        pytest.param(
            b'{"name": "nan", "experiment": "synthetic", "n_trials": 2, '
            b'"search_space": {"strategies": [{"name": "cagrad", "params": {"c": NaN}}]}}',
            "search_space.strategies.0.params.c",
            id="cagrad-c-nan",
        ),
        # The bound of `c` above rejects NaN on its own; a choice list has no bound to do it.
        pytest.param(
            b'{"name": "nan", "experiment": "synthetic", "n_trials": 2, '
            b'"search_space": {"lr": {"choices": [NaN]}}}',
            "must be a finite number, got nan",
            id="lr-choices-nan",
        ),
        pytest.param(
            spec_json(
                search_space={"architectures": [{"name": "mmoe", "params": {"num_experts": 10**9}}]}
            ),
            "less than or equal to 64",
            id="mmoe-experts",
        ),
        # Against the experiment's network, before any data are read (synthetic: 2 blocks).
        pytest.param(
            spec_json(
                search_space={
                    "architectures": [{"name": "ple", "params": {"levels": {"low": 1, "high": 3}}}]
                }
            ),
            "search_space.architectures.0.params.levels: architecture 'ple': levels must be in "
            "1..2",
            id="ple-levels-beyond-the-trunk",
        ),
        pytest.param(
            spec_json(
                search_space={
                    "architectures": [{"name": "dselect_k", "params": {"num_experts": 4, "k": 5}}]
                }
            ),
            "search_space.architectures.0.params.k",
            id="dselect-k-above-experts",
        ),
        pytest.param(
            spec_json(
                search_space={
                    "strategies": [{"name": "auto_lambda", "params": {"primary": ["depth"]}}]
                }
            ),
            "search_space.strategies.0.params.primary: strategy 'auto_lambda': unknown task "
            "'depth'; valid choices: regression, classification",
            id="auto-lambda-primary-unknown",
        ),
    ],
)
def test_bad_spec_is_422_naming_the_problem_and_writes_nothing(
    served: Served, body: bytes | dict[str, Any], expected: str
) -> None:
    before = (served.study_names(), served.optuna_study_names())
    if isinstance(body, bytes):
        response = served.client.post(
            API, content=body, headers={"Content-Type": "application/json"}
        )
    else:
        response = served.client.post(API, json=body)
    assert response.status_code == 422, response.text
    payload = response.json()
    message = payload.get("message", payload["detail"])
    assert isinstance(message, str) and "\n" not in message
    assert expected in message
    assert (served.study_names(), served.optuna_study_names()) == before


@pytest.mark.parametrize("path", ["", "/1/trials"])
def test_an_offset_past_32_bits_is_422(served: Served, path: str) -> None:
    # Once 500 (SQLite) or 503 (PostgreSQL: integer out of range).
    response = served.client.get(f"{API}{path}", params={"offset": 2**63})
    assert response.status_code == 422, response.text


def test_grid_too_large_names_the_limit(served: Served) -> None:
    response = served.client.post(API, json=GRID_TOO_LARGE)
    assert response.status_code == 422
    assert "10000" in response.json()["message"].replace(",", "")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({}, "missing bearer token", id="missing"),
        pytest.param({"Authorization": "Bearer wrong"}, "wrong bearer token", id="wrong"),
        pytest.param({"Authorization": "Basic dXNlcjpwdw=="}, "missing bearer", id="basic"),
    ],
)
def test_mutations_need_the_token_and_write_nothing(
    served: Served, headers: dict[str, str], expected: str
) -> None:
    study = create(served)
    before = (served.study_names(), served.optuna_study_names())
    with httpx.Client(base_url=served.base_url, headers=headers, timeout=30) as anonymous:
        calls = [
            anonymous.post(API, json=spec_json()),
            anonymous.post(f"{API}/{study['id']}/cancel"),
            anonymous.delete(f"{API}/{study['id']}"),
        ]
        for response in calls:
            assert response.status_code == 401, response.text
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert expected in response.json()["detail"]
        # Reads stay open.
        assert anonymous.get(f"{API}/{study['id']}").json()["status"] == "running"
    assert (served.study_names(), served.optuna_study_names()) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/{id}"),
        ("GET", "/{id}/trials"),
        ("GET", "/{id}/best"),
        ("POST", "/{id}/cancel"),
        ("DELETE", "/{id}"),
    ],
)
def test_unknown_study_is_404_naming_the_id(served: Served, method: str, path: str) -> None:
    response = served.client.request(method, API + path.format(id="0123456789ab"))
    assert response.status_code == 404
    assert response.json() == {"detail": "no study with id '0123456789ab'"}


def test_list_pages_and_filters(served: Served) -> None:
    created = [create(served) for _ in range(3)]
    served.client.post(f"{API}/{created[0]['id']}/cancel")
    page = served.client.get(API, params={"offset": 0, "limit": 2}).json()
    assert len(page["data"]) == 2
    assert page["count"] >= 3
    running = served.client.get(API, params={"status": "running", "limit": 1000}).json()
    ids = {s["id"] for s in running["data"]}
    assert created[0]["id"] not in ids
    assert {created[1]["id"], created[2]["id"]} <= ids
    bad = served.client.get(API, params={"limit": 0})
    assert bad.status_code == 422
    assert bad.json()["message"].startswith("query.limit:")
    bad_status = served.client.get(API, params={"status": "paused"})
    assert bad_status.status_code == 422
    assert "query.status" in bad_status.json()["message"]


def test_unknown_api_path_is_a_json_404(served: Served) -> None:
    response = served.client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"detail": "no route GET /api/v1/nothing-here; see /docs"}


def test_one_trial_by_number_holds_what_determines_its_run(served: Served) -> None:
    client = served.client
    study = create(served)
    fill(served, study, 3, states=(TrialState.COMPLETE, TrialState.FAIL))
    page = client.get(f"{API}/{study['id']}/trials").json()["data"]

    response = client.get(f"{API}/{study['id']}/trials/0")
    assert response.status_code == 200, response.text
    trial = response.json()
    assert trial == page[0]  # the list's entry, on its own
    assert trial["state"] == "complete"
    assert trial["seed"] == trial["config"]["seed"] and trial["num_slots"] == 4
    assert trial["epochs_run"] == 2 and len(trial["weights_trajectory"]) == 2
    assert trial["strategy_weights"] == trial["weights_trajectory"][-1]
    assert trial["strategy_weights"] == pytest.approx(trial["weights_normalised"])
    failed = client.get(f"{API}/{study['id']}/trials/1").json()
    assert failed["state"] == "fail" and failed["num_slots"] is None
    assert failed["weights_trajectory"] is None

    missing = client.get(f"{API}/{study['id']}/trials/99")
    assert missing.status_code == 404
    assert missing.json() == {"detail": f"study '{study['id']}' has no trial 99"}
    unknown = client.get(f"{API}/0123456789ab/trials/0")
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "no study with id '0123456789ab' (asked for its trial 0)"}
    negative = client.get(f"{API}/{study['id']}/trials/-1")
    assert negative.status_code == 422 and "path.number" in negative.json()["message"]


def test_a_trial_with_a_non_finite_metric_is_served_with_null(served: Served) -> None:
    # A diverged trial's test metrics are NaN; the worker stores them as null (strict JSON).
    study = create(served)
    database = get_database(served.db_url)
    with database.session() as session:
        repository = TrialRepository(session)
        row_id = repository.reserve(study["id"], "w")
        assert row_id is not None
        repository.start(
            row_id, number=0, optuna_trial_id=1, params={}, config=None, weights_normalised=None
        )
        repository.finish(
            row_id,
            state="fail",
            reason="diverged: loss of task 'regression' became NaN in epoch 2",
            val_metrics={"regression": 0.5, "classification": 0.7},
            test_metrics={"regression": None, "classification": None},
            weights_trajectory=[{"regression": 1.0, "classification": 1.0}],
        )
    trial = served.client.get(f"{API}/{study['id']}/trials/0")
    assert trial.status_code == 200, trial.text
    assert trial.json()["test_metrics"] == {"regression": None, "classification": None}
    page = served.client.get(f"{API}/{study['id']}/trials")
    assert page.status_code == 200 and page.json()["data"] == [trial.json()]
