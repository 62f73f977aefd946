"""Helpers for tokend against a real OpenBao with the login methods of production.

The policy tokend runs under is read from docs/vault.md, so the documentation is what
these tests prove.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import hvac
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.tokend import RunningTokend, make_settings
from tokend.app import App
from tokend.config import Settings
from tokend.vault.client import VaultError
from tokend.vault.session import VaultStatus
from tokend_client.v1 import tokend_pb2 as pb

DOC = Path(__file__).resolve().parents[2] / "docs" / "vault.md"
KEY = "tokend"  # the key name the documented policy names
POLICY = "tokend"
AUDIENCE = "orders"
# Loopback only: never let an http_proxy variable route test traffic elsewhere.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def doc_hcl_blocks() -> list[str]:
    """Every ```hcl block of docs/vault.md: the policy first, then its create variant."""
    return re.findall(r"```hcl\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


def write_doc_policy(client: hvac.Client, name: str = POLICY, key: str = KEY) -> None:
    """Load the documented policy, for `key` instead of the documented `tokend`."""
    text = doc_hcl_blocks()[0].replace("transit/keys/tokend", f"transit/keys/{key}")
    client.sys.create_or_update_policy(name, text.replace("transit/sign/tokend",
                                                          f"transit/sign/{key}"))


@dataclass(frozen=True)
class AppRole:
    role_id: str
    secret_id: str
    secret_id_file: Path

    def auth(self, **extra: Any) -> dict[str, Any]:
        """`vault.auth` settings that log in with this role (secret id from the file)."""
        return {"method": "approle", "role_id": self.role_id,
                "secret_id_file": self.secret_id_file, **extra}


def make_approle(client: hvac.Client, name: str, directory: Path, *,
                 policies: tuple[str, ...] = (POLICY,), **token: str) -> AppRole:
    """An AppRole holding exactly `policies` (no default policy), as docs/vault.md says."""
    client.auth.approle.create_or_update_approle(
        name, token_policies=list(policies), token_no_default_policy=True,
        token_ttl=token.get("ttl", "1h"), token_max_ttl=token.get("max_ttl", "24h"))
    role_id = client.auth.approle.read_role_id(name)["data"]["role_id"]
    secret_id = client.auth.approle.generate_secret_id(name)["data"]["secret_id"]
    secret_file = directory / f"{name}-secret-id"
    secret_file.write_text(secret_id + "\n")
    secret_file.chmod(0o400)
    return AppRole(role_id, secret_id, secret_file)


def enable_auth(client: hvac.Client, method: str) -> None:
    if f"{method}/" not in client.sys.list_auth_methods()["data"]:
        client.sys.enable_auth_method(method)


def login_settings(addr: str, data_dir: Path, auth: dict[str, Any], **vault: Any) -> Settings:
    """tokend settings that log in with `auth` and hold no token of their own."""
    return make_settings(addr, None, data_dir,  # type: ignore[arg-type]
                         vault={"token": None, "key_name": KEY, "create_key": False,
                                "auth": auth, **vault})


def start_error(settings: Settings) -> VaultError:
    """The VaultError an App with `settings` fails to start with."""
    app = App(settings)
    with pytest.raises(VaultError) as info:
        asyncio.run(app.start())
    asyncio.run(app.stop(grace=0))
    return info.value


def issue(server: RunningTokend, timeout: float = 5) -> pb.IssueResponse:
    return server.stub.Issue(pb.IssueRequest(subject="alice", audience=[AUDIENCE]),
                             timeout=timeout)


def verify(server: RunningTokend, token: str) -> pb.VerifyResponse:
    return server.stub.Verify(pb.VerifyRequest(token=token, audience=AUDIENCE), timeout=5)


def issue_and_verify(server: RunningTokend) -> str:
    token = issue(server).access_token
    assert verify(server, token).valid
    return token


def issue_code(server: RunningTokend) -> grpc.StatusCode:
    """OK, or the status an Issue failed with."""
    try:
        issue(server)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def wait_issuing(server: RunningTokend, within: float) -> float:
    """Seconds until Issue succeeds again; fails the test after `within` seconds."""
    started = time.monotonic()
    while issue_code(server) != grpc.StatusCode.OK:
        assert time.monotonic() - started < within, f"Issue did not recover in {within} s"
        time.sleep(0.2)
    return time.monotonic() - started


def vault_status(server: RunningTokend) -> VaultStatus:
    # App keeps its VaultSession private; the status is what /readyz would show.
    return server.app._vault.status  # type: ignore[no-any-return]


def http_get(server: RunningTokend, path: str) -> tuple[int, str]:
    """(status, body) of a GET on the running tokend's HTTP side."""
    with _HTTP.open(server.http_url + path, timeout=5) as answer:
        return answer.status, answer.read().decode()


def metric(server: RunningTokend, name: str, **labels: str) -> float:
    """One sample of `name` from the running tokend's /metrics (0 when absent)."""
    for family in text_string_to_metric_families(http_get(server, "/metrics")[1]):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0
