"""`mtlsearch.client.Client` against the real API server (SQLite, no workers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from optuna.trial import TrialState

from mtlsearch.client import STUDY_STATUSES, TRIAL_STATES, Client, ClientError, load_spec_file
from mtlsearch.search.spec import StudySpec
from storage import close_database, get_database
from tests.utils.server import free_port, start_server
from tests.utils.trials import add_finished_trials

pytestmark = pytest.mark.slow
TOKEN = "s3cret"


def spec(name: str) -> dict[str, object]:
    return {"name": name, "experiment": "synthetic", "n_trials": 2, "sampler": "random"}


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('client') / 'client.db'}"
    yield url
    close_database(url)


@pytest.fixture(scope="module")
def server(db_url: str) -> Iterator[str]:
    with start_server(db_url, token=TOKEN) as url:
        yield url


def test_submit_list_status_trials_cancel_delete(server: str, tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec("from-file")))
    with Client(server, token=TOKEN) as client:
        from_dict = client.submit(spec("from-dict"))
        from_model = client.submit(StudySpec.model_validate(spec("from-model")))
        from_file = client.submit(path)
        assert from_dict["status"] == "running" and from_dict["n_trials"] == 2
        names = {s["name"] for s in client.list()}
        assert {"from-dict", "from-model", "from-file"} <= names
        assert client.status(from_file["id"])["name"] == "from-file"
        assert client.trials(from_model["id"]) == {"data": [], "count": 0}
        assert client.cancel(from_dict["id"])["status"] == "cancelled"
        assert client.wait(from_dict["id"], timeout=5, poll_s=0.1)["status"] == "cancelled"
        client.delete(from_model["id"])
        with pytest.raises(ClientError) as gone:
            client.status(from_model["id"])
        assert gone.value.status_code == 404 and from_model["id"] in gone.value.message
        with pytest.raises(TimeoutError, match="still running"):
            client.wait(from_file["id"], timeout=0.2, poll_s=0.1)
        assert "synthetic" in {e["name"] for e in client.experiments()}
        assert client.workers() == []


def test_errors_carry_the_servers_message_and_status(server: str) -> None:
    with Client(server, token=TOKEN) as client:
        with pytest.raises(ClientError) as bad:
            client.submit({**spec("bad"), "sampler": "nope"})
        assert bad.value.status_code == 422 and "sampler" in bad.value.message
        created = client.submit(spec("no-best-yet"))
        with pytest.raises(ClientError) as no_best:
            client.best(created["id"])
        assert no_best.value.status_code == 404
    with Client(server, token=None) as anonymous:
        assert anonymous.list()  # reading needs no token
        with pytest.raises(ClientError) as refused:
            anonymous.submit(spec("no-token"))
        assert refused.value.status_code == 401
        assert "HTTP 401" in str(refused.value)


def test_unreachable_server_and_bad_files(tmp_path: Path) -> None:
    client = Client(f"http://127.0.0.1:{free_port()}", timeout=2)
    with client, pytest.raises(ClientError, match="cannot reach") as down:
        client.list()
    assert down.value.status_code is None
    with pytest.raises(ClientError, match="cannot read spec file"):
        load_spec_file(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ClientError, match="expected a mapping"):
        load_spec_file(tmp_path / "list.yaml")


def test_trials_filtered_by_state(server: str, db_url: str) -> None:
    with Client(server, token=TOKEN) as client:
        study = client.submit({**spec("with-trials"), "n_trials": 6})
        states = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
        add_finished_trials(
            get_database(db_url),
            study["optuna_study_name"],
            StudySpec.model_validate(study["spec"]),
            6,
            states=states,
        )
        failed = client.trials(study["id"], state="fail")
        assert failed["count"] == 2 and {t["state"] for t in failed["data"]} == {"fail"}
        assert all(t["fail_reason"] for t in failed["data"])
        either = client.trials(study["id"], state=("fail", "pruned"), limit=3)
        assert either["count"] == 4 and len(either["data"]) == 3
        assert {t["state"] for t in either["data"]} <= {"fail", "pruned"}
        assert client.trials(study["id"])["count"] == 6
        first = client.trial(study["id"], 0)
        assert first == client.trials(study["id"], limit=1)["data"][0]
        assert first["num_slots"] == 4 and first["seed"] == first["config"]["seed"]
        with pytest.raises(ClientError) as missing:
            client.trial(study["id"], 6)
        assert missing.value.status_code == 404 and "has no trial 6" in missing.value.message
        with pytest.raises(ValueError, match="number must be an integer >= 0, got -1"):
            client.trial(study["id"], -1)
        with pytest.raises(ValueError, match="at least one state"):
            client.trials(study["id"], state=[])
        assert [s["name"] for s in client.list(status="running")]
        with pytest.raises(ValueError, match=r"state must be one of running, .*, got 'failed'"):
            client.trials(study["id"], state="failed")
        with pytest.raises(ValueError, match=r"status must be one of .*, got 'done'"):
            client.list(status="done")


def test_the_clients_state_names_are_the_apis(server: str) -> None:
    # The client checks names before sending them; the server's OpenAPI document says which.
    paths = httpx.get(f"{server}/openapi.json", timeout=30).json()["paths"]

    def enum(path: str, name: str) -> tuple[str, ...]:
        (param,) = [p for p in paths[path]["get"]["parameters"] if p["name"] == name]
        schema = param["schema"]["anyOf"][0]
        return tuple((schema.get("items") or schema)["enum"])

    assert enum("/api/v1/studies/{study_id}/trials", "state") == TRIAL_STATES
    assert enum("/api/v1/studies", "status") == STUDY_STATUSES


def test_every_public_method_is_documented() -> None:
    public = [name for name in vars(Client) if not name.startswith("_")]
    assert {
        "submit",
        "list",
        "status",
        "trials",
        "trial",
        "best",
        "cancel",
        "delete",
        "wait",
    } <= set(public)
    undocumented = [name for name in public if not getattr(Client, name).__doc__]
    assert undocumented == []
