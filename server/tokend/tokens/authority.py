"""The token lifecycle: issue, verify, refresh and revoke, independent of gRPC. Refresh
families live in tokens/families.py, the verified-token cache in tokens/verify_cache.py.

Inputs arrive validated (api/requests.py applies tokens/input_rules.py once per request);
what is checked here needs tokend's own state: keys, the store, the denylist."""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import structlog

from tokend import metrics
from tokend.audit import AuditLog
from tokend.config import TokenConfig
from tokend.store import (
    NewRevocation,
    Revocation,
    Store,
)
from tokend.tokens.denylist import Denylist
from tokend.tokens.errors import BadRequest, RevocationsStale
from tokend.tokens.exchange import ExchangeAsk, ExchangePlan, Exchanger
from tokend.tokens.families import IssueResult, Permit, RefreshFamilies
from tokend.tokens.input_rules import AccessTokenSpec
from tokend.tokens.minting import MintedToken, TokenMinter
from tokend.tokens.refresh import hash_refresh_token
from tokend.tokens.verify_cache import VERIFIED_CACHE_ENTRIES, VerifiedToken, VerifiedTokens
from tokend_client import InvalidToken, LocalVerifier, Reason, verify_compact
from tokend_client.binding import check_confirmation
from tokend_client.delegation import check_delegation
from tokend_client.jose import strict_json_loads

log = structlog.get_logger("tokend.tokens")

# Rejections decided after the signature verified: the claims are authentic.
_AFTER_SIGNATURE = frozenset({
    Reason.WRONG_TYPE, Reason.MISSING_CLAIM, Reason.EXPIRED, Reason.NOT_YET_VALID,
    Reason.ISSUED_IN_FUTURE, Reason.LIFETIME_TOO_LONG, Reason.WRONG_AUDIENCE,
    Reason.WRONG_ISSUER, Reason.MISSING_SCOPE, Reason.CERTIFICATE_MISMATCH, Reason.DELEGATION,
})


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
        self.families = RefreshFamilies(minter=minter, store=store, denylist=denylist,
                                        config=config, audit=audit, apply=self._apply)
        self.exchanges = Exchanger(check=self.presented, minter=minter, store=store,
                                   leeway=config.leeway)

    # -- Issue -------------------------------------------------------------------------

    async def issue(self, spec: AccessTokenSpec, *, with_refresh: bool) -> IssueResult:
        access = await self._minter.mint(spec)
        metrics.child(metrics.ISSUED, "issue").inc()
        # Debug: the audit stream already has one line per Issue with these fields.
        log.debug("token.issued", jti=access.jti, sub=spec.subject, aud=list(spec.audience),
                 client_id=spec.client_id, kid=access.kid)
        if not with_refresh:
            return IssueResult(access, spec.subject)
        return await self.families.start(spec, access)

    async def refresh(self, refresh_token: str, requested: tuple[str, ...], *, client_id: str,
                      permit: Permit | None = None, idempotency_key: str | None = None,
                      ) -> IssueResult:
        """tokens/families.py: RefreshFamilies.refresh."""
        return await self.families.refresh(refresh_token, requested, client_id=client_id,
                                           permit=permit, idempotency_key=idempotency_key)

    # -- Exchange (RFC 8693; tokens/exchange.py) ---------------------------------------

    def plan_exchange(self, ask: ExchangeAsk) -> ExchangePlan:
        """The subject (and actor) token verified; the caller's policy is applied to the
        plan (api/caller_policy.check_exchange) before `exchange` mints it."""
        return self.exchanges.plan(ask)

    async def exchange(self, plan: ExchangePlan) -> MintedToken:
        access = await self.exchanges.mint(plan)
        metrics.child(metrics.ISSUED, "exchange").inc()
        return access

    def presented(self, token: str, now: float, presenter: str | None) -> dict[str, Any]:
        """A token handed to Exchange: issued by this tokend (else BadRequest), and
        verified in full, whatever its audience (the caller's policy judges that), bound
        (if it is) to ``presenter``, the caller's certificate, and not revoked (else
        InvalidToken)."""
        claims = self._claims_of_own_token(token)
        aud = claims.get("aud")
        names = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
        if not names or not all(isinstance(n, str) and n for n in names):
            names = ["\x00"]  # matches no aud: the verifier names what is wrong with it
        claims = self._verifier.verify(token, now=now, audience=names,
                                       presenter_x5t_s256=presenter)
        if self._denylist.is_revoked(claims["jti"], claims["sub"], claims["iat"], now):
            raise InvalidToken(Reason.REVOKED)
        self._check_fresh_revocations()
        return claims

    # -- Verify ------------------------------------------------------------------------

    def verify(self, token: str, audience: str, required_scopes: Sequence[str],
               delegation: str = "any", presenter: str | None = None) -> Verdict:
        """``delegation``: "any", "required" or "refused" (rule A2); ``presenter``: the
        x5t#S256 of the certificate presenting the token, or None."""
        scopes = tuple(required_scopes)
        now = time.time()
        try:
            verified = self._verified(token, audience, scopes, now, presenter, delegation)
            if delegation != "any":  # rule A2, after the claim rules, before cnf
                check_delegation(verified.claims, delegation)
        except InvalidToken as exc:
            return self._counted(Verdict(False, exc.reason, self._refused_claims(exc, token, now)))
        claims = verified.claims
        if "cnf" in claims:
            try:
                # RFC 8705 §3: on every call, after the cache: the cache remembers which
                # audiences a token held for, never which certificate presented it.
                check_confirmation(claims, presenter)
            except InvalidToken as exc:
                return self._counted(Verdict(False, exc.reason, claims))
        if self._denylist.is_revoked(claims["jti"], claims["sub"], claims["iat"], now):
            return self._counted(Verdict(False, Reason.REVOKED, claims))
        self._check_fresh_revocations()
        return self._counted(Verdict(True, None, claims, verified))

    def _verified(self, token: str, audience: str, scopes: tuple[str, ...], now: float,
                  presenter: str | None, delegation: str = "any") -> VerifiedToken:
        """`LocalVerifier.verify`, remembering tokens that passed: for a token seen
        before only the claim rules run again (time, audience, scopes), and not even
        those for a caller they already held for (`VerifiedToken`)."""
        keys = self._verifier.jwks
        known = self.verified.get(token, keys, now)
        if known is None:
            claims = self._verifier.verify(token, now=now, audience=audience,
                                           required_scopes=scopes,
                                           presenter_x5t_s256=presenter,
                                           delegation=delegation)
            # Until the verifier itself would call it expired (exp + leeway).
            known = self.verified.put(token, claims, keys, now,
                                      claims["exp"] + self._config.leeway)
        elif known.admits(audience, scopes, now):
            return known
        else:
            self._verifier.check_claims(known.claims, now=now, audience=audience,
                                        required_scopes=scopes,
                                        presenter_x5t_s256=presenter,
                                        delegation=delegation)
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

    def _refused_claims(self, exc: InvalidToken, token: str, now: float
                        ) -> dict[str, Any] | None:
        """For the audit: who a token refused after its signature verified was about,
        never from a second signature check (refused tokens are an attacker's cheapest
        load, and expired ones common). The verifier hands over the claims it
        authenticated with its refusal; a cached token's were authenticated on the way
        in. Fail closed: a token whose signature did not verify names no one."""
        if exc.reason not in _AFTER_SIGNATURE:
            return None
        if exc.claims is not None:  # set by LocalVerifier.verify only after the signature
            return self._own_claims(exc.claims)
        known = self.verified.get(token, self._verifier.jwks, now)
        return known.claims if known is not None else None

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
            raise BadRequest(f"token was not issued by this tokend ({exc.reason.name})",
                             field="token") from None
        own = self._own_claims(claims)
        if own is None:
            raise BadRequest("token was not issued by this tokend (claims)", field="token")
        return own

    def _own_claims(self, claims: object) -> dict[str, Any] | None:
        """Well-signed claims that name this tokend as issuer and carry its jti and exp."""
        if (not isinstance(claims, dict) or claims.get("iss") != self._config.issuer
                or not isinstance(claims.get("jti"), str)
                or not isinstance(claims.get("exp"), int | float)):
            return None
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


def _loggable(row: Revocation) -> str:
    # jti and family ids are not secrets; subjects may be personal data, so log a hash prefix.
    if row.kind == "subject":
        return "sha256:" + hashlib.sha256(row.value.encode()).hexdigest()[:12]
    return row.value
