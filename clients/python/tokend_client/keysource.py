"""Key sources: keep a :class:`~tokend_client.LocalVerifier` in step with tokend's keys.

A key source holds the current JWK Set and fetches a new one

* every ``refresh_interval`` seconds (with ±10 % jitter) in a daemon thread, and
* when a token names a ``kid`` the current set lacks (tokend just rotated its key),
  unless any fetch (the first, a periodic one or another refetch) ended less than
  ``min_refetch_interval`` ago, so a flood of tokens with made-up ``kid`` values
  causes at most one fetch per interval, not one per token.

A fetch that fails or yields no usable key keeps the last good set. Verification
itself never waits for the network while the ``kid`` is known. The sources are
thread-safe and synchronous: in asyncio code the rare refetch on an unknown ``kid``
blocks the loop for one fetch (bounded by its timeout); the periodic refresh runs in
its thread either way.
"""

from __future__ import annotations

import inspect
import logging
import math
import random
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from email.message import Message
from os import PathLike
from time import monotonic
from types import TracebackType
from typing import IO, Any, Protocol, Self

from ._net import is_loopback_host
from .jose import MAX_JWKS_BYTES, JwkSet

__all__ = ["JwksUrlSource", "KeySource", "KeySourceError", "ServerKeySource"]

log = logging.getLogger(__name__)

Fetched = JwkSet | Mapping[str, Any] | str | bytes
Fetch = Callable[[], Fetched]

_JOIN_TIMEOUT = 10.0


class KeySourceError(Exception):
    """The key set could not be fetched or was unusable; the cause is chained."""


class KeySource:
    """Keys from ``fetch``, a callable returning a JWK Set (JwkSet, dict or JSON text).

    The first :meth:`keys` call fetches (raising :class:`KeySourceError` on failure)
    and starts the periodic refresh unless ``refresh_interval`` is None. Use it as a
    context manager, or call :meth:`close`, to stop the refresh thread.
    """

    def __init__(self, fetch: Fetch, *, refresh_interval: float | None = 300,
                 min_refetch_interval: float = 5) -> None:
        if not callable(fetch):
            raise TypeError("fetch must be callable")
        self._fetch = fetch
        self._refresh_interval = (
            None if refresh_interval is None
            else _seconds(refresh_interval, "refresh_interval", positive=True))
        self._min_refetch_interval = _seconds(min_refetch_interval, "min_refetch_interval")
        self._lock = threading.Lock()  # one fetch at a time; guards the fields below
        self._keys: JwkSet | None = None
        self._next_refetch_at = -math.inf
        self._fetch_count = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def fetch_count(self) -> int:
        """How many fetches were attempted (for monitoring)."""
        return self._fetch_count

    def keys(self) -> JwkSet:
        """The current key set; the first call fetches it (KeySourceError on failure)."""
        keys = self._keys
        if keys is not None:  # the hot path: no lock, no I/O
            return keys
        with self._lock:
            if self._keys is None:
                self._load_locked()
                self._start_refresher()
            assert self._keys is not None
            return self._keys

    def refresh(self) -> JwkSet:
        """Fetch now, whatever the rate limit; KeySourceError keeps the current set."""
        with self._lock:
            return self._load_locked()

    def refetch_for_unknown_key(self, seen: JwkSet) -> JwkSet | None:
        """A newer key set after a token named a ``kid`` missing from ``seen``, or None.

        If another thread fetched since ``seen`` was read, that set is returned without
        a fetch; otherwise one fetch is made unless one finished less than
        ``min_refetch_interval`` ago. None means there is nothing newer to try.
        """
        with self._lock:
            if self._keys is not seen:
                return self._keys
            if monotonic() < self._next_refetch_at:
                return None
            try:
                return self._load_locked()
            except KeySourceError as exc:
                log.warning("tokend key refetch failed, keeping the current keys: %s", exc)
                return None

    def close(self) -> None:
        """Stop the periodic refresh (the last keys stay usable)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN_TIMEOUT)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _load_locked(self) -> JwkSet:
        self._fetch_count += 1
        try:
            keys = _usable_key_set(self._fetch())
        except Exception as exc:
            raise KeySourceError(f"fetching the JWK Set failed: {exc}") from exc
        finally:
            # Counted from the end of the attempt, failed ones included: a slow or
            # failing publisher must not turn unknown kids into back-to-back fetches.
            self._next_refetch_at = monotonic() + self._min_refetch_interval
        self._keys = keys
        return keys

    def _start_refresher(self) -> None:
        if self._refresh_interval is None or self._thread is not None or self._stop.is_set():
            return
        self._thread = threading.Thread(target=self._refresh_periodically,
                                        name="tokend-key-refresh", daemon=True)
        self._thread.start()

    def _refresh_periodically(self) -> None:
        assert self._refresh_interval is not None
        # Jitter keeps a fleet of verifiers started together from fetching together.
        while not self._stop.wait(self._refresh_interval * random.uniform(0.9, 1.1)):
            try:
                self.refresh()
            except KeySourceError as exc:
                log.warning("tokend key refresh failed, keeping the current keys: %s", exc)


class _JwksClient(Protocol):
    def get_jwks(self) -> JwkSet: ...


class ServerKeySource(KeySource):
    """Keys from tokend's GetJwks: give a :class:`~tokend_client.TokenClient` (or any
    callable returning a JWK Set). An AsyncTokenClient cannot be used here (see the
    module documentation); use a TokenClient or :class:`JwksUrlSource`.
    """

    def __init__(self, client_or_fetch: _JwksClient | Fetch, *,
                 refresh_interval: float | None = 300, min_refetch_interval: float = 5) -> None:
        super().__init__(_server_fetch(client_or_fetch), refresh_interval=refresh_interval,
                         min_refetch_interval=min_refetch_interval)


def _server_fetch(client_or_fetch: _JwksClient | Fetch) -> Fetch:
    get_jwks = getattr(client_or_fetch, "get_jwks", None)
    fetch = get_jwks if callable(get_jwks) else client_or_fetch
    if not callable(fetch):
        raise TypeError("need a TokenClient or a callable returning a JWK Set")
    if inspect.iscoroutinefunction(fetch):
        raise TypeError("key sources are synchronous: pass a TokenClient, not an "
                        "AsyncTokenClient or a coroutine function")
    return fetch


class JwksUrlSource(KeySource):
    """Keys from a JWKS URL, e.g. ``https://tokend.example/.well-known/jwks.json``.

    Only ``https`` URLs, or ``http`` to a loopback address, are accepted. Redirects
    are not followed, answers over ``max_bytes`` are refused and each fetch has
    ``timeout`` seconds. ``ca_file`` replaces the system's trusted roots for https.
    """

    def __init__(self, url: str, *, timeout: float = 5.0, max_bytes: int = MAX_JWKS_BYTES,
                 ca_file: str | PathLike[str] | None = None,
                 refresh_interval: float | None = 300, min_refetch_interval: float = 5) -> None:
        self.url = _check_jwks_url(url)
        self._timeout = _seconds(timeout, "timeout", positive=True)
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError("max_bytes must be a positive int")
        self._max_bytes = max_bytes
        self._opener = _opener(self.url, ca_file)
        super().__init__(self._download, refresh_interval=refresh_interval,
                         min_refetch_interval=min_refetch_interval)

    def _download(self) -> bytes:
        request = urllib.request.Request(  # noqa: S310 - the scheme was checked above
            self.url, headers={"Accept": "application/jwk-set+json, application/json"})
        with self._opener.open(request, timeout=self._timeout) as response:
            if response.status != 200:
                raise KeySourceError(f"{self.url} answered HTTP {response.status}")
            return _read_limited(response, self._max_bytes)

    def __repr__(self) -> str:
        return f"JwksUrlSource({self.url!r})"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect could lead from https (or loopback) to a plain-HTTP host; the
    # configured URL is the only place keys may come from.
    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int,
                         msg: str, headers: Message, newurl: str) -> None:
        return None


def _opener(url: str, ca_file: str | PathLike[str] | None) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [_NoRedirects()]
    if urllib.parse.urlsplit(url).scheme == "https":
        context = ssl.create_default_context(cafile=ca_file)
        handlers.append(urllib.request.HTTPSHandler(context=context))
    else:
        # Loopback traffic must not be sent to a proxy from http_proxy variables.
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)


def _check_jwks_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return url
    raise ValueError("a JWKS URL must be https, or http to a loopback address")


def _read_limited(response: IO[bytes], max_bytes: int) -> bytes:
    body = response.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise KeySourceError(f"JWK Set is larger than {max_bytes} bytes")
    return body


def _usable_key_set(fetched: Fetched) -> JwkSet:
    if inspect.isawaitable(fetched):
        close = getattr(fetched, "close", None)
        if callable(close):
            close()  # avoid "coroutine was never awaited"
        raise TypeError("the fetch callable returned an awaitable; it must be synchronous")
    keys = fetched if isinstance(fetched, JwkSet) else JwkSet.from_json(fetched)
    if not any(key.kid for key in keys):
        # An empty set would fail every token; keep the last good one instead.
        raise ValueError("the JWK Set has no usable key with a kid")
    return keys


def _seconds(value: object, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'}")
    return float(value)
