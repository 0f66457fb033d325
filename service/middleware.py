"""Pure ASGI guards in front of the whole app (our API and the mounted optuna-dashboard).

Both run before any route or the dashboard reads the body, so nothing is parsed (or written)
for a request they refuse:

* `TokenGuard`: with a token configured, every request whose method is not GET, HEAD or
  OPTIONS needs ``Authorization: Bearer <token>``, else 401 (``WWW-Authenticate: Bearer``).
* `BodyLimit`: a body above `max_bytes` is refused with 413, at once from ``Content-Length``,
  or, for a chunked body, as soon as the bytes streamed in pass the limit.
"""

from __future__ import annotations

import json
import logging
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def bearer_error(credentials: str | None, expected: str) -> str | None:
    """None when `credentials` (the token after ``Bearer``) is `expected`, else why not."""
    if credentials is None:
        return (
            "missing bearer token: send 'Authorization: Bearer <token>' (this server requires "
            "one on every request that is not GET, HEAD or OPTIONS)"
        )
    # Compared as bytes: compare_digest on str accepts ASCII only.
    if not secrets.compare_digest(credentials.encode(), expected.encode()):
        return "wrong bearer token"
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _credentials(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (as FastAPI's HTTPBearer)."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return token


async def _send_json(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]]
) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class TokenGuard:
    """Refuse a non-GET/HEAD/OPTIONS request without the bearer token, before its body is read.

    Args:
        app: the ASGI app behind the guard.
        token: the expected token; None or empty lets everything through.
    """

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        error = bearer_error(_credentials(_header(scope, b"authorization")), self.token)
        if error is None:
            await self.app(scope, receive, send)
            return
        logger.info("%s %s → 401: %s", scope["method"], scope["path"], error)
        await _send_json(send, 401, error, [(b"www-authenticate", b"Bearer")])


class _BodyTooLarge(Exception):
    """Raised into the app from `receive` once a streamed body passes the limit."""


class BodyLimit:
    """Refuse a request body above `max_bytes` with 413, without buffering it.

    Args:
        app: the ASGI app behind the limit.
        max_bytes: the largest body accepted, in bytes.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes=}")
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self, size: int) -> str:
        return (
            f"request body too large: {size} bytes, the limit is {self.max_bytes} "
            "(MTLSEARCH_MAX_BODY_BYTES)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_bytes:
            logger.info("%s %s → 413: %s bytes", scope["method"], scope["path"], length)
            await _send_json(send, 413, self._detail(int(length)), [(b"connection", b"close")])
            return

        received = 0
        started = False
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if not started and not refused:
                        refused = True
                        logger.info("%s %s → 413: streamed body", scope["method"], scope["path"])
                        await _send_json(
                            send,
                            413,
                            self._detail(received),
                            [(b"connection", b"close")],
                        )
                    raise _BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # we answered 413 already; the app's own error answer is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except Exception:
            if not refused:
                raise
            logger.debug("app failed after its body was refused", exc_info=True)


__all__ = ["SAFE_METHODS", "BodyLimit", "TokenGuard", "bearer_error"]
