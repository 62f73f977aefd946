"""Protobuf answers built from the token layer's results: the gRPC side of the line.

A valid Verify answer depends on the token's claims alone, so it is built once per
verified-token cache entry (tokens/verify_cache.py) and handed out again while the
token layer keeps returning that entry; the token layer never sees protobuf.
"""

from __future__ import annotations

import functools
import math
import weakref
from typing import Any

from google.protobuf import timestamp_pb2

from tokend.tokens.exchange import ACCESS_TOKEN_TYPE
from tokend.tokens.families import IssueResult
from tokend.tokens.minting import MintedToken
from tokend.tokens.verify_cache import VerifiedToken
from tokend_client import Reason, actors
from tokend_client.v1 import tokend_pb2 as pb


def issue_response(result: IssueResult) -> pb.IssueResponse:
    response = pb.IssueResponse(
        access_token=result.access.token, token_type="Bearer",  # noqa: S106 (a type name)
        jti=result.access.jti,
    )
    set_timestamp(response.expires_at, result.access.expires_at)
    if result.refresh_token is not None and result.refresh_expires_at is not None:
        response.refresh_token = result.refresh_token
        set_timestamp(response.refresh_expires_at, result.refresh_expires_at)
    return response


def exchange_response(access: MintedToken) -> pb.ExchangeResponse:
    response = pb.ExchangeResponse(
        access_token=access.token, issued_token_type=ACCESS_TOKEN_TYPE,
        token_type="Bearer", jti=access.jti)  # noqa: S106 (a type name)
    set_timestamp(response.expires_at, access.expires_at)
    return response


def refused(reason: Reason) -> pb.VerifyResponse:
    # The proto prefixes enum values (REASON_EXPIRED); the Python enum does not.
    return pb.VerifyResponse(valid=False, reason=pb.Reason.Value("REASON_" + reason.name))


class VerifyAnswers:
    """Valid Verify answers, each living exactly as long as its verified-token cache entry.

    The token layer returns the same entry for a token while it keeps it cached and a new
    one once it let it go (expiry, revocation, a new key set, eviction). An answer is
    filed under its entry's id and leaves when the entry is freed (a weak reference's
    callback, run at once by CPython), so an id is never found again for another entry,
    and nothing outlives the token layer's own bound.
    """

    def __init__(self) -> None:
        self._answers: dict[int, pb.VerifyResponse] = {}
        self._refs: dict[int, weakref.ref[VerifiedToken]] = {}
        # The answer already built for id(entry), or None: the dict's own method, so the
        # hot path (a repeated token) costs one lookup and no Python call.
        self.get = self._answers.get

    def add(self, entry: VerifiedToken) -> pb.VerifyResponse:
        """The answer for an entry seen for the first time, kept for the next call."""
        response = verify_response(entry.claims)
        key = id(entry)
        self._answers[key] = response
        self._refs[key] = weakref.ref(entry, functools.partial(self._forget, key))
        return response

    def _forget(self, key: int, _: object) -> None:
        self._answers.pop(key, None)
        self._refs.pop(key, None)

    def __len__(self) -> int:
        return len(self._answers)


def verify_response(claims: dict[str, Any]) -> pb.VerifyResponse:
    # Filled in place: building a Struct apart and handing it over copies it (3x slower).
    response = pb.VerifyResponse(valid=True, subject=claims["sub"])
    response.claims.update(claims)
    set_timestamp(response.expires_at, claims["exp"])
    if "act" in claims:  # RFC 8693 §4.1: the current actor first
        response.actors.extend(actors(claims))
    return response


def set_timestamp(field: timestamp_pb2.Timestamp, seconds: float) -> None:
    # Directly, not through datetime: this runs on every Verify and Issue answer.
    whole = math.floor(seconds)
    field.seconds = whole
    field.nanos = int((seconds - whole) * 1e9)
