"""Protobuf answers built from the token layer's results: the gRPC side of the line.

A valid Verify answer depends on the token's claims alone, so it is built once per
verified-token cache entry (tokens/verify_cache.py) and handed out again while the
token layer keeps returning that entry; the token layer never sees protobuf.
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import timestamp_pb2

from tokend.tokens.authority import IssueResult
from tokend.tokens.verify_cache import VERIFIED_CACHE_ENTRIES, VerifiedToken
from tokend_client import Reason
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


def refused(reason: Reason) -> pb.VerifyResponse:
    # The proto prefixes enum values (REASON_EXPIRED); the Python enum does not.
    return pb.VerifyResponse(valid=False, reason=pb.Reason.Value("REASON_" + reason.name))


class VerifyAnswers:
    """Valid Verify answers, one per verified-token cache entry.

    Keyed by the entry object: the token layer returns the same entry for a token as long
    as it keeps it cached, and a new one once it dropped it (expiry, revocation, a new key
    set, eviction), so an answer is never found for an entry the token layer let go. Such
    answers are merely unreachable; bounded like that cache, the oldest go first.
    """

    def __init__(self, max_entries: int = VERIFIED_CACHE_ENTRIES) -> None:
        self._max = max_entries
        self._answers: dict[VerifiedToken, pb.VerifyResponse] = {}
        # The answer already built for an entry, or None: the dict's own method, so the
        # hot path (a repeated token) costs one lookup and no Python call.
        self.get = self._answers.get

    def add(self, entry: VerifiedToken) -> pb.VerifyResponse:
        """The answer for an entry seen for the first time, kept for the next call."""
        response = verify_response(entry.claims)
        if self._max > 0:
            answers = self._answers
            while len(answers) >= self._max:
                del answers[next(iter(answers))]  # the oldest insertion
            answers[entry] = response
        return response

    def __len__(self) -> int:
        return len(self._answers)


def verify_response(claims: dict[str, Any]) -> pb.VerifyResponse:
    # Filled in place: building a Struct apart and handing it over copies it (3x slower).
    response = pb.VerifyResponse(valid=True, subject=claims["sub"])
    response.claims.update(claims)
    set_timestamp(response.expires_at, claims["exp"])
    return response


def set_timestamp(field: timestamp_pb2.Timestamp, seconds: float) -> None:
    # Directly, not through datetime: this runs on every Verify and Issue answer.
    whole = math.floor(seconds)
    field.seconds = whole
    field.nanos = int((seconds - whole) * 1e9)
