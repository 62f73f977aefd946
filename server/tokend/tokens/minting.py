"""Minting: builds the RFC 9068 access token and has the keyring sign it."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from tokend.keys.keyring import Keyring, SigningKey
from tokend.keys.vault import VaultError
from tokend.tokens.errors import SigningUnavailable
from tokend.tokens.policy import AccessTokenSpec
from tokend_client.jose import b64url_encode


@dataclass(frozen=True)
class MintedToken:
    token: str
    jti: str
    kid: str
    issued_at: int
    expires_at: int


def new_jti() -> str:
    # 128 random bits: unguessable and unique without coordination (RFC 7519 §4.1.7).
    return b64url_encode(secrets.token_bytes(16))


def _compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode_header(key: SigningKey) -> str:
    # RFC 9068 §2.1: typ "at+jwt"; kid names the exact key version that signs.
    return b64url_encode(_compact_json({"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}))


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
    return claims


class TokenMinter:
    """Signs access tokens with the keyring's active key, off the event loop."""

    def __init__(self, keyring: Keyring, issuer: str, executor: Executor) -> None:
        self._keyring = keyring
        self._issuer = issuer
        self._executor = executor

    async def mint(self, spec: AccessTokenSpec, now: float | None = None) -> MintedToken:
        issued_at = int(time.time() if now is None else now)
        jti = new_jti()
        key = self._keyring.active()
        payload = b64url_encode(_compact_json(build_claims(spec, self._issuer, jti, issued_at)))
        signing_input = f"{encode_header(key)}.{payload}"
        signature = await self._sign(key, signing_input.encode("ascii"))
        token = f"{signing_input}.{b64url_encode(signature)}"
        return MintedToken(token, jti, key.kid, issued_at, issued_at + spec.ttl)

    async def _sign(self, key: SigningKey, signing_input: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, self._keyring.sign, key, signing_input)
        except VaultError as exc:
            raise SigningUnavailable(f"cannot sign: {exc}") from exc
