"""``/docs`` works without internet: Swagger UI from the package's own files, on the real
server, read over HTTP and rendered by a headless Chromium that can resolve no other host."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.api_docs import ASSETS_DIR
from storage import close_database
from tests.utils.browser import chromium, rendered_text
from tests.utils.server import REPO_ROOT, start_server

pytestmark = pytest.mark.slow

CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db_url = f"sqlite:///{tmp_path_factory.mktemp('docs') / 'docs.db'}"
    try:
        with start_server(db_url, token="docs-token") as url:
            yield url
    finally:
        close_database(db_url)


def referenced_urls(page: str) -> list[str]:
    """Every URL the page loads: ``src``, ``href`` and the OpenAPI ``url`` of its script."""
    return [a or b for a, b in re.findall(r"""(?:src|href)="([^"]*)"|url: '([^']*)'""", page)]


def test_docs_reference_only_local_urls_that_answer(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "://" not in page.text  # no absolute URL: no CDN, no other host
        urls = referenced_urls(page.text)
        assert sorted(urls) == [
            "/docs/assets/favicon-32x32.png",
            "/docs/assets/swagger-ui-bundle.js",
            "/docs/assets/swagger-ui.css",
            "/openapi.json",
        ]
        for url in urls:
            answer = client.get(url)
            assert answer.status_code == 200, url
            suffix = Path(url).suffix
            expected = CONTENT_TYPES.get(suffix, "application/json")
            assert answer.headers["content-type"].split(";")[0] == expected, url
            if url.startswith("/docs/assets/"):
                assert answer.content == (ASSETS_DIR / Path(url).name).read_bytes()
        # FastAPI's ReDoc page would load from a CDN: it is not served.
        assert client.get("/redoc").status_code == 404


def test_the_shipped_swagger_ui_is_the_makefiles_version() -> None:
    (version,) = re.findall(
        r"^SWAGGER_UI_VERSION := (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M
    )
    bundle = (ASSETS_DIR / "swagger-ui-bundle.js").read_text()
    assert f'PACKAGE_VERSION:"{version}"' in bundle
    assert f"**{version}**" in (ASSETS_DIR / "README.md").read_text()


@pytest.mark.browser
def test_docs_render_the_operations_without_internet(base_url: str, tmp_path: Path) -> None:
    text = rendered_text(chromium(), f"{base_url}/docs", tmp_path / "profile", offline=True)
    # Rendered by Swagger UI's script from /openapi.json; none of it is in the HTML shell.
    assert "mtlsearch" in text and "OAS 3.1" in text
    operations = text.replace(" /", "/")  # Swagger UI breaks paths before each "/"
    for operation in (
        "POST/api/v1/studies Create a study",
        "GET/api/v1/studies List studies",
        "GET/api/v1/studies/{study_id}/trials List a study's trials",
        "GET/api/v1/studies/{study_id}/best Best weights and config of a study",
        "GET/healthz Health",
    ):
        assert operation in operations, operation
