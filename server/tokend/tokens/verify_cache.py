"""The verified-token cache behind Verify: claims of tokens whose signature checked out.

A hit saves the signature check and the JSON parsing; what can change between two calls
(expiry, the caller's audience and scopes, the denylist, the key set) is still decided
on every call by TokenAuthority.verify. Entries carry claims only: what a layer above
renders from them (the gRPC answer) is that layer's to keep, keyed by the entry.
"""

from __future__ import annotations

from typing import Any

from tokend.store import Revocation

# Verified tokens remembered, and how often expired ones are swept out.
VERIFIED_CACHE_ENTRIES = 4096
_SWEEP_SECONDS = 10.0
# (audience, scopes) pairs remembered per cached token: a token is shown to few services.
_ACCEPTED_PER_TOKEN = 8


class VerifiedToken:
    """A token that verified: its claims, and for which callers its claims held.

    Every claim rule but exp either never changes its answer (iss, aud, scope,
    lifetime) or, once met, stays met as time goes on (nbf, iat not in the future);
    exp is `until`, checked on every hit. So a hit for an (audience, scopes) already
    accepted skips the rules — unless the clock went back since they last ran.
    """

    # __weakref__: a layer above may keep what it renders from the claims for exactly as
    # long as this entry lives (api/responses.py). Equality is identity, on purpose.
    __slots__ = ("__weakref__", "accepted", "checked_at", "claims", "until")

    def __init__(self, claims: dict[str, Any], until: float) -> None:
        self.claims = claims
        self.until = until
        self.accepted: set[tuple[str, tuple[str, ...]]] = set()
        self.checked_at = 0.0

    def admits(self, audience: str, scopes: tuple[str, ...], now: float) -> bool:
        # Rules that held at `checked_at` hold at any later moment before `until`.
        return now >= self.checked_at and (audience, scopes) in self.accepted

    def accept(self, audience: str, scopes: tuple[str, ...], now: float) -> None:
        if len(self.accepted) < _ACCEPTED_PER_TOKEN:
            self.accepted.add((audience, scopes))
        self.checked_at = now


class VerifiedTokens:
    """Claims of tokens that verified, keyed by the full token text (never logged).

    A hit saves the signature check and the parsing, nothing else: the claims are
    checked again for the moment and the caller's audience and scopes, and the
    denylist is consulted on every call, so a revocation applies at once whichever
    path (this process or the feed) brought it. Entries go when their token expires,
    when a revocation names them (`forget`), when the key set changes, and oldest
    first beyond `max_entries`. Owned by the event loop, like the denylist.
    """

    def __init__(self, max_entries: int = VERIFIED_CACHE_ENTRIES) -> None:
        self._max = max_entries
        self._entries: dict[str, VerifiedToken] = {}
        self._keys: object = None  # the key set the entries were verified with
        self._next_sweep = 0.0

    def get(self, token: str, keys: object, now: float) -> VerifiedToken | None:
        if keys is not self._keys:
            return None
        entry = self._entries.get(token)
        if entry is None:
            return None
        if now >= entry.until:
            del self._entries[token]
            return None
        return entry

    def put(self, token: str, claims: dict[str, Any], keys: object, now: float,
            until: float) -> VerifiedToken:
        entry = VerifiedToken(claims, until)
        if keys is not self._keys:  # a rotation or a reload: verify everything again
            self._entries.clear()
            self._keys = keys
        if now >= self._next_sweep:
            self._sweep(now)
        if self._max <= 0:
            return entry
        while len(self._entries) >= self._max:
            del self._entries[next(iter(self._entries))]  # the oldest insertion
        self._entries[token] = entry
        return entry

    def forget(self, revocations: list[Revocation]) -> None:
        """Drop the entries a revocation names (a jti, or every token of a subject)."""
        jtis = {row.value for row in revocations if row.kind == "jti"}
        subjects = {row.value for row in revocations if row.kind == "subject"}
        if not (jtis or subjects):
            return
        doomed = [token for token, entry in self._entries.items()
                  if entry.claims.get("jti") in jtis or entry.claims.get("sub") in subjects]
        for token in doomed:
            del self._entries[token]

    def _sweep(self, now: float) -> None:
        expired = [token for token, entry in self._entries.items() if now >= entry.until]
        for token in expired:
            del self._entries[token]
        self._next_sweep = now + _SWEEP_SECONDS

    def __len__(self) -> int:
        return len(self._entries)
