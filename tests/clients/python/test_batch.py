"""The verify batcher (tokend_client/_batch.py) of TokenClient and AsyncTokenClient.

Each scenario runs with both clients against a real gRPC server on loopback whose
answers are scripted (scripted_server.py): one that implements VerifyMany, and the plain
scripted service, which lacks it like a tokend older than VerifyMany. That answers equal
a real tokend's unary ones is tested against a real tokend in
tests/clients/python/test_batch_tokend.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from tests.clients.python.conftest import Client, outcome
from tests.clients.python.scripted_server import (
    ScriptedServer,
    ScriptedTokenService,
    verify_response,
)
from tokend_client import (
    AsyncTokenClient,
    InvalidArgumentError,
    PermissionDeniedError,
    Reason,
    TokenClient,
    TokendError,
    VerifyQuery,
    VerifyResult,
)
from tokend_client.v1 import tokend_pb2 as pb

Call = Callable[[Client], Any]
EMPTY_AUDIENCE = "audience must not be empty"
SLOW = 0.3  # seconds the server takes per RPC, so that calls overlap


class BatchingService(ScriptedTokenService):
    """The scripted service with VerifyMany: an empty audience is `invalid`."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_deadlines: list[float | None] = []

    def VerifyMany(self, request: pb.VerifyManyRequest,
                   context: grpc.ServicerContext) -> pb.VerifyManyResponse:
        self.batch_deadlines.append(context.time_remaining())
        self._enter("VerifyMany", request, context)
        return pb.VerifyManyResponse(results=[_result(item) for item in request.requests])


def _result(request: pb.VerifyRequest) -> pb.VerifyManyResult:
    if not request.audience:
        return pb.VerifyManyResult(invalid=pb.InvalidRequest(
            field="audience", description=EMPTY_AUDIENCE, reason="INVALID_AUDIENCE"))
    return pb.VerifyManyResult(response=verify_response(request))


@pytest.fixture
def batching() -> Iterator[ScriptedServer]:
    """A scripted server that implements VerifyMany."""
    with ScriptedServer(BatchingService()) as server:
        yield server


@pytest.fixture
def older(scripted: ScriptedServer) -> ScriptedServer:
    """A scripted server without VerifyMany: a stand-in for a tokend older than it."""
    return scripted


async def together(client: Client, calls: list[Call]) -> list[Any]:
    """Each call's result or exception, the calls made at once (threads for the sync
    client, tasks for the async one)."""
    if isinstance(client, AsyncTokenClient):
        return await asyncio.wait_for(
            asyncio.gather(*(call(client) for call in calls), return_exceptions=True), 30)
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call, client) for call in calls]
        return [future.exception(timeout=30) or future.result() for future in futures]



def verify(token: str, audience: str = "orders", **options: Any) -> Call:
    return lambda client: client.verify(token, audience, **options)


def mixed(count: int) -> list[Call]:
    """Valid tokens, with a revoked one and a request with an empty audience."""
    calls = [verify(f"token-{n}") for n in range(count - 2)]
    return [*calls, verify("REASON_REVOKED"), verify("token-x", "")]


def requests_sent(server: ScriptedServer) -> list[str]:
    """The tokens of every request that reached the server, unary or batched."""
    service = server.service
    tokens = [request.token for request in service.requests["Verify"]]
    for batch in service.requests["VerifyMany"]:
        tokens.extend(request.token for request in batch.requests)
    return tokens


def check_mixed(results: list[Any]) -> None:
    *valid, revoked, invalid = results
    assert all(isinstance(r, VerifyResult) and r.valid and r.subject == "alice" for r in valid)
    assert isinstance(revoked, VerifyResult)
    assert (revoked.valid, revoked.reason) == (False, Reason.REVOKED)
    assert isinstance(invalid, InvalidArgumentError)
    assert (invalid.code, invalid.reason, invalid.message) == (
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_AUDIENCE", EMPTY_AUDIENCE)
    assert [(v.field, v.description) for v in invalid.field_violations] == [
        ("audience", EMPTY_AUDIENCE)]
    assert invalid.metadata == {"method": "Verify", "field": "audience"}


async def test_overlapping_calls_share_a_verify_many(
        batching: ScriptedServer, make_client: Callable[..., Client]) -> None:
    batching.service.delay = SLOW
    client = make_client(batching.target, max_in_flight=1)
    results = await together(client, mixed(20))
    check_mixed(results)
    # The first call leaves alone; the others queue behind it and share RPCs.
    assert batching.seen["VerifyMany"] >= 1
    assert batching.seen["Verify"] + batching.seen["VerifyMany"] <= 5
    assert sorted(requests_sent(batching)) == sorted(
        [f"token-{n}" for n in range(18)] + ["REASON_REVOKED", "token-x"])


async def test_a_lone_call_is_a_unary_verify(
        batching: ScriptedServer, make_client: Callable[..., Client]) -> None:
    client = make_client(batching.target)
    result = await outcome(client.verify("token-1", "orders"))
    assert result.valid
    assert dict(batching.seen) == {"Verify": 1}


async def test_max_batch_and_max_in_flight_bound_the_rpcs(
        batching: ScriptedServer, make_client: Callable[..., Client]) -> None:
    batching.service.delay = SLOW
    client = make_client(batching.target, max_in_flight=2, max_batch=3)
    results = await together(client, [verify(f"token-{n}") for n in range(16)])
    assert all(r.valid for r in results)
    assert batching.service.peak <= 2
    sizes = [len(batch.requests) for batch in batching.service.requests["VerifyMany"]]
    assert sizes and max(sizes) <= 3
    assert len(requests_sent(batching)) == 16


async def test_a_whole_call_error_fails_every_item_of_its_batch(
        batching: ScriptedServer, make_client: Callable[..., Client]) -> None:
    batching.service.delay = SLOW
    batching.service.fail("VerifyMany", grpc.StatusCode.PERMISSION_DENIED, times=100,
                          message="caller may not verify")
    client = make_client(batching.target, max_in_flight=1, retries=0)
    results = await together(client, [verify(f"token-{n}") for n in range(8)])
    denied = [r for r in results if isinstance(r, PermissionDeniedError)]
    batched = sum(len(batch.requests) for batch in batching.service.requests["VerifyMany"])
    assert batched >= 1 and len(denied) == batched
    assert all(r.message == "caller may not verify" for r in denied)
    assert len({id(r) for r in denied}) == len(denied)  # one exception per caller
    assert sum(isinstance(r, VerifyResult) and r.valid for r in results) == 8 - batched


async def test_an_older_tokend_gets_unary_calls(
        older: ScriptedServer, make_client: Callable[..., Client]) -> None:
    older.service.delay = SLOW
    client = make_client(older.target, max_in_flight=1)
    results = await together(client, [verify(f"token-{n}") for n in range(12)]
                                       + [verify("REASON_EXPIRED")])
    assert all(r.valid for r in results[:-1])
    assert results[-1].reason is Reason.EXPIRED
    # One VerifyMany answered UNIMPLEMENTED; its requests went out again as Verify.
    assert older.seen["VerifyMany"] == 1
    assert older.service.calls["Verify"] == 13
    # For good: the next overlapping calls are unary at once, not limited by max_in_flight.
    again = await together(client, [verify(f"again-{n}") for n in range(8)])
    assert all(r.valid for r in again)
    assert older.seen["VerifyMany"] == 1
    assert older.service.calls["Verify"] == 21
    assert older.service.peak > 1


async def test_a_queued_call_fails_at_its_own_deadline_unsent(
        batching: ScriptedServer, make_client: Callable[..., Client]) -> None:
    batching.service.delay = 1.0
    client = make_client(batching.target, max_in_flight=1)

    async def queued(client: Client) -> tuple[float, BaseException | None]:
        await asyncio.sleep(0.1)  # after the first call took the only slot
        started = time.monotonic()
        try:
            await outcome(client.verify("late", "orders", timeout=0.3))
        except TokendError as exc:
            return time.monotonic() - started, exc
        return time.monotonic() - started, None

    def first(client: Client) -> Any:
        return client.verify("first", "orders")

    def second(client: Client) -> Any:
        return asyncio.run(queued(client)) if isinstance(client, TokenClient) else queued(client)

    answered, (waited, error) = await together(client, [first, second])
    assert answered.valid
    assert isinstance(error, TokendError) and error.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.25 <= waited < 0.8  # its own deadline, not the 1 s RPC ahead of it
    assert requests_sent(batching) == ["first"]  # dropped from the queue, never sent


async def test_a_batch_lives_as_long_as_its_latest_member(
        batching: ScriptedServer, make_client: Callable[..., Client]) -> None:
    batching.service.delay = SLOW
    client = make_client(batching.target, max_in_flight=1)
    results = await together(client, [verify("first"), verify("short", timeout=1.5),
                                       verify("long", timeout=4.0)])
    assert all(r.valid for r in results)
    assert len(batching.service.batch_deadlines) == 1
    remaining = batching.service.batch_deadlines[0]
    assert remaining is not None and 2.0 < remaining <= 4.0


async def test_cancelled_task_is_dropped_from_the_queue(batching: ScriptedServer) -> None:
    batching.service.delay = 0.5
    async with AsyncTokenClient.insecure_loopback(batching.target, max_in_flight=1) as client:
        first = asyncio.ensure_future(client.verify("first", "orders"))
        await asyncio.sleep(0.1)
        queued = asyncio.ensure_future(client.verify("cancelled", "orders"))
        await asyncio.sleep(0.05)
        queued.cancel()
        assert (await asyncio.wait_for(first, 5)).valid
        with pytest.raises(asyncio.CancelledError):
            await queued
        await asyncio.sleep(0.1)
    assert requests_sent(batching) == ["first"]


async def test_batching_switched_off_sends_only_unary_calls(
        batching: ScriptedServer, make_client: Callable[..., Client]) -> None:
    batching.service.delay = SLOW
    client = make_client(batching.target, batch_verify=False)
    results = await together(client, mixed(12))
    *valid, revoked, invalid = results
    assert all(r.valid for r in valid) and revoked.reason is Reason.REVOKED
    # The stand-in's unary Verify does not check audiences: the call went out unbatched.
    assert isinstance(invalid, VerifyResult)
    assert dict(batching.seen) == {"Verify": 12}
    assert batching.service.peak > 4  # not held to max_in_flight


async def test_verify_many_chunks_by_256_and_keeps_the_order(
        batching: ScriptedServer, make_client: Callable[..., Client]) -> None:
    client = make_client(batching.target)
    queries: list[Any] = [(f"token-{n}", "orders") for n in range(600)]
    queries[5] = VerifyQuery("REASON_REVOKED", "orders")
    queries[300] = VerifyQuery("token-300", "", required_scopes="a b")
    results = await outcome(client.verify_many(queries))
    assert len(results) == 600
    assert results[5].reason is Reason.REVOKED
    assert isinstance(results[300], InvalidArgumentError)
    assert all(r.valid for n, r in enumerate(results) if n not in (5, 300))
    assert [len(b.requests) for b in batching.service.requests["VerifyMany"]] == [256, 256, 88]
    sent = batching.service.requests["VerifyMany"][1].requests[300 - 256]
    assert (sent.token, list(sent.required_scopes)) == ("token-300", ["a", "b"])
    assert "Verify" not in batching.seen


async def test_verify_many_against_an_older_tokend(
        older: ScriptedServer, make_client: Callable[..., Client]) -> None:
    client = make_client(older.target)
    results = await outcome(client.verify_many([("t1", "orders"), ("REASON_EXPIRED", "a"),
                                                ("t3", "orders")]))
    assert [r.valid for r in results] == [True, False, True]
    assert results[1].reason is Reason.EXPIRED
    assert older.seen["VerifyMany"] == 1 and older.service.calls["Verify"] == 3


async def test_verify_many_refuses_bad_queries_before_sending(
        batching: ScriptedServer, make_client: Callable[..., Client]) -> None:
    client = make_client(batching.target)
    with pytest.raises(TypeError):
        await outcome(client.verify_many([("t1", "orders"), "t2"]))
    with pytest.raises(ValueError, match="delegation"):
        await outcome(client.verify_many([VerifyQuery("t1", "orders", delegation="maybe")]))
    assert not batching.seen


@pytest.mark.parametrize(("settings", "error"), [
    ({"max_in_flight": 0}, ValueError), ({"max_in_flight": 1025}, ValueError),
    ({"max_in_flight": True}, TypeError), ({"max_in_flight": "4"}, TypeError),
    ({"max_batch": 0}, ValueError), ({"max_batch": 257}, ValueError),
    ({"max_batch": 2.0}, TypeError), ({"batch_verify": "yes"}, TypeError),
])
def test_bad_batching_settings_are_refused(settings: dict[str, Any],
                                           error: type[Exception]) -> None:
    with pytest.raises(error):
        TokenClient.insecure_loopback("127.0.0.1:1", **settings)


async def test_batches_stay_under_tokends_message_limit(
        batching: ScriptedServer, make_client: Callable[..., Client]) -> None:
    # tokend refuses any message over 64 KiB for the whole call (server app.py).
    batching.service.delay = SLOW
    client = make_client(batching.target, max_in_flight=1)
    results = await together(client, [verify(f"{n:04d}" + "x" * 7000) for n in range(24)])
    assert all(r.valid for r in results)
    sizes = [batch.ByteSize() for batch in batching.service.requests["VerifyMany"]]
    assert len(sizes) >= 2 and max(sizes) <= 60 * 1024
    assert len(requests_sent(batching)) == 24

    many = await outcome(client.verify_many([(f"{n:04d}" + "y" * 3000, "orders")
                                             for n in range(60)]))
    assert len(many) == 60 and all(r.valid for r in many)
    sizes = [batch.ByteSize() for batch in batching.service.requests["VerifyMany"]]
    assert all(size <= 60 * 1024 for size in sizes)
    assert len(requests_sent(batching)) == 84


async def test_closing_the_client_fails_waiting_calls_at_once(
        batching: ScriptedServer, make_client: Callable[..., Client]) -> None:
    batching.service.delay = 1.0
    client = make_client(batching.target, max_in_flight=1)

    async def close_soon(client: Client) -> None:
        await asyncio.sleep(0.2)
        await outcome(client.close())

    def closer(client: Client) -> Any:
        return asyncio.run(close_soon(client)) if isinstance(client, TokenClient) \
            else close_soon(client)

    started = time.monotonic()
    *results, _ = await together(client, [*(verify(f"t{n}") for n in range(4)), closer])
    assert time.monotonic() - started < 0.9  # neither the 1 s RPC nor the 5 s deadlines
    assert all(isinstance(r, TokendError) and r.code is grpc.StatusCode.CANCELLED
               for r in results), results
