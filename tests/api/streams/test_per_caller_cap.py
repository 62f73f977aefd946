"""Issue 13 item 13: one caller cannot starve the others' Watch streams.

A real tokend with mutual TLS and its default caps (streams.max_per_caller 100 per kind,
streams.max_total 1000): a greedy caller opens its 100 WatchJwks and 100
WatchRevocations streams, its next of each kind is RESOURCE_EXHAUSTED with a message
naming the setting, and another caller still gets both kinds of stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support.bao import BaoDevServer
from tests.support.pki import Issued, TestCA
from tests.support.tokend import RunningTokend, make_settings
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

pytestmark = pytest.mark.timeout(180)
MAX_PER_CALLER = 100  # the default of streams.max_per_caller


class Pki:
    def __init__(self, directory: Path) -> None:
        self.ca = TestCA(directory)
        self.server = self.ca.server()
        self.greedy = self.ca.client("greedy", spiffe="spiffe://test/ns/a/sa/greedy")
        self.other = self.ca.client("other", dns=("other.test",))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server(bao: BaoDevServer, pki: Pki, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningTokend]:
    settings = make_settings(
        bao.addr, bao.token, tmp_path_factory.mktemp("cap"), vault={"key_name": "stream-cap"},
        insecure_plaintext=False,
        tls={"cert_file": pki.server.cert_file, "key_file": pki.server.key_file,
             "client_ca_file": pki.ca.cert_file})
    assert settings.streams.max_per_caller == MAX_PER_CALLER
    with RunningTokend(settings, tls_client=(pki.ca.cert_file, pki.greedy)) as running:
        yield running


def channel_for(server: RunningTokend, pki: Pki, who: Issued) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert_file.read_bytes(),
        private_key=who.key_file.read_bytes(), certificate_chain=who.cert_file.read_bytes())
    return grpc.aio.secure_channel(server.grpc_addr, credentials)


def open_stream(stub: tokend_pb2_grpc.TokenServiceStub, kind: str) -> Any:
    if kind == "jwks":
        return stub.WatchJwks(pb.WatchJwksRequest())
    return stub.WatchRevocations(pb.WatchRevocationsRequest())


async def first_message(call: Any) -> Any:
    async with asyncio.timeout(20):
        return await call.read()


@pytest.mark.parametrize("kind", ["jwks", "revocations"])
async def test_one_caller_cannot_take_every_stream(server: RunningTokend, pki: Pki,
                                                   kind: str) -> None:
    greedy_channel = channel_for(server, pki, pki.greedy)
    other_channel = channel_for(server, pki, pki.other)
    greedy = tokend_pb2_grpc.TokenServiceStub(greedy_channel)
    other = tokend_pb2_grpc.TokenServiceStub(other_channel)
    held = [open_stream(greedy, kind) for _ in range(MAX_PER_CALLER)]
    try:
        for message in await asyncio.gather(*(first_message(c) for c in held)):
            assert message is not grpc.aio.EOF
        refused = open_stream(greedy, kind)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await first_message(refused)
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "spiffe://test/ns/a/sa/greedy" in (info.value.details() or "")
        assert "streams.max_per_caller" in (info.value.details() or "")
        # Another identity is not starved.
        theirs = open_stream(other, kind)
        assert await first_message(theirs) is not grpc.aio.EOF
        theirs.cancel()
        # A greedy stream closed frees one of its places again.
        held.pop().cancel()
        async with asyncio.timeout(10):
            while True:
                again = open_stream(greedy, kind)
                try:
                    await first_message(again)
                    held.append(again)
                    break
                except grpc.aio.AioRpcError as error:  # the server may not have seen it yet
                    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                    await asyncio.sleep(0.05)
    finally:
        for call in held:
            call.cancel()
        await greedy_channel.close()
        await other_channel.close()
