"""Minting: builds the RFC 9068 access token and has the keyring sign it."""

from __future__ import annotations

import functools
import os
import secrets
import threading
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from tokend.keys.keyring import Keyring, SigningKey
from tokend.tokens.batching import SignBatcher
from tokend.tokens.errors import SigningUnavailable
from tokend.tokens.input_rules import AccessTokenSpec
from tokend.vault.client import VaultError
from tokend_client.jose import b64url_encode, compact_jws, json_segment


@dataclass(frozen=True)
class MintedToken:
    token: str
    jti: str
    kid: str
    issued_at: int
    expires_at: int


_JTI_BYTES = 16
_JTI_BATCH = 256  # identifiers per read of the OS random source


class _RandomIds:
    """128-bit identifiers from the OS CSPRNG, read 4 KiB at a time.

    One getrandom() per 256 tokens instead of one per token: on the event loop each
    system call releases the GIL, and with signing threads busy getting it back can
    cost far more than the call itself. The bytes are the same CSPRNG output, each
    handed out once. The lock makes it safe from any thread; a forked child starts
    with an empty pool, so parent and child never hand out the same bytes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._offset = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._pool, self._offset = b"", 0

    def next(self) -> bytes:
        with self._lock:
            if self._offset >= len(self._pool):
                self._pool = secrets.token_bytes(_JTI_BYTES * _JTI_BATCH)
                self._offset = 0
            start = self._offset
            self._offset += _JTI_BYTES
            return self._pool[start:start + _JTI_BYTES]


_IDS = _RandomIds()


def new_jti() -> str:
    # 128 random bits: unguessable and unique without coordination (RFC 7519 §4.1.7).
    return b64url_encode(_IDS.next())


@functools.lru_cache(maxsize=64)
def encode_header(key: SigningKey) -> str:
    """The protected header segment; one per key version, so it is built once."""
    # RFC 9068 §2.1: typ "at+jwt"; kid names the exact key version that signs.
    return json_segment({"alg": key.alg, "kid": key.kid, "typ": "at+jwt"})


def build_claims(spec: AccessTokenSpec, issuer: str, jti: str, now: int) -> dict[str, Any]:
    # RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat, jti are required; scope when granted.
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": spec.subject,
        "aud": spec.audience[0] if len(spec.audience) == 1 else list(spec.audience),
        "exp": now + spec.ttl,
        "iat": now,
        "nbf": now,
        "jti": jti,
        "client_id": spec.client_id,
    }
    if spec.scopes:
        claims["scope"] = " ".join(spec.scopes)  # RFC 9068 §2.2.3: space-delimited
    claims.update(spec.claims)
    if spec.confirmation is not None:  # after the custom claims: cnf is reserved anyway
        claims["cnf"] = dict(spec.confirmation)  # RFC 8705 §3.1
    return claims


class TokenMinter:
    """Signs access tokens with the keyring's active key.

    Concurrent mints are signed together (`SignBatcher`: one Transit call per batch),
    each with the key version its header names.
    """

    def __init__(self, keyring: Keyring, issuer: str, executor: Executor, *,
                 batcher: SignBatcher | None = None) -> None:
        self._keyring = keyring
        self._issuer = issuer
        self._batcher = batcher or SignBatcher(keyring, executor)

    async def mint(self, spec: AccessTokenSpec, now: float | None = None,
                   jti: str | None = None) -> MintedToken:
        """``jti``: one chosen before minting (Exchange records it first); else a new one."""
        issued_at = int(time.time() if now is None else now)
        jti = jti or new_jti()
        key = self._keyring.active()
        payload = json_segment(build_claims(spec, self._issuer, jti, issued_at))
        signing_input = f"{encode_header(key)}.{payload}"  # RFC 7515 §5.1 step 5
        signature = await self._sign(key, signing_input.encode("ascii"))
        token = compact_jws(signing_input, signature)
        return MintedToken(token, jti, key.kid, issued_at, issued_at + spec.ttl)

    async def _sign(self, key: SigningKey, signing_input: bytes) -> bytes:
        try:
            return await self._batcher.sign(key, signing_input)
        except VaultError as exc:
            raise SigningUnavailable(f"cannot sign: {exc}") from exc
