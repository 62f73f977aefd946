"""Every signing algorithm end to end, and start-up failures that name what is wrong."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import pytest

from tests.api.test_issue_verify import issue, segments, verify
from tests.support.bao import BaoDevServer
from tests.support.tokend import ISSUER, RunningTokend, free_port, make_settings
from tokend.app import App
from tokend.vault.client import VaultError
from tokend_client import LocalVerifier
from tokend_client.v1 import tokend_pb2 as pb


@pytest.mark.parametrize(("algorithm", "kty"), [
    ("RS256", "RSA"), ("PS256", "RSA"), ("EdDSA", "OKP"),
])
def test_algorithm_end_to_end(bao: BaoDevServer, tmp_path, algorithm: str, kty: str) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(bao.addr, bao.token, tmp_path,
                             vault={"key_name": f"alg-{algorithm.lower()}", "algorithm": algorithm})
    with RunningTokend(settings) as server:
        token = issue(server).access_token
        assert segments(token)[0]["alg"] == algorithm
        assert verify(server, token).valid
        jwks = server.stub.GetJwks(pb.GetJwksRequest(), timeout=5).jwks_json
        assert {k["kty"] for k in json.loads(jwks)["keys"]} == {kty}
        assert LocalVerifier(jwks, issuer=ISSUER, audience="orders").verify(token)["sub"]


def test_rotation_in_vault_is_picked_up(bao: BaoDevServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(bao.addr, bao.token, tmp_path,
                             jwks_max_age=0,  # no verifier caches: no propagation wait
                             vault={"key_name": "rotating", "key_refresh_interval": 0.2,
                                    "propagation_delay": 0.2})
    with RunningTokend(settings) as server:
        before = issue(server).access_token
        bao.client().secrets.transit.rotate_key("rotating")
        deadline = time.monotonic() + 10
        after = before
        while segments(after)[0]["kid"] == segments(before)[0]["kid"]:
            assert time.monotonic() < deadline, "rotation not picked up within 10 s"
            time.sleep(0.2)
            after = issue(server).access_token
        assert verify(server, before).valid and verify(server, after).valid
        assert len(json.loads(server.stub.GetJwks(pb.GetJwksRequest()).jwks_json)["keys"]) == 2


def start_fails(settings) -> str:  # type: ignore[no-untyped-def]
    app = App(settings)
    with pytest.raises(VaultError) as info:
        asyncio.run(app.start())  # stops what it started before raising
    return str(info.value)


def test_unreachable_vault_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    addr = f"http://127.0.0.1:{free_port()}"
    message = start_fails(make_settings(addr, "whatever", tmp_path))
    assert addr in message


def test_missing_permission_names_the_path(bao: BaoDevServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = bao.client()
    client.secrets.transit.create_key("readonly", key_type="ecdsa-p256")
    client.sys.create_or_update_policy(
        "read-only-transit", 'path "transit/keys/readonly" { capabilities = ["read"] }')
    token = client.auth.token.create(policies=["read-only-transit"], ttl="10m")["auth"]
    settings = make_settings(bao.addr, token["client_token"], tmp_path,
                             vault={"key_name": "readonly", "create_key": False})
    assert "transit/sign/readonly" in start_fails(settings)
    assert token["client_token"] not in start_fails(settings)


def test_missing_key_without_create(bao: BaoDevServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(bao.addr, bao.token, tmp_path,
                             vault={"key_name": "absent", "create_key": False})
    assert "absent" in start_fails(settings)


def test_vault_down_issue_unavailable_verify_still_works(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with BaoDevServer() as own_bao:
        settings = make_settings(own_bao.addr, own_bao.token, tmp_path,
                                 vault={"key_name": "outage", "timeout": 2})
        with RunningTokend(settings) as server:
            token = issue(server).access_token
            own_bao.stop()
            with pytest.raises(grpc.RpcError) as info:
                issue(server)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "Vault" in info.value.details() and own_bao.token not in info.value.details()
            assert verify(server, token).valid  # keys are cached: Verify never calls Vault
            assert server.stub.GetJwks(pb.GetJwksRequest(), timeout=5).jwks_json
