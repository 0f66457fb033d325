"""Pure ASGI guards in front of the whole app (our API and the mounted optuna-dashboard).

Both run before any route or the dashboard reads the body, so nothing is parsed (or written)
for a request they refuse:

* `TokenGuard`: with a token configured, every request whose method is not GET, HEAD or
  OPTIONS needs ``Authorization: Bearer <token>``, else 401 (``WWW-Authenticate: Bearer``).
* `BodyLimit`: a body above `max_bytes` is refused with 413. Its bytes are read and discarded
  (never buffered) up to `drain_bytes` before the answer, so that a client that sends its whole
  body before it reads (urllib, most HTTP libraries) reads the 413 instead of a connection
  reset: closing a socket with unread bytes makes the kernel send RST, which wipes the answer.
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


#: A refused body is read and discarded up to this many bytes by default (see `BodyLimit`).
DEFAULT_DRAIN_BYTES = 64 * 1024 * 1024


class BodyLimit:
    """Refuse a request body above `max_bytes` with 413, without buffering it.

    The refused body is read and discarded up to `drain_bytes` in all before the 413 is sent;
    the connection then stays usable. Closing it with bytes unread would make the kernel answer
    the client's next bytes with a reset, and a client still sending (it reads only once the
    body is sent) would see "connection reset" instead of the 413. Past `drain_bytes` (an
    announced ``Content-Length`` above it, or a chunked body that goes on) the 413 is sent at
    once with ``Connection: close``: clients that read while they send (httpx, curl) still
    read it, the others see the reset; the server never reads more than `drain_bytes`. A
    client that asked ``Expect: 100-continue`` has sent nothing yet: it gets the 413 at once.

    Args:
        app: the ASGI app behind the limit.
        max_bytes: the largest body accepted, in bytes.
        drain_bytes: the most bytes of a refused body read (and discarded) so that the client
            can read the 413; 0 refuses at once.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, drain_bytes: int = DEFAULT_DRAIN_BYTES
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes=}")
        if drain_bytes < 0:
            raise ValueError(f"drain_bytes must be >= 0, got {drain_bytes=}")
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = drain_bytes

    def _detail(self, size: int, *, whole: bool = True) -> str:
        told = f"{size} bytes" if whole else f"more than {size} bytes"
        return (
            f"request body too large: {told}, the limit is {self.max_bytes} "
            "(MTLSEARCH_MAX_BODY_BYTES)"
        )

    async def _drain(self, receive: Receive, received: int, more_body: bool) -> tuple[int, bool]:
        """Read and discard the body until its end, the client leaves, or `drain_bytes`.

        Returns the bytes received in all and whether the whole body was read.
        """
        while more_body and received <= self.drain_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return received, False  # the client left
            received += len(message.get("body", b""))
            more_body = message.get("more_body", False)
        return received, not more_body

    async def _refuse(self, send: Send, detail: str, *, whole_body_read: bool) -> None:
        # With bytes left unread the connection cannot serve another request: close it.
        headers = [] if whole_body_read else [(b"connection", b"close")]
        await _send_json(send, 413, detail, headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_bytes:
            size = int(length)
            waiting = (_header(scope, b"expect") or "").lower() == "100-continue"
            whole = False
            if not waiting and size <= self.drain_bytes:
                _, whole = await self._drain(receive, 0, True)
            logger.info("%s %s → 413: %d bytes", scope["method"], scope["path"], size)
            await self._refuse(send, self._detail(size), whole_body_read=whole)
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
                        received, whole = await self._drain(
                            receive, received, message.get("more_body", False)
                        )
                        logger.info("%s %s → 413: streamed body", scope["method"], scope["path"])
                        await self._refuse(
                            send, self._detail(received, whole=whole), whole_body_read=whole
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


__all__ = ["DEFAULT_DRAIN_BYTES", "SAFE_METHODS", "BodyLimit", "TokenGuard", "bearer_error"]
