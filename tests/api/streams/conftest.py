"""A real gRPC server carrying only the two feeds, over a real SQLite store and follower.

`FeedServer` wires `RevocationFeed` and `JwksFeed` the way `tokend.app` does (the
follower publishes what it applies), with small limits so tests can reach them, and maps
errors to status codes with the servicer's own table. No Vault is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from tokend.api import errors
from tokend.api.streams import JwksFeed, RevocationFeed
from tokend.store import NewRevocation
from tokend.store.sqlite import SqliteStore
from tokend.tokens.denylist import Denylist, DenylistFollower
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

SERVICE = "tokend.v1.TokenService"


def live(value: str, kind: str = "jti", ttl: float = 3600) -> NewRevocation:
    return NewRevocation(kind, value, time.time() + ttl, "test")  # type: ignore[arg-type]


class FeedServer:
    """`async with FeedServer(path, **limits) as s:` gives `s.stub`, `s.writer`, `s.feed`."""

    def __init__(self, path: Path, *, poll: float = 0.05, **limits: Any) -> None:
        self.store = SqliteStore(path)  # this "replica's" own connection
        self.writer = SqliteStore(path)  # another replica writing to the same store
        self.denylist = Denylist()
        jwks_limits = {k: v for k, v in limits.items() if k in (
            "keepalive", "write_timeout", "max_subscribers", "max_per_caller")}
        self.feed = RevocationFeed(self.store, lambda: self.follower.seq, **limits)
        self.jwks = JwksFeed(**jwks_limits)
        self.follower = DenylistFollower(self.store, self.denylist, interval=poll,
                                         on_applied=self.feed.publish)
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {
            "WatchRevocations": grpc.unary_stream_rpc_method_handler(
                self._watch_revocations,
                request_deserializer=pb.WatchRevocationsRequest.FromString,
                response_serializer=pb.RevocationEvent.SerializeToString),
            "WatchJwks": grpc.unary_stream_rpc_method_handler(
                self._watch_jwks, request_deserializer=pb.WatchJwksRequest.FromString,
                response_serializer=pb.JwksEvent.SerializeToString),
        })])
        self._tasks: list[asyncio.Task[None]] = []

    async def _watch_revocations(self, request: pb.WatchRevocationsRequest,
                                 context: grpc.aio.ServicerContext) -> None:
        await _mapped(lambda: self.feed.serve(request.from_sequence, context,
                                              caller=_caller(context)), context)

    async def _watch_jwks(self, request: pb.WatchJwksRequest,
                          context: grpc.aio.ServicerContext) -> None:
        await _mapped(lambda: self.jwks.serve(context, caller=_caller(context)), context)

    async def __aenter__(self) -> FeedServer:
        await self.store.open()
        await self.writer.open()
        await self.follower.catch_up()
        self._tasks.append(asyncio.create_task(self.follower.run()))
        port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.stub = tokend_pb2_grpc.TokenServiceStub(self.channel)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.feed.close()
        self.jwks.close()
        await self.channel.close()
        await self._server.stop(0)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.writer.close()
        await self.store.close()


def _caller(context: grpc.aio.ServicerContext) -> str:
    """Plaintext here: the caller says who it is in `x-caller` (default "test")."""
    return dict(context.invocation_metadata() or ()).get("x-caller", "test")


async def _mapped(serve: Callable[[], Any], context: grpc.aio.ServicerContext) -> None:
    try:
        await serve()
    except Exception as exc:
        await errors.abort(context, errors.failure_for(exc, "Watch"), "Watch")


@pytest.fixture
def feed_path(tmp_path: Path) -> Path:
    return tmp_path / "tokend.db"


@pytest.fixture
async def feeds(feed_path: Path) -> AsyncIterator[FeedServer]:
    async with FeedServer(feed_path, keepalive=0.2) as server:
        yield server


async def read_until(call: Any, done: Callable[[list[Any]], bool], timeout: float = 5.0
                     ) -> list[Any]:
    """Messages of a grpc.aio stream until ``done(messages)``; fails after ``timeout``."""
    messages: list[Any] = []
    async with asyncio.timeout(timeout):
        while not done(messages):
            message = await call.read()
            assert message is not grpc.aio.EOF, f"stream ended: {await call.code()}"
            messages.append(message)
    return messages


def revocations(events: list[pb.RevocationEvent]) -> list[int]:
    """The sequences of the revocations (not the checkpoints) among ``events``."""
    return [event.sequence for event in events if not event.checkpoint]
