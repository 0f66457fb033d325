"""The ASGI guards on a bare app that records whether it read the body."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.middleware import BodyLimit, TokenGuard, bearer_error


class Recorder:
    """An ASGI app that reads the whole body and answers 200."""

    def __init__(self) -> None:
        self.read = 0
        self.called = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.called = True
        more = True
        while more:
            message = await receive()
            self.read += len(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def call(app: Any, method: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> int:
    return int(exchange(app, method, headers, chunks)[0]["status"])


def exchange(
    app: Any, method: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> tuple[dict[str, Any], int]:
    """The response start `app` sent, and how many of `chunks` were left unread."""
    sent: list[dict[str, Any]] = []
    pending = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/api/x", "headers": headers}
    asyncio.run(app(scope, receive, send))
    return sent[0], len(pending)


def test_the_token_guard_refuses_before_the_body_is_read() -> None:
    inner = Recorder()
    guard = TokenGuard(inner, token="t")
    assert call(guard, "POST", [], [b"{not json"]) == 401
    assert call(guard, "DELETE", [(b"authorization", b"Bearer x")], [b""]) == 401
    assert not inner.called
    assert call(guard, "GET", [], [b""]) == 200
    assert call(guard, "PATCH", [(b"authorization", b"bearer t")], [b"{}"]) == 200


def test_no_token_lets_every_method_through() -> None:
    assert call(TokenGuard(Recorder(), token=None), "POST", [], [b"x"]) == 200


def test_the_body_limit_stops_a_stream_once_it_passes() -> None:
    inner = Recorder()
    limit = BodyLimit(inner, max_bytes=10)
    assert call(limit, "POST", [(b"content-length", b"11")], [b"x" * 11]) == 413
    assert not inner.called
    assert call(limit, "POST", [], [b"x" * 6, b"x" * 6, b"x" * 6]) == 413
    assert inner.read == 6  # the third chunk was never read
    assert call(BodyLimit(Recorder(), max_bytes=10), "POST", [], [b"x" * 5, b"x" * 5]) == 200


def test_a_refused_body_is_drained_up_to_the_bound() -> None:
    # Read whole (so the client can read the 413), then the connection stays usable.
    inner = Recorder()
    start, unread = exchange(
        BodyLimit(inner, max_bytes=10, drain_bytes=100),
        "POST",
        [(b"content-length", b"30")],
        [b"x" * 10, b"x" * 10, b"x" * 10],
    )
    assert (start["status"], unread, inner.called) == (413, 0, False)
    assert (b"connection", b"close") not in start["headers"]
    start, unread = exchange(
        BodyLimit(Recorder(), max_bytes=10, drain_bytes=100), "POST", [], [b"x" * 6] * 4
    )
    assert (start["status"], unread) == (413, 0)
    # Past the bound: refused at once from Content-Length, or where the stream passes it.
    start, unread = exchange(
        BodyLimit(Recorder(), max_bytes=10, drain_bytes=20),
        "POST",
        [(b"content-length", b"30")],
        [b"x" * 10] * 3,
    )
    assert (start["status"], unread) == (413, 3)
    assert (b"connection", b"close") in start["headers"]
    start, unread = exchange(
        BodyLimit(Recorder(), max_bytes=10, drain_bytes=20), "POST", [], [b"x" * 6] * 6
    )
    assert (start["status"], unread) == (413, 2)
    assert (b"connection", b"close") in start["headers"]


def test_a_client_waiting_for_100_continue_is_refused_before_sending() -> None:
    headers = [(b"content-length", b"30"), (b"expect", b"100-continue")]
    start, unread = exchange(BodyLimit(Recorder(), max_bytes=10), "POST", headers, [b"x" * 30])
    assert (start["status"], unread) == (413, 1)


def test_bearer_error() -> None:
    assert bearer_error("s", "s") is None
    assert bearer_error(None, "s") is not None
    assert bearer_error("sécret", "secret") == "wrong bearer token"
    with pytest.raises(ValueError, match="max_bytes"):
        BodyLimit(Recorder(), max_bytes=0)
    with pytest.raises(ValueError, match="drain_bytes"):
        BodyLimit(Recorder(), max_bytes=1, drain_bytes=-1)
