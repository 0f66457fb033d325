"""The 413 as ordinary clients read it, on the real server (uvicorn) with its default limit.

A client that sends its whole body before it reads (urllib; httpx too, which reads early only
after a failed write) must read the 413 and its JSON detail, not "connection reset by peer":
the server reads and discards a refused body up to ``MTLSEARCH_MAX_DRAIN_BYTES`` first.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import httpx
import pytest

from storage import close_database
from tests.utils.server import start_server

LIMIT = 1_048_576  # the default MTLSEARCH_MAX_BODY_BYTES
DRAIN = 64 * 1024 * 1024  # the default MTLSEARCH_MAX_DRAIN_BYTES
BODY_BYTES = 10 * 1024 * 1024
CHUNK = b" " * 65536


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with the default body limit and drain bound, no token."""
    url = f"sqlite:///{tmp_path_factory.mktemp('body') / 'body.db'}"
    with start_server(url) as base:
        yield base
    close_database(url)


def chunks(size: int) -> Iterator[bytes]:
    for _ in range(size // len(CHUNK)):
        yield CHUNK


def urllib_post(url: str, *, chunked: bool) -> tuple[int, dict[str, str]]:
    """POST a 10 MB body with urllib (chunked when given an iterator); the status and JSON."""
    data = chunks(BODY_BYTES) if chunked else b" " * BODY_BYTES
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_urllib_reads_the_413_of_a_body_it_sent_whole(base_url: str, chunked: bool) -> None:
    status, body = urllib_post(f"{base_url}/api/v1/studies", chunked=chunked)
    assert status == 413
    assert body["detail"] == (
        f"request body too large: {BODY_BYTES} bytes, the limit is {LIMIT} "
        "(MTLSEARCH_MAX_BODY_BYTES)"
    )


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_httpx_reads_the_413_and_keeps_its_connection(base_url: str, chunked: bool) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        content = chunks(BODY_BYTES) if chunked else b" " * BODY_BYTES
        response = client.post("/api/v1/studies", content=content)
        assert response.status_code == 413, response.text
        assert response.json()["detail"].startswith(f"request body too large: {BODY_BYTES} bytes")
        # The whole body was read: the connection is clean and serves the next request.
        assert "close" not in response.headers.get("connection", "")
        assert client.get("/healthz").status_code == 200
        assert client.get("/api/v1/studies").json()["count"] == 0


def test_a_body_announced_beyond_the_drain_bound_is_refused_at_once(base_url: str) -> None:
    # Nothing of it is read: the 413 comes at once, with Connection: close. httpx reads it
    # (it reads the answer when its write fails); urllib, which reads only after sending the
    # whole body, sees the reset there (docs/api.md).
    size = 10**12
    response = httpx.post(
        f"{base_url}/api/v1/studies",
        content=chunks(2 * DRAIN),
        headers={"Content-Length": str(size)},
        timeout=30,
    )
    assert response.status_code == 413, response.text
    assert response.headers["connection"] == "close"
    assert f"{size} bytes" in response.json()["detail"]


def test_a_chunked_body_past_the_drain_bound_is_refused_there(base_url: str) -> None:
    response = httpx.post(f"{base_url}/api/v1/studies", content=chunks(2 * DRAIN), timeout=60)
    assert response.status_code == 413, response.text
    assert response.headers["connection"] == "close"
    assert response.json()["detail"].startswith("request body too large: more than ")


def test_expect_100_continue_gets_the_413_before_sending_the_body(base_url: str) -> None:
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("POST", "/api/v1/studies")
        connection.putheader("Content-Length", str(BODY_BYTES))
        connection.putheader("Expect", "100-continue")
        connection.endheaders()
        response = connection.getresponse()  # a 100 Continue would come first; the 413 does
        assert response.status == 413
        assert f"{BODY_BYTES} bytes" in json.loads(response.read())["detail"]
    finally:
        connection.close()
