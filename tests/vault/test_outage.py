"""Vault stopped and started again under a running tokend: no crash, no restart needed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import pytest

from tests.support.bao import free_port
from tests.support.tokend import RunningTokend
from tests.vault.helpers import (
    KEY,
    enable_auth,
    http_get,
    issue,
    issue_and_verify,
    login_settings,
    make_approle,
    vault_status,
    verify,
    wait_issuing,
    write_doc_policy,
)
from tokend.vault.client import make_vault_client
from tokend.vault.dev import DevVault
from tokend_client.v1 import tokend_pb2 as pb


def test_vault_restart_under_a_running_tokend(tmp_path: Path) -> None:
    # A persistent OpenBao (raft + static seal): roles, keys and tokens survive a restart.
    dev = DevVault(tmp_path / "openbao", port=free_port(), cluster_port=free_port())
    addr, root = dev.start()
    try:
        client = make_vault_client(addr, root)
        enable_auth(client, "approle")
        write_doc_policy(client)
        client.secrets.transit.create_key(KEY, key_type="ecdsa-p256")
        # A 3 s token: it dies while Vault is away, so recovery needs a new login too.
        role = make_approle(client, "tokend", tmp_path, ttl="3s", max_ttl="1h")
        settings = login_settings(addr, tmp_path, role.auth(), timeout=2)
        with RunningTokend(settings) as server:
            before = issue_and_verify(server)

            dev.stop()
            with pytest.raises(grpc.RpcError) as info:
                issue(server)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "cannot reach Vault" in info.value.details()
            assert role.secret_id not in info.value.details()
            assert verify(server, before).valid  # public keys are held in memory
            jwks = json.loads(server.stub.GetJwks(pb.GetJwksRequest(), timeout=5).jwks_json)
            assert [k["kid"] for k in jwks["keys"]] == [f"{KEY}-v1"]
            time.sleep(3.5)  # past the token's TTL, with renewals failing meanwhile
            assert http_get(server, "/healthz")[0] == 200  # the process lives on
            assert "cannot reach Vault" in (vault_status(server).last_error or "")

            dev.start()  # same data dir, same ports
            wait_issuing(server, within=20)
            after = issue_and_verify(server)
            assert verify(server, before).valid and verify(server, after).valid
            status = vault_status(server)
            assert status.logins >= 2 and status.last_error is None
    finally:
        dev.stop()
