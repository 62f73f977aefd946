"""Construction and call budgets shared by TokenClient and AsyncTokenClient."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import grpc

from ._batch import DEFAULT_MAX_BATCH, DEFAULT_MAX_IN_FLIGHT, BatchSettings, VerifyQueue
from ._calls import check_retries, check_timeout, service_config
from ._channel import (
    StrPath,
    channel_options,
    default_credentials,
    loopback_credentials,
    mtls_credentials,
)

__all__ = ["ClientBase"]

Options = Sequence[tuple[str, Any]]


class ClientBase:
    """Settings and alternative constructors.

    Subclasses open their kind of channel (sync or asyncio) in :meth:`_open`.
    """

    def __init__(self, target: str, *, credentials: grpc.ChannelCredentials | None = None,
                 timeout: float | None = None, retries: int = 3,
                 options: Options = (), batch_verify: bool = True,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                 max_batch: int = DEFAULT_MAX_BATCH) -> None:
        """Connect to ``target`` (``host:port``) over TLS.

        ``credentials`` default to TLS with the system's trusted roots; see also
        :meth:`mtls` and :meth:`insecure_loopback`. ``timeout`` is the deadline of
        each call in seconds, retries included; by default the shared service config's
        (5 s for Verify, GetJwks, Revoke; 10 s for Issue, Refresh: docs/clients.md).
        ``retries`` is how many times gRPC repeats a call after UNAVAILABLE (0 to 4).
        ``options`` are extra gRPC channel options.

        ``verify()`` calls that overlap share one VerifyMany RPC (docs/clients.md "Verify
        calls are batched"): at most ``max_in_flight`` (1 to 1024) Verify/VerifyMany RPCs
        of this client are out at once, each with at most ``max_batch`` (1 to 256)
        requests; a lone call is a plain Verify. ``batch_verify=False`` sends every
        ``verify()`` as its own Verify, as clients before VerifyMany did.
        """
        self._verify_queue = VerifyQueue(BatchSettings(batch_verify, max_in_flight, max_batch))
        config, self._deadlines = service_config(
            timeout=None if timeout is None else check_timeout(timeout),
            retries=check_retries(retries))
        self.target = target
        self._open(target, credentials or default_credentials(),
                   channel_options([("grpc.service_config", config), *options]))

    def _open(self, target: str, credentials: grpc.ChannelCredentials,
              options: list[tuple[str, Any]]) -> None:
        raise NotImplementedError

    @classmethod
    def mtls(cls, target: str, ca_file: StrPath, cert_file: StrPath, key_file: StrPath, *,
             timeout: float | None = None, retries: int = 3,
             options: Options = (), batch_verify: bool = True,
             max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
             max_batch: int = DEFAULT_MAX_BATCH) -> Self:
        """A client that authenticates with a client certificate (mutual TLS).

        ``ca_file`` is the CA that signed tokend's certificate; ``cert_file`` and
        ``key_file`` (PEM) are this service's identity, which tokend records as the
        tokens' ``client_id``. ``batch_verify``, ``max_in_flight``, ``max_batch``
        as for the constructor.
        """
        credentials = mtls_credentials(ca_file, cert_file, key_file)
        return cls(target, credentials=credentials, timeout=timeout, retries=retries,
                   options=options, batch_verify=batch_verify,
                   max_in_flight=max_in_flight, max_batch=max_batch)

    @classmethod
    def insecure_loopback(cls, target: str, *, timeout: float | None = None,
                          retries: int = 3, options: Options = (),
                          batch_verify: bool = True,
                          max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                          max_batch: int = DEFAULT_MAX_BATCH) -> Self:
        """A plaintext client for a tokend on this machine (development, tests).

        Raises ValueError unless ``target`` is 127.0.0.0/8, ``::1`` or ``localhost``.
        ``batch_verify``, ``max_in_flight``, ``max_batch`` as for the constructor.
        """
        return cls(target, credentials=loopback_credentials(target), timeout=timeout,
                   retries=retries, options=options, batch_verify=batch_verify,
                   max_in_flight=max_in_flight, max_batch=max_batch)

    def _verify_timeout(self, timeout: float | None) -> float:
        """A verify()'s own deadline: its ``timeout`` or the client's for Verify."""
        return self._deadlines["Verify"] if timeout is None else check_timeout(timeout)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"
