"""A TCP relay that delays every byte by a fixed time each way: a database far away.

This machine's kernel has no ``netem`` queueing discipline (``CONFIG_NET_SCH_NETEM`` is not
set, so ``tc qdisc ... netem delay`` answers "Specified qdisc kind is unknown"), so latency is
added in user space: `DelayProxy` listens on 127.0.0.1, opens a connection to the target for
each client, and hands every chunk on ``one_way_s`` after it arrived, in order, in each
direction. A query's round trip then costs ``2 * one_way_s`` more, as across cloud zones;
bandwidth is not limited.

Usage::

    with DelayProxy("127.0.0.1", 5432, one_way_s=0.025) as proxy:   # 50 ms round trips
        url = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/db"
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType

#: Bytes read per chunk.
_CHUNK = 65536


class DelayProxy:
    """Relay 127.0.0.1:`port` to ``host:port``, each way ``one_way_s`` late (module docstring).

    Runs its own event loop on a daemon thread between `start` and `stop` (or ``with``).
    """

    def __init__(self, host: str, port: int, one_way_s: float) -> None:
        if not one_way_s >= 0:
            raise ValueError(f"one_way_s must be >= 0, got {one_way_s=}")
        self.target = (host, port)
        self.one_way_s = one_way_s
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> DelayProxy:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = future.result(timeout=10)

    def stop(self) -> None:
        if self._server is not None:
            server = self._server
            asyncio.run_coroutine_threadsafe(self._close(server), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _close(self, server: asyncio.Server) -> None:
        server.close()
        for writer in list(self._writers):  # a connection still open keeps wait_closed waiting
            writer.close()
        await server.wait_closed()

    async def _relay(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        try:
            server_in, server_out = await asyncio.open_connection(*self.target)
        except OSError:
            client_out.close()
            return
        await asyncio.gather(self._pump(client_in, server_out), self._pump(server_in, client_out))

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Copy ``source`` to ``sink``, each chunk ``one_way_s`` after it was read, in order."""
        loop = asyncio.get_running_loop()
        due: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                at, chunk = await due.get()
                await asyncio.sleep(max(0.0, at - loop.time()))
                if not chunk:
                    break
                sink.write(chunk)
                await sink.drain()

        delivering = asyncio.create_task(deliver())
        try:
            while chunk := await source.read(_CHUNK):
                due.put_nowait((loop.time() + self.one_way_s, chunk))
        except (ConnectionError, OSError):
            pass
        due.put_nowait((loop.time() + self.one_way_s, b""))
        with contextlib.suppress(ConnectionError, OSError):
            await delivering
        sink.close()


__all__ = ["DelayProxy"]
