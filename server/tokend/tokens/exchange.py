"""Token exchange (RFC 8693): a token this tokend issued (the subject token) traded for a
token for another audience, on the subject's behalf, with the chain of actors in `act`.

The new token keeps `sub`, never widens scope, never outlives the subject token, and
carries `act` = {"sub": <actor>, "act": <the subject token's own act>} (RFC 8693 §4.1:
the outermost act is the current actor, nested ones the earlier actors). It is recorded
in the store against the subject token's jti before it is signed, so revoking that jti
(or the subject) revokes it too (store/base.py, "Exchange links"). Policy (who may
exchange what, how deep) is the API layer's: api/caller_policy.check_exchange.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokend.store import ExchangeLink, Store
from tokend.tokens.errors import BadRequest
from tokend.tokens.input_rules import RESERVED_CLAIMS, AccessTokenSpec
from tokend.tokens.minting import MintedToken, TokenMinter, new_jti
from tokend_client import InvalidToken, actors

# RFC 8693 §3: the type of the token Exchange issues.
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 (a URN)

# Fully verifies a token this tokend issued, whatever its audience, presented by the
# certificate with the given x5t#S256 (or none), and that it is not revoked: returns its
# claims or raises InvalidToken / BadRequest (TokenAuthority.presented).
Check = Callable[[str, float, str | None], dict[str, Any]]


class SubjectTokenRefused(BadRequest):
    """The subject or actor token cannot be exchanged (invalid, expired, revoked, not
    ours). INVALID_ARGUMENT: the same request can never succeed."""


@dataclass(frozen=True)
class ExchangeAsk:
    """An Exchange request, validated (api/requests.exchange_ask)."""

    subject_token: str
    actor_token: str | None
    audience: tuple[str, ...]
    scopes: tuple[str, ...]  # empty: the subject token's
    ttl: float | None  # None: the subject token's remaining life
    client_id: str  # the caller (kind-qualified): the new token's client_id
    # The x5t#S256 of the caller's client certificate (None without one): a bound
    # subject or actor token (RFC 8705 §3) must name it.
    presenter: str | None = None
    # The new token's `cnf` when the request asks for a binding; never inherited from
    # the subject token (docs/binding.md, docs/exchange.md).
    confirmation: dict[str, str] | None = None


@dataclass(frozen=True)
class ExchangePlan:
    """What the new token will be, once the subject (and actor) token verified."""

    spec: AccessTokenSpec
    source: tuple[str, ...]  # the subject token's audiences (policy: do they name the caller?)
    depth: int  # actors in the new token's chain
    actor: str
    parent_jti: str
    parent_iat: float
    issued_at: int


class Exchanger:
    def __init__(self, *, check: Check, minter: TokenMinter, store: Store, leeway: float
                 ) -> None:
        self._check = check
        self._minter = minter
        self._store = store
        self._leeway = leeway

    def plan(self, ask: ExchangeAsk, now: float | None = None) -> ExchangePlan:
        moment = time.time() if now is None else now
        parent = self._verified("subject_token", ask.subject_token, moment, ask.presenter)
        actor = self._actor(ask, moment)
        issued_at = int(moment)
        # Never beyond the subject token's own exp (RFC 8693 §2.2.1 leaves the lifetime
        # to the server; a longer one would outlive what the subject granted).
        remaining = math.floor(parent["exp"]) - issued_at
        if remaining < 1:
            raise SubjectTokenRefused("subject_token expires within a second: nothing left "
                                      "to exchange (EXPIRED)", field="subject_token")
        ttl = remaining if ask.ttl is None else min(int(ask.ttl), remaining)
        act: dict[str, Any] = {"sub": actor}
        if "act" in parent:  # RFC 8693 §4.1: earlier actors nest inside the current one
            act["act"] = parent["act"]
        custom = {k: v for k, v in parent.items() if k not in RESERVED_CLAIMS}
        spec = AccessTokenSpec(
            subject=parent["sub"], audience=ask.audience,
            scopes=_narrowed(ask.scopes, parent.get("scope")),
            claims={**custom, "act": act}, ttl=ttl, client_id=ask.client_id,
            confirmation=ask.confirmation)
        aud = parent["aud"]
        return ExchangePlan(spec=spec, source=(aud,) if isinstance(aud, str) else tuple(aud),
                            depth=len(actors(parent)) + 1, actor=actor,
                            parent_jti=parent["jti"], parent_iat=parent["iat"],
                            issued_at=issued_at)

    async def mint(self, plan: ExchangePlan) -> MintedToken:
        """Record the link first, then sign: a revocation of the parent that commits
        before the link refuses the exchange; one after it revokes the new token."""
        jti = new_jti()
        link = ExchangeLink(parent_jti=plan.parent_jti, parent_iat=plan.parent_iat,
                            subject=plan.spec.subject, child_jti=jti,
                            child_expires_at=plan.issued_at + plan.spec.ttl + self._leeway)
        if not await self._store.record_exchange(link):
            raise SubjectTokenRefused("subject_token has been revoked (REVOKED)",
                                      field="subject_token")
        return await self._minter.mint(plan.spec, now=plan.issued_at, jti=jti)

    def _actor(self, ask: ExchangeAsk, now: float) -> str:
        """The caller itself, or the subject of an actor token issued to the caller."""
        if ask.actor_token is None:
            return ask.client_id
        claims = self._verified("actor_token", ask.actor_token, now, ask.presenter)
        # Decided here (RFC 8693 §2.1 leaves it open): an actor token stands for the
        # party presenting it, so it must have been issued to the caller; one that is
        # itself delegated would make the chain ambiguous.
        if claims.get("client_id") != ask.client_id:
            raise SubjectTokenRefused("actor_token was not issued to the caller "
                                      "(its client_id is another caller's)",
                                      field="actor_token")
        if "act" in claims:
            raise SubjectTokenRefused("actor_token is itself a delegated token (has act)",
                                      field="actor_token")
        return str(claims["sub"])

    def _verified(self, field: str, token: str, now: float, presenter: str | None
                  ) -> dict[str, Any]:
        try:
            claims = self._check(token, now, presenter)
        except InvalidToken as exc:
            raise SubjectTokenRefused(f"{field} is not usable ({exc.reason.name})",
                                      field=field) from None
        except BadRequest as exc:
            raise SubjectTokenRefused(f"{field}: {exc}", field=field) from None
        if now >= claims["exp"]:  # no leeway for minting from it
            raise SubjectTokenRefused(f"{field} has expired (EXPIRED)", field=field)
        return claims


def _narrowed(requested: tuple[str, ...], granted: object) -> tuple[str, ...]:
    have = tuple(granted.split(" ")) if isinstance(granted, str) and granted else ()
    if not requested:
        return have
    extra = [scope for scope in requested if scope not in have]
    if extra:
        # RFC 8693 §2.2.2 (invalid_scope): a delegated token never holds more than its
        # subject token.
        raise BadRequest(f"exchange cannot widen scopes: {', '.join(extra)} not in the "
                         "subject token's scope", field="scopes")
    return requested
