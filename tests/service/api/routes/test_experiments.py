"""GET /api/v1/experiments through the real server."""

from __future__ import annotations

from tests.service.conftest import Served


def test_lists_every_builtin_with_tasks_and_defaults(served: Served) -> None:
    body = served.client.get("/api/v1/experiments").json()
    by_name = {e["name"]: e for e in body["data"]}
    assert {"adult", "multi_mnist", "synthetic"} <= set(by_name)
    assert body["count"] == len(body["data"])
    synthetic = by_name["synthetic"]
    tasks = {t["name"]: t for t in synthetic["tasks"]}
    assert tasks["regression"]["loss"] == "mse"
    assert tasks["regression"]["metric"] == "rmse"
    assert tasks["regression"]["higher_is_better"] is False
    assert tasks["classification"]["higher_is_better"] is True
    assert synthetic["defaults"]["epochs"] >= 1
