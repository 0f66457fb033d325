"""`mtlsearch.client.Client` against the real API server (SQLite, no workers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mtlsearch.client import Client, ClientError, load_spec_file
from mtlsearch.search.spec import StudySpec
from tests.utils.server import free_port, start_server

pytestmark = pytest.mark.slow
TOKEN = "s3cret"


def spec(name: str) -> dict[str, object]:
    return {"name": name, "experiment": "synthetic", "n_trials": 2, "sampler": "random"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = f"sqlite:///{tmp_path_factory.mktemp('client') / 'client.db'}"
    with start_server(db, token=TOKEN) as url:
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
