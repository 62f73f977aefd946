"""tokend with custody kv, under the documented policy: Issue keeps working while Vault is
stopped, and after Vault is back a rotation reaches it."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

from tests.keys.vault_docs import doc_block, doc_blocks
from tests.support.bao import free_port
from tests.support.tokend import RunningTokend, make_settings
from tokend.keys.kv import KvKeyring
from tokend.vault.client import make_vault_client
from tokend.vault.dev import DevVault
from tokend_client.v1 import tokend_pb2 as pb

KEY = "tokend"  # the name the documented policy uses


def service_policy() -> str:
    """The kv block, plus the token paths of the main policy (docs/vault.md says so)."""
    token_paths = re.findall(r'path "auth/token/[^"]+" \{.*?\}', doc_blocks()[0], re.DOTALL)
    assert len(token_paths) == 2
    return "\n".join([doc_block("# Custody kv"), *token_paths])


def issue(server: RunningTokend) -> str:
    """A fresh access token from `server`."""
    request = pb.IssueRequest(subject="alice", audience=["orders"])
    return str(server.stub.Issue(request, timeout=5).access_token)


def kid_of(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def valid(server: RunningTokend, token: str) -> bool:
    answer = server.stub.Verify(pb.VerifyRequest(token=token, audience="orders"), timeout=5)
    return bool(answer.valid)


def published_kids(server: RunningTokend) -> set[str]:
    jwks = json.loads(server.stub.GetJwks(pb.GetJwksRequest(), timeout=5).jwks_json)
    return {key["kid"] for key in jwks["keys"]}


def test_issue_keeps_working_while_vault_is_stopped(tmp_path: Path) -> None:
    vault = DevVault(tmp_path / "vault", port=free_port(), cluster_port=free_port())
    addr, root_token = vault.start()
    try:
        root = make_vault_client(addr, root_token)  # DevVault mounts KV v2 at secret/
        KvKeyring(root, key_name=KEY).init()  # what `tokend keys init --custody kv` does
        root.sys.create_or_update_policy("tokend-kv", service_policy())
        token = root.auth.token.create(policies=["tokend-kv"], no_default_policy=True,
                                       period="1h")["auth"]["client_token"]
        settings = make_settings(addr, token, tmp_path, vault={
            "custody": "kv", "key_name": KEY, "create_key": False, "timeout": 1,
            "key_refresh_interval": 0.2})
        with RunningTokend(settings) as server:
            before = issue(server)
            vault.stop()
            time.sleep(0.5)  # a few reloads fail meanwhile; the keys in memory stay
            during = [issue(server) for _ in range(20)]
            assert {kid_of(token) for token in [before, *during]} == {f"{KEY}-v1"}
            assert all(valid(server, token) for token in [before, *during])
            assert published_kids(server) == {f"{KEY}-v1"}

            vault.start()  # persistent: the key and the token are still there
            operator = KvKeyring(root, key_name=KEY)  # `tokend keys rotate`
            operator.load()
            operator.rotate()
            deadline = time.monotonic() + 10
            while published_kids(server) != {f"{KEY}-v1", f"{KEY}-v2"}:
                assert time.monotonic() < deadline, "the rotation never reached tokend"
                time.sleep(0.1)
            assert kid_of(issue(server)) == f"{KEY}-v1"  # v2 is next: published, not signing
    finally:
        vault.stop()
