"""The verify batcher against a real tokend (real OpenBao, SQLite, gRPC on loopback): a
mixed crowd of concurrent verify() calls gets exactly the answers of unary Verify calls,
while tokend really receives fewer, VerifyMany, RPCs (its /metrics say so); a lone call
stays a unary Verify."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.bao import BaoDevServer
from tests.support.tokend import RunningTokend, make_settings
from tokend_client import (
    AsyncTokenClient,
    InvalidArgumentError,
    Reason,
    TokenClient,
    TokendError,
    VerifyQuery,
    VerifyResult,
)
from tokend_client._batch import chunks, many_requests

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
CALLS = 200  # verify() calls in the crowd
Query = tuple[str, str, tuple[str, ...]]  # token, audience, required scopes


@pytest.fixture(scope="module")
def tokend(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningTokend]:
    directory: Path = tmp_path_factory.mktemp("batching")
    settings = make_settings(bao.addr, bao.token, directory, vault={"key_name": "batching"})
    with RunningTokend(settings) as server:
        yield server


@pytest.fixture(scope="module")
def queries(tokend: RunningTokend) -> list[Query]:
    """CALLS requests: valid tokens, a revoked one, wrong audiences, a missing scope,
    a malformed token and empty audiences (INVALID_ARGUMENT)."""
    with TokenClient.insecure_loopback(tokend.grpc_addr) as client:
        tokens = [client.issue(f"user-{n}", "orders", scopes="read").access_token
                  for n in range(8)]
        revoked = client.issue("revoked", "orders").access_token
        client.revoke(token=revoked, reason="batching test")
    kinds: list[Query] = [
        *((token, "orders", ()) for token in tokens),
        *((token, "orders", ("read",)) for token in tokens[:3]),
        (revoked, "orders", ()),
        (tokens[0], "billing", ()),
        (tokens[1], "orders", ("write",)),
        ("not.a.token", "orders", ()),
        (tokens[2], "", ()),
    ]
    return [kinds[n % len(kinds)] for n in range(CALLS)]


def answer(value: VerifyResult | BaseException) -> Any:
    """What a caller can see of a result or an error, comparable."""
    if isinstance(value, TokendError):
        return (type(value), value.code, value.message, value.reason, value.domain,
                dict(value.metadata), value.field_violations, value.retry_delay)
    assert isinstance(value, VerifyResult), repr(value)
    return value


@pytest.fixture(scope="module")
def unary_answers(tokend: RunningTokend, queries: list[Query]) -> dict[Query, Any]:
    """Each distinct query's answer from a unary Verify (batching off)."""
    answers: dict[Query, Any] = {}
    with TokenClient.insecure_loopback(tokend.grpc_addr, batch_verify=False) as client:
        for query in set(queries):
            try:
                answers[query] = answer(client.verify(query[0], query[1],
                                                      required_scopes=query[2]))
            except TokendError as exc:
                answers[query] = answer(exc)
    seen = {type(a) if not isinstance(a, tuple) else a[0] for a in answers.values()}
    assert seen == {VerifyResult, InvalidArgumentError}
    reasons = {a.reason for a in answers.values() if isinstance(a, VerifyResult)}
    assert {None, Reason.REVOKED, Reason.WRONG_AUDIENCE, Reason.MISSING_SCOPE} <= reasons
    return answers


def rpc_counts(tokend: RunningTokend) -> dict[str, float]:
    """tokend_rpc_duration_seconds_count by method, summed over codes."""
    with _HTTP.open(tokend.http_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tokend_rpc_duration_seconds_count":
                method = sample.labels["method"]
                counts[method] = counts.get(method, 0.0) + sample.value
    return counts


def settled_counts(tokend: RunningTokend, done: Callable[[dict[str, float]], bool]
                   ) -> dict[str, float]:
    """The counts once ``done`` holds (a call is counted just after it answers), or
    after 5 s, whichever comes first."""
    deadline = time.monotonic() + 5
    counts = rpc_counts(tokend)
    while not done(counts) and time.monotonic() < deadline:
        time.sleep(0.05)
        counts = rpc_counts(tokend)
    return counts


def delta(before: dict[str, float], after: dict[str, float], method: str) -> float:
    return after.get(method, 0.0) - before.get(method, 0.0)


def crowd_sync(target: str, queries: list[Query]) -> list[Any]:
    with TokenClient.insecure_loopback(target) as client, ThreadPoolExecutor(32) as pool:
        def one(query: Query) -> Any:
            try:
                return answer(client.verify(query[0], query[1], required_scopes=query[2]))
            except TokendError as exc:
                return answer(exc)
        return list(pool.map(one, queries, timeout=60))


async def crowd_async(target: str, queries: list[Query]) -> list[Any]:
    async with AsyncTokenClient.insecure_loopback(target) as client:
        async def one(query: Query) -> Any:
            try:
                return answer(await client.verify(query[0], query[1],
                                                  required_scopes=query[2]))
            except TokendError as exc:
                return answer(exc)
        return await asyncio.wait_for(asyncio.gather(*(one(q) for q in queries)), 60)


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_concurrent_crowd_gets_unary_answers_in_fewer_rpcs(
        tokend: RunningTokend, queries: list[Query], unary_answers: dict[Query, Any],
        kind: str) -> None:
    before = rpc_counts(tokend)
    if kind == "sync":
        got = await asyncio.to_thread(crowd_sync, tokend.grpc_addr, queries)
    else:
        got = await crowd_async(tokend.grpc_addr, queries)
    assert got == [unary_answers[query] for query in queries]

    def all_counted(counts: dict[str, float]) -> bool:
        return delta(before, counts, "VerifyMany") > 0
    after = settled_counts(tokend, all_counted)
    many, unary = delta(before, after, "VerifyMany"), delta(before, after, "Verify")
    assert many > 0, "no VerifyMany reached tokend"
    assert many + unary < CALLS


async def test_verify_many_equals_unary_answers(
        tokend: RunningTokend, queries: list[Query], unary_answers: dict[Query, Any]) -> None:
    many = [VerifyQuery(t, a, required_scopes=s) for t, a, s in queries]
    # 256 requests or 60 KiB per VerifyMany, whichever comes first.
    rpcs = len(list(chunks(many_requests(many))))
    before = rpc_counts(tokend)
    async with AsyncTokenClient.insecure_loopback(tokend.grpc_addr) as client:
        got = await client.verify_many(many)
    assert [answer(value) for value in got] == [unary_answers[query] for query in queries]
    after = settled_counts(tokend, lambda c: delta(before, c, "VerifyMany") >= rpcs)
    assert (delta(before, after, "VerifyMany"), delta(before, after, "Verify")) == (rpcs, 0)
    assert rpcs < len(queries) / 50


def test_a_lone_call_stays_a_unary_verify(tokend: RunningTokend,
                                          queries: list[Query]) -> None:
    with TokenClient.insecure_loopback(tokend.grpc_addr) as client:
        before = rpc_counts(tokend)
        assert client.verify(queries[0][0], "orders").valid
        settled_counts(tokend, lambda c: delta(before, c, "Verify") >= 1)
        time.sleep(0.2)  # nothing else arrives late
        after = rpc_counts(tokend)
    assert (delta(before, after, "Verify"), delta(before, after, "VerifyMany")) == (1, 0)
