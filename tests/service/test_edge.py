"""The HTTP edge on the real server: the token before the body, the body limit, the 422 body,
trusted hosts, and the mounted dashboard's write routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import optuna
import pytest

from storage import close_database, get_database
from tests.service.conftest import TOKEN, Served
from tests.utils.server import start_server

AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 4096


def snapshot(db_url: str) -> list[Any]:
    """Every Optuna study with its attributes and trials, to show that nothing changed."""
    storage = get_database(db_url).optuna_storage()
    state = []
    for summary in sorted(optuna.get_all_study_summaries(storage), key=lambda s: s._study_id):
        sid = summary._study_id
        trials = storage.get_all_trials(sid, deepcopy=False)
        state.append(
            (
                summary.study_name,
                storage.get_study_user_attrs(sid),
                storage.get_study_system_attrs(sid),
                [(t.number, t.state, t.values, t.user_attrs, t.system_attrs) for t in trials],
            )
        )
    return state


@pytest.fixture
def study(served: Served, request: pytest.FixtureRequest) -> optuna.Study:
    """An Optuna study with one finished and one running trial (no record of ours)."""
    storage = get_database(served.db_url).optuna_storage()
    study = optuna.create_study(storage=storage, study_name=f"dash-{request.node.name[:40]}")
    study.add_trial(optuna.trial.create_trial(value=1.0))
    study.ask()
    return study


def write_routes(study: optuna.Study) -> list[tuple[str, str, dict[str, Any]]]:
    sid = study._study_id
    done, running = (t._trial_id for t in study.get_trials(deepcopy=False))
    return [
        ("POST", "/api/studies", {"study_name": "created", "directions": ["minimize"]}),
        ("POST", f"/api/studies/{sid}/rename", {"study_name": "renamed"}),
        ("DELETE", f"/api/studies/{sid}", {}),
        ("PUT", f"/api/studies/{sid}/note", {"version": 1, "body": "note"}),
        (
            "POST",
            f"/api/studies/{sid}/preference",
            {"candidates": [0], "clicked": 0, "mode": "ChooseWorst"},
        ),
        ("PUT", f"/api/studies/{sid}/preference_feedback_component", {"output_type": "note"}),
        ("DELETE", f"/api/studies/{sid}/preference/h1", {}),
        ("POST", f"/api/studies/{sid}/preference/h1", {}),
        ("POST", f"/api/trials/{running}/tell", {"state": "Fail"}),
        ("POST", f"/api/trials/{done}/user-attrs", {"user_attrs": {"k": "v"}}),
        ("POST", f"/api/studies/{sid}/{running}/skip", {}),
        ("PUT", f"/api/studies/{sid}/{done}/note", {"version": 1, "body": "note"}),
        ("POST", "/incompatible-rdb-schema", {}),
    ]


def test_every_dashboard_write_without_the_token_is_401_and_changes_nothing(
    served: Served, study: optuna.Study
) -> None:
    before = snapshot(served.db_url)
    for method, path, body in write_routes(study):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = httpx.request(
                method, f"{served.base_url}{path}", json=body, headers=headers, timeout=30
            )
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert "bearer token" in response.json()["detail"]
    assert snapshot(served.db_url) == before


def test_dashboard_writes_with_the_token_work(served: Served, study: optuna.Study) -> None:
    sid = study._study_id
    done, running = (t._trial_id for t in study.get_trials(deepcopy=False))
    storage = get_database(served.db_url).optuna_storage()
    client = served.client
    attrs = client.post(f"/api/trials/{running}/user-attrs", json={"user_attrs": {"k": "v"}})
    assert attrs.status_code == 204, attrs.text
    tell = client.post(f"/api/trials/{running}/tell", json={"state": "Fail"})
    assert tell.status_code == 204, tell.text
    trial = storage.get_trial(running)
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs == {"k": "v"}
    assert storage.get_trial(done).state == optuna.trial.TrialState.COMPLETE
    deleted = client.delete(f"/api/studies/{sid}")
    assert deleted.status_code == 204, deleted.text
    assert study.study_name not in optuna.get_all_study_names(storage)


def test_the_dashboard_stays_readable_without_the_token(
    served: Served, study: optuna.Study
) -> None:
    page = httpx.get(f"{served.base_url}/dashboard", timeout=30)
    assert page.status_code == 200
    assert "<title>Optuna Dashboard</title>" in page.text
    names = [
        s["study_name"]
        for s in httpx.get(f"{served.base_url}/api/studies").json()["study_summaries"]
    ]
    assert study.study_name in names
    detail = httpx.get(f"{served.base_url}/api/studies/{study._study_id}", timeout=30)
    assert detail.status_code == 200


def test_a_malformed_post_without_the_token_is_401_not_422(served: Served) -> None:
    response = httpx.post(
        f"{served.base_url}/api/v1/studies",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 401, response.text


def test_nan_in_the_body_is_422_not_500(served: Served) -> None:
    response = served.client.post(
        "/api/v1/studies",
        content=b'{"name": "nan", "experiment": "synthetic", "n_trials": NaN}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert "n_trials" in response.json()["message"]


def test_a_large_invalid_body_gets_a_small_422(served: Served) -> None:
    spec = {"name": "big", "experiment": "synthetic", "junk": "x" * 500_000}
    response = served.client.post("/api/v1/studies", json=spec)
    assert response.status_code == 422, response.text
    assert len(response.content) < 5000
    assert all("input" not in err for err in response.json()["detail"])


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server without a token, a 4 KiB body limit and trusted hosts set."""
    url = f"sqlite:///{tmp_path_factory.mktemp('edge') / 'edge.db'}"
    env = {
        "MTLSEARCH_MAX_BODY_BYTES": str(LIMIT),
        "MTLSEARCH_TRUSTED_HOSTS": '["127.0.0.1", "localhost"]',
    }
    with start_server(url, env=env) as base_url:
        yield base_url
    close_database(url)


def chunks(size: int) -> Iterator[bytes]:
    for _ in range(size // 1024):
        yield b" " * 1024


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_413(limited: str, chunked: bool) -> None:
    # The dashboard (bottle) cannot read a chunked body at all, so only Content-Length there.
    paths = ["/api/v1/studies"] if chunked else ["/api/v1/studies", "/api/studies"]
    for path in paths:
        content: Any = chunks(4 * LIMIT) if chunked else b" " * (4 * LIMIT)
        response = httpx.post(f"{limited}{path}", content=content, timeout=30)
        assert response.status_code == 413, (path, response.text)
        assert f"the limit is {LIMIT} (MTLSEARCH_MAX_BODY_BYTES)" in response.json()["detail"]
    assert httpx.get(f"{limited}/api/v1/studies", timeout=30).json()["count"] == 0


def test_a_body_over_the_default_limit_is_413_with_the_token(served: Served) -> None:
    response = served.client.post("/api/v1/studies", content=b" " * (1_048_576 + 1))
    assert response.status_code == 413, response.text
    assert "1048577 bytes, the limit is 1048576" in response.json()["detail"]
    chunked = served.client.post("/api/v1/studies", content=chunks(2 * 1_048_576))
    assert chunked.status_code == 413, chunked.text


def test_trusted_hosts_refuse_another_host(limited: str, served: Served) -> None:
    assert httpx.get(f"{limited}/healthz", headers={"Host": "evil.example"}).status_code == 400
    assert httpx.get(f"{limited}/healthz", headers={"Host": "localhost"}).status_code == 200
    # Off by default.
    assert (
        httpx.get(f"{served.base_url}/healthz", headers={"Host": "evil.example"}).status_code == 200
    )
