"""WatchRevocations and WatchJwks on real tokend processes: mutual TLS, the caller policy,
the audit trail, two replicas on one store, and shutdown."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support.bao import BaoDevServer
from tests.support.logs import read_jsonl
from tests.support.pki import Issued, TestCA
from tests.support.tokend import RunningTokend, make_settings
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

ADMIN = "spiffe://tokend.test/admin"
POLICY = f"""\
callers:
  - identity: "{ADMIN}"
    rpcs: [Issue, Revoke]
    issue: {{audiences: ["orders"]}}
"""


class Cluster:
    """Two tokend replicas on one SQLite store and one Transit key, with mutual TLS."""

    def __init__(self, directory: Path) -> None:
        self.ca = TestCA(directory / "pki")
        self.server_cert = self.ca.server()
        self.admin = self.ca.client("admin", spiffe=ADMIN)
        # Authenticated (the CA signed it) but named nowhere in the policy file.
        self.backend = self.ca.client("backend", spiffe="spiffe://tokend.test/backend")
        self.replicas: list[RunningTokend] = []
        self._channels: list[grpc.Channel] = []

    def stub(self, replica: RunningTokend, who: Issued) -> tokend_pb2_grpc.TokenServiceStub:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca.cert_file.read_bytes(),
            private_key=who.key_file.read_bytes(),
            certificate_chain=who.cert_file.read_bytes())
        channel = grpc.secure_channel(replica.grpc_addr, credentials)
        self._channels.append(channel)
        return tokend_pb2_grpc.TokenServiceStub(channel)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()


@pytest.fixture(scope="module")
def cluster(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("streams")
    cluster = Cluster(directory)
    (directory / "policy.yaml").write_text(POLICY)
    with ExitStack() as stack:
        for name in ("a", "b"):
            settings = make_settings(
                bao.addr, bao.token, directory, vault={"key_name": "streams"},
                insecure_plaintext=False, policy_file=directory / "policy.yaml",
                audit_log=str(directory / f"audit-{name}.log"),
                tls={"cert_file": cluster.server_cert.cert_file,
                     "key_file": cluster.server_cert.key_file,
                     "client_ca_file": cluster.ca.cert_file})
            cluster.replicas.append(stack.enter_context(RunningTokend(settings)))
        stack.callback(cluster.close)
        yield cluster


class Collector:
    """Reads a server stream in a thread, noting when each message arrived."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.messages: list[tuple[float, Any]] = []
        self.error: grpc.RpcError | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for message in self.call:
                self.messages.append((time.monotonic(), message))
        except grpc.RpcError as exc:
            self.error = exc

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> tuple[float, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for arrived, message in list(self.messages):
                if predicate(message):
                    return arrived, message
            time.sleep(0.005)
        raise AssertionError(f"no matching message within {timeout} s (error: {self.error})")

    def wait_ended(self, timeout: float) -> grpc.RpcError:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the stream did not end"
        assert self.error is not None
        return self.error


def test_streams_are_open_to_every_authenticated_caller(cluster: Cluster) -> None:
    replica = cluster.replicas[0]
    backend = cluster.stub(replica, cluster.backend)
    with pytest.raises(grpc.RpcError) as denied:
        backend.Revoke(pb.RevokeRequest(jti="x"), timeout=5)
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    jwks = Collector(backend.WatchJwks(pb.WatchJwksRequest()))
    _, first = jwks.wait_for(lambda event: True)
    assert first.jwks_json == backend.GetJwks(pb.GetJwksRequest(), timeout=5).jwks_json
    assert json.loads(first.jwks_json)["keys"]
    feed = Collector(backend.WatchRevocations(pb.WatchRevocationsRequest(),
                                              metadata=[("x-request-id", "watch-123")]))
    feed.wait_for(lambda event: event.checkpoint)
    feed.call.cancel()
    jwks.call.cancel()
    audit = Path(replica.settings.audit_log)
    deadline = time.monotonic() + 5
    while '"rpc.WatchRevocations"' not in audit.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = read_jsonl(audit)
    (watched,) = [line for line in lines if line.get("request_id") == "watch-123"]
    assert watched["event"] == "rpc.WatchRevocations"
    assert watched["caller"] == "spiffe://tokend.test/backend"
    assert watched["from_sequence"] == 0


def test_unauthenticated_callers_get_no_stream(cluster: Cluster) -> None:
    stranger_ca = TestCA(cluster.ca.directory.parent / "stranger-ca", name="stranger CA")
    stranger = stranger_ca.client("stranger", spiffe="spiffe://tokend.test/backend")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=cluster.ca.cert_file.read_bytes(),
        private_key=stranger.key_file.read_bytes(),
        certificate_chain=stranger.cert_file.read_bytes())
    with grpc.secure_channel(cluster.replicas[0].grpc_addr, credentials) as channel:
        stub = tokend_pb2_grpc.TokenServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            next(iter(stub.WatchRevocations(pb.WatchRevocationsRequest(), timeout=5)))
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE  # the handshake fails


def test_a_revocation_through_a_reaches_b_within_a_second(cluster: Cluster) -> None:
    a, b = cluster.replicas
    admin_a = cluster.stub(a, cluster.admin)
    backend_b = cluster.stub(b, cluster.backend)
    token = admin_a.Issue(pb.IssueRequest(subject="carol", audience=["orders"]), timeout=10)
    feed = Collector(backend_b.WatchRevocations(pb.WatchRevocationsRequest()))
    _, synced = feed.wait_for(lambda event: event.checkpoint)

    started = time.monotonic()
    admin_a.Revoke(pb.RevokeRequest(subject="carol", reason="test"), timeout=10)
    arrived, event = feed.wait_for(lambda event: event.kind == "subject")
    assert arrived - started < 1.0
    assert event.value == "carol" and event.sequence > synced.sequence
    assert event.not_before.seconds >= int(time.time()) - 5
    check = pb.VerifyRequest(token=token.access_token, audience="orders")
    while backend_b.Verify(check, timeout=5).reason != pb.REASON_REVOKED:
        assert time.monotonic() - started < 1.0, "replica b still accepts the token"
        time.sleep(0.02)
    feed.call.cancel()


def test_stopping_ends_streams_at_once(bao: BaoDevServer, tmp_path: Path) -> None:
    settings = make_settings(bao.addr, bao.token, tmp_path, vault={"key_name": "streams"})
    with RunningTokend(settings) as replica:
        assert replica.channel is not None
        feed = Collector(replica.stub.WatchRevocations(pb.WatchRevocationsRequest()))
        jwks = Collector(replica.stub.WatchJwks(pb.WatchJwksRequest()))
        feed.wait_for(lambda event: event.checkpoint)
        jwks.wait_for(lambda event: True)
        started = time.monotonic()
        replica.run(replica.app.stop(grace=10))
        assert time.monotonic() - started < 3  # not the whole grace period
        for collector in (feed, jwks):
            assert collector.wait_ended(2).code() is grpc.StatusCode.UNAVAILABLE
