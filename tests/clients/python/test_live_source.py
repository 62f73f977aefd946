"""LiveSource against a scripted TokenService: resume, restart from 0, idle streams, keys.

The scripted server (a real gRPC server) lets each test decide how every stream ends, so
reconnection is tested deterministically; tests/clients/python/test_live_source_tokend.py
runs the same source against a real tokend.
"""

from __future__ import annotations

import json
import queue
import secrets
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from tests.clients.python.client_test_support import SigningKey, generate_key, make_token
from tests.clients.python.scripted_server import ScriptedServer, ScriptedTokenService
from tokend_client import (
    AsyncTokenClient,
    InvalidToken,
    KeySourceError,
    LiveSource,
    LocalVerifier,
    Reason,
    RevocationSet,
    TokenClient,
)
from tokend_client.v1 import tokend_pb2 as pb

ISSUER = "https://tokend.test"
NOW = 1_900_000_000.0
HOLD = "hold"  # keep the stream open (silently) until the client leaves


def event(sequence: int, kind: str, value: str, *, not_before: float = 0.0,
          expires_at: float = NOW + 3600) -> pb.RevocationEvent:
    message = pb.RevocationEvent(sequence=sequence, kind=kind, value=value)
    message.expires_at.FromSeconds(int(expires_at))
    if not_before:
        message.not_before.FromSeconds(int(not_before))
    return message


def checkpoint(sequence: int) -> pb.RevocationEvent:
    return pb.RevocationEvent(sequence=sequence, checkpoint=True)


class StreamingService(ScriptedTokenService):
    """Serves each WatchRevocations stream from the next script in ``scripts``.

    A script is a list of events, optionally ending with a status tuple (the stream
    fails with it) or HOLD. Without a script, a stream fails with UNAVAILABLE.
    """

    def __init__(self, key: SigningKey) -> None:
        super().__init__(jwks=key.jwks())
        self.scripts: queue.Queue[list[Any]] = queue.Queue()
        self.jwks_updates: queue.Queue[dict[str, Any]] = queue.Queue()
        self.from_sequences: list[int] = []

    def WatchRevocations(self, request: pb.WatchRevocationsRequest,
                         context: grpc.ServicerContext) -> Iterator[pb.RevocationEvent]:
        self.from_sequences.append(request.from_sequence)
        try:
            script = self.scripts.get_nowait()
        except queue.Empty:
            script = [(grpc.StatusCode.UNAVAILABLE, "no script")]
        for item in script:
            if isinstance(item, pb.RevocationEvent):
                yield item
            elif item == HOLD:
                _hold(context)
            else:
                context.abort(*item)

    def WatchJwks(self, request: pb.WatchJwksRequest,
                  context: grpc.ServicerContext) -> Iterator[pb.JwksEvent]:
        yield pb.JwksEvent(jwks_json=json.dumps(self.jwks))
        while context.is_active():
            try:
                self.jwks = self.jwks_updates.get(timeout=0.05)
            except queue.Empty:
                continue
            yield pb.JwksEvent(jwks_json=json.dumps(self.jwks))


def _hold(context: grpc.ServicerContext) -> None:
    while context.is_active():
        time.sleep(0.02)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_key("ES256", kid="key-1")


@pytest.fixture
def service(key: SigningKey) -> StreamingService:
    return StreamingService(key)


@pytest.fixture
def client(service: StreamingService) -> Iterator[TokenClient]:
    with ScriptedServer(service) as server, TokenClient.insecure_loopback(server.target) as c:
        yield c


def token(key: SigningKey, *, sub: str = "alice", jti: str | None = None,
          iat: float | None = None) -> str:
    now = int(time.time()) if iat is None else int(iat)
    claims = {"iss": ISSUER, "sub": sub, "aud": "orders", "iat": now, "exp": now + 300,
              "jti": jti or secrets.token_hex(8)}
    return make_token(key, claims)


def refused_within(verifier: LocalVerifier, jwt: str, seconds: float) -> float:
    """Seconds until ``verifier`` refuses ``jwt`` as revoked; fails after ``seconds``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            verifier.verify(jwt, audience="orders")
        except InvalidToken as exc:
            assert exc.reason is Reason.REVOKED
            return time.monotonic() - started
        time.sleep(0.01)
    raise AssertionError(f"still accepted after {seconds} s")


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_refuses_revoked_tokens_and_resumes_after_a_broken_stream(
    client: TokenClient, service: StreamingService, key: SigningKey,
) -> None:
    revoked_at = time.time()
    service.scripts.put([event(1, "jti", "j-1"),
                         event(2, "subject", "mallory", not_before=revoked_at),
                         checkpoint(2), event(3, "jti", "j-3"),
                         (grpc.StatusCode.UNAVAILABLE, "tokend is shutting down")])
    service.scripts.put([checkpoint(3), event(4, "jti", "j-4"), HOLD])
    with LiveSource(client) as live:
        verifier = LocalVerifier(live, issuer=ISSUER)
        assert live.synced
        for jti in ("j-1", "j-3", "j-4"):
            refused_within(verifier, token(key, jti=jti), 2)
        refused_within(verifier, token(key, sub="mallory", iat=revoked_at - 60), 0.1)
        refused_within(verifier, token(key, sub="mallory", iat=revoked_at), 0.1)
        later = token(key, sub="mallory", iat=revoked_at + 2)
        assert verifier.verify(later, audience="orders", now=revoked_at + 3)["sub"] == "mallory"
        assert verifier.verify(token(key), audience="orders")["sub"] == "alice"
        assert service.from_sequences == [0, 3]  # resumed where the broken stream stopped
        assert live.revocations.sequence == 4


def test_a_sequence_ahead_of_the_feed_restarts_from_zero(
    client: TokenClient, service: StreamingService, key: SigningKey,
) -> None:
    service.scripts.put([event(7, "jti", "old"), checkpoint(7),
                         (grpc.StatusCode.UNAVAILABLE, "restarting")])
    service.scripts.put([(grpc.StatusCode.FAILED_PRECONDITION, "ahead: resume from 0")])
    service.scripts.put([event(1, "jti", "new"), checkpoint(1), HOLD])
    with LiveSource(client) as live:
        verifier = LocalVerifier(live, issuer=ISSUER)
        refused_within(verifier, token(key, jti="new"), 5)
        assert service.from_sequences == [0, 7, 0]
        refused_within(verifier, token(key, jti="old"), 0.1)  # kept: it only denies more
        assert live.revocations.sequence == 1


def test_a_silent_stream_is_reopened(
    client: TokenClient, service: StreamingService, key: SigningKey,
) -> None:
    service.scripts.put([checkpoint(0), HOLD])  # never a keep-alive again
    service.scripts.put([checkpoint(0), event(1, "jti", "late"), HOLD])
    with LiveSource(client, idle_timeout=1) as live:
        verifier = LocalVerifier(live, issuer=ISSUER)
        refused_within(verifier, token(key, jti="late"), 5)
        assert service.from_sequences == [0, 0]
        assert live.reconnects >= 1


def test_new_keys_arrive_without_polling(
    client: TokenClient, service: StreamingService, key: SigningKey,
) -> None:
    service.scripts.put([checkpoint(0), HOLD])
    rotated = generate_key("ES256", kid="key-2")
    # min_refetch_interval: an unknown kid must not be what brings the new key.
    with LiveSource(client, min_refetch_interval=3600) as live:
        verifier = LocalVerifier(live, issuer=ISSUER)
        assert service.calls["GetJwks"] == 1
        service.jwks_updates.put({"keys": [key.public_jwk(), rotated.public_jwk()]})
        wait_until(lambda: live.keys().get("key-2") is not None, timeout=2)
        assert verifier.verify(token(rotated), audience="orders")["sub"] == "alice"
        assert service.calls["GetJwks"] == 1


def test_a_silent_feed_goes_stale_and_fails_closed_until_it_is_back(
    client: TokenClient, service: StreamingService, key: SigningKey,
) -> None:
    # docs/verifier-contract.md §7: past max_staleness the revocation state is unknown.
    service.scripts.put([checkpoint(0), HOLD])  # then silent: no keep-alive
    service.scripts.put([checkpoint(0), HOLD])
    changes: list[tuple[bool, float]] = []
    with LiveSource(client, max_staleness=0.6, idle_timeout=2,
                    on_stale=lambda stale, silent: changes.append((stale, silent))) as live:
        verifier = LocalVerifier(live, issuer=ISSUER)
        fresh = token(key)
        assert verifier.verify(fresh, audience="orders")["sub"] == "alice"
        wait_until(lambda: live.stale, timeout=2)
        with pytest.raises(KeySourceError, match=r"silent for .* fail-closed"):
            verifier.verify(fresh, audience="orders")
        wait_until(lambda: len(changes) >= 2, timeout=5)  # reopened at idle_timeout
        assert [stale for stale, _ in changes[:2]] == [True, False]
        assert changes[0][1] >= 0.6
        assert verifier.verify(fresh, audience="orders")["sub"] == "alice"


def test_fail_open_keeps_verifying_with_the_last_state(
    client: TokenClient, service: StreamingService, key: SigningKey,
) -> None:
    service.scripts.put([event(1, "jti", "gone"), checkpoint(1), HOLD])
    with LiveSource(client, max_staleness=0.3, idle_timeout=60,
                    stale_policy="fail-open") as live:
        verifier = LocalVerifier(live, issuer=ISSUER)
        wait_until(lambda: live.stale, timeout=2)
        assert verifier.verify(token(key), audience="orders")["sub"] == "alice"
        refused_within(verifier, token(key, jti="gone"), 0.1)  # what it knew still holds


def test_stale_policy_is_checked(client: TokenClient) -> None:
    with pytest.raises(ValueError, match="stale_policy"):
        LiveSource(client, stale_policy="open")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_staleness"):
        LiveSource(client, max_staleness=0)


def test_construction_fails_when_revocations_do_not_arrive(client: TokenClient) -> None:
    # The scripted service has no script: every WatchRevocations fails.
    with LiveSource(client, ready_timeout=0.5) as live, \
            pytest.raises(KeySourceError, match="revocations did not arrive"):
        LocalVerifier(live, issuer=ISSUER)


async def test_only_a_synchronous_client_can_be_followed() -> None:
    async with AsyncTokenClient.insecure_loopback("127.0.0.1:1") as async_client:
        with pytest.raises(TypeError, match="TokenClient"):
            LiveSource(async_client)  # type: ignore[arg-type]
    with TokenClient.insecure_loopback("127.0.0.1:1") as client, pytest.raises(ValueError):
        LiveSource(client, idle_timeout=0)


def test_watch_revocations_refuses_a_negative_sequence(client: TokenClient) -> None:
    with pytest.raises(ValueError):
        client.watch_revocations(-1)


# -- RevocationSet -----------------------------------------------------------------------


def claims(jti: str = "j", sub: str = "alice", iat: Any = NOW - 10) -> dict[str, Any]:
    return {"jti": jti, "sub": sub, "iat": iat}


def test_jti_entries_live_as_long_as_their_tokens() -> None:
    revoked = RevocationSet()
    revoked.apply(event(1, "jti", "j", expires_at=NOW + 10))
    assert revoked.is_revoked(claims(), NOW)
    assert not revoked.is_revoked(claims(jti="other"), NOW)
    assert not revoked.is_revoked(claims(), NOW + 10)
    assert revoked.prune(NOW + 10) == 1 and len(revoked) == 0


def test_subject_entries_cover_tokens_issued_up_to_not_before() -> None:
    revoked = RevocationSet()
    revoked.apply(event(1, "subject", "alice", not_before=NOW))
    assert revoked.is_revoked(claims(iat=NOW), NOW + 1)  # the same second counts
    assert not revoked.is_revoked(claims(iat=NOW + 1), NOW + 1)
    assert not revoked.is_revoked(claims(sub="bob"), NOW + 1)
    assert revoked.is_revoked(claims(iat="soon"), NOW + 1)  # no usable iat: refused
    assert revoked.is_revoked({"sub": "alice"}, NOW + 1)
    revoked.apply(event(2, "subject", "alice", not_before=NOW - 100))  # older: no change
    assert revoked.is_revoked(claims(iat=NOW), NOW + 1)


def test_checkpoints_families_and_unknown_kinds_only_move_the_sequence() -> None:
    revoked = RevocationSet()
    for message in (event(1, "family", "f"), event(2, "device", "d"), checkpoint(5)):
        revoked.apply(message)
    assert (len(revoked), revoked.sequence) == (0, 5)
    revoked.apply(checkpoint(3))  # never backwards
    assert revoked.sequence == 5
