"""DevVault: the persistent local OpenBao of `tokend dev` keeps keys across restarts."""

from __future__ import annotations

import os
import secrets
import stat
import time
from pathlib import Path

import pytest

from tests.support.bao import BaoDevServer, free_port
from tokend.keys.transit import TransitKeyring
from tokend.vault.client import VaultError, make_vault_client
from tokend.vault.dev import DevVault, wait_kv_upgraded


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_dev_vault_survives_restart(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "vault"
    port = free_port()
    cluster_port = free_port()
    vault = DevVault(data_dir, port=port, cluster_port=cluster_port)

    addr, token = vault.start()
    try:
        assert addr == f"http://127.0.0.1:{port}"
        assert "DEVELOPMENT ONLY" in capfd.readouterr().err
        keyring = TransitKeyring(
            make_vault_client(addr, token), key_name="dev", create_if_missing=True
        )
        keyring.load()
        jwks_before = keyring.jwks()
        pid = vault.pid
    finally:
        vault.stop()
    assert pid is not None and process_gone(pid)

    addr_again, token_again = vault.start()
    try:
        assert (addr_again, token_again) == (addr, token)  # initialised once, token kept
        keyring = TransitKeyring(make_vault_client(addr, token), key_name="dev")
        keyring.load()  # no create_if_missing: the key must still be there
        assert keyring.jwks() == jwks_before
        keyring.check_sign_permission()
    finally:
        vault.stop()

    assert mode(data_dir) == 0o700
    for secret in ("seal.key", "root-token"):
        assert mode(data_dir / secret) == 0o600, secret
    assert (data_dir / "seal.key").stat().st_size == 32
    assert (data_dir / "bao.log").stat().st_size > 0
    assert not (data_dir / "bao.pid").exists()


def test_dev_vault_reports_a_server_that_cannot_start(tmp_path: Path) -> None:
    # Both listeners on one port: bao exits at once, and start() says where to look.
    port = free_port()
    vault = DevVault(tmp_path / "vault", port=port, cluster_port=port, ready_timeout=10)
    with pytest.raises(RuntimeError, match="bao exited"):
        vault.start()
    assert vault.pid is None


def test_a_new_kv_mount_takes_a_write_once_its_upgrade_is_waited_for(bao: BaoDevServer) -> None:
    client = bao.client()
    mount = f"kv-{secrets.token_hex(4)}"
    client.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    wait_kv_upgraded(client, mount, timeout=30)
    client.secrets.kv.v2.create_or_update_secret("first", {"a": "1"}, mount_point=mount)


def test_waiting_for_a_kv_upgrade_gives_up_at_once_on_any_other_refusal(
        bao: BaoDevServer) -> None:
    started = time.monotonic()
    with pytest.raises(VaultError, match="no-such-mount/config"):
        wait_kv_upgraded(bao.client(), "no-such-mount", timeout=30)
    assert time.monotonic() - started < 5
