"""Keepalive enforcement (grpc.min_client_ping_interval, no pings without calls): a client
pinging within the policy keeps its Watch stream; one pinging faster, or pinging with no
call open, gets GOAWAY too_many_pings. tokend runs with a 2 s minimum here (default 30 s;
the tokend clients ping every 60 s during calls only). A grpc-core client never pings more
than once a second, hence the scale."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from tests.support.bao import BaoDevServer
from tests.support.tokend import RunningTokend, make_settings
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

MINIMUM = 2  # seconds: grpc.min_client_ping_interval
# Seconds a stream is watched: room for four pings 2.2 s apart, so that grpc's default
# policy (5 min) would have ended the stream within it after its three strikes.
WATCH_FOR = 12.0


@pytest.fixture(scope="module")
def tokend(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningTokend]:
    settings = make_settings(bao.addr, bao.token, tmp_path_factory.mktemp("pings"),
                             vault={"key_name": "ping-policy"},
                             grpc={"min_client_ping_interval": MINIMUM})
    with RunningTokend(settings) as server:
        yield server


def pinging_channel(target: str, every_ms: int, *, without_calls: bool) -> grpc.Channel:
    return grpc.insecure_channel(target, options=[
        ("grpc.keepalive_time_ms", every_ms),
        ("grpc.keepalive_permit_without_calls", int(without_calls)),
        ("grpc.http2.max_pings_without_data", 0),  # keep pinging: no data flows here
    ])


def stream_error_within(channel: grpc.Channel, seconds: float) -> grpc.RpcError | None:
    """Open WatchJwks, read its first event, and return the error that ends it within
    ``seconds`` (None: still open then)."""
    stream = tokend_pb2_grpc.TokenServiceStub(channel).WatchJwks(pb.WatchJwksRequest())
    ended: list[grpc.RpcError] = []
    assert next(stream).jwks_json

    def drain() -> None:
        try:
            for _ in stream:
                pass
        except grpc.RpcError as exc:
            ended.append(exc)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    reader.join(seconds)
    stream.cancel()
    reader.join(5)
    error = ended[0] if ended else None
    return None if error is not None and error.code() is grpc.StatusCode.CANCELLED else error


def test_pings_within_the_minimum_keep_the_stream(tokend: RunningTokend) -> None:
    with pinging_channel(tokend.grpc_addr, 2200, without_calls=False) as channel:
        assert stream_error_within(channel, WATCH_FOR) is None


def test_pings_faster_than_the_minimum_get_goaway(tokend: RunningTokend) -> None:
    with pinging_channel(tokend.grpc_addr, 1000, without_calls=False) as channel:
        error = stream_error_within(channel, WATCH_FOR)
    assert error is not None and error.code() is grpc.StatusCode.UNAVAILABLE, error


def test_pings_with_no_call_open_get_goaway(tokend: RunningTokend) -> None:
    states: list[grpc.ChannelConnectivity] = []
    with pinging_channel(tokend.grpc_addr, 1500, without_calls=True) as channel:
        grpc.channel_ready_future(channel).result(timeout=5)
        channel.subscribe(states.append)
        deadline = time.monotonic() + 3 * 1.5 + 3
        while time.monotonic() < deadline and states[-1:] != [grpc.ChannelConnectivity.IDLE]:
            time.sleep(0.1)
        channel.unsubscribe(states.append)
    # READY, then the GOAWAY: the connection is gone (IDLE until the next call).
    assert states[0] is grpc.ChannelConnectivity.READY
    assert grpc.ChannelConnectivity.IDLE in states, states
