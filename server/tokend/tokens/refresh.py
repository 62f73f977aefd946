"""Opaque refresh tokens: 256 random bits, known to the store only by their hash."""

from __future__ import annotations

import hashlib
import re
import secrets

from tokend.tokens.errors import BadRequest
from tokend_client.jose import b64url_encode

# The prefix lets secret scanners (and people) recognise a leaked refresh token.
PREFIX = "tkd_rt_"
_FORMAT = re.compile(r"tkd_rt_[A-Za-z0-9_-]{43}")  # fullmatch: `$` passes a newline
MAX_LENGTH = 256


def new_refresh_token() -> tuple[str, bytes]:
    """Returns the token to hand out and the hash to store."""
    token = PREFIX + b64url_encode(secrets.token_bytes(32))
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> bytes:
    # 256 bits of entropy: a plain SHA-256 is enough (no dictionary to attack).
    return hashlib.sha256(token.encode("ascii")).digest()


def parse_refresh_token(token: str) -> bytes:
    if not token:
        raise BadRequest("refresh_token is required", field="refresh_token")
    if len(token) > MAX_LENGTH:
        raise BadRequest(f"refresh_token is longer than {MAX_LENGTH} characters",
                         field="refresh_token")
    if not _FORMAT.fullmatch(token):
        raise BadRequest("refresh_token is not a tokend refresh token (expected tkd_rt_...)",
                         field="refresh_token")
    return hash_refresh_token(token)


def token_fingerprint(token_hash: bytes) -> str:
    """A short, non-reversible name for logs."""
    return token_hash[:6].hex()
