"""The cache of verified tokens behind Verify: fast for repeats, never stale.

A real TokenAuthority (Transit keys on OpenBao, SQLite store, the denylist) with leeway 0,
so expiry is observable within a second.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.clients.python.client_test_support import generate_key
from tests.support.bao import BaoDevServer, vault_session
from tokend.api.responses import VerifyAnswers
from tokend.audit import AuditLog
from tokend.config import TokenConfig
from tokend.keys.transit import TransitKeyring
from tokend.store import Revocation, open_store
from tokend.tokens.authority import _AFTER_SIGNATURE, TokenAuthority
from tokend.tokens.denylist import Denylist
from tokend.tokens.input_rules import AccessTokenSpec
from tokend.tokens.minting import TokenMinter, build_claims, new_jti
from tokend.tokens.verify_cache import VerifiedTokens
from tokend_client import LocalVerifier, Reason
from tokend_client.jose import b64url_decode, compact_jws, json_segment

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


@pytest.fixture
def signature_checks(authority: TokenAuthority) -> Iterator[list[bytes]]:
    """The signing input of every signature check made with the verifier's keys (ES256
    on Transit's public key), whoever makes it: the verifier, or the authority reading
    a token's claims itself."""
    checks: list[bytes] = []
    keys = authority._verifier.jwks.keys
    originals = [key._verify for key in keys]

    def counting(check: Callable[[bytes, bytes], bool]) -> Callable[[bytes, bytes], bool]:
        def counted(signing_input: bytes, signature: bytes) -> bool:
            checks.append(signing_input)
            return check(signing_input, signature)
        return counted

    for key, original in zip(keys, originals, strict=True):
        object.__setattr__(key, "_verify", counting(original))  # PublicKey is frozen
    yield checks
    for key, original in zip(keys, originals, strict=True):
        object.__setattr__(key, "_verify", original)


async def signed(authority: TokenAuthority, claims: dict[str, Any], typ: str = "at+jwt"
                 ) -> str:
    """A token with exactly these claims and typ, signed by the authority's active key."""
    minter = authority._minter
    key = minter._keyring.active()
    header = json_segment({"alg": key.alg, "kid": key.kid, "typ": typ})
    signing_input = f"{header}.{json_segment(claims)}"
    return compact_jws(signing_input, await minter._sign(key, signing_input.encode()))


def refusal(reason: Reason, claims: dict[str, Any], now: int) -> tuple[str, dict[str, Any]]:
    """Change ``claims`` (issued ``now``, valid) so that Verify refuses the token for
    ``reason`` after its signature verified; the typ to sign it with and the arguments
    of the TokenAuthority.verify call that refuses it."""
    call: dict[str, Any] = {"audience": AUDIENCE, "required_scopes": []}
    changes: dict[Reason, Callable[[], object]] = {
        Reason.EXPIRED: lambda: claims.update(iat=now - 3600, nbf=now - 3600, exp=now - 3300),
        Reason.NOT_YET_VALID: lambda: claims.update(iat=now + 3600, nbf=now + 3600,
                                                    exp=now + 3900),
        Reason.ISSUED_IN_FUTURE: lambda: claims.update(iat=now + 3600),
        Reason.LIFETIME_TOO_LONG: lambda: claims.update(exp=now + 100_000),
        Reason.MISSING_CLAIM: lambda: claims.pop("iat"),
        Reason.WRONG_AUDIENCE: lambda: call.update(audience="billing"),
        Reason.WRONG_ISSUER: lambda: claims.update(iss="https://elsewhere.test"),
        Reason.MISSING_SCOPE: lambda: call.update(required_scopes=["orders:write"]),
        Reason.DELEGATION: lambda: call.update(delegation="required"),
        Reason.CERTIFICATE_MISMATCH: lambda: claims.update(cnf={"x5t#S256": "A" * 43}),
        Reason.WRONG_TYPE: lambda: None,
    }
    changes[reason]()
    return ("JWT" if reason is Reason.WRONG_TYPE else "at+jwt"), call


@pytest.mark.parametrize("reason", sorted(_AFTER_SIGNATURE), ids=lambda reason: reason.name)
async def test_an_uncached_token_refused_after_its_signature_costs_one_signature_check(
        authority: TokenAuthority, signature_checks: list[bytes], reason: Reason) -> None:
    """Refused tokens are an attacker's cheapest load and expired ones are common: the
    audit learns who the token was about from the verifier's own check, not a second
    ES256 verification."""
    now = int(time.time())
    claims = build_claims(spec(subject=f"refused-{reason.name}"), ISSUER, new_jti(), now)
    typ, call = refusal(reason, claims, now)
    token = await signed(authority, claims, typ)
    refused = authority.verify(token, **call)
    assert (refused.valid, refused.reason) == (False, reason)
    assert len(signature_checks) == 1
    # As before: the claims of a token of this issuer, none for another issuer's.
    assert refused.claims == (None if reason is Reason.WRONG_ISSUER else claims)


async def test_a_cached_token_refused_by_its_claims_is_audited_without_a_signature_check(
        authority: TokenAuthority, signature_checks: list[bytes]) -> None:
    """The audit names who a refused token was about; for a cached token its claims are
    already authentic (a second ES256 check cost ~55 µs per refusal, issue 17)."""
    token = await issue(authority, subject="cached-refused")
    assert authority.verify(token, AUDIENCE, []).valid
    assert len(signature_checks) == 1
    refused = authority.verify(token, "billing", [])
    assert refused.reason is Reason.WRONG_AUDIENCE
    assert refused.claims is not None and refused.claims["sub"] == "cached-refused"
    assert len(signature_checks) == 1
    # A token the cache does not hold: its claims come from the verifier's one check.
    other = await issue(authority, subject="uncached-refused")
    refused = authority.verify(other, "billing", [])
    assert refused.claims is not None and refused.claims["sub"] == "uncached-refused"
    assert len(signature_checks) == 2


async def test_a_forged_tokens_claims_are_never_believed(authority: TokenAuthority) -> None:
    """Fail closed: claims whose signature did not verify name no one in the audit, even
    when they read as an expired or wrong-audience token of this issuer."""
    genuine = await issue(authority, subject="genuine")
    header, _, signature = genuine.split(".")
    now = int(time.time())
    claims = build_claims(spec(subject="mallory"), ISSUER, "forged-jti", now - 3600)
    kid = json.loads(b64url_decode(header))["kid"]
    impostor = generate_key("ES256", kid=kid)  # the same kid, another private key
    impostor_input = f"{header}.{json_segment(claims)}"
    forged = [
        f"{header}.{json_segment(claims)}.{signature}",  # genuine header and signature
        compact_jws(impostor_input, impostor.sign(impostor_input.encode())),
    ]
    for token in forged:
        for audience in (AUDIENCE, "billing"):
            refused = authority.verify(token, audience, [])
            assert (refused.valid, refused.reason, refused.claims) == (
                False, Reason.BAD_SIGNATURE, None)


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
