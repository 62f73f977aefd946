"""Live streams: the revocation feed and the JWK Set, fanned out to every subscriber.

Each process streams its own state: its `DenylistFollower` publishes every page of the
store's feed right after applying it (`RevocationFeed.publish`), and its `JwksPublisher`
every new key set (`JwksFeed.publish`). So a revocation made through any replica reaches
the subscribers of every replica within the feed latency, and no replica talks to
another.

A subscriber never slows the others down or grows memory: each has a bounded queue, and
one that falls behind is disconnected (RESOURCE_EXHAUSTED, with the sequence to resume
from). Idle streams get a keep-alive message so proxies do not cut them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import structlog
from google.protobuf import timestamp_pb2

from tokend import metrics
from tokend.store.base import Revocation, Store
from tokend.tokens.errors import BadRequest
from tokend_client.v1 import tokend_pb2 as pb

log = structlog.get_logger("tokend.streams")

# Well under the 60 s idle timeouts common to proxies and load balancers.
KEEPALIVE_SECONDS = 15.0
# A write that cannot complete this long means the client stopped reading.
WRITE_TIMEOUT_SECONDS = 30.0
# Events queued per revocation subscriber before it counts as too slow: one full page of
# the follower (10 000 rows, after an outage) still fits an empty queue. The events are
# shared, so a queue costs a reference per event.
QUEUE_SIZE = 10_000
# Per stream kind and process: each stream holds a coroutine and a queue.
MAX_SUBSCRIBERS = 1000
# Per caller identity, stream kind and process: one caller cannot take every slot.
MAX_PER_CALLER = 100
# Rows read from the store at a time while replaying history.
HISTORY_PAGE = 1000


class StreamEnded(Exception):
    """Ends a stream; the servicer maps each kind to a status code (UNAVAILABLE here),
    and the message tells the client what to do."""


class SlowSubscriber(StreamEnded):
    """The client fell behind: RESOURCE_EXHAUSTED, resume from the last sequence."""


class TooManySubscribers(StreamEnded):
    """The per-process or per-caller cap on streams is reached: RESOURCE_EXHAUSTED."""


class ShuttingDown(StreamEnded):
    """The server is stopping: UNAVAILABLE, reconnect (to another replica)."""


class ResumeAhead(StreamEnded):
    """from_sequence is beyond the store's feed: FAILED_PRECONDITION, resume from 0."""


class LiveStreams:
    """The two feeds of one process, closed together when it stops."""

    def __init__(self, revocations: RevocationFeed, jwks: JwksFeed) -> None:
        self.revocations = revocations
        self.jwks = jwks

    def close(self) -> None:
        """End every open stream with UNAVAILABLE (clients reconnect elsewhere)."""
        self.revocations.close()
        self.jwks.close()


class _Subscribers:
    """Admission for one kind of stream: a cap in total and per caller identity (so one
    caller cannot starve the others), and refusal once closing."""

    def __init__(self, limit: int, per_caller: int) -> None:
        self.limit = limit
        self.per_caller = per_caller
        self.count = 0
        self.closed = False
        self._held: dict[str, int] = {}  # open streams per caller; callers with none absent

    def admit(self, caller: str) -> None:
        if self.closed:
            raise ShuttingDown("tokend is shutting down; reconnect")
        held = self._held.get(caller, 0)
        if held >= self.per_caller:
            raise TooManySubscribers(
                f"caller {caller!r} already has {held} open streams of this kind on this "
                f"server, its limit (streams.max_per_caller); close one or retry with backoff")
        if self.count >= self.limit:
            raise TooManySubscribers(f"this server already serves {self.limit} streams of "
                                     "this kind; retry with backoff")
        self._held[caller] = held + 1
        self.count += 1

    def leave(self, caller: str) -> None:
        self.count -= 1
        held = self._held.pop(caller) - 1
        if held:
            self._held[caller] = held


class _ClientGone(Exception):
    """The client closed the stream while a message was being written: nothing to tell."""


async def _write(context: grpc.aio.ServicerContext, message: Any, timeout: float) -> None:
    """One message; a client that stops reading blocks the write, not the server."""
    try:
        async with asyncio.timeout(timeout):
            await context.write(message)
        _SENT[type(message)].inc()  # grpc_server_msg_sent_total
    except TimeoutError:
        raise SlowSubscriber("the client stopped reading this stream") from None
    except Exception:
        if context.done():
            raise _ClientGone from None
        raise


# Each stream's message type is its own.
_SENT = {pb.RevocationEvent: metrics.token_service("WatchRevocations").sent,
         pb.JwksEvent: metrics.token_service("WatchJwks").sent}


class _Queue:
    """One revocation subscriber's events: bounded, and closed rather than grown."""

    __slots__ = ("_items", "_size", "_wakeup", "error")

    def __init__(self, size: int) -> None:
        self._items: deque[pb.RevocationEvent] = deque()
        self._size = size
        self._wakeup = asyncio.Event()
        self.error: StreamEnded | None = None

    def offer(self, events: Sequence[pb.RevocationEvent]) -> bool:
        """Queue the events; False (and the queue closed) when they do not fit."""
        if self.error is not None:
            return False
        if len(self._items) + len(events) > self._size:
            self.close(SlowSubscriber("this stream fell behind the revocation feed"))
            return False
        self._items.extend(events)
        self._wakeup.set()
        return True

    def close(self, error: StreamEnded) -> None:
        """Drop what is queued (freeing it now) and end the stream with ``error``."""
        if self.error is None:
            self.error = error
        self._items.clear()
        self._wakeup.set()

    async def get(self, timeout: float) -> pb.RevocationEvent | None:
        """The next event, or None when none came for ``timeout`` seconds."""
        while not self._items:
            if self.error is not None:
                raise self.error
            self._wakeup.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()
            except TimeoutError:
                return None
        if self.error is not None:
            raise self.error
        return self._items.popleft()


class RevocationFeed:
    """WatchRevocations: history from the store, then live events from the follower.

    ``position`` is the follower's feed position (`DenylistFollower.seq`); the follower
    calls `publish` with each page right after applying it, in ascending sequence.
    """

    def __init__(self, store: Store, position: Callable[[], int], *,
                 queue_size: int = QUEUE_SIZE, max_subscribers: int = MAX_SUBSCRIBERS,
                 max_per_caller: int = MAX_PER_CALLER, keepalive: float = KEEPALIVE_SECONDS,
                 write_timeout: float = WRITE_TIMEOUT_SECONDS,
                 page_size: int = HISTORY_PAGE) -> None:
        self._store = store
        self._position = position
        self._queue_size = queue_size
        self._keepalive = keepalive
        self._write_timeout = write_timeout
        self._page_size = page_size
        self._queues: set[_Queue] = set()
        self._subscribers = _Subscribers(max_subscribers, max_per_caller)

    @property
    def subscribers(self) -> int:
        """Open WatchRevocations streams."""
        return self._subscribers.count

    def publish(self, rows: Sequence[Revocation]) -> None:
        """Fan rows out to every subscriber; one that cannot take them is dropped."""
        events = [revocation_event(row) for row in rows]
        for queue in list(self._queues):
            if not queue.offer(events):
                self._queues.discard(queue)
                log.warning("stream.subscriber_too_slow", queue_size=self._queue_size)

    def close(self) -> None:
        self._subscribers.closed = True
        for queue in self._queues:
            queue.close(ShuttingDown("tokend is shutting down"))
        self._queues.clear()

    async def serve(self, from_sequence: int, context: grpc.aio.ServicerContext, *,
                    caller: str) -> None:
        """Stream until the client leaves or the stream ends with a `StreamEnded`.
        ``caller`` is the caller's identity label, counted against its cap."""
        if from_sequence < 0:
            raise BadRequest("from_sequence must not be negative (0 starts from the beginning)",
                             field="from_sequence")
        self._subscribers.admit(caller)
        # Subscribe before reading history: every row the follower publishes from now
        # on is queued, every earlier one is in the store. Duplicates are dropped below.
        queue = _Queue(self._queue_size)
        self._queues.add(queue)
        try:
            covered = await self._replay(from_sequence, context)
            await self._follow(covered, queue, context)
        except _ClientGone:
            return
        except ResumeAhead:
            raise
        except StreamEnded as exc:
            # Tell the client where to resume: what it has received, it keeps.
            raise type(exc)(f"{exc}; reconnect with from_sequence set to the last sequence "
                            "you applied") from None
        finally:
            self._queues.discard(queue)
            self._subscribers.leave(caller)

    async def _replay(self, after: int, context: grpc.aio.ServicerContext) -> int:
        """Send the live rows after ``after`` and a first checkpoint; returns the seam."""
        live_from = self._position()
        if after > live_from:
            await self._check_not_ahead(after)
        while True:
            rows = await self._store.revocations_since(after, time.time(), self._page_size)
            for row in rows:
                await _write(context, revocation_event(row), self._write_timeout)
            if rows:
                after = rows[-1].seq
            if len(rows) < self._page_size:
                break
        # Everything up to what the follower had read when we subscribed is in the store,
        # and was just sent unless it has expired: the checkpoint covers it.
        covered = max(after, live_from)
        await _write(context, checkpoint(covered), self._write_timeout)
        return covered

    async def _check_not_ahead(self, from_sequence: int) -> None:
        # Ahead of this follower is normal (the client came from a faster replica);
        # ahead of the store itself means the store was replaced or restored.
        last = await self._store.last_seq()
        if from_sequence > last:
            raise ResumeAhead(
                f"from_sequence {from_sequence} is ahead of this feed (last sequence {last}): "
                "the store was replaced; keep what you hold and resume from 0")

    async def _follow(self, covered: int, queue: _Queue,
                      context: grpc.aio.ServicerContext) -> None:
        while True:
            event = await queue.get(self._keepalive)
            if event is None:
                await _write(context, checkpoint(covered), self._write_timeout)
            elif event.sequence > covered:  # at or below: already sent from history
                await _write(context, event, self._write_timeout)
                covered = event.sequence


class JwksFeed:
    """WatchJwks: the current JWK Set at once, then every new one.

    Only the latest set matters, so there is no queue: a subscriber that was busy
    while the set changed twice simply gets the newest.
    """

    def __init__(self, *, max_subscribers: int = MAX_SUBSCRIBERS,
                 max_per_caller: int = MAX_PER_CALLER, keepalive: float = KEEPALIVE_SECONDS,
                 write_timeout: float = WRITE_TIMEOUT_SECONDS) -> None:
        self._json = ""
        self._changed = asyncio.Event()
        self._keepalive = keepalive
        self._write_timeout = write_timeout
        self._subscribers = _Subscribers(max_subscribers, max_per_caller)

    @property
    def subscribers(self) -> int:
        """Open WatchJwks streams."""
        return self._subscribers.count

    def publish(self, jwks_json: str) -> None:
        """The set changed (`JwksPublisher.on_change`): wake every subscriber."""
        if jwks_json != self._json:
            self._json = jwks_json
            self._wake()

    def close(self) -> None:
        self._subscribers.closed = True
        self._wake()

    def _wake(self) -> None:
        woken, self._changed = self._changed, asyncio.Event()
        woken.set()

    async def serve(self, context: grpc.aio.ServicerContext, *, caller: str) -> None:
        """Stream until the client leaves or the server shuts down."""
        self._subscribers.admit(caller)
        try:
            current = self._json
            await _write(context, pb.JwksEvent(jwks_json=current), self._write_timeout)
            while True:
                changed = self._changed
                if self._json == current:
                    try:
                        async with asyncio.timeout(self._keepalive):
                            await changed.wait()
                    except TimeoutError:
                        pass
                if self._subscribers.closed:
                    raise ShuttingDown("tokend is shutting down; reconnect")
                unchanged, current = self._json == current, self._json
                await _write(context, pb.JwksEvent(jwks_json=current, keep_alive=unchanged),
                             self._write_timeout)
        except _ClientGone:
            return
        finally:
            self._subscribers.leave(caller)


def revocation_event(row: Revocation) -> pb.RevocationEvent:
    event = pb.RevocationEvent(sequence=row.seq, kind=row.kind, value=row.value,
                               expires_at=_timestamp(row.expires_at))
    if row.kind == "subject":
        event.not_before.CopyFrom(_timestamp(row.not_before))
    return event


def checkpoint(sequence: int) -> pb.RevocationEvent:
    return pb.RevocationEvent(sequence=sequence, checkpoint=True)


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    whole = math.floor(seconds)
    return timestamp_pb2.Timestamp(seconds=whole, nanos=int((seconds - whole) * 1e9))
