"""tokend client: call tokend over gRPC and verify its access tokens in-process.

* :class:`TokenClient` / :class:`AsyncTokenClient`: Issue, Verify, Refresh, Revoke and
  GetJwks with deadlines, retries on UNAVAILABLE and typed results; overlapping
  ``verify()`` calls share one VerifyMany RPC.
* :class:`LocalVerifier`: strict verification with no call per token; give it a
  :class:`ServerKeySource` or :class:`JwksUrlSource` to follow key rotations, or a
  :class:`LiveSource` to have tokend push keys and revocations as they happen.
* :mod:`tokend_client.cookies`: ``Set-Cookie``/``Cookie`` helpers for web backends.

Depends only on grpcio, protobuf, googleapis-common-protos (the google.rpc error
details), cryptography and the standard library.
"""

from ._batch import VerifyQuery
from .aio import AsyncTokenClient
from .client import TokenClient
from .delegation import MAX_ACT_DEPTH, actors
from .errors import InvalidToken, Reason
from .jose import JwkSet, PublicKey, verify_compact
from .keysource import JwksUrlSource, KeySource, KeySourceError, ServerKeySource
from .live import LiveSource, RevocationSet, Watch
from .models import IssuedToken, VerifyResult
from .rpc_errors import (
    FieldViolation,
    InvalidArgumentError,
    PermissionDeniedError,
    ResourceExhaustedError,
    TokendError,
    UnauthenticatedError,
    UnavailableError,
    error_from_rpc,
)
from .verifier import LocalVerifier

__all__ = [
    "MAX_ACT_DEPTH",
    "AsyncTokenClient",
    "FieldViolation",
    "InvalidArgumentError",
    "InvalidToken",
    "IssuedToken",
    "JwkSet",
    "JwksUrlSource",
    "KeySource",
    "KeySourceError",
    "LiveSource",
    "LocalVerifier",
    "PermissionDeniedError",
    "PublicKey",
    "Reason",
    "ResourceExhaustedError",
    "RevocationSet",
    "ServerKeySource",
    "TokenClient",
    "TokendError",
    "UnauthenticatedError",
    "UnavailableError",
    "VerifyQuery",
    "VerifyResult",
    "Watch",
    "actors",
    "error_from_rpc",
    "verify_compact",
]
