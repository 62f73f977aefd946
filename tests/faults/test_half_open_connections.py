"""Silent (half-open) connections must not take tokend down: a `tokend serve` process with
mutual TLS and a small open-files limit gets hundreds of connections that never say a
word on both ports; legitimate Verify, JWKS and health calls still answer promptly, and
the silent connections are closed after the header/handshake timeout. (issue 13, item 12)
"""

from __future__ import annotations

import contextlib
import resource
import socket
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.faults.procs import TokendProcess, replica_config
from tests.support.bao import BaoDevServer
from tests.support.pki import Issued, TestCA
from tests.support.tokend import RunningTokend, make_settings
from tokend_client.v1 import tokend_pb2 as pb

# The process may hold this many descriptors: fewer than the silent connections below.
NOFILE = 400
SILENT_PER_PORT = 300
CAP = 100  # http.max_connections and grpc.max_connections
TIMEOUT = 2.0  # http.request_timeout and grpc.handshake_timeout
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class MtlsTokend(TokendProcess):
    """A `tokend serve` process whose test channel uses mutual TLS."""

    def __init__(self, config: dict, directory: Path, ca: TestCA, client: Issued) -> None:
        super().__init__(config, directory)
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=ca.cert_file.read_bytes(),
            private_key=client.key_file.read_bytes(),
            certificate_chain=client.cert_file.read_bytes())

    def start(self) -> MtlsTokend:
        super().start()
        assert self._channel is not None
        self._channel.close()
        self._channel = self.new_channel()
        return self

    def new_channel(self) -> grpc.Channel:
        return grpc.secure_channel(self.grpc_addr, self._credentials)


@pytest.fixture
def tokend(bao: BaoDevServer, tmp_path: Path) -> Iterator[MtlsTokend]:
    ca = TestCA(tmp_path / "pki")
    server = ca.server()
    config = replica_config(
        bao.addr, bao.token, f"sqlite:///{tmp_path / 'tokend.db'}", "half-open",
        insecure_plaintext=False,
        tls={"cert_file": str(server.cert_file), "key_file": str(server.key_file),
             "client_ca_file": str(ca.cert_file)},
        http={"max_connections": CAP, "request_timeout": TIMEOUT},
        grpc={"max_connections": CAP, "handshake_timeout": TIMEOUT},
    )
    with MtlsTokend(config, tmp_path / "run", ca, ca.client("client")) as running:
        yield running


@contextlib.contextmanager
def silent_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` TCP connections to `port` that never send a byte."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def still_open(sockets: list[socket.socket]) -> int:
    """How many of `sockets` the server has neither closed nor reset."""
    count = 0
    for sock in sockets:
        try:
            while sock.recv(65536):  # the server never sends these anything but EOF
                pass
        except BlockingIOError:
            count += 1
        except OSError:
            pass  # reset or never established: closed either way
    return count


def http_status(tokend: MtlsTokend, path: str) -> int:
    with _HTTP.open(tokend.http_url + path, timeout=5) as response:
        return response.status


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def timed(call: object) -> tuple[object, float]:
    started = time.monotonic()
    result = call()  # type: ignore[operator]
    return result, time.monotonic() - started


def test_silent_connections_neither_starve_nor_linger(tokend: MtlsTokend) -> None:
    assert tokend.pid is not None
    verify = pb.VerifyRequest(token="not-a-token", audience="orders")
    assert tokend.stub.Verify(verify, timeout=5).valid is False  # answered
    # Lower the process's open-files limit below what the silent connections would take.
    resource.prlimit(tokend.pid, resource.RLIMIT_NOFILE, (NOFILE, NOFILE))

    http_port, grpc_port = port_of(tokend.http_url), port_of(tokend.grpc_addr)
    with silent_connections(http_port, SILENT_PER_PORT) as web_silent, \
            silent_connections(grpc_port, SILENT_PER_PORT) as grpc_silent:
        time.sleep(0.5)  # the server has accepted what it will accept

        # An existing channel keeps working, at once.
        answer, took = timed(lambda: tokend.stub.Verify(verify, timeout=5))
        assert answer.valid is False and took < 1.0  # type: ignore[attr-defined]
        # New HTTP connections get in: the oldest silent one makes room.
        for path in ("/.well-known/jwks.json", "/healthz"):
            status, took = timed(lambda path=path: http_status(tokend, path))
            assert status == 200 and took < 2.0, (path, took)
        # A new gRPC connection gets in once the silent ones' handshake time is up.
        with tokend.new_channel() as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answer, took = timed(lambda: health.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT + 8,
                wait_for_ready=True))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING  # type: ignore[attr-defined]
            assert took < TIMEOUT + 5, took
            jwks = pb.GetJwksRequest()
            assert tokend.stub.GetJwks(jwks, timeout=5).jwks_json

        # Every silent connection is closed within the timeout (plus scheduling slack).
        deadline = time.monotonic() + TIMEOUT + 3
        while time.monotonic() < deadline and (still_open(web_silent) or
                                               still_open(grpc_silent)):
            time.sleep(0.2)
        assert still_open(web_silent) == 0
        assert still_open(grpc_silent) == 0

    # The process is healthy afterwards, with descriptors to spare.
    assert http_status(tokend, "/readyz") == 200
    assert tokend.metric('tokend_http_connections_shed_total{listener="public"}') >= (
        SILENT_PER_PORT - CAP)


@pytest.fixture
def tls_tokend(bao: BaoDevServer, tmp_path: Path) -> Iterator[tuple[RunningTokend, TestCA]]:
    """In process, mutual TLS, short timeouts."""
    ca = TestCA(tmp_path / "pki")
    server = ca.server()
    settings = make_settings(
        bao.addr, bao.token, tmp_path, insecure_plaintext=False,
        vault={"key_name": "slow-clients"},
        tls={"cert_file": server.cert_file, "key_file": server.key_file,
             "client_ca_file": ca.cert_file},
        http={"request_timeout": TIMEOUT}, grpc={"handshake_timeout": TIMEOUT})
    with RunningTokend(settings, tls_client=(ca.cert_file, ca.client("client"))) as running:
        yield running, ca


def closed_within(sock: socket.socket | ssl.SSLSocket, seconds: float,
                  trickle: bytes = b"") -> float | None:
    """Seconds until the server closed `sock`, sending `trickle` a byte at a time every
    0.25 s meanwhile (a slow client); None if it was still open after `seconds`."""
    started = time.monotonic()
    sock.settimeout(0.25)
    position = 0
    while time.monotonic() - started < seconds:
        try:
            if position < len(trickle):
                sock.sendall(trickle[position:position + 1])
                position += 1
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:  # reset, or a TLS alert on close
            return time.monotonic() - started
    return None


def test_a_slow_request_is_cut_off_at_the_header_timeout(
        tls_tokend: tuple[RunningTokend, TestCA]) -> None:
    """Slowloris: header bytes trickling in do not keep a connection open."""
    running, _ = tls_tokend
    port = port_of(running.http_url)
    headers = b"GET /healthz HTTP/1.1\r\nHost: tokend\r\n" + b"X-Slow: " + b"a" * 64
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        took = closed_within(sock, TIMEOUT + 3, trickle=headers)
    assert took is not None and took < TIMEOUT + 1.5, took


def test_a_tls_client_that_never_speaks_http2_is_cut_off(
        tls_tokend: tuple[RunningTokend, TestCA]) -> None:
    """The handshake timeout covers the HTTP/2 preface after the TLS handshake too."""
    running, ca = tls_tokend
    client = ca.client("silent")
    context = ssl.create_default_context(cafile=str(ca.cert_file))
    context.load_cert_chain(str(client.cert_file), str(client.key_file))
    context.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", port_of(running.grpc_addr)), timeout=5)
    with context.wrap_socket(raw, server_hostname="localhost") as sock:
        assert sock.version() is not None  # the TLS handshake is done
        took = closed_within(sock, TIMEOUT + 3)
    assert took is not None and took < TIMEOUT + 1.5, took
