"""LiveSource against a real tokend (real OpenBao, SQLite, gRPC): revocations and new keys
reach a local verifier within a second, and a restart of tokend loses nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients.python.test_live_source import refused_within
from tests.support.bao import BaoDevServer, free_port
from tests.support.logs import read_jsonl
from tests.support.tokend import ISSUER, RunningTokend, make_settings
from tokend.config import Settings
from tokend.store import NewRevocation
from tokend.store.sqlite import SqliteStore
from tokend_client import LiveSource, LocalVerifier, TokenClient

AUDIENCE = "orders"
# Fast reconnection to a restarted server (gRPC's default first backoff is a second).
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 500)]


@pytest.fixture
def settings(bao: BaoDevServer, tmp_path: Path) -> Settings:
    return make_settings(bao.addr, bao.token, tmp_path, vault={
        "key_name": "live-source", "key_refresh_interval": 0.2},
        grpc_listen=f"127.0.0.1:{free_port()}", audit_log=str(tmp_path / "audit.log"))


@pytest.fixture
def client(settings: Settings) -> Iterator[TokenClient]:
    with TokenClient.insecure_loopback(settings.grpc_listen, options=CHANNEL_OPTIONS) as c:
        yield c


def test_revocations_reach_the_local_verifier_within_a_second(
    settings: Settings, client: TokenClient,
) -> None:
    with RunningTokend(settings), LiveSource(client) as live:
        verifier = LocalVerifier(live, issuer=ISSUER, audience=AUDIENCE)
        by_jti = client.issue("alice", AUDIENCE)
        by_subject = client.issue("mallory", AUDIENCE)
        assert verifier.verify(by_jti.access_token)["sub"] == "alice"
        client.revoke(jti=by_jti.jti, reason="test")
        assert refused_within(verifier, by_jti.access_token, 1.0) < 1.0
        client.revoke(subject="mallory", reason="test")
        # Issued after Revoke(subject) answered: valid at once, although iat has whole
        # seconds (the server answers only once the cutoff's second is over).
        signed_in_again = client.issue("mallory", AUDIENCE).access_token
        assert refused_within(verifier, by_subject.access_token, 1.0) < 1.0
        assert verifier.verify(signed_in_again)


def test_new_keys_reach_the_local_verifier_within_a_second(
    settings: Settings, client: TokenClient, bao: BaoDevServer,
) -> None:
    with RunningTokend(settings), LiveSource(client, min_refetch_interval=3600) as live:
        LocalVerifier(live, issuer=ISSUER, audience=AUDIENCE)
        before = client.get_jwks()
        bao.client().secrets.transit.rotate_key(settings.vault.key_name, mount_point="transit")
        deadline = time.monotonic() + 10
        while (published := client.get_jwks()) == before:
            assert time.monotonic() < deadline, "tokend did not publish the new version"
            time.sleep(0.05)
        started = time.monotonic()
        while _kids(live.keys()) != _kids(published):
            assert time.monotonic() - started < 1.0, "the new key set did not arrive"
            time.sleep(0.01)


def _kids(jwks: object) -> set[str]:
    return {key.kid for key in jwks}  # type: ignore[attr-defined]


def test_a_restarted_tokend_resumes_the_stream_without_loss(
    settings: Settings, client: TokenClient,
) -> None:
    with LiveSource(client) as live:
        with RunningTokend(settings):
            verifier = LocalVerifier(live, issuer=ISSUER, audience=AUDIENCE)
            tokens = [client.issue(f"user{i}", AUDIENCE) for i in range(4)]
            client.revoke(jti=tokens[0].jti, reason="before the restart")
            refused_within(verifier, tokens[0].access_token, 1.0)
            seen = live.revocations.sequence
        # tokend is down; another replica revokes through the same store meanwhile.
        asyncio.run(_revoke_elsewhere(settings, [t.jti for t in tokens[1:3]]))
        with RunningTokend(settings):
            for token in tokens[1:3]:
                refused_within(verifier, token.access_token, 15.0)
            assert verifier.verify(tokens[3].access_token)["sub"] == "user3"
    watched = read_jsonl(Path(settings.audit_log))
    resumed = [line["from_sequence"] for line in watched
               if line["event"] == "rpc.WatchRevocations"]
    assert resumed[0] == 0
    assert seen in resumed[1:]  # a reconnect asked for what follows, not everything again


async def _revoke_elsewhere(settings: Settings, jtis: list[str]) -> None:
    store = SqliteStore(Path(settings.store_url.removeprefix("sqlite:///")))
    await store.open()
    try:
        await store.add_revocations([NewRevocation("jti", jti, time.time() + 3600, "elsewhere")
                                     for jti in jtis])
    finally:
        await store.close()
