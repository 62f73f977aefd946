"""Sealed Refresh answers: a Refresh whose answer was lost can be asked again (hand-written
glue around `cryptography`'s HKDF and AES-GCM, which do the cryptography).

A Refresh may carry an idempotency key. The spent refresh-token row then keeps, until the
retry window closes, the hash `retry_key` (caller, idempotency key, spent token, requested
scopes) and the answer sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the
spent refresh token itself, which the store only knows by its SHA-256. Someone who reads
the database learns neither token of the answer: opening it needs the refresh token that
was spent, 256 random bits that were never stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tokend.tokens.errors import BadRequest

_DOMAIN = b"tokend/refresh-retry/v1"
_KEY = re.compile(r"[A-Za-z0-9_-]{16,128}")
_NONCE_BYTES = 12


class SealBroken(Exception):
    """The sealed answer does not open with this token: the row was tampered with."""


def check_idempotency_key(key: str) -> str | None:
    """None when absent (the Refresh is not retryable); the key when well formed."""
    if not key:
        return None
    if not _KEY.fullmatch(key):
        raise BadRequest("idempotency_key must be 16-128 characters of A-Z a-z 0-9 _ -",
                         field="idempotency_key")
    return key


def retry_key(client_id: str, idempotency_key: str, token_hash: bytes,
              scopes: tuple[str, ...]) -> bytes:
    """Names one request: the same caller, key, spent token and requested scopes."""
    digest = hashlib.sha256(_DOMAIN)
    for part in (client_id.encode(), idempotency_key.encode(), token_hash,
                 "\x00".join(scopes).encode()):
        digest.update(len(part).to_bytes(4, "big"))  # length-prefixed: no ambiguous joins
        digest.update(part)
    return digest.digest()


def _aead(refresh_token: str, key_hash: bytes) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=_DOMAIN, info=key_hash
               ).derive(refresh_token.encode("ascii"))
    return AESGCM(key)


def seal(refresh_token: str, key_hash: bytes, answer: dict[str, Any]) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    plain = json.dumps(answer, separators=(",", ":")).encode()
    return nonce + _aead(refresh_token, key_hash).encrypt(nonce, plain, key_hash)


def unseal(refresh_token: str, key_hash: bytes, sealed: bytes) -> dict[str, Any]:
    nonce, body = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
    try:
        plain = _aead(refresh_token, key_hash).decrypt(nonce, body, key_hash)
    except InvalidTag:
        raise SealBroken("the sealed refresh answer does not open") from None
    answer = json.loads(plain)
    if not isinstance(answer, dict):
        raise SealBroken("the sealed refresh answer is not an object")
    return answer
