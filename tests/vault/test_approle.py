"""AppRole login under exactly the documented policy; failures say where, never the secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.bao import BaoDevServer
from tests.support.tokend import RunningTokend, make_settings
from tests.vault.helpers import (
    KEY,
    doc_hcl_blocks,
    issue_and_verify,
    login_settings,
    make_approle,
    metric,
    start_error,
    vault_status,
    wait_issuing,
    write_doc_policy,
)


def test_approle_issues_and_verifies_under_the_documented_policy(
        vault: BaoDevServer, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    role = make_approle(vault.client(), "tokend-approle", tmp_path)
    settings = login_settings(vault.addr, tmp_path, role.auth())
    with RunningTokend(settings) as server:
        issue_and_verify(server)
        status = vault_status(server)
        assert (status.method, status.logged_in, status.last_error) == ("approle", True, None)
        assert status.renewable and status.token_expires_at is not None
        assert 3000 < metric(server, "tokend_vault_token_ttl_seconds") <= 3600
        assert metric(server, "tokend_vault_logins_total", method="approle", outcome="ok") >= 1
        token = server.app._vault.client.token
    logs = capfd.readouterr()
    for secret in (role.secret_id, token):
        assert secret not in logs.out + logs.err


def test_create_key_variant_of_the_policy(vault: BaoDevServer, tmp_path: Path) -> None:
    # The documented extra block is all that create_key: true needs on top of the policy.
    client = vault.client()
    write_doc_policy(client, "tokend-fresh", key="fresh")
    client.sys.create_or_update_policy(
        "tokend-fresh-create", doc_hcl_blocks()[1].replace("tokend", "fresh"))
    role = make_approle(client, "tokend-creates", tmp_path,
                        policies=("tokend-fresh", "tokend-fresh-create"))
    settings = login_settings(vault.addr, tmp_path, role.auth(), key_name="fresh",
                              create_key=True)
    with RunningTokend(settings) as server:
        issue_and_verify(server)
    assert client.secrets.transit.read_key("fresh")["data"]["type"] == "ecdsa-p256"


def test_documented_policy_alone_cannot_create_keys(vault: BaoDevServer, tmp_path: Path) -> None:
    role = make_approle(vault.client(), "tokend-nocreate", tmp_path)
    settings = login_settings(vault.addr, tmp_path, role.auth(), key_name=KEY + "-absent",
                              create_key=True)
    assert "transit/keys/" in str(start_error(settings))


def test_wrong_secret_id_names_the_login_path_not_the_secret(
        vault: BaoDevServer, tmp_path: Path) -> None:
    role = make_approle(vault.client(), "tokend-wrong", tmp_path)
    wrong = role.secret_id[::-1]
    settings = login_settings(vault.addr, tmp_path, {
        "method": "approle", "role_id": role.role_id, "secret_id": wrong})
    error = start_error(settings)
    message = str(error)
    assert error.path == "auth/approle/login"
    assert message.startswith("Vault refused the AppRole login at auth/approle/login")
    assert "invalid role or secret ID" in message
    for secret in (wrong, role.secret_id):
        assert secret not in message


def test_unreadable_secret_id_file_is_named(vault: BaoDevServer, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-secret-id"
    settings = login_settings(vault.addr, tmp_path, {
        "method": "approle", "role_id": "r", "secret_id_file": missing})
    message = str(start_error(settings))
    assert str(missing) in message and "auth/approle/login" in message


def test_other_mount_and_unreachable_vault(vault: BaoDevServer, tmp_path: Path) -> None:
    role = make_approle(vault.client(), "tokend-mount", tmp_path)
    no_mount = start_error(login_settings(vault.addr, tmp_path, role.auth(mount="elsewhere")))
    assert "auth/elsewhere/login" in str(no_mount)
    assert role.secret_id not in str(no_mount)
    dead = "http://127.0.0.1:9"  # discard port: nothing listens on loopback
    unreachable = start_error(login_settings(dead, tmp_path, role.auth()))
    assert unreachable.reason == "unreachable"
    assert dead in str(unreachable) and "auth/approle/login" in str(unreachable)


def test_invalid_token_is_refused_at_start(vault: BaoDevServer, tmp_path: Path) -> None:
    bogus = "s.thisTokenDoesNotExist0000"
    error = start_error(make_settings(vault.addr, bogus, tmp_path,
                                      vault={"key_name": KEY, "create_key": False}))
    assert error.path == "auth/token/lookup-self" and error.reason == "denied"
    assert bogus not in str(error)


def test_rotated_secret_id_file_is_read_at_the_next_login(
        vault: BaoDevServer, tmp_path: Path) -> None:
    client = vault.client()
    role = make_approle(client, "tokend-rotating", tmp_path)
    with RunningTokend(login_settings(vault.addr, tmp_path, role.auth())) as server:
        issue_and_verify(server)
        # The delivery job writes a fresh secret id and destroys the old one ...
        fresh = client.auth.approle.generate_secret_id("tokend-rotating")["data"]["secret_id"]
        role.secret_id_file.chmod(0o600)
        role.secret_id_file.write_text(fresh)
        client.auth.approle.destroy_secret_id("tokend-rotating", role.secret_id)
        # ... and the running token goes away: the next login must use the new file.
        client.sys.revoke_prefix("auth/approle/login")
        wait_issuing(server, within=5)
        assert vault_status(server).logins == 2
