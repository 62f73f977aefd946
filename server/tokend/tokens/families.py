"""Refresh-token families: started by an Issue with include_refresh_token, rotated by
each Refresh (the new access token signed first, then the old refresh token spent and the
new one stored in one store call), revoked whole when a spent token comes back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

import structlog

from tokend import metrics
from tokend.audit import AuditLog
from tokend.config import TokenConfig
from tokend.store import (
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
from tokend.tokens.errors import RefreshDenied
from tokend.tokens.input_rules import AccessTokenSpec, check_narrowing
from tokend.tokens.minting import MintedToken, TokenMinter
from tokend.tokens.refresh import hash_refresh_token, new_refresh_token, token_fingerprint

log = structlog.get_logger("tokend.tokens")

# The caller's current policy applied to a Refresh: returns the spec it allows (narrowed)
# or raises (PolicyDenied, PERMISSION_DENIED).
Permit = Callable[[AccessTokenSpec], AccessTokenSpec]


@dataclass(frozen=True)
class IssueResult:
    access: MintedToken
    subject: str
    refresh_token: str | None = None
    refresh_expires_at: float | None = None
    retried: bool = False  # a Refresh answered again from its sealed first answer


class RefreshFamilies:
    """A family is one grant: its refresh tokens succeed each other, each spent once."""

    def __init__(self, *, minter: TokenMinter, store: Store, denylist: Denylist,
                 config: TokenConfig, audit: AuditLog,
                 apply: Callable[[Iterable[Revocation]], int]) -> None:
        """``apply``: the revocations the store committed, to this process's denylist and
        verified-token cache (TokenAuthority owns both)."""
        self._minter = minter
        self._store = store
        self._denylist = denylist
        self._config = config
        self._audit = audit
        self._apply = apply

    async def start(self, spec: AccessTokenSpec, access: MintedToken) -> IssueResult:
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
            self._deny("reused", reused=True)
        if family.revoked_at is not None or record.spent_at is not None:
            self._deny("revoked")
        if now >= record.expires_at or now >= family.expires_at:
            self._deny("expired")

    @staticmethod
    def _deny(outcome: str, *, reused: bool = False) -> NoReturn:
        metrics.REFRESHED.labels(outcome).inc()
        if reused:  # RFC 9700 §4.14.2: the caller must start over (a new login)
            raise RefreshDenied("refresh token was already spent: presenting it again revoked "
                                "its whole family; start a new session", reused=True)
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
        self._audit.emit("security.refresh_token_reuse", level="critical", **fields)


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
