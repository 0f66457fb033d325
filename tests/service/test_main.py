"""`create_app`: the OpenAPI contract, the route order, the lifespan (in-process TestClient)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from mtlsearch.settings import Settings
from service.main import create_app
from storage.migrate import current

ROUTES = {
    ("post", "/api/v1/studies"),
    ("get", "/api/v1/studies"),
    ("get", "/api/v1/studies/{study_id}"),
    ("delete", "/api/v1/studies/{study_id}"),
    ("post", "/api/v1/studies/{study_id}/cancel"),
    ("post", "/api/v1/studies/{study_id}/resume"),
    ("get", "/api/v1/studies/{study_id}/trials"),
    ("get", "/api/v1/studies/{study_id}/trials/{number}"),
    ("get", "/api/v1/studies/{study_id}/best"),
    ("get", "/api/v1/experiments"),
    ("get", "/api/v1/workers"),
    ("get", "/healthz"),
    ("get", "/metrics"),
}


@pytest.fixture
def client(sqlite_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(db_url=sqlite_url, api_token="t"))) as test_client:
        yield test_client


def test_openapi_lists_every_route_with_its_schema(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    found = {
        (method, path) for path, operations in document["paths"].items() for method in operations
    }
    assert found == ROUTES
    schemas = document["components"]["schemas"]
    for name in (
        "StudySpec",
        "StudyPublic",
        "StudiesPublic",
        "TrialsPublic",
        "TrialPublic",
        "BestPublic",
        "ExperimentsPublic",
        "WorkersPublic",
        "ErrorPublic",
        "HealthPublic",
    ):
        assert name in schemas, name
    create = document["paths"]["/api/v1/studies"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/StudySpec"
    )
    assert {"401", "409", "422"} <= set(create["responses"])
    # Mutating routes declare the bearer scheme; reads do not.
    assert create["security"] == [{"HTTPBearer": []}]
    assert "security" not in document["paths"]["/api/v1/studies"]["get"]
    assert "docs" in client.get("/docs").text.lower()


def test_lifespan_migrates_the_database(client: TestClient, sqlite_url: str) -> None:
    assert current(sqlite_url).is_current


def test_unmatched_paths_fall_through_to_the_dashboard(client: TestClient) -> None:
    root = client.get("/", follow_redirects=False)
    assert root.status_code == 302
    assert root.headers["location"].endswith("/dashboard")
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert "<title>Optuna Dashboard</title>" in page.text
    assert client.get("/api/studies").json()["study_summaries"] == []
    # Our routes win over the dashboard's catch-all.
    assert client.get("/healthz").json()["status"] == "ok"


def test_a_spec_has_no_field_that_names_code() -> None:
    from mtlsearch.search.spec import StudySpec

    def fields(model: type) -> set[str]:
        names: set[str] = set()
        for name, info in model.model_fields.items():  # type: ignore[attr-defined]
            names.add(name)
            annotation = info.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                names |= fields(annotation)
        return names

    suspicious = {n for n in fields(StudySpec) if any(w in n for w in ("module", "path", "import"))}
    assert suspicious == set()
    assert StudySpec.model_config.get("extra") == "forbid"
