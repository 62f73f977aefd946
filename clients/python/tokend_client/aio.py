"""AsyncTokenClient: the tokend API over a ``grpc.aio`` channel.

The same calls, results, errors, deadlines and retry rules as
:class:`tokend_client.TokenClient` (read its module documentation for how Refresh is
retried safely). ``verify()`` calls of concurrent tasks share one VerifyMany RPC
(:mod:`tokend_client._batch`). Create the client inside the event loop that uses it: a ``grpc.aio``
channel belongs to one loop.
"""

from __future__ import annotations

import asyncio
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
from .models import IssuedToken, VerifyResult
from .rpc_errors import TokendError, error_from_rpc
from .v1 import tokend_pb2 as pb
from .v1.tokend_pb2_grpc import TokenServiceStub

__all__ = ["AsyncTokenClient"]



class AsyncTokenClient(ClientBase):
    """An asyncio tokend client; ``async with`` closes it.

    ``AsyncTokenClient(target, credentials=..., timeout=None, retries=3)``, or
    :meth:`mtls` / :meth:`insecure_loopback`.
    """

    def _open(self, target: str, credentials: grpc.ChannelCredentials,
              options: list[tuple[str, Any]]) -> None:
        self._channel = grpc.aio.secure_channel(target, credentials, options=options)
        self._stub = TokenServiceStub(self._channel)
        self._tasks: set[asyncio.Future[None]] = set()  # the verify batcher's RPCs

    async def issue(self, subject: str, audience: str | Iterable[str], *,
                    scopes: str | Iterable[str] = (), claims: Mapping[str, Any] | None = None,
                    ttl: Ttl | None = None, refresh: bool = False,
                    bind_to_certificate: _calls.BindTo = False) -> IssuedToken:
        """Issue an access token; see :meth:`tokend_client.TokenClient.issue`."""
        request = _calls.issue_request(subject, audience, scopes=scopes, claims=claims,
                                       ttl=ttl, refresh=refresh,
                                       bind_to_certificate=bind_to_certificate)
        return _calls.issued_token(await self._call("Issue", request))

    async def verify(self, token: str, audience: str, *,
                     required_scopes: str | Iterable[str] = (),
                     presenter_certificate: bytes | x509.Certificate | None = None,
                     presenter_x5t_s256: str | None = None,
                     delegation: str = "any",
                     timeout: float | None = None) -> VerifyResult:
        """Verify a token on the server; see :meth:`tokend_client.TokenClient.verify`.

        Calls of tasks that overlap in time go out together as one VerifyMany.
        """
        request = _calls.verify_request(token, audience, required_scopes,
                                        presenter_certificate=presenter_certificate,
                                        presenter_x5t_s256=presenter_x5t_s256,
                                        delegation=delegation)
        seconds = self._verify_timeout(timeout)
        if self._verify_queue.unary_only:
            return _calls.verify_result(await self._call("Verify", request, seconds))
        item = _item(request, seconds)
        self._spawn(self._verify_queue.submit(item))
        return await _wait(item)

    async def verify_many(self, queries: Iterable[VerifyQuery | tuple[str, str]], *,
                          timeout: float | None = None) -> list[VerifyResult | TokendError]:
        """Verify many tokens in few RPCs; see :meth:`tokend_client.TokenClient.verify_many`."""
        seconds = self._verify_timeout(timeout)
        results: list[VerifyResult | TokendError] = []
        for items, batches in many_batches(queries, self._verify_queue,
                                           partial(_item, seconds=seconds)):
            self._spawn(*batches)
            results.extend([await _outcome(item) for item in items])
        return results

    async def exchange(self, subject_token: str, audience: str | Iterable[str], *,
                       scopes: str | Iterable[str] = (), ttl: Ttl | None = None,
                       actor_token: str | None = None,
                       bind_to_certificate: _calls.BindTo = False) -> IssuedToken:
        """Token exchange (RFC 8693); see :meth:`tokend_client.TokenClient.exchange`."""
        request = _calls.exchange_request(subject_token, audience, scopes=scopes, ttl=ttl,
                                          actor_token=actor_token,
                                          bind_to=bind_to_certificate)
        response = await self._call("Exchange", request)
        return _calls.exchanged_token(response)

    async def refresh(self, refresh_token: str, *,
                      scopes: str | Iterable[str] = ()) -> IssuedToken:
        """Spend a refresh token (retried under one idempotency key); see
        :meth:`tokend_client.TokenClient.refresh`."""
        request = _calls.refresh_request(refresh_token, scopes)
        response = await self._call("Refresh", request)
        return _calls.issued_token(response)

    async def revoke(self, *, token: str | None = None, jti: str | None = None,
                     refresh_token: str | None = None, subject: str | None = None,
                     reason: str = "") -> int:
        """Revoke one target; see :meth:`tokend_client.TokenClient.revoke`."""
        request = _calls.revoke_request(token=token, jti=jti, refresh_token=refresh_token,
                                        subject=subject, reason=reason)
        return (await self._call("Revoke", request)).revoked

    async def get_jwks(self) -> JwkSet:
        """The server's current public keys, parsed strictly."""
        response = await self._call("GetJwks", pb.GetJwksRequest())
        return JwkSet.from_json(response.jwks_json)

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        await self._channel.close()

    async def __aenter__(self) -> AsyncTokenClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        # Retries come from the channel's service config, the deadline from its timeouts.
        try:
            return await getattr(self._stub, method)(
                request, timeout=self._deadlines[method] if timeout is None else timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc

    def _spawn(self, *batches: Batch | None) -> None:
        # Each RPC runs in its own task, so that no caller's task works for the others.
        for batch in batches:
            if batch is not None:
                task = asyncio.ensure_future(self._run(batch))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: Batch | None) -> None:
        # One max_in_flight slot: send its batch, settle it, send the next queued one.
        while batch is not None:
            response, error = None, None
            try:
                response = await getattr(self._stub, batch.method)(batch.request(),
                                                                   timeout=batch.timeout())
            except grpc.RpcError as exc:
                error = exc
            except asyncio.CancelledError as exc:  # closed channel, or the loop ends
                self._verify_queue.abandon(batch, not_sent(exc))
                raise
            except Exception as exc:  # e.g. the channel is closed
                error = not_sent(exc)
            following = self._verify_queue.landed(batch, response, error)
            batch = following.pop() if following and following[-1].counted else None
            self._spawn(*following)


def _item(request: pb.VerifyRequest, seconds: float) -> Item:
    return Item(request, time.monotonic() + seconds, asyncio.get_running_loop().create_future())


async def _wait(item: Item) -> VerifyResult:
    waiter: asyncio.Future[VerifyResult] = item.waiter  # type: ignore[assignment]
    try:
        # wait_for cancels the waiter on timeout or when the caller is cancelled: the
        # batcher then drops the item unsent, or ignores its answer.
        return await asyncio.wait_for(waiter, max(item.deadline - time.monotonic(), 0.0))
    except TimeoutError:
        raise deadline_exceeded() from None


async def _outcome(item: Item) -> VerifyResult | TokendError:
    try:
        return await _wait(item)
    except TokendError as exc:
        return exc
