"""GET /healthz through the real server."""

from __future__ import annotations

from tests.service.conftest import Served


def test_healthz_reports_the_backend(served: Served) -> None:
    response = served.client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == served.db_url.split(":")[0].split("+")[0]
