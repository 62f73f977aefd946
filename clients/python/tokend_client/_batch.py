"""Hand-written Verify batching (VerifyMany), because no gRPC library batches calls.

The state machine of the *verify batcher* both clients share (spec: docs/clients.md
"Verify calls are batched"): ``verify()`` enqueues its request; whenever fewer than
``max_in_flight`` Verify/VerifyMany RPCs of the client are out, everything queued (at most
``max_batch``) leaves as one RPC: unary Verify for one request, VerifyMany for more. No
timer, no linger: a lone call goes out at once, unchanged on the wire; calls that overlap
under load share an RPC. Only the transport differs between the clients (a gRPC future
and its callback in :mod:`.client`, a task in :mod:`.aio`); queueing, the per-item
outcome, errors and the fallback to unary Verify for an older tokend are here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from . import _calls
from .models import VerifyResult
from .rpc_errors import (
    DOMAIN,
    FieldViolation,
    InvalidArgumentError,
    TokendError,
    error_from_rpc,
    status_code,
)
from .v1 import tokend_pb2 as pb

__all__ = ["Batch", "BatchSettings", "Item", "VerifyQuery", "VerifyQueue"]

_log = logging.getLogger("tokend_client")

# The server's limit on VerifyManyRequest.requests (protos/tokend/v1/tokend.proto).
MAX_BATCH = 256
# tokend refused any request over 64 KiB (server app.py MAX_MESSAGE_BYTES) for the whole
# call before VerifyMany raised that limit; a batch stops short of it, with room for
# gRPC's framing, which also keeps its answer (claims per token) well under this
# client's 1 MiB receive limit. A lone larger request still goes out as unary Verify.
MAX_BATCH_BYTES = 60 * 1024
DEFAULT_MAX_IN_FLIGHT = 4
DEFAULT_MAX_BATCH = 64
# More RPCs in flight than this buys nothing but memory; the bound keeps typos visible.
MAX_IN_FLIGHT = 1024

_STATE_ERRORS = (asyncio.InvalidStateError, concurrent.futures.InvalidStateError)


@dataclass(frozen=True)
class BatchSettings:
    """The client's batching options, checked: ``batch_verify``, ``max_in_flight``,
    ``max_batch``."""

    enabled: bool = True
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    max_batch: int = DEFAULT_MAX_BATCH

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise TypeError("batch_verify must be a bool")
        _check_int("max_in_flight", self.max_in_flight, MAX_IN_FLIGHT)
        _check_int("max_batch", self.max_batch, MAX_BATCH)


def _check_int(name: str, value: object, upper: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int")
    if not 1 <= value <= upper:
        raise ValueError(f"{name} must be between 1 and {upper}")


class Waiter(Protocol):
    """What a caller waits on: a concurrent.futures.Future or an asyncio.Future."""

    def done(self) -> bool: ...
    def set_result(self, result: Any, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


@dataclass(eq=False, slots=True)
class Item:
    """One verify(): its request, its own deadline (time.monotonic()) and its waiter."""

    request: pb.VerifyRequest
    deadline: float
    waiter: Waiter

    def settle(self, outcome: VerifyResult | TokendError) -> None:
        """Hand the caller its outcome, unless it stopped waiting (deadline, cancelled)."""
        if self.waiter.done():
            return
        try:
            if isinstance(outcome, BaseException):
                self.waiter.set_exception(outcome)
            else:
                self.waiter.set_result(outcome)
        except _STATE_ERRORS:
            pass  # the caller gave up between the check and now (another thread)


@dataclass(eq=False, slots=True)
class Batch:
    """Items that leave as one RPC; ``counted`` ones hold a max_in_flight slot."""

    items: list[Item]
    counted: bool = True

    @property
    def method(self) -> str:
        return "Verify" if len(self.items) == 1 else "VerifyMany"

    def request(self) -> pb.VerifyRequest | pb.VerifyManyRequest:
        if len(self.items) == 1:
            return self.items[0].request
        return pb.VerifyManyRequest(requests=[item.request for item in self.items])

    def timeout(self) -> float:
        """The RPC's deadline: the latest of its members' (at least a millisecond, so that
        gRPC answers DEADLINE_EXCEEDED itself rather than refusing the value)."""
        return max(max(item.deadline for item in self.items) - time.monotonic(), 0.001)

    def answered(self, response: pb.VerifyResponse | pb.VerifyManyResponse) -> None:
        """Settle every item from the RPC's response."""
        if isinstance(response, pb.VerifyResponse):
            self.items[0].settle(_calls.verify_result(response))
            return
        if len(response.results) != len(self.items):
            self.failed(TokendError(grpc.StatusCode.INTERNAL,
                                    f"VerifyMany answered {len(response.results)} results "
                                    f"for {len(self.items)} requests"))
            return
        for item, result in zip(self.items, response.results, strict=True):
            item.settle(item_outcome(result))

    def failed(self, error: grpc.RpcError | TokendError) -> None:
        """Every item fails as a unary Verify failing so would (each its own exception)."""
        for item in self.items:
            item.settle(_error(error))

    def older_server(self, error: grpc.RpcError) -> bool:
        """Whether ``error`` says the server lacks VerifyMany (a tokend older than it)."""
        return self.method == "VerifyMany" and status_code(error) is grpc.StatusCode.UNIMPLEMENTED


def _error(error: grpc.RpcError | TokendError) -> TokendError:
    if isinstance(error, TokendError):
        return type(error)(error.code, error.message, **error._details())
    converted = error_from_rpc(error)
    converted.__cause__ = error
    if converted.metadata.get("method") == "VerifyMany":
        # As the unary Verify the caller made would carry it (ErrorInfo metadata).
        converted.metadata["method"] = "Verify"  # type: ignore[index]
    return converted


def item_outcome(result: pb.VerifyManyResult) -> VerifyResult | TokendError:
    """One VerifyMany result as what unary Verify gives for the same request."""
    if result.WhichOneof("outcome") == "invalid":
        return invalid_argument(result.invalid)
    if result.WhichOneof("outcome") == "response":
        return _calls.verify_result(result.response)
    return TokendError(grpc.StatusCode.INTERNAL, "VerifyMany answered an empty result")


def invalid_argument(invalid: pb.InvalidRequest) -> InvalidArgumentError:
    """The InvalidArgumentError unary Verify raises for the same request: the same
    message, ErrorInfo reason/metadata and field violation (server api/errors.py)."""
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = invalid.reason or "INVALID_REQUEST"  # the server names it (proto InvalidRequest)
    if not invalid.field:
        return InvalidArgumentError(code, invalid.description, reason=reason,
                                    domain=DOMAIN, metadata={"method": "Verify"})
    return InvalidArgumentError(
        code, invalid.description, reason=reason,
        domain=DOMAIN, metadata={"method": "Verify", "field": invalid.field},
        field_violations=(FieldViolation(invalid.field, invalid.description),))


def deadline_exceeded() -> TokendError:
    """What a unary Verify whose deadline passes raises."""
    return TokendError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")


class VerifyQueue:
    """The batcher's state: queued items and RPCs in flight. Thread-safe, no I/O.

    The transport calls :meth:`submit` for each verify() and sends the batch it returns;
    when an RPC it sent ends, it settles the batch, calls :meth:`finished` and sends
    the batch that returns, if any. After :meth:`fall_back` (the server lacks
    VerifyMany) ``unary_only`` is True and the client calls Verify directly.
    """

    def __init__(self, settings: BatchSettings) -> None:
        self.settings = settings
        self.unary_only = not settings.enabled
        self._queue: deque[Item] = deque()
        self._in_flight = 0
        self._lock = threading.Lock()

    def submit(self, item: Item) -> Batch | None:
        with self._lock:
            self._queue.append(item)
            return self._take()

    def finished(self) -> Batch | None:
        """A counted RPC ended: its slot goes to what waits, if anything does."""
        with self._lock:
            self._in_flight -= 1
            return self._take()

    def landed(self, batch: Batch, response: Any,
               error: grpc.RpcError | TokendError | None) -> list[Batch]:
        """An RPC of ``batch`` ended with ``response`` or ``error``: settle its items and
        return what to send next (the unary fallback's calls, the next batch)."""
        following: list[Batch] = []
        if error is None:
            batch.answered(response)
        elif isinstance(error, grpc.RpcError) and batch.older_server(error):
            following = self.fall_back(batch)
        else:
            batch.failed(error)
        if batch.counted:
            after = self.finished()
            if after is not None:
                following.append(after)
        return following

    def abandon(self, batch: Batch, error: TokendError) -> None:
        """The RPC of ``batch`` was cancelled under us (the channel closed): fail it and
        everything queued now, rather than leave them to their deadlines."""
        with self._lock:
            if batch.counted:
                self._in_flight -= 1
            queued = list(self._queue)
            self._queue.clear()
        Batch([*batch.items, *queued], counted=False).failed(error)

    def fall_back(self, batch: Batch) -> list[Batch]:
        """The server lacks VerifyMany: unary Verify from now on, for ``batch`` and for
        everything queued, each as its own uncounted RPC (as without batching)."""
        with self._lock:
            first = not self.unary_only
            self.unary_only = True
            items = [*batch.items, *self._queue]
            self._queue.clear()
        if first:
            _log.warning("tokend at this address lacks VerifyMany: verify() sends unary "
                         "Verify calls from now on")
        return [Batch([item], counted=False) for item in items if not item.waiter.done()]

    def _take(self) -> Batch | None:
        if self._in_flight >= self.settings.max_in_flight:
            return None
        items = self._live()
        if not items:
            return None
        self._in_flight += 1
        return Batch(items)

    def _live(self) -> list[Item]:
        # Callers that stopped waiting (deadline passed, cancelled) are dropped unsent.
        items: list[Item] = []
        size = 0
        now = time.monotonic()
        while self._queue and len(items) < self.settings.max_batch:
            item = self._queue[0]
            if item.waiter.done() or item.deadline <= now:
                self._queue.popleft().settle(deadline_exceeded())
                continue
            size += encoded_size(item.request)
            if items and size > MAX_BATCH_BYTES:
                break
            items.append(self._queue.popleft())
        return items


def encoded_size(request: pb.VerifyRequest) -> int:
    """Bytes ``request`` adds to a VerifyManyRequest (field 1: tag, length, message)."""
    length = request.ByteSize()
    return 1 + _varint_size(length) + length


def _varint_size(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


@dataclass(frozen=True)
class VerifyQuery:
    """One request for ``verify_many``: the arguments of ``verify()``."""

    token: str
    audience: str
    required_scopes: str | Iterable[str] = ()
    presenter_certificate: bytes | Any | None = None
    presenter_x5t_s256: str | None = None
    delegation: str = "any"

    def request(self) -> pb.VerifyRequest:
        return _calls.verify_request(self.token, self.audience, self.required_scopes,
                                     presenter_certificate=self.presenter_certificate,
                                     presenter_x5t_s256=self.presenter_x5t_s256,
                                     delegation=self.delegation)


def many_requests(queries: Iterable[VerifyQuery | tuple[str, str]]) -> list[pb.VerifyRequest]:
    """The VerifyRequests of ``verify_many``: each a VerifyQuery or a (token, audience)
    pair; a malformed one raises before anything is sent."""
    requests = []
    for query in queries:
        if isinstance(query, tuple):
            query = VerifyQuery(*query)
        if not isinstance(query, VerifyQuery):
            raise TypeError("verify_many takes VerifyQuery objects or (token, audience) pairs")
        requests.append(query.request())
    return requests


def chunks(requests: list[pb.VerifyRequest],
           max_batch: int = MAX_BATCH) -> Iterator[list[pb.VerifyRequest]]:
    """``verify_many``'s requests, at most ``max_batch`` (the server's limit) and
    MAX_BATCH_BYTES at a time; a lone larger request makes a chunk of its own.
    conformance/batching/cases.json holds the cases every client's split passes."""
    chunk: list[pb.VerifyRequest] = []
    size = 0
    for request in requests:
        grown = size + encoded_size(request)
        if chunk and (len(chunk) == max_batch or grown > MAX_BATCH_BYTES):
            yield chunk
            chunk, grown = [], encoded_size(request)
        chunk.append(request)
        size = grown
    if chunk:
        yield chunk


def many_batches(queries: Iterable[VerifyQuery | tuple[str, str]], queue: VerifyQueue,
                 new_item: Callable[[pb.VerifyRequest], Item],
                 ) -> Iterator[tuple[list[Item], list[Batch]]]:
    """``verify_many``'s RPCs, chunk by chunk: the chunk's items and the Batches to send
    for them (one per item once the server has shown it lacks VerifyMany). Lazy, so
    each chunk's deadline starts when the one before it is answered."""
    for chunk in chunks(many_requests(queries)):
        items = [new_item(request) for request in chunk]
        if queue.unary_only:
            yield items, [Batch([item], counted=False) for item in items]
        else:
            yield items, [Batch(items, counted=False)]


def not_sent(exc: BaseException) -> TokendError:
    """The error of items whose RPC could not even start (the client was closed)."""
    return TokendError(grpc.StatusCode.CANCELLED,
                       f"the call did not complete ({type(exc).__name__}): was the client closed?")
