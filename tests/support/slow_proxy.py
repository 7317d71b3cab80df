"""A TCP proxy on 127.0.0.1 that makes every request to an upstream TLS server slow.

Used to stand in for an apiserver that takes seconds per call: the client keeps
talking TLS end to end (certificates still verify, the proxy sees only
ciphertext), and the proxy holds back each *request* by ``delay`` seconds.

A request is recognised from the TLS record layer, which is not encrypted:
client records of type application_data (23) carry HTTP. The first such record
of a TLS 1.3 connection is the client's encrypted Finished message, so it passes
undelayed, as do the handshake records: delaying those would trip the client's
connect timeout instead of making the call slow. Consecutive application records
with no server bytes in between belong to one request (headers, then body) and
are delayed once. ``delay`` may be changed while connections are open.

``hold()`` stops every request at the proxy until ``release()``: the apiserver is then
as slow as the test wants, however busy the machine is, so a test can show that an
answer did not wait for it (it arrived while the apiserver had not answered) instead
of timing that answer.
"""

from __future__ import annotations

import asyncio
import contextlib

from tests.support.async_server import AsyncServer

APPLICATION_DATA = 23
RECORD_HEADER = 5


class SlowProxy(AsyncServer):
    """Forwards 127.0.0.1:``port`` (chosen at ``start()``) to ``upstream_host``:
    ``upstream_port``, holding each request back ``delay`` seconds (0: none).

    ``delayed_requests`` / ``held_requests`` count what it slowed and held.
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, delay: float) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.delay = delay
        self.delayed_requests = 0
        self.held_requests = 0
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    def hold(self) -> None:
        """From now on, keep each request at the proxy until :meth:`release`."""
        self._open.clear()

    @property
    def holding(self) -> bool:
        return not self._open.is_set()

    def release(self) -> None:
        """Let held and later requests through (after ``delay``, if any)."""
        self._open.set()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def start(self) -> SlowProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        state = _Connection()
        try:
            await asyncio.gather(
                self._client_to_server(reader, up_writer, state),
                _pump(up_reader, writer, state),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, up_writer):
                w.close()
            self._tasks.discard(task)

    async def _client_to_server(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: _Connection
    ) -> None:
        try:
            while True:
                header = await reader.readexactly(RECORD_HEADER)
                body = await reader.readexactly(int.from_bytes(header[3:5], "big"))
                if header[0] == APPLICATION_DATA:
                    state.app_records += 1
                    # Record 1 is the TLS 1.3 Finished, record 2 the first request (the
                    # server may not have answered the Finished yet); after that a
                    # record following server bytes starts the next request.
                    first = state.app_records == 2
                    later = state.app_records > 2 and state.server_spoke
                    if (first or later) and not self._open.is_set():
                        self.held_requests += 1
                        await self._open.wait()
                    if (first or later) and self.delay > 0:
                        self.delayed_requests += 1
                        await asyncio.sleep(self.delay)
                    state.server_spoke = False
                writer.write(header + body)
                await writer.drain()
        except asyncio.IncompleteReadError:
            if writer.can_write_eof():
                writer.write_eof()


class _Connection:
    def __init__(self) -> None:
        self.app_records = 0
        # True when the server sent bytes since the client's last application record:
        # the next application record starts a new request.
        self.server_spoke = True


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: _Connection
) -> None:
    while data := await reader.read(65536):
        state.server_spoke = True
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()
