"""The standard gRPC server metrics on /metrics (issue 15): go-grpc-prometheus names and
labels, and the OpenTelemetry RPC histogram, for unary calls that succeed and fail,
server streams, Health, and calls refused before they ran."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.support.bao import BaoDevServer
from tests.support.tokend import RunningTokend, make_settings
from tokend_client.v1 import tokend_pb2 as pb

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
SERVICE = "tokend.v1.TokenService"
HEALTH = "grpc.health.v1.Health"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
Calls = tuple[Samples, Samples, Samples, dict[str, str]]


@pytest.fixture(scope="module")
def tokend(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningTokend]:
    # Issue allows 3 calls, then RESOURCE_EXHAUSTED: refused at admission, before it ran.
    settings = make_settings(bao.addr, bao.token, tmp_path_factory.mktemp("standard"),
                             vault={"key_name": "standard-metrics"},
                             rate_limit={"per_second": 0.001, "burst": 3})
    with RunningTokend(settings) as server:
        yield server


def scrape(tokend: RunningTokend) -> tuple[Samples, dict[str, str]]:
    """{(sample name, sorted labels): value}, and each family's type."""
    with _HTTP.open(tokend.http_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    families = list(text_string_to_metric_families(text))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in families for s in family.samples}
    return samples, {family.name: family.type for family in families}


def labels(kind: str, service: str, method: str, **more: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"grpc_type": kind, "grpc_service": service, "grpc_method": method,
                         **more}.items()))


def delta(before: Samples, after: Samples, name: str, key: tuple[tuple[str, str], ...]
          ) -> float:
    return after.get((name, key), 0.0) - before.get((name, key), 0.0)


@pytest.fixture(scope="module")
def calls(tokend: RunningTokend) -> Calls:
    """Scrapes before, during (streams open) and after: 2 Verify OK, 1 Verify
    INVALID_ARGUMENT, 3 Issue OK and 2 refused, a WatchJwks stream read for 1 message,
    2 Health/Check, 1 Health/Watch, 1 reflection stream of 2 requests and answers."""
    before, _ = scrape(tokend)
    stub = tokend.stub
    token = stub.Issue(pb.IssueRequest(subject="alice", audience=["orders"])).access_token
    for _ in range(2):
        assert stub.Verify(pb.VerifyRequest(token=token, audience="orders")).valid
    with pytest.raises(grpc.RpcError) as bad:
        stub.Verify(pb.VerifyRequest(token="", audience="orders"))
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    for _ in range(2):
        stub.Issue(pb.IssueRequest(subject="alice", audience=["orders"]))
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as refused:
            stub.Issue(pb.IssueRequest(subject="alice", audience=["orders"]))
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    stream = stub.WatchJwks(pb.WatchJwksRequest())
    next(stream)  # the key set: one message sent
    health = health_pb2_grpc.HealthStub(tokend.channel)
    for _ in range(2):
        health.Check(health_pb2.HealthCheckRequest(service=""))
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
    next(watch)
    watch.cancel()
    reflection = reflection_pb2_grpc.ServerReflectionStub(tokend.channel)
    asked = iter([reflection_pb2.ServerReflectionRequest(list_services="")] * 2)
    assert len(list(reflection.ServerReflectionInfo(asked))) == 2
    # The stream is started and has sent one message: visible while it still runs.
    during, _ = scrape(tokend)
    stream.cancel()
    tokend.run(_settle())
    after, types = scrape(tokend)
    return before, during, after, types


async def _settle() -> None:
    """Lets the server see the cancelled streams end."""
    await asyncio.sleep(0.3)


def test_handled_by_code_with_go_code_names(calls: Calls) -> None:
    before, _, after, types = calls
    handled = "grpc_server_handled_total"
    assert types["grpc_server_handled"] == "counter"
    expected = {
        ("unary", SERVICE, "Verify", "OK"): 2,
        ("unary", SERVICE, "Verify", "InvalidArgument"): 1,
        ("unary", SERVICE, "Issue", "OK"): 3,
        ("unary", SERVICE, "Issue", "ResourceExhausted"): 2,
        ("unary", HEALTH, "Check", "OK"): 2,
    }
    for (kind, service, method, code), count in expected.items():
        key = labels(kind, service, method, grpc_code=code)
        assert delta(before, after, handled, key) == count, key
    # Streams are handled when they end: TokenService's streams treat the client's cancel
    # as their normal end (OK, as their audit line), Health/Watch reports it as gRPC does.
    assert delta(before, after, handled, labels("server_stream", SERVICE, "WatchJwks",
                                                grpc_code="OK")) == 1
    assert delta(before, after, handled, labels("server_stream", HEALTH, "Watch",
                                                grpc_code="Canceled")) == 1

def test_started_received_sent(calls: Calls) -> None:
    before, during, after, _ = calls
    verify = labels("unary", SERVICE, "Verify")
    issue = labels("unary", SERVICE, "Issue")
    stream = labels("server_stream", SERVICE, "WatchJwks")
    check = labels("unary", HEALTH, "Check")
    for name, key, count in (
        ("grpc_server_started_total", verify, 3),
        ("grpc_server_msg_received_total", verify, 3),
        ("grpc_server_msg_sent_total", verify, 2),  # an error sends no message
        ("grpc_server_started_total", issue, 5),
        ("grpc_server_msg_sent_total", issue, 3),
        ("grpc_server_started_total", check, 2),
        ("grpc_server_msg_sent_total", check, 2),
    ):
        assert delta(before, after, name, key) == count, (name, key)
    # A stream counts as started while it runs, and each message it sends.
    assert delta(before, during, "grpc_server_started_total", stream) == 1
    assert delta(before, during, "grpc_server_msg_received_total", stream) == 1
    assert delta(before, during, "grpc_server_msg_sent_total", stream) >= 1
    watch = labels("server_stream", HEALTH, "Watch")
    assert delta(before, during, "grpc_server_msg_sent_total", watch) >= 1
    bidi = labels("bidi_stream", REFLECTION, "ServerReflectionInfo")
    for name in ("grpc_server_msg_received_total", "grpc_server_msg_sent_total"):
        assert delta(before, after, name, bidi) == 2, name
    assert delta(before, after, "grpc_server_started_total", bidi) == 1
    assert delta(before, after, "grpc_server_handled_total",
                 labels("bidi_stream", REFLECTION, "ServerReflectionInfo", grpc_code="OK")) == 1


def test_handling_histogram_and_otel_duration(calls: Calls) -> None:
    before, _, after, types = calls
    assert types["grpc_server_handling_seconds"] == "histogram"
    assert types["rpc_server_duration_milliseconds"] == "histogram"
    verify = labels("unary", SERVICE, "Verify")
    assert delta(before, after, "grpc_server_handling_seconds_count", verify) == 3
    inf = tuple(sorted((*verify, ("le", "+Inf"))))
    assert delta(before, after, "grpc_server_handling_seconds_bucket", inf) == 3
    assert delta(before, after, "grpc_server_handling_seconds_sum", verify) > 0
    otel = tuple(sorted({"rpc_system": "grpc", "rpc_service": SERVICE, "rpc_method": "Verify",
                         "rpc_grpc_status_code": "3"}.items()))  # 3: INVALID_ARGUMENT
    assert delta(before, after, "rpc_server_duration_milliseconds_count", otel) == 1
    buckets = sorted(float(dict(k)["le"]) for name, k in after
                     if name == "rpc_server_duration_milliseconds_bucket"
                     and dict(k)["rpc_method"] == "Verify")
    assert buckets[0] == 0.5 and 2500.0 in buckets  # tokend's buckets, in milliseconds


def test_tokend_metrics_stay_and_sources_stay_hidden(calls: Calls) -> None:
    _, _, after, types = calls
    assert types["tokend_rpc_duration_seconds"] == "histogram"
    assert ("tokend_rpc_duration_seconds_count",
            (("code", "OK"), ("method", "Verify"))) in after
    assert not any(name.startswith("tokend_grpc_") for name, _ in after)

