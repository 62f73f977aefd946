"""TokenClient: the tokend API over a synchronous gRPC channel.

Every call has a deadline (``timeout``, retries included) and returns typed results or
raises :class:`~tokend_client.rpc_errors.TokendError`. Deadlines and retries are gRPC's
own, from the service config every tokend client shares (clients/service-config.json,
docs/clients.md "Retries and deadlines"): exponential backoff with jitter, after
UNAVAILABLE only:

* Verify, GetJwks and Revoke are safe to repeat (Revoke of a revoked target records
  nothing new).
* Issue is retried too. If a first attempt was signed but its answer was lost, the
  caller gets a second token and the first one simply goes unused until it expires
  (with ``refresh=True``, an unused refresh family as well).
* Refresh is retried with the idempotency key of its first attempt (one fresh key per
  call): if the lost attempt had spent the refresh token, tokend answers the retry with
  that attempt's answer (within its ``tokens.refresh_retry_window``). Any other second
  use of a spent refresh token still looks like theft and revokes the whole family.

``verify()`` calls made at the same time by several threads share one VerifyMany RPC
(``batch_verify``, ``max_in_flight``, ``max_batch``: :mod:`tokend_client._batch`); each
keeps its own result, error and deadline.

The two streams (``watch_revocations``, ``watch_jwks``) have no deadline and no
retries: :class:`~tokend_client.LiveSource` follows them, reconnecting as needed.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterable, Mapping
from functools import partial
from types import TracebackType
from typing import Any

import grpc
from cryptography import x509

from . import _calls
from ._base import ClientBase
from ._batch import (
    Batch,
    Item,
    VerifyQuery,
    deadline_exceeded,
    many_batches,
    not_sent,
)
from ._calls import Ttl
from .jose import JwkSet
from .live import Watch
from .models import IssuedToken, VerifyResult
from .rpc_errors import TokendError, error_from_rpc
from .v1 import tokend_pb2 as pb
from .v1.tokend_pb2_grpc import TokenServiceStub

__all__ = ["TokenClient"]



class TokenClient(ClientBase):
    """A synchronous tokend client; thread-safe, and a context manager that closes it.

    ``TokenClient(target, credentials=..., timeout=None, retries=3)``, or
    :meth:`mtls` / :meth:`insecure_loopback`.
    """

    def _open(self, target: str, credentials: grpc.ChannelCredentials,
              options: list[tuple[str, Any]]) -> None:
        self._channel = grpc.secure_channel(target, credentials, options=options)
        self._stub = TokenServiceStub(self._channel)

    def issue(self, subject: str, audience: str | Iterable[str], *,
              scopes: str | Iterable[str] = (), claims: Mapping[str, Any] | None = None,
              ttl: Ttl | None = None, refresh: bool = False,
              bind_to_certificate: _calls.BindTo = False) -> IssuedToken:
        """Issue an access token for ``subject``, meant for ``audience`` (one or several).

        ``claims`` are extra JSON claims (registered ones are refused), ``ttl`` a
        timedelta or seconds (default: the server's), ``refresh`` also asks for a
        refresh token. ``bind_to_certificate=True`` binds the token to this client's
        own mTLS certificate (RFC 8705 §3: ``cnf`` ``x5t#S256``; no refresh token then),
        or pass a certificate (DER bytes or ``x509.Certificate``) to bind it to that one
        when the caller policy allows (docs/binding.md). Raises InvalidArgumentError
        with the server's explanation; a binding over a connection without a client
        certificate raises TokendError (FAILED_PRECONDITION).
        """
        request = _calls.issue_request(subject, audience, scopes=scopes, claims=claims,
                                       ttl=ttl, refresh=refresh,
                                       bind_to_certificate=bind_to_certificate)
        return _calls.issued_token(self._call("Issue", request))

    def verify(self, token: str, audience: str, *,
               required_scopes: str | Iterable[str] = (),
               presenter_certificate: bytes | x509.Certificate | None = None,
               presenter_x5t_s256: str | None = None,
               delegation: str = "any", timeout: float | None = None) -> VerifyResult:
        """Ask tokend whether ``token`` is valid for ``audience`` and not revoked.

        An invalid token is a result with ``valid=False`` and a ``reason``, not an error.
        ``presenter_certificate`` (DER or ``x509.Certificate``) or ``presenter_x5t_s256``
        names the certificate the token was presented with: a certificate-bound token
        is valid only with its own (else ``Reason.CERTIFICATE_MISMATCH``).
        ``delegation``: ``"required"`` accepts only delegated tokens (with ``act``,
        RFC 8693 §4.1), ``"refused"`` only direct ones (else ``Reason.DELEGATION``);
        ``"any"`` both. A delegated token's result lists its ``actors``, current first.
        ``timeout``: this call's deadline in seconds (default: the client's).

        Calls that overlap in time (other threads) go out together as one VerifyMany;
        each gets what a lone Verify would have given.
        """
        request = _calls.verify_request(token, audience, required_scopes,
                                        presenter_certificate=presenter_certificate,
                                        presenter_x5t_s256=presenter_x5t_s256,
                                        delegation=delegation)
        seconds = self._verify_timeout(timeout)
        if self._verify_queue.unary_only:
            return _calls.verify_result(self._call("Verify", request, seconds))
        item = _item(request, seconds)
        self._send(self._verify_queue.submit(item))
        return _wait(item)

    def verify_many(self, queries: Iterable[VerifyQuery | tuple[str, str]], *,
                    timeout: float | None = None) -> list[VerifyResult | TokendError]:
        """Verify many tokens in as few RPCs as possible (VerifyMany, 256 per call).

        Each query is a :class:`~tokend_client.VerifyQuery` or a ``(token, audience)``
        pair. Returns, in order, each query's VerifyResult, or the TokendError that
        ``verify()`` would have raised for it (e.g. InvalidArgumentError for an empty
        audience). ``timeout`` applies to each RPC.
        """
        seconds = self._verify_timeout(timeout)
        results: list[VerifyResult | TokendError] = []
        for items, batches in many_batches(queries, self._verify_queue,
                                           partial(_item, seconds=seconds)):
            self._send(*batches)
            results.extend(_outcome(item) for item in items)
        return results

    def exchange(self, subject_token: str, audience: str | Iterable[str], *,
                 scopes: str | Iterable[str] = (), ttl: Ttl | None = None,
                 actor_token: str | None = None,
                 bind_to_certificate: _calls.BindTo = False) -> IssuedToken:
        """Trade ``subject_token`` (a token tokend issued for this caller) for a token for
        ``audience``, on its subject's behalf (RFC 8693 token exchange).

        The new token keeps the subject, holds ``scopes`` (a subset of the subject
        token's; default: all of them), lives at most as long as the subject token
        (``ttl`` may shorten it) and names this caller (or the subject of
        ``actor_token``) as the current actor in ``act``. Revoking the subject token
        revokes it too. Refusals: InvalidArgumentError (the subject token is invalid,
        expired, revoked or foreign; scopes widened), PermissionDeniedError (the policy).
        ``bind_to_certificate`` as for :meth:`issue` (a binding is never inherited from
        the subject token). Retried on UNAVAILABLE like Issue: a lost answer only leaves
        a token unused.
        """
        request = _calls.exchange_request(subject_token, audience, scopes=scopes, ttl=ttl,
                                          actor_token=actor_token,
                                          bind_to=bind_to_certificate)
        return _calls.exchanged_token(self._call("Exchange", request))

    def refresh(self, refresh_token: str, *, scopes: str | Iterable[str] = ()) -> IssuedToken:
        """Spend ``refresh_token`` for a new access and refresh token (retried safely:
        every attempt carries the same idempotency key).

        ``scopes`` narrows the new token. A refresh token that is unknown, expired,
        revoked or already spent raises UnauthenticatedError; presenting a spent one
        also revokes its whole family.
        """
        request = _calls.refresh_request(refresh_token, scopes)
        return _calls.issued_token(self._call("Refresh", request))

    def revoke(self, *, token: str | None = None, jti: str | None = None,
               refresh_token: str | None = None, subject: str | None = None,
               reason: str = "") -> int:
        """Revoke one target and return how many revocation entries were recorded.

        Name exactly one of ``token``, ``jti``, ``refresh_token`` (its whole family) or
        ``subject`` (every token issued to it up to now). Returns once durable.
        """
        request = _calls.revoke_request(token=token, jti=jti, refresh_token=refresh_token,
                                        subject=subject, reason=reason)
        return self._call("Revoke", request).revoked

    def get_jwks(self) -> JwkSet:
        """The server's current public keys, parsed strictly."""
        response = self._call("GetJwks", pb.GetJwksRequest())
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

    def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        # Retries come from the channel's service config, the deadline from its timeouts.
        try:
            return getattr(self._stub, method)(
                request, timeout=self._deadlines[method] if timeout is None else timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc

    def _send(self, *batches: Batch | None) -> None:
        # Non-blocking: each RPC's callback (a gRPC thread) settles its items and sends
        # what the verify batcher hands out next, so no caller works for the others.
        pending = [batch for batch in batches if batch is not None]
        while pending:
            batch = pending.pop()
            try:
                call = getattr(self._stub, batch.method).future(batch.request(),
                                                                timeout=batch.timeout())
            except Exception as exc:  # a closed channel: fail these items
                pending.extend(self._verify_queue.landed(batch, None, not_sent(exc)))
                continue
            call.add_done_callback(partial(self._landed, batch))

    def _landed(self, batch: Batch, call: grpc.Future) -> None:
        try:
            response, error = call.result(), None
        except grpc.RpcError as exc:
            response, error = None, exc
        except Exception as exc:  # cancelled (channel closed)
            response, error = None, not_sent(exc)
        self._send(*self._verify_queue.landed(batch, response, error))


def _item(request: pb.VerifyRequest, seconds: float) -> Item:
    return Item(request, time.monotonic() + seconds, concurrent.futures.Future())


def _wait(item: Item) -> VerifyResult:
    waiter: concurrent.futures.Future[VerifyResult] = item.waiter  # type: ignore[assignment]
    try:
        return waiter.result(timeout=max(item.deadline - time.monotonic(), 0.0))
    except concurrent.futures.TimeoutError:
        if not waiter.cancel():  # the answer came just now
            return waiter.result()
        raise deadline_exceeded() from None


def _outcome(item: Item) -> VerifyResult | TokendError:
    try:
        return _wait(item)
    except TokendError as exc:
        return exc
