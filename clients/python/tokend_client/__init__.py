"""tokend client: strict local verification of tokend access tokens.

Depends only on ``cryptography`` and the standard library for verification.
"""

from .errors import InvalidToken, Reason
from .jose import JwkSet, PublicKey, verify_compact
from .verifier import LocalVerifier

__all__ = [
    "InvalidToken",
    "JwkSet",
    "LocalVerifier",
    "PublicKey",
    "Reason",
    "verify_compact",
]
