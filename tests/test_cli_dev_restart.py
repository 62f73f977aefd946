"""`tokend dev` as a user runs it: a real process with its own OpenBao; state survives a restart."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from tests.support.tokend import free_port
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc


@contextmanager
def dev_server(data_dir: Path, ports: dict[str, int]) -> Iterator[tokend_pb2_grpc.TokenServiceStub]:
    log = (data_dir.parent / "dev.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "tokend.cli", "dev", "--data-dir", str(data_dir),
         "--grpc-listen", f"127.0.0.1:{ports['grpc']}", "--http-listen",
         f"127.0.0.1:{ports['http']}", "--vault-port", str(ports["vault"])],
        stdout=log, stderr=log,
    )
    try:
        wait_ready(f"http://127.0.0.1:{ports['http']}/readyz", process, data_dir)
        with grpc.insecure_channel(f"127.0.0.1:{ports['grpc']}") as channel:
            yield tokend_pb2_grpc.TokenServiceStub(channel)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(30) == 0
        finally:
            process.kill()
            log.close()


def wait_ready(url: str, process: subprocess.Popen[bytes], data_dir: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError((data_dir.parent / "dev.log").read_text()[-3000:])
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise AssertionError("tokend dev not ready within 60 s")


def test_dev_state_survives_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    vault = free_port()
    ports = {"grpc": free_port(), "http": free_port(), "vault": vault}
    request = pb.IssueRequest(subject="alice", audience=["orders"], include_refresh_token=True)
    with dev_server(data_dir, ports) as stub:
        jwks = stub.GetJwks(pb.GetJwksRequest(), timeout=5).jwks_json
        revoked = stub.Issue(request, timeout=10)
        kept = stub.Issue(request, timeout=10)
        stub.Revoke(pb.RevokeRequest(jti=revoked.jti), timeout=10)

    assert (data_dir / "openbao" / "seal.key").stat().st_mode & 0o077 == 0
    with dev_server(data_dir, ports) as stub:
        assert stub.GetJwks(pb.GetJwksRequest(), timeout=5).jwks_json == jwks
        check = pb.VerifyRequest(audience="orders")
        check.token = revoked.access_token
        assert stub.Verify(check, timeout=5).reason == pb.REASON_REVOKED
        check.token = kept.access_token
        assert stub.Verify(check, timeout=5).valid
        fresh = stub.Refresh(pb.RefreshRequest(refresh_token=kept.refresh_token), timeout=10)
        header = fresh.access_token.split(".")[0]
        kid = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
        assert kid == json.loads(jwks)["keys"][0]["kid"]  # same Transit key after restart
        check.token = fresh.access_token
        assert stub.Verify(check, timeout=5).valid
