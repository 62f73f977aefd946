"""The lean Denylist (int keys, whole-second expiries, bucketed pruning), its staleness,
and Verify failing closed on a stale denylist. The behaviour every Denylist must have is
in tests/tokens/test_denylist.py; this covers what the compact representation adds."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from tests.clients.python.client_test_support import generate_key, make_token
from tests.support.tokend import ISSUER
from tokend import metrics
from tokend.config import TokenConfig, load_settings
from tokend.store import NewRevocation, Revocation, StoreError
from tokend.store.sqlite import SqliteStore
from tokend.tokens.authority import RevocationsStale, TokenAuthority
from tokend.tokens.denylist import Denylist, DenylistFollower
from tokend_client import LocalVerifier, Reason
from tokend_client.jose import b64url_encode

NOW = 1_700_000_000.0


def rev(seq: int, value: str, expires_at: float = NOW + 100, kind: str = "jti",
        not_before: float = 0.0) -> Revocation:
    return Revocation(seq, kind, value, not_before, expires_at, "test", NOW)  # type: ignore[arg-type]


def test_every_spelling_of_a_jti_is_its_own_entry() -> None:
    own = b64url_encode(bytes(range(16)))
    revoked = [own, "e\u0301", "\ud800"]  # a combining accent, a lone surrogate
    # Same bits once base64-decoded, or the same text but for case or normalisation:
    # none may be taken for a revoked one.
    others = [own[:-1] + "B", own[:20] + "+" + own[21], own + "=", own.upper(), "\u00e9"]
    d = Denylist()
    d.apply([rev(i, jti) for i, jti in enumerate(revoked, 1)])
    assert all(d.is_revoked(jti, "s", NOW, NOW) for jti in revoked)
    assert not any(d.is_revoked(jti, "s", NOW, NOW) for jti in others)
    assert len(d) == 3


def test_expiries_round_up_to_the_second() -> None:
    d = Denylist()
    d.apply([rev(1, "j", expires_at=NOW + 10.2)])
    assert d.is_revoked("j", "s", NOW, NOW + 10.9)  # fail closed for the fraction
    assert not d.is_revoked("j", "s", NOW, NOW + 11)
    assert d.prune(NOW + 10.9) == 0 and d.prune(NOW + 11) == 1


def test_prune_in_slices_visits_only_what_expired() -> None:
    d = Denylist()
    d.apply([rev(i, f"j{i}", expires_at=NOW + i % 3) for i in range(1, 31)])
    assert d.next_expiry == NOW
    removed = []
    while d.next_expiry <= NOW + 1:
        removed.append(d.prune(NOW + 1, budget=4))
    assert max(removed) <= 4 and sum(removed) == 20 and len(d) == 10
    assert d.next_expiry == NOW + 2


def test_an_extended_entry_survives_its_first_expiry() -> None:
    d = Denylist()
    d.apply([rev(1, "j", expires_at=NOW + 5), rev(2, "j", expires_at=NOW + 50),
             rev(3, "alice", kind="subject", not_before=NOW, expires_at=NOW + 5),
             rev(4, "alice", kind="subject", not_before=NOW - 9, expires_at=NOW + 50)])
    assert d.prune(NOW + 10) == 0
    assert d.is_revoked("j", "x", NOW, NOW + 10)
    assert d.is_revoked("other", "alice", NOW, NOW + 10)  # merged: the later not_before
    assert d.prune(NOW + 50) == 2 and len(d) == 0


def test_staleness_counts_from_the_last_full_read() -> None:
    d = Denylist()
    assert d.staleness() == math.inf
    d.mark_synced(100.0)
    d.mark_synced(90.0)  # an older read never moves it back
    assert d.staleness(now=103.5) == 3.5


class BrokenStore:
    async def revocations_since(self, seq: int, now: float, limit: int = 10_000
                                ) -> list[Revocation]:
        raise StoreError("postgresql: no connection within 5 s (is the database reachable?)")


async def follow_briefly(follower: DenylistFollower) -> None:
    task = asyncio.create_task(follower.run())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class GaugeOfThisThread:
    """Records what this thread sets the gauge to: other tests' in-process servers (their
    own threads) set the same process-wide gauge at any moment."""

    def __init__(self, gauge: Any) -> None:
        self._gauge = gauge
        self.values: list[float] = []

    def set(self, value: float) -> None:
        if threading.get_ident() == THREAD:
            self.values.append(value)
        self._gauge.set(value)


THREAD = threading.get_ident()


async def test_follower_marks_synced_and_reports_the_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store_up = GaugeOfThisThread(metrics.STORE_UP)
    monkeypatch.setattr(metrics, "STORE_UP", store_up)
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    d = Denylist()
    try:
        await store.add_revocations([NewRevocation("jti", "j1", time.time() + 60, "t")])
        before = time.monotonic()
        await follow_briefly(DenylistFollower(store, d, interval=0.01))
        assert d.synced_at is not None and d.synced_at >= before
        assert store_up.values and set(store_up.values) == {1}
        assert REGISTRY.get_sample_value("tokend_denylist_entries") == 1
    finally:
        await store.close()
    synced = d.synced_at
    store_up.values.clear()
    await follow_briefly(DenylistFollower(BrokenStore(), d, interval=0.01))  # type: ignore[arg-type]
    assert store_up.values and set(store_up.values) == {0}
    assert d.synced_at == synced  # a failed read is no sync
    assert REGISTRY.get_sample_value("tokend_denylist_staleness_seconds") >= 0.1


def test_max_staleness_must_clear_the_polling() -> None:
    base = {"insecure_plaintext": True, "grpc_listen": "127.0.0.1:0"}
    assert load_settings(None, **base).tokens.revocation_max_staleness == 0
    ok = load_settings(None, **base, tokens={"revocation_max_staleness": "30s"})
    assert ok.tokens.revocation_max_staleness == 30
    with pytest.raises(ValidationError, match="revocation_poll_interval"):
        load_settings(None, **base, revocation_poll_interval=2,
                      tokens={"revocation_max_staleness": 3})


class StaleVerify:
    """A TokenAuthority over a local key, its denylist last synced ``age`` seconds ago."""

    def __init__(self, limit: float) -> None:
        self.key = generate_key("ES256", kid="k1")
        verifier = LocalVerifier(self.key.jwks(), issuer=ISSUER, max_lifetime=3600)
        self.denylist = Denylist()
        self.authority = TokenAuthority(
            minter=None, store=None, denylist=self.denylist, verifier=verifier,  # type: ignore[arg-type]
            config=TokenConfig(issuer=ISSUER, revocation_max_staleness=limit),
            audit=None,  # type: ignore[arg-type]
        )

    def token(self, jti: str) -> str:
        now = int(time.time())
        return make_token(self.key, {"iss": ISSUER, "sub": "s", "aud": "orders", "iat": now,
                                     "exp": now + 60, "jti": jti})

    def synced(self, age: float) -> None:
        self.denylist.synced_at = time.monotonic() - age


def test_verify_fails_closed_only_where_an_answer_is_at_risk() -> None:
    t = StaleVerify(limit=5)
    good, revoked = t.token("good"), t.token("revoked")
    t.denylist.apply([rev(1, "revoked", expires_at=time.time() + 60)])
    t.synced(1)
    assert t.authority.verify(good, "orders", []).valid
    t.synced(6)
    with pytest.raises(RevocationsStale, match="revocation_max_staleness"):
        t.authority.verify(good, "orders", [])
    # Refusals stay certain: a stale list can only miss revocations, not invent them.
    assert t.authority.verify(revoked, "orders", []).reason is Reason.REVOKED
    assert t.authority.verify(good, "billing", []).reason is Reason.WRONG_AUDIENCE


def test_off_by_default_verify_answers_from_memory() -> None:
    t = StaleVerify(limit=0)
    assert t.authority.verify(t.token("good"), "orders", []).valid  # never synced at all
