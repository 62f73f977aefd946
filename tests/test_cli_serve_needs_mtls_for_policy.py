"""Issue 13 item 2: `tokend serve` with a policy file but no client CA must not start.

Without client certificates every caller is the same anonymous identity, so the policy
would guard nothing and the Watch streams would be open to whoever reaches the port.
Real `tokend serve` processes against the session's OpenBao.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import yaml

from tests.support.bao import BaoDevServer
from tests.support.logs import log_tail
from tests.support.pki import TestCA
from tests.support.tokend import free_port
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

LOCAL_POLICY = """\
callers:
  - local: tokend-local
    rpcs: [Issue]
    issue: {audiences: ["orders"]}
"""
# In the form every tokend version accepts, so the test shows the old behaviour too.
SPIFFE_POLICY = """\
callers:
  - identity: "spiffe://test/ns/checkout/sa/checkout"
    rpcs: [Issue, Revoke]
    issue: {audiences: ["orders"]}
"""


def write_config(directory: Path, bao: BaoDevServer, policy: str, **settings: Any) -> Path:
    (directory / "policy.yaml").write_text(policy)
    config = {
        "grpc_listen": f"127.0.0.1:{free_port()}", "http_listen": f"127.0.0.1:{free_port()}",
        "store_url": f"sqlite:///{directory / 'tokend.db'}",
        "policy_file": str(directory / "policy.yaml"), "audit_log": str(directory / "audit.log"),
        "vault": {"addr": bao.addr, "token": bao.token, "key_name": "serve-policy",
                  "create_key": True},
        **settings,
    }
    path = directory / "tokend.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKEND_", "VAULT_"))}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "tokend.cli", "serve", "--config",
                                 str(config)], stdout=out, stderr=out, env=env)


def test_policy_without_client_ca_refuses_to_start(bao: BaoDevServer, tmp_path: Path) -> None:
    server = TestCA(tmp_path / "pki").server()
    config = write_config(tmp_path, bao, SPIFFE_POLICY, tls={"cert_file": str(server.cert_file),
                                              "key_file": str(server.key_file)})
    log = tmp_path / "serve.log"
    process = serve(config, log)
    try:
        code = process.wait(30)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        process.kill()
        process.wait(10)
    assert code is not None, "tokend serve kept running with a policy and no client CA"
    output = log.read_text()
    assert code == 2, output
    assert "tls.client_ca_file" in output and "policy_file" in output, output


def test_loopback_plaintext_with_a_policy_still_starts(bao: BaoDevServer,
                                                       tmp_path: Path) -> None:
    """Development: plaintext on loopback, every caller `local`; the policy applies."""
    config = write_config(tmp_path, bao, LOCAL_POLICY, insecure_plaintext=True)
    settings = yaml.safe_load(config.read_text())
    log = tmp_path / "serve.log"
    process = serve(config, log)
    try:
        wait_ready(f"http://{settings['http_listen']}/readyz", process, log)
        with grpc.insecure_channel(settings["grpc_listen"]) as channel:
            stub = tokend_pb2_grpc.TokenServiceStub(channel)
            issued = stub.Issue(pb.IssueRequest(subject="dev", audience=["orders"]), timeout=10)
            claims = stub.Verify(pb.VerifyRequest(token=issued.access_token,
                                                  audience="orders"), timeout=5).claims
            assert claims["client_id"] == "tokend-local"
            try:
                stub.Revoke(pb.RevokeRequest(jti=issued.jti), timeout=5)
                raise AssertionError("Revoke is not in the local entry")
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(30) == 0, log_tail(log, 20)
        finally:
            process.kill()


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(log_tail(log, 30))
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise AssertionError("tokend serve not ready within 60 s:\n" + log_tail(log, 30))
