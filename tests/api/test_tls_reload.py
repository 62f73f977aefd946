"""Issue 13 item 3: a bad certificate, key or CA file on disk is never hot-loaded.

A running mutual-TLS tokend serves copies of its files; each test breaks one in place
(as a botched rotation would), checks that new connections are still served with the
previous material, that `tokend_tls_reload_rejected` is raised and an error logged
(without the file's content), then puts the good file back and sees it reloaded.
"""

from __future__ import annotations

import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import structlog
from cryptography import x509

from tests.support.bao import BaoDevServer
from tests.support.pki import Issued, TestCA
from tests.support.tokend import RunningTokend, make_settings
from tokend.api.tls import TlsMaterialError, load_material
from tokend.config import TlsConfig
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

POLICY = """\
callers:
  - identity: "spiffe://test/ns/app/sa/api"
    rpcs: [Issue]
    issue: {audiences: ["api"]}
"""


class Files:
    def __init__(self, directory: Path) -> None:
        self.ca = TestCA(directory / "ca")
        self.other_ca = TestCA(directory / "other", name="other CA")
        self.client = self.ca.client("api", spiffe="spiffe://test/ns/app/sa/api")
        server = self.ca.server()
        self.serving = directory / "serving"
        self.serving.mkdir()
        self.cert = shutil.copy(server.cert_file, self.serving / "tls.crt")
        self.key = shutil.copy(server.key_file, self.serving / "tls.key")
        self.client_ca = shutil.copy(self.ca.cert_file, self.serving / "ca.crt")
        self.good = {p: p.read_bytes() for p in (self.cert, self.key, self.client_ca)}
        # Bad replacements: another server's key, an expired server certificate.
        self.stray = self.other_ca.server("stray")
        expired = self.ca.client("expired-server", dns=("localhost",), expired=True)
        self.expired = expired


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    return Files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def server(bao: BaoDevServer, files: Files, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningTokend]:
    directory = tmp_path_factory.mktemp("tls-reload")
    (directory / "policy.yaml").write_text(POLICY)
    settings = make_settings(
        bao.addr, bao.token, directory, vault={"key_name": "tls-reload"},
        insecure_plaintext=False, policy_file=directory / "policy.yaml",
        tls={"cert_file": files.cert, "key_file": files.key, "client_ca_file": files.client_ca})
    with RunningTokend(settings, tls_client=(files.ca.cert_file, files.client)) as running:
        yield running


def fresh_stub(server: RunningTokend, ca: Path, client: Issued
               ) -> tuple[grpc.Channel, tokend_pb2_grpc.TokenServiceStub]:
    """A new connection (its own subchannel pool), so a new handshake."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(), private_key=client.key_file.read_bytes(),
        certificate_chain=client.cert_file.read_bytes())
    channel = grpc.secure_channel(server.grpc_addr, credentials,
                                  options=[("grpc.use_local_subchannel_pool", 1)])
    return channel, tokend_pb2_grpc.TokenServiceStub(channel)


def served(server: RunningTokend, files: Files) -> bool:
    channel, stub = fresh_stub(server, files.ca.cert_file, files.client)
    with channel:
        issued = stub.Issue(pb.IssueRequest(subject="s", audience=["api"]), timeout=5)
        return bool(issued.jti)


def metric(server: RunningTokend, name: str) -> float:
    with urllib.request.urlopen(server.http_url + "/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not exported"
    return float(match.group(1))


def replace(path: Path, content: bytes) -> None:
    time.sleep(0.01)  # a distinct mtime on coarse filesystems
    path.write_bytes(content)


BREAKAGES = {
    "empty client CA": ("client_ca", lambda f: b"", "tls.client_ca_file"),
    "garbage client CA": ("client_ca", lambda f: b"-----BEGIN CERTIFICATE-----\nnot base64!\n"
                          b"-----END CERTIFICATE-----\n", "tls.client_ca_file"),
    "key of another certificate": ("key", lambda f: f.stray.key_file.read_bytes(),
                                   "does not match"),
    "expired certificate": ("cert", lambda f: f.expired.cert_file.read_bytes(), "expired"),
    "empty certificate": ("cert", lambda f: b"", "tls.cert_file"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_bad_material_is_not_hot_loaded(server: RunningTokend, files: Files,
                                        breakage: str) -> None:
    attribute, bad, needle = BREAKAGES[breakage]
    path: Path = getattr(files, attribute)
    assert served(server, files)
    failures = metric(server, "tokend_tls_reload_failures_total")
    with structlog.testing.capture_logs() as logs:
        replace(path, bad(files))
        assert served(server, files), "callers must still be served with the old material"
        assert served(server, files)  # and again: refused once, not re-read per handshake
    assert metric(server, "tokend_tls_reload_rejected") == 1
    assert metric(server, "tokend_tls_reload_failures_total") == failures + 1
    (event,) = [e for e in logs if e["event"] == "tls.reload_rejected"]
    assert event["log_level"] == "error" and needle in event["error"]
    assert "PRIVATE KEY" not in str(event) and "BEGIN" not in str(event)
    # Good files again: reloaded, the alert clears.
    with structlog.testing.capture_logs() as logs:
        replace(path, files.good[path])
        assert served(server, files)
    assert [e["event"] for e in logs].count("tls.reloaded") == 1
    assert metric(server, "tokend_tls_reload_rejected") == 0


def test_a_bad_file_at_start_is_a_configuration_error(files: Files) -> None:
    tls = TlsConfig(cert_file=files.cert, key_file=files.stray.key_file,
                    client_ca_file=files.client_ca)
    with pytest.raises(TlsMaterialError, match="does not match"):
        load_material(tls)


def test_the_serving_certificates_expiry_is_exported(server: RunningTokend,
                                                    files: Files) -> None:
    # The certificate-expiry alert reads it: the leaf that serves, not the CA.
    leaf = x509.load_pem_x509_certificate(files.good[files.cert])
    expiry = metric(server, "tokend_tls_certificate_expiry_timestamp_seconds")
    assert expiry == leaf.not_valid_after_utc.timestamp()
