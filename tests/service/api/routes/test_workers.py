"""GET /api/v1/workers through the real server."""

from __future__ import annotations

from storage import WorkerRepository, get_database
from tests.service.conftest import Served


def test_lists_registered_workers_with_liveness(served: Served) -> None:
    with get_database(served.db_url).session() as session:
        repo = WorkerRepository(session)
        busy = repo.register(hostname="gpu-host", pid=123, device="cuda:0")
        repo.heartbeat(busy.id, "busy", study_id="abc123abc123", trial_number=4, trials_done=9)
        stopped = repo.register(hostname="cpu-host", pid=7, device="cpu")
        repo.mark_stopped(stopped.id)

    body = served.client.get("/api/v1/workers").json()
    by_id = {w["id"]: w for w in body["data"]}
    assert by_id[busy.id]["status"] == "busy"
    assert by_id[busy.id]["live"] is True
    assert by_id[busy.id]["device"] == "cuda:0"
    assert by_id[busy.id]["current_study_id"] == "abc123abc123"
    assert by_id[busy.id]["current_trial_number"] == 4
    assert by_id[busy.id]["trials_done"] == 9
    assert by_id[stopped.id]["live"] is False
    assert body["live"] == sum(w["live"] for w in body["data"])


def test_shows_each_workers_experiments_device_and_batch_size(served: Served) -> None:
    with get_database(served.db_url).session() as session:
        repo = WorkerRepository(session)
        gpu = repo.register(
            hostname="gpu-host",
            pid=1,
            device="cuda:1",
            experiments=["synthetic", "adult"],
            batch_size="auto",
        )
        cpu = repo.register(
            hostname="cpu-host", pid=2, device="cpu", experiments=["synthetic"], batch_size=4
        )

    by_id = {w["id"]: w for w in served.client.get("/api/v1/workers").json()["data"]}
    assert {k: by_id[gpu.id][k] for k in ("experiments", "device", "batch_size", "live")} == {
        "experiments": ["adult", "synthetic"],
        "device": "cuda:1",
        "batch_size": "auto",
        "live": True,
    }
    assert (by_id[cpu.id]["experiments"], by_id[cpu.id]["batch_size"]) == (["synthetic"], 4)
