"""An aiohttp site with a connection cap: aiohttp has none, and its only per-connection
limit is the keep-alive timer (which also closes a connection that sends no complete
request in time, the runner's `keepalive_timeout`).

At the cap the oldest open connection is closed to make room for the new one, rather
than refusing the newcomer: a flood of silent connections then has to outpace every
legitimate client's request (milliseconds) instead of merely filling the table once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from yarl import URL

from tokend import metrics


class CappedSite(web.BaseSite):
    """`web.TCPSite` with at most `max_connections` open connections."""

    __slots__ = (
        "_bound_port",
        "_host",
        "_label",
        "_max_connections",
        "_open",
        "_port",
        "_reuse_port",
    )

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, max_connections: int,
                 label: str, reuse_port: bool | None = None) -> None:
        super().__init__(runner)
        self._host, self._port = host, port
        self._bound_port: int | None = None
        self._reuse_port = reuse_port
        self._max_connections = max_connections
        self._label = label
        # Insertion order is age: the first key is the oldest connection.
        self._open: dict[_Counted, None] = {}

    @property
    def name(self) -> str:
        return str(URL.build(scheme="http", host=self._host, port=self.port))

    @property
    def port(self) -> int:
        return self._bound_port if self._bound_port is not None else self._port

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self._host, self._port, reuse_address=True,
            reuse_port=self._reuse_port, backlog=self._backlog)
        self._bound_port = self._server.sockets[0].getsockname()[1]

    def _protocol(self) -> asyncio.Protocol:
        server = self._runner.server
        assert server is not None
        return _Counted(server(), self)

    def opened(self, connection: _Counted) -> None:
        if len(self._open) >= self._max_connections:
            oldest = next(iter(self._open))
            self._open.pop(oldest)
            metrics.child(metrics.CONNECTIONS_SHED, self._label).inc()
            oldest.abort()
        self._open[connection] = None

    def closed(self, connection: _Counted) -> None:
        self._open.pop(connection, None)


class _Counted(asyncio.Protocol):
    """Forwards every protocol event to aiohttp's handler and tells the site when the
    connection opens and closes."""

    __slots__ = ("_inner", "_site", "_transport")

    def __init__(self, inner: Any, site: CappedSite) -> None:
        self._inner = inner
        self._site = site
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._site.opened(self)
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._site.closed(self)
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()  # type: ignore[attr-defined]
