"""Short-lived Vault tokens: tokend renews them, and logs in again when renewal ends."""

from __future__ import annotations

import time
from pathlib import Path

import grpc

from tests.support.bao import BaoDevServer
from tests.support.tokend import RunningTokend, make_settings
from tests.vault.helpers import (
    KEY,
    POLICY,
    issue_and_verify,
    issue_code,
    login_settings,
    make_approle,
    metric,
    vault_status,
    wait_issuing,
)


def test_renews_then_logs_in_again_past_max_ttl(vault: BaoDevServer, tmp_path: Path) -> None:
    role = make_approle(vault.client(), "tokend-short", tmp_path, ttl="3s", max_ttl="8s")
    # Renewing at half the TTL leaves 1.5 s of slack for a loaded CI machine.
    auth = role.auth(renew_fraction=0.5)
    with RunningTokend(login_settings(vault.addr, tmp_path, auth)) as server:
        renewed = metric(server, "tokend_vault_token_renewals_total", outcome="ok")
        first_expiry = vault_status(server).token_expires_at
        assert first_expiry is not None
        started = time.monotonic()
        while time.monotonic() - started < 11:  # well past the 8 s max TTL
            issue_and_verify(server)  # every Issue signs with a live token
            time.sleep(0.25)
        status = vault_status(server)
        assert status.renewals >= 2, status
        assert status.logins >= 2, status  # the first token could not outlive 8 s
        assert status.last_error is None
        assert status.token_expires_at is not None and status.token_expires_at > first_expiry
        assert metric(server, "tokend_vault_token_renewals_total", outcome="ok") >= renewed + 2
        assert 0 < metric(server, "tokend_vault_token_ttl_seconds") <= 3


def test_given_periodic_token_is_renewed(vault: BaoDevServer, tmp_path: Path) -> None:
    answer = vault.client().auth.token.create(policies=[POLICY], no_default_policy=True,
                                              period="2s", no_parent=True)
    settings = make_settings(vault.addr, answer["auth"]["client_token"], tmp_path,
                             vault={"key_name": KEY, "create_key": False})
    with RunningTokend(settings) as server:
        time.sleep(4.5)  # the token would have died after 2 s without renewal
        issue_and_verify(server)
        status = vault_status(server)
        assert (status.method, status.logins) == ("token", 1)
        assert status.renewals >= 2 and status.last_error is None


def test_revoked_token_is_replaced_at_once(vault: BaoDevServer, tmp_path: Path) -> None:
    # A one-hour token: waiting for its renewal would leave Issue failing for 40 minutes.
    role = make_approle(vault.client(), "tokend-revoked", tmp_path, ttl="1h")
    with RunningTokend(login_settings(vault.addr, tmp_path, role.auth())) as server:
        issue_and_verify(server)
        # Revoke every token this role has handed out, as an operator would after a leak.
        vault.client().sys.revoke_prefix("auth/approle/login")
        assert issue_code(server) == grpc.StatusCode.UNAVAILABLE  # 403: the upkeep checks
        assert wait_issuing(server, within=5) < 5  # the check is refused → a new login
        issue_and_verify(server)
        status = vault_status(server)
        assert status.logins == 2 and status.last_error is None
