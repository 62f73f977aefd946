"""The cache of verified tokens behind Verify: fast for repeats, never stale.

A real TokenAuthority (Transit keys on OpenBao, SQLite store, the denylist) with leeway 0,
so expiry is observable within a second.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.bao import BaoDevServer, vault_session
from tokend.api.responses import VerifyAnswers
from tokend.audit import AuditLog
from tokend.config import TokenConfig
from tokend.keys.transit import TransitKeyring
from tokend.store import Revocation, open_store
from tokend.tokens.authority import TokenAuthority
from tokend.tokens.denylist import Denylist
from tokend.tokens.input_rules import AccessTokenSpec
from tokend.tokens.minting import TokenMinter
from tokend.tokens.verify_cache import VerifiedTokens
from tokend_client import LocalVerifier, Reason

ISSUER = "https://tokend.test"
AUDIENCE = "orders"


def spec(subject: str = "alice", ttl: int = 300) -> AccessTokenSpec:
    return AccessTokenSpec(subject=subject, audience=(AUDIENCE,), scopes=("orders:read",),
                           claims={}, ttl=ttl, client_id="cache-test")


@pytest.fixture
async def authority(bao: BaoDevServer, tmp_path: Path) -> AsyncIterator[TokenAuthority]:
    session = vault_session(bao.addr, bao.token)
    keyring = TransitKeyring(session.client, key_name=f"cache-{uuid.uuid4().hex[:8]}",
                             create_if_missing=True, transport=session.transport)
    keyring.load()
    config = TokenConfig(issuer=ISSUER, leeway=0)
    verifier = LocalVerifier(keyring.jwks(), issuer=ISSUER, leeway=0,
                             max_lifetime=config.max_ttl)
    store = open_store(f"sqlite:///{tmp_path / 'tokend.db'}")
    await store.open()
    executor = ThreadPoolExecutor(max_workers=2)
    audit = AuditLog(str(tmp_path / "audit.log"))
    yield TokenAuthority(minter=TokenMinter(keyring, ISSUER, executor), store=store,
                         denylist=Denylist(), verifier=verifier, config=config, audit=audit,
                         verified_cache=8)
    await store.close()
    await session.transport.close()
    audit.close()
    executor.shutdown(wait=True)


@pytest.fixture
def full_checks(authority: TokenAuthority, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Tokens the verifier checked in full (signature and all): a cache miss each."""
    checked: list[str] = []
    original = authority._verifier.verify

    def counting(token: str, **kwargs: object) -> dict[str, object]:
        checked.append(token)
        return original(token, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(authority._verifier, "verify", counting)
    return checked


async def issue(authority: TokenAuthority, **kwargs: object) -> str:
    result = await authority.issue(spec(**kwargs), with_refresh=False)  # type: ignore[arg-type]
    return result.access.token


async def test_a_repeated_token_is_served_from_the_cache(
        authority: TokenAuthority, full_checks: list[str]) -> None:
    token = await issue(authority)
    first = authority.verify(token, AUDIENCE, [])
    second = authority.verify(token, AUDIENCE, ["orders:read"])
    assert first.valid and second.valid
    assert second.claims == first.claims
    assert full_checks == [token]  # the second came from the cache


async def test_revoked_after_cached_is_refused_at_once(authority: TokenAuthority) -> None:
    token = await issue(authority)
    assert authority.verify(token, AUDIENCE, []).valid
    assert len(authority.verified) == 1
    await authority.revoke_token(token, "leaked")
    assert len(authority.verified) == 0  # dropped by the revocation itself
    result = authority.verify(token, AUDIENCE, [])
    assert not result.valid and result.reason is Reason.REVOKED


async def test_subject_revocation_reaches_cached_tokens(authority: TokenAuthority) -> None:
    tokens = [await issue(authority, subject="bob") for _ in range(2)]
    other = await issue(authority, subject="carol")
    for token in (*tokens, other):
        assert authority.verify(token, AUDIENCE, []).valid
    await authority.revoke_subject("bob", "password changed")
    for token in tokens:
        assert authority.verify(token, AUDIENCE, []).reason is Reason.REVOKED
    assert authority.verify(other, AUDIENCE, []).valid


async def test_revocation_from_the_feed_applies_to_cached_tokens(
        authority: TokenAuthority) -> None:
    """Another replica's revocation arrives through the follower, not through Revoke."""
    token = await issue(authority)
    claims = authority.verify(token, AUDIENCE, []).claims
    assert claims is not None
    row = Revocation(seq=10_000, kind="jti", value=claims["jti"], not_before=0.0,
                     expires_at=time.time() + 600, reason="elsewhere", created_at=time.time())
    authority._denylist.apply([row])  # what DenylistFollower does
    assert authority.verify(token, AUDIENCE, []).reason is Reason.REVOKED


async def test_expired_after_cached_is_refused_and_dropped(authority: TokenAuthority) -> None:
    token = await issue(authority, ttl=2)  # iat is whole seconds: ttl 1 may leave ~0 s of validity
    result = authority.verify(token, AUDIENCE, [])
    assert result.valid and result.claims is not None
    await asyncio.sleep(max(0.0, result.claims["exp"] - time.time()) + 0.05)
    expired = authority.verify(token, AUDIENCE, [])
    assert not expired.valid and expired.reason is Reason.EXPIRED
    assert len(authority.verified) == 0


async def test_cached_claims_are_checked_for_each_caller(
        authority: TokenAuthority, full_checks: list[str]) -> None:
    token = await issue(authority)
    assert authority.verify(token, AUDIENCE, []).valid
    assert authority.verify(token, "billing", []).reason is Reason.WRONG_AUDIENCE
    assert authority.verify(token, AUDIENCE, ["orders:write"]).reason is Reason.MISSING_SCOPE
    assert full_checks == [token]  # both refusals came from the cached claims


async def test_a_cached_token_refused_by_its_claims_is_audited_without_a_signature_check(
        authority: TokenAuthority, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit names who a refused token was about; for a cached token its claims are
    already authentic (a second ES256 check cost ~55 µs per refusal, issue 17)."""
    token = await issue(authority, subject="cached-refused")
    assert authority.verify(token, AUDIENCE, []).valid
    signature_checks: list[str] = []
    original = authority._claims_of_own_token
    monkeypatch.setattr(authority, "_claims_of_own_token",
                        lambda t: signature_checks.append(t) or original(t))
    refused = authority.verify(token, "billing", [])
    assert refused.reason is Reason.WRONG_AUDIENCE
    assert refused.claims is not None and refused.claims["sub"] == "cached-refused"
    assert signature_checks == []
    # A token the cache does not hold is still checked before its claims are believed.
    other = await issue(authority, subject="uncached-refused")
    refused = authority.verify(other, "billing", [])
    assert refused.claims is not None and refused.claims["sub"] == "uncached-refused"
    assert signature_checks == [other]


async def test_the_cache_is_bounded(authority: TokenAuthority, full_checks: list[str]
                                   ) -> None:
    tokens = [await issue(authority, subject=f"user-{i}") for i in range(12)]
    for token in tokens:
        assert authority.verify(token, AUDIENCE, []).valid
    assert len(authority.verified) == 8
    full_checks.clear()
    # The oldest went first: the earliest token is verified afresh, the last is a hit.
    authority.verify(tokens[0], AUDIENCE, [])
    authority.verify(tokens[-1], AUDIENCE, [])
    assert full_checks == [tokens[0]]


async def test_a_new_key_set_empties_the_cache(authority: TokenAuthority,
                                              full_checks: list[str]) -> None:
    token = await issue(authority)
    assert authority.verify(token, AUDIENCE, []).valid
    verifier = authority._verifier
    verifier.update_jwks({"keys": [key.to_jwk() for key in verifier.jwks.keys]})
    assert authority.verify(token, AUDIENCE, []).valid
    assert full_checks == [token, token]  # no hit: verified afresh with the new set


def test_sweep_drops_expired_entries_and_size_zero_disables() -> None:
    cache = VerifiedTokens(max_entries=4)
    keys = object()
    cache.put("a", {"jti": "a"}, keys, now=100.0, until=101.0)
    cache.put("b", {"jti": "b"}, keys, now=100.0, until=200.0)
    assert cache.get("a", keys, now=100.5) is not None
    cache.put("c", {"jti": "c"}, keys, now=111.0, until=200.0)  # sweeps: "a" has expired
    assert len(cache) == 2 and cache.get("a", keys, now=100.5) is None
    disabled = VerifiedTokens(max_entries=0)
    disabled.put("a", {"jti": "a"}, keys, now=100.0, until=200.0)
    assert len(disabled) == 0


async def test_an_accepted_caller_skips_the_claim_rules_until_the_clock_goes_back(
        authority: TokenAuthority, monkeypatch: pytest.MonkeyPatch) -> None:
    token = await issue(authority)
    checks: list[str] = []
    original = authority._verifier.check_claims

    def counting(claims: dict[str, object], **kwargs: object) -> None:
        checks.append(str(kwargs["audience"]))
        original(claims, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(authority._verifier, "check_claims", counting)
    assert authority.verify(token, AUDIENCE, []).valid  # verified in full, pair accepted
    assert authority.verify(token, AUDIENCE, []).valid
    assert checks == []
    # Another scope list is another caller: its rules run once, then it is known too.
    assert authority.verify(token, AUDIENCE, ["orders:read"]).valid
    assert authority.verify(token, AUDIENCE, ["orders:read"]).valid
    assert checks == [AUDIENCE]
    # A refused caller is never remembered: refused every time, by the rules.
    for _ in range(2):
        assert authority.verify(token, "billing", []).reason is Reason.WRONG_AUDIENCE
    assert checks == [AUDIENCE, "billing", "billing"]
    # The wall clock stepped back (before nbf, say): the rules run again.
    claims = authority.verify(token, AUDIENCE, []).claims
    assert claims is not None
    monkeypatch.setattr(time, "time", lambda: claims["iat"] - 3600.0)
    assert authority.verify(token, AUDIENCE, []).reason is Reason.NOT_YET_VALID
    assert checks[-1] == AUDIENCE


async def test_the_rendered_answer_lives_and_dies_with_the_cache_entry(
        authority: TokenAuthority) -> None:
    """The token layer hands out its cache entry; the API keeps the gRPC answer by it,
    for exactly as long as the entry lives."""
    token = await issue(authority)
    answers = VerifyAnswers()
    first = authority.verify(token, AUDIENCE, [])
    assert first.entry is not None and answers.get(id(first.entry)) is None
    rendered = answers.add(first.entry)
    assert rendered.valid and rendered.subject == "alice"
    again = authority.verify(token, AUDIENCE, ["orders:read"])
    assert again.entry is first.entry and answers.get(id(again.entry)) is rendered
    await authority.revoke_token(token, "leaked")
    refused = authority.verify(token, AUDIENCE, [])
    assert refused.reason is Reason.REVOKED and refused.entry is None
    del first, again  # the last references to the entry the revocation dropped
    assert len(answers) == 0


async def test_a_token_verified_afresh_gets_a_new_entry_and_answer(
        authority: TokenAuthority) -> None:
    """After a new key set (or expiry, eviction) the old answer is never found again."""
    token = await issue(authority)
    answers = VerifyAnswers()
    first = authority.verify(token, AUDIENCE, [])
    assert first.entry is not None
    answers.add(first.entry)
    verifier = authority._verifier
    verifier.update_jwks({"keys": [key.to_jwk() for key in verifier.jwks.keys]})
    again = authority.verify(token, AUDIENCE, [])
    assert again.entry is not None and again.entry is not first.entry
    assert answers.get(id(again.entry)) is None
    answers.add(again.entry)
    del first
    assert len(answers) == 1  # the first entry left the cache with the old key set
