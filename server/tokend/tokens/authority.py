"""The token lifecycle: issue, verify, refresh and revoke, independent of gRPC.

Inputs arrive validated (api/requests.py applies tokens/input_rules.py once per request);
what is checked here needs tokend's own state: keys, the store, the denylist."""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn

import structlog

from tokend import metrics
from tokend.audit import AuditLog
from tokend.config import TokenConfig
from tokend.store import (
    NewRevocation,
    RefreshFamily,
    RefreshRetry,
    RefreshToken,
    Revocation,
    RotateStatus,
    Store,
)
from tokend.store.base import family_cut_off, is_retry
from tokend.tokens import retry
from tokend.tokens.denylist import Denylist
from tokend.tokens.errors import BadRequest, RefreshDenied, RevocationsStale
from tokend.tokens.input_rules import AccessTokenSpec, check_narrowing
from tokend.tokens.minting import MintedToken, TokenMinter
from tokend.tokens.refresh import hash_refresh_token, new_refresh_token, token_fingerprint
from tokend.tokens.verify_cache import VERIFIED_CACHE_ENTRIES, VerifiedToken, VerifiedTokens
from tokend_client import InvalidToken, LocalVerifier, Reason, verify_compact
from tokend_client.jose import strict_json_loads

log = structlog.get_logger("tokend.tokens")

# The caller's current policy applied to a Refresh: returns the spec it allows (narrowed)
# or raises (PolicyDenied, PERMISSION_DENIED).
Permit = Callable[[AccessTokenSpec], AccessTokenSpec]

# Rejections decided after the signature verified: the claims are authentic.
_AFTER_SIGNATURE = frozenset({
    Reason.WRONG_TYPE, Reason.MISSING_CLAIM, Reason.EXPIRED, Reason.NOT_YET_VALID,
    Reason.ISSUED_IN_FUTURE, Reason.LIFETIME_TOO_LONG, Reason.WRONG_AUDIENCE,
    Reason.WRONG_ISSUER, Reason.MISSING_SCOPE,
})


@dataclass(frozen=True)
class IssueResult:
    access: MintedToken
    subject: str
    refresh_token: str | None = None
    refresh_expires_at: float | None = None
    retried: bool = False  # a Refresh answered again from its sealed first answer


class Verdict(NamedTuple):  # a tuple: built on every Verify, cheaply
    """The server's answer to one Verify, before the API layer renders it (the client's
    tokend_client.VerifyResult is that answer as a caller receives it)."""

    valid: bool
    reason: Reason | None = None
    # Set when valid, and for refusals after a good signature (the claims are real).
    claims: dict[str, Any] | None = None
    # For a valid token: its verified-token cache entry, the same object for as long as
    # the token stays cached, so a layer above may key what it renders from the claims.
    entry: VerifiedToken | None = None


class TokenAuthority:
    def __init__(
        self,
        *,
        minter: TokenMinter,
        store: Store,
        denylist: Denylist,
        verifier: LocalVerifier,
        config: TokenConfig,
        audit: AuditLog,
        verified_cache: int = VERIFIED_CACHE_ENTRIES,
    ) -> None:
        self._audit = audit
        self._minter = minter
        self._store = store
        self._denylist = denylist
        self._verifier = verifier
        self._config = config
        self.verified = VerifiedTokens(verified_cache)

    # -- Issue -------------------------------------------------------------------------

    async def issue(self, spec: AccessTokenSpec, *, with_refresh: bool) -> IssueResult:
        access = await self._minter.mint(spec)
        metrics.child(metrics.ISSUED, "issue").inc()
        # Debug: the audit stream already has one line per Issue with these fields.
        log.debug("token.issued", jti=access.jti, sub=spec.subject, aud=list(spec.audience),
                 client_id=spec.client_id, kid=access.kid)
        if not with_refresh:
            return IssueResult(access, spec.subject)
        return await self._start_family(spec, access)

    async def _start_family(self, spec: AccessTokenSpec, access: MintedToken) -> IssueResult:
        now = time.time()
        family = RefreshFamily(
            family_id=access.jti, subject=spec.subject, client_id=spec.client_id,
            audience=spec.audience, scopes=spec.scopes, claims=dict(spec.claims),
            access_ttl=float(spec.ttl),
            # As old as its first access token (its iat, taken before Vault signed it):
            # a Revoke(subject) answered while this Issue waited covers both alike.
            created_at=float(access.issued_at),
            expires_at=now + self._config.refresh_family_lifetime,
        )
        token, first = self._new_refresh(family, access, now)
        await self._store.create_family(family, first)
        log.info("refresh.family_created", family=family.family_id, sub=spec.subject,
                 refresh=token_fingerprint(first.token_hash))
        return IssueResult(access, spec.subject, token, first.expires_at)

    def _new_refresh(
        self, family: RefreshFamily, access: MintedToken, now: float
    ) -> tuple[str, RefreshToken]:
        token, token_hash = new_refresh_token()
        expires_at = min(now + self._config.refresh_ttl, family.expires_at)
        record = RefreshToken(
            token_hash=token_hash, family_id=family.family_id, issued_at=now,
            expires_at=expires_at, access_jti=access.jti,
            # Verifiers accept a token until exp + leeway; a revocation must outlive that.
            access_expires_at=float(access.expires_at + self._config.leeway),
        )
        return token, record

    # -- Refresh -----------------------------------------------------------------------

    async def refresh(self, refresh_token: str, requested: tuple[str, ...], *, client_id: str,
                      permit: Permit | None = None, idempotency_key: str | None = None,
                      ) -> IssueResult:
        """``requested``: scopes to narrow to (none: the family's); ``permit``: the
        caller's current policy, which may narrow the spec or refuse (PolicyDenied);
        ``idempotency_key``: makes this Refresh retryable (tokens.retry)."""
        token_hash = hash_refresh_token(refresh_token)
        key = idempotency_key
        retry_key = retry.retry_key(client_id, key, token_hash, requested) if key else None
        found = await self._store.get_refresh(token_hash)
        if found is None:
            self._deny("not_found")
        family, record = found
        now = time.time()
        if (record.spent_at is not None and family.revoked_at is None
                and record.retry is not None and is_retry(record, retry_key, now)):
            return await self._answer_again(refresh_token, family, record.retry.sealed, retry_key)
        await self._check_usable(family, record, token_hash, now)
        self._check_owner(family, client_id, now)
        spec = AccessTokenSpec(
            subject=family.subject, audience=family.audience,
            scopes=check_narrowing(requested, family.scopes), claims=family.claims,
            ttl=int(min(family.access_ttl, self._config.max_ttl)), client_id=family.client_id,
        )
        if permit is not None:
            spec = permit(spec)
        return await self._rotate(refresh_token, token_hash, family, spec, retry_key)

    def _check_owner(self, family: RefreshFamily, client_id: str, now: float) -> None:
        if family.client_id != client_id:
            # RFC 6749 §6: a refresh token is bound to the client it was issued to.
            log.warning("refresh.wrong_client", family=family.family_id,
                        client_id=client_id, owner=family.client_id)
            self._deny("wrong_client")
        if family_cut_off(family, self._denylist.subject_cutoff(family.subject, now)):
            self._deny("revoked")  # the store would say so too: spare Vault the signature

    async def _rotate(self, refresh_token: str, token_hash: bytes, family: RefreshFamily,
                      spec: AccessTokenSpec, retry_key: bytes | None) -> IssueResult:
        access = await self._minter.mint(spec)
        now = time.time()
        token, new = self._new_refresh(family, access, now)
        result = IssueResult(access, family.subject, token, new.expires_at)
        sealed = None
        if retry_key is not None:
            sealed = RefreshRetry(retry_key, retry.seal(refresh_token, retry_key, _answer(result)),
                                  now + self._config.refresh_retry_window)
        rotated = await self._store.rotate_refresh(token_hash, new, now, retry_key=retry_key,
                                                   retry=sealed)
        if rotated.status is RotateStatus.RETRY and rotated.retry is not None:
            # A first attempt with this key committed while this one was minting.
            return await self._answer_again(refresh_token, family, rotated.retry.sealed,
                                            retry_key)
        if rotated.status is RotateStatus.REUSED:
            self._reuse_detected(family, token_hash, rotated.revocations)
        elif rotated.revocations:  # a family the store found cut off by Revoke(subject)
            self._apply(rotated.revocations)
        if rotated.status is not RotateStatus.OK:
            self._deny(rotated.status.name.lower())
        metrics.REFRESHED.labels("ok").inc()
        metrics.ISSUED.labels("refresh").inc()
        log.info("token.refreshed", jti=access.jti, family=family.family_id,
                 sub=family.subject, refresh=token_fingerprint(new.token_hash))
        return result

    async def _answer_again(self, refresh_token: str, family: RefreshFamily, sealed: bytes,
                            retry_key: bytes | None) -> IssueResult:
        """The answer a first Refresh with this idempotency key gave, if its new refresh
        token is still unspent (else the first answer arrived: this is a second use)."""
        assert retry_key is not None
        try:
            answer = retry.unseal(refresh_token, retry_key, sealed)
        except retry.SealBroken:
            log.error("refresh.retry_seal_broken", family=family.family_id)
            self._deny("revoked")
        result = _from_answer(answer, family.subject)
        assert result.refresh_token is not None
        successor_hash = hash_refresh_token(result.refresh_token)
        found = await self._store.get_refresh(successor_hash)
        if found is None or found[0].revoked_at is not None:
            self._deny("revoked")
        if found[1].spent_at is not None:
            revocations = await self._store.revoke_family(
                family.family_id, "refresh token reuse", time.time())
            self._reuse_detected(family, successor_hash, revocations)
            self._deny("reused")
        metrics.REFRESHED.labels("retry").inc()
        log.info("token.refresh_retried", jti=result.access.jti, family=family.family_id,
                 sub=family.subject, refresh=token_fingerprint(successor_hash))
        return result

    async def _check_usable(self, family: RefreshFamily, record: RefreshToken,
                            token_hash: bytes, now: float) -> None:
        if record.spent_at is not None and family.revoked_at is None:
            revocations = await self._store.revoke_family(
                family.family_id, "refresh token reuse", now)
            self._reuse_detected(family, token_hash, revocations)
            self._deny("reused")
        if family.revoked_at is not None or record.spent_at is not None:
            self._deny("revoked")
        if now >= record.expires_at or now >= family.expires_at:
            self._deny("expired")

    @staticmethod
    def _deny(outcome: str) -> NoReturn:
        metrics.REFRESHED.labels(outcome).inc()
        raise RefreshDenied("refresh token is invalid, expired or revoked")

    def _reuse_detected(
        self, family: RefreshFamily, token_hash: bytes, revocations: Any
    ) -> None:
        # RFC 9700 §4.14.2: a spent refresh token presented again means it leaked;
        # the whole family and its access tokens are revoked.
        self._apply(revocations)
        metrics.REUSE_DETECTED.inc()
        metrics.SECURITY_EVENTS.labels("refresh_token_reuse").inc()
        fields = {"family": family.family_id, "subject": family.subject,
                  "client_id": family.client_id, "refresh": token_fingerprint(token_hash),
                  "revoked": len(revocations)}
        log.critical("security.refresh_token_reuse", **fields)
        self._audit.emit("security.refresh_token_reuse", severity="critical", **fields)

    # -- Verify ------------------------------------------------------------------------

    def verify(self, token: str, audience: str, required_scopes: Sequence[str]
               ) -> Verdict:
        scopes = tuple(required_scopes)
        now = time.time()
        try:
            verified = self._verified(token, audience, scopes, now)
        except InvalidToken as exc:
            claims = self._authentic_claims(token) if exc.reason in _AFTER_SIGNATURE else None
            return self._counted(Verdict(False, exc.reason, claims))
        claims = verified.claims
        if self._denylist.is_revoked(claims["jti"], claims["sub"], claims["iat"], now):
            return self._counted(Verdict(False, Reason.REVOKED, claims))
        self._check_fresh_revocations()
        return self._counted(Verdict(True, None, claims, verified))

    def _verified(self, token: str, audience: str, scopes: tuple[str, ...], now: float
                  ) -> VerifiedToken:
        """`LocalVerifier.verify`, remembering tokens that passed: for a token seen
        before only the claim rules run again (time, audience, scopes), and not even
        those for a caller they already held for (`VerifiedToken`)."""
        keys = self._verifier.jwks
        known = self.verified.get(token, keys, now)
        if known is None:
            claims = self._verifier.verify(token, now=now, audience=audience,
                                           required_scopes=scopes)
            # Until the verifier itself would call it expired (exp + leeway).
            known = self.verified.put(token, claims, keys, now,
                                      claims["exp"] + self._config.leeway)
        elif known.admits(audience, scopes, now):
            return known
        else:
            self._verifier.check_claims(known.claims, now=now, audience=audience,
                                        required_scopes=scopes)
        known.accept(audience, scopes, now)
        return known

    def _check_fresh_revocations(self) -> None:
        """Fail closed (tokens.revocation_max_staleness): only a "valid" answer is at risk
        from a stale denylist, so every refusal above is still given."""
        limit = self._config.revocation_max_staleness
        if not limit:
            return
        stale = self._denylist.staleness()
        if stale > limit:
            metrics.VERIFIED.labels("unavailable", "revocations_stale").inc()
            raise RevocationsStale(
                f"cannot confirm the token is not revoked: the revocation list was last "
                f"read from the store {stale:.0f} s ago, over tokens.revocation_max_staleness "
                f"({limit:g} s); retry later"
            )

    def _authentic_claims(self, token: str) -> dict[str, Any] | None:
        """For the audit trail: who a well-signed but refused token was about."""
        try:
            return self._claims_of_own_token(token)
        except BadRequest:
            return None

    @staticmethod
    def _counted(verdict: Verdict) -> Verdict:
        outcome = "valid" if verdict.valid else "invalid"
        metrics.child(metrics.VERIFIED, outcome, verdict.reason.name if verdict.reason else "none"
                      ).inc()
        return verdict

    # -- Revoke ------------------------------------------------------------------------

    async def revoke_token(self, token: str, reason: str) -> int:
        claims = self._claims_of_own_token(token)
        if claims["exp"] + self._config.leeway <= time.time():
            return 0  # already unusable everywhere: nothing to record
        return await self._add("jti", claims["jti"], claims["exp"] + self._config.leeway, reason)

    def _claims_of_own_token(self, token: str) -> dict[str, Any]:
        """Signature and issuer only: an expired or wrong-audience token may still be revoked."""
        jwks = self._verifier.jwks
        try:
            # Each published key is bound to one algorithm, so allowing theirs is exact.
            payload = verify_compact(token, jwks, {key.alg for key in jwks.keys})
            claims = strict_json_loads(payload)
        except InvalidToken as exc:
            raise BadRequest(f"token was not issued by this tokend ({exc.reason.name})") from None
        if (not isinstance(claims, dict) or claims.get("iss") != self._config.issuer
                or not isinstance(claims.get("jti"), str)
                or not isinstance(claims.get("exp"), int | float)):
            raise BadRequest("token was not issued by this tokend (claims)")
        return claims

    async def revoke_jti(self, jti: str, reason: str) -> int:
        return await self._add("jti", jti, self._horizon(), reason)

    async def revoke_refresh(self, refresh_token: str, reason: str) -> int:
        found = await self._store.get_refresh(hash_refresh_token(refresh_token))
        if found is None:
            return 0  # RFC 7009 §2.2: an unknown token is not an error
        revocations = await self._store.revoke_family(found[0].family_id, reason, time.time())
        return self._apply(revocations)

    async def revoke_subject(self, subject: str, reason: str) -> int:
        cutoff = time.time()
        revocations = await self._store.revoke_subject(subject, reason, cutoff,
                                                       self._horizon())
        count = self._apply(revocations)
        await _after_second_of(cutoff)
        return count

    def _horizon(self) -> float:
        """When every token issued up to now has expired."""
        return time.time() + self._config.max_ttl + self._config.leeway

    async def _add(self, kind: str, value: str, expires_at: float, reason: str) -> int:
        rows = await self._store.add_revocations(
            [NewRevocation(kind=kind, value=value, expires_at=expires_at, reason=reason)])
        return self._apply(rows)

    def _apply(self, revocations: Any) -> int:
        # The store has committed; apply at once so this process never serves a stale answer.
        rows: list[Revocation] = list(revocations)
        self._denylist.apply(rows)
        self.verified.forget(rows)
        for row in rows:
            metrics.REVOKED.labels(row.kind).inc()
            log.info("token.revoked", kind=row.kind, value=_loggable(row), seq=row.seq,
                     reason=row.reason)
        metrics.DENYLIST_SIZE.set(len(self._denylist))
        return len(rows)


async def _after_second_of(cutoff: float) -> None:
    """Return once the whole second holding `cutoff` is over.

    iat is a NumericDate in whole seconds (RFC 7519 §4.1.6), and every verifier denies a
    subject's token when iat <= cutoff. A token minted later in the cutoff's second gets
    iat = floor(cutoff) and would be denied although issued after the revocation; a
    Revoke(subject) that answers only after that second makes the comparison exact for
    every token issued after the answer, in every verifier, with nothing to change there.
    """
    end = math.floor(cutoff) + 1
    while (left := end - time.time()) > 0:
        await asyncio.sleep(left + 0.001)


def _answer(result: IssueResult) -> dict[str, Any]:
    """What a retried Refresh must answer again (sealed before it is stored)."""
    access = result.access
    return {"access_token": access.token, "jti": access.jti, "kid": access.kid,
            "iat": access.issued_at, "exp": access.expires_at,
            "refresh_token": result.refresh_token, "refresh_exp": result.refresh_expires_at}


def _from_answer(answer: dict[str, Any], subject: str) -> IssueResult:
    access = MintedToken(answer["access_token"], answer["jti"], answer["kid"], answer["iat"],
                         answer["exp"])
    return IssueResult(access, subject, answer["refresh_token"], answer["refresh_exp"],
                       retried=True)


def _loggable(row: Revocation) -> str:
    # jti and family ids are not secrets; subjects may be personal data, so log a hash prefix.
    if row.kind == "subject":
        return "sha256:" + hashlib.sha256(row.value.encode()).hexdigest()[:12]
    return row.value
