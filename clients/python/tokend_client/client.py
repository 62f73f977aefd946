"""TokenClient: the tokend API over a synchronous gRPC channel.

Every call has a deadline (``timeout``, retries included) and returns typed results or
raises :class:`~tokend_client.rpc_errors.TokendError`. Calls are retried with
exponential backoff and jitter after UNAVAILABLE only:

* Verify, GetJwks and Revoke are safe to repeat (Revoke of a revoked target records
  nothing new).
* Issue is retried too. If a first attempt was signed but its answer was lost, the
  caller gets a second token and the first one simply goes unused until it expires
  (with ``refresh=True``, an unused refresh family as well).
* Refresh is retried with the idempotency key of its first attempt (one fresh key per
  call): if the lost attempt had spent the refresh token, tokend answers the retry with
  that attempt's answer (within its ``tokens.refresh_retry_window``). Any other second
  use of a spent refresh token still looks like theft and revokes the whole family.

The two streams (``watch_revocations``, ``watch_jwks``) have no deadline and no
retries: :class:`~tokend_client.LiveSource` follows them, reconnecting as needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import grpc

from . import _calls
from ._base import ClientBase
from ._calls import Ttl
from .jose import JwkSet
from .live import Watch
from .models import IssuedToken, VerifyResult
from .rpc_errors import error_from_rpc, status_code
from .v1 import tokend_pb2 as pb
from .v1.tokend_pb2_grpc import TokenServiceStub

__all__ = ["TokenClient"]

Resp = TypeVar("Resp")


class TokenClient(ClientBase):
    """A synchronous tokend client; thread-safe, and a context manager that closes it.

    ``TokenClient(target, credentials=..., timeout=5.0, retries=3)``, or
    :meth:`mtls` / :meth:`insecure_loopback`.
    """

    def _open(self, target: str, credentials: grpc.ChannelCredentials,
              options: list[tuple[str, Any]]) -> None:
        self._channel = grpc.secure_channel(target, credentials, options=options)
        self._stub = TokenServiceStub(self._channel)

    def issue(self, subject: str, audience: str | Iterable[str], *,
              scopes: str | Iterable[str] = (), claims: Mapping[str, Any] | None = None,
              ttl: Ttl | None = None, refresh: bool = False) -> IssuedToken:
        """Issue an access token for ``subject``, meant for ``audience`` (one or several).

        ``claims`` are extra JSON claims (registered ones are refused), ``ttl`` a
        timedelta or seconds (default: the server's), ``refresh`` also asks for a
        refresh token. Raises InvalidArgumentError with the server's explanation.
        """
        request = _calls.issue_request(subject, audience, scopes=scopes, claims=claims,
                                       ttl=ttl, refresh=refresh)
        return _calls.issued_token(self._call(self._stub.Issue, request, retryable=True))

    def verify(self, token: str, audience: str, *,
               required_scopes: str | Iterable[str] = (),
               delegation: str = "any") -> VerifyResult:
        """Ask tokend whether ``token`` is valid for ``audience`` and not revoked.

        An invalid token is a result with ``valid=False`` and a ``reason``, not an error.
        ``delegation``: ``"required"`` accepts only delegated tokens (with ``act``),
        ``"refused"`` only direct ones (else reason DELEGATION); ``"any"`` both. A
        delegated token's result lists its ``actors``, the current one first.
        """
        request = _calls.verify_request(token, audience, required_scopes, delegation)
        return _calls.verify_result(self._call(self._stub.Verify, request, retryable=True))

    def exchange(self, subject_token: str, audience: str | Iterable[str], *,
                 scopes: str | Iterable[str] = (), ttl: Ttl | None = None,
                 actor_token: str | None = None) -> IssuedToken:
        """Trade ``subject_token`` (a token tokend issued for this caller) for a token for
        ``audience``, on its subject's behalf (RFC 8693 token exchange).

        The new token keeps the subject, holds ``scopes`` (a subset of the subject
        token's; default: all of them), lives at most as long as the subject token
        (``ttl`` may shorten it) and names this caller (or the subject of
        ``actor_token``) as the current actor in ``act``. Revoking the subject token
        revokes it too. Refusals: InvalidArgumentError (the subject token is invalid,
        expired, revoked or foreign; scopes widened), PermissionDeniedError (the policy).
        Retried on UNAVAILABLE like Issue: a lost answer only leaves a token unused.
        """
        request = _calls.exchange_request(subject_token, audience, scopes=scopes, ttl=ttl,
                                          actor_token=actor_token)
        return _calls.exchanged_token(self._call(self._stub.Exchange, request, retryable=True))

    def refresh(self, refresh_token: str, *, scopes: str | Iterable[str] = ()) -> IssuedToken:
        """Spend ``refresh_token`` for a new access and refresh token (retried safely:
        every attempt carries the same idempotency key).

        ``scopes`` narrows the new token. A refresh token that is unknown, expired,
        revoked or already spent raises UnauthenticatedError; presenting a spent one
        also revokes its whole family.
        """
        request = _calls.refresh_request(refresh_token, scopes)
        return _calls.issued_token(self._call(self._stub.Refresh, request, retryable=True))

    def revoke(self, *, token: str | None = None, jti: str | None = None,
               refresh_token: str | None = None, subject: str | None = None,
               reason: str = "") -> int:
        """Revoke one target and return how many revocation entries were recorded.

        Name exactly one of ``token``, ``jti``, ``refresh_token`` (its whole family) or
        ``subject`` (every token issued to it up to now). Returns once durable.
        """
        request = _calls.revoke_request(token=token, jti=jti, refresh_token=refresh_token,
                                        subject=subject, reason=reason)
        return self._call(self._stub.Revoke, request, retryable=True).revoked

    def get_jwks(self) -> JwkSet:
        """The server's current public keys, parsed strictly."""
        response = self._call(self._stub.GetJwks, pb.GetJwksRequest(), retryable=True)
        return JwkSet.from_json(response.jwks_json)

    def watch_revocations(self, from_sequence: int = 0) -> Watch[pb.RevocationEvent]:
        """Stream the revocation feed after ``from_sequence`` (0: everything in force).

        Yields ``RevocationEvent`` messages: the revocations in force, a checkpoint, then
        each new revocation and, while idle, checkpoints as keep-alives. Resume with the
        last ``sequence`` received. The stream has no deadline; see the proto for how it
        ends (FAILED_PRECONDITION: resume from 0; otherwise reconnect with backoff).
        """
        if isinstance(from_sequence, bool) or not isinstance(from_sequence, int) \
                or from_sequence < 0:
            raise ValueError("from_sequence must be a non-negative int")
        request = pb.WatchRevocationsRequest(from_sequence=from_sequence)
        return Watch(self._stub.WatchRevocations(request))

    def watch_jwks(self) -> Watch[pb.JwksEvent]:
        """Stream the JWK Set: the current one at once, then each new one (``JwksEvent``)."""
        return Watch(self._stub.WatchJwks(pb.WatchJwksRequest()))

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> TokenClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _call(self, method: Callable[..., Resp], request: Any, *, retryable: bool) -> Resp:
        attempts = self._attempts(retryable=retryable)
        while True:
            try:
                return method(request, timeout=attempts.remaining())
            except grpc.RpcError as exc:
                delay = attempts.delay_before_retry(status_code(exc))
                if delay is None:
                    raise error_from_rpc(exc) from exc
            time.sleep(delay)
