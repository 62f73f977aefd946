"""LiveSource: tokend pushes its keys and revocations to a :class:`~tokend_client.LocalVerifier`.

A :class:`LiveSource` follows two server streams of a :class:`~tokend_client.TokenClient`,
each in a daemon thread:

* ``WatchJwks``: the key set, replaced as soon as tokend publishes a new one;
* ``WatchRevocations``: every live revocation, then each new one, kept in a
  :class:`RevocationSet`. A verifier built on the source refuses revoked tokens
  (``Reason.REVOKED``): the ``jti``, or any token of a revoked subject whose ``iat``
  is at or before the revocation.

So a backend that verifies locally learns of a revocation or a rotation within about a
second, with no call per token. A broken stream is reopened with exponential backoff
and jitter, resuming from the last sequence received, so no revocation is missed; one
that stays silent longer than ``idle_timeout`` (tokend sends keep-alives) is reopened
too. While tokend is unreachable the last known state stays in force for
``max_staleness``; after that the revocation state is stale and, with the default
``stale_policy="fail-closed"``, verify raises :class:`~tokend_client.KeySourceError`
(unavailable, not invalid) until the feed is back (docs/verifier-contract.md §7).

Usage::

    with TokenClient.mtls(addr, ca, cert, key) as client, LiveSource(client) as live:
        verifier = LocalVerifier(live, issuer=issuer, audience="orders")
        claims = verifier.verify(token)

The first use (the verifier's constructor) fetches the keys with GetJwks, opens both
streams and waits up to ``ready_timeout`` for the revocations already in force; it
raises :class:`~tokend_client.KeySourceError` if they do not arrive in time, so a
verifier never starts out accepting a revoked token. Only a synchronous
:class:`~tokend_client.TokenClient` can be followed.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from time import monotonic, time
from typing import Any, Generic, Literal, Protocol, TypeVar

import grpc
from google.protobuf import timestamp_pb2

from .jose import JwkSet
from .keysource import KeySource, KeySourceError, _seconds, _usable_key_set
from .rpc_errors import TokendError, error_from_rpc
from .v1 import tokend_pb2 as pb

__all__ = ["LiveSource", "RevocationSet", "Watch"]

log = logging.getLogger(__name__)

Event = TypeVar("Event")

_FIRST_BACKOFF = 0.2
_PRUNE_INTERVAL = 60.0
_JOIN_TIMEOUT = 10.0

StalePolicy = Literal["fail-closed", "fail-open"]
OnStale = Callable[[bool, float], None]


class Watch(Generic[Event]):
    """A server stream: iterate over its events; :meth:`cancel` ends it from any thread.

    A failed stream ends the iteration with a :class:`~tokend_client.TokendError`
    (``code`` and ``message`` from tokend); a cancelled one simply stops.
    """

    def __init__(self, call: Any) -> None:
        self._call = call
        self._cancelled = False

    def __iter__(self) -> Iterator[Event]:
        try:
            yield from self._call
        except grpc.RpcError as exc:
            if not self._cancelled:
                raise error_from_rpc(exc) from exc

    def cancel(self) -> None:
        """Stop the stream; the iteration ends without an error."""
        self._cancelled = True
        self._call.cancel()


class RevocationSet:
    """The revocations received so far, each kept until the tokens it names expire.

    One thread writes (the stream's), any may read: every change is a single dict
    assignment, which readers see whole, so no lock is needed.
    """

    def __init__(self) -> None:
        self._jtis: dict[str, float] = {}  # jti -> when the entry expires
        self._subjects: dict[str, tuple[float, float]] = {}  # subject -> (not_before, expiry)
        self.sequence = 0  # the last feed sequence received: where a reconnect resumes

    def apply(self, event: pb.RevocationEvent) -> None:
        """Record one event of WatchRevocations (a checkpoint only moves ``sequence``)."""
        if not event.checkpoint:
            expires_at = _seconds_of(event.expires_at)
            if event.kind == "jti":
                self._jtis[event.value] = max(expires_at, self._jtis.get(event.value, 0.0))
            elif event.kind == "subject":
                self._revoke_subject(event.value, _seconds_of(event.not_before), expires_at)
            # "family" is informational (its tokens arrive as jti events); newer kinds
            # are ignored rather than guessed at.
        self.sequence = max(self.sequence, event.sequence)

    def _revoke_subject(self, subject: str, not_before: float, expires_at: float) -> None:
        known = self._subjects.get(subject)
        if known is not None:
            # Both maxima: only ever denies more, and each entry ends with the tokens
            # it names anyway (not_before plus the longest token lifetime).
            not_before, expires_at = max(not_before, known[0]), max(expires_at, known[1])
        self._subjects[subject] = (not_before, expires_at)

    def is_revoked(self, claims: Mapping[str, Any], now: float) -> bool:
        """Whether verified ``claims`` name a revoked jti or a revoked subject's token."""
        jti = claims.get("jti")
        if isinstance(jti, str) and self._jtis.get(jti, 0.0) > now:
            return True
        subject = claims.get("sub")
        entry = self._subjects.get(subject) if isinstance(subject, str) else None
        if entry is None or entry[1] <= now:
            return False
        iat = claims.get("iat")
        # Without a usable iat the token cannot prove it came after the revocation.
        if isinstance(iat, bool) or not isinstance(iat, int | float):
            return True
        return iat <= entry[0]  # the same second counts as before: iat has 1 s resolution

    def prune(self, now: float) -> int:
        """Forget entries whose tokens have all expired; returns how many."""
        jtis = [jti for jti, expiry in self._jtis.items() if expiry <= now]
        subjects = [name for name, entry in self._subjects.items() if entry[1] <= now]
        for jti in jtis:
            self._jtis.pop(jti, None)
        for name in subjects:
            self._subjects.pop(name, None)
        return len(jtis) + len(subjects)

    def __len__(self) -> int:
        return len(self._jtis) + len(self._subjects)


class _WatchingClient(Protocol):
    def get_jwks(self) -> JwkSet: ...

    def watch_jwks(self) -> Watch[pb.JwksEvent]: ...

    def watch_revocations(self, from_sequence: int = 0) -> Watch[pb.RevocationEvent]: ...


class _Follower(Generic[Event]):
    """Keeps one stream open in a daemon thread: reopen with backoff, cancel when idle."""

    def __init__(self, name: str, open_stream: Callable[[], Watch[Event]],
                 handle: Callable[[Event], None], *, stop: threading.Event,
                 idle_timeout: float, max_backoff: float,
                 on_error: Callable[[TokendError], None] = lambda exc: None) -> None:
        self.name = name
        self._open = open_stream
        self._handle = handle
        self._on_error = on_error
        self._stop = stop
        self._idle_timeout = idle_timeout
        self._max_backoff = max_backoff
        self._watch: Watch[Event] | None = None
        self._last_event = monotonic()
        self.reconnects = 0
        self._thread = threading.Thread(target=self._run, name=f"tokend-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(_JOIN_TIMEOUT)

    def cancel(self) -> None:
        watch = self._watch
        if watch is not None:
            watch.cancel()

    def cancel_if_idle(self) -> None:
        """Called by the watchdog: a stream silent past idle_timeout is reopened."""
        if monotonic() - self._last_event > self._idle_timeout:
            log.warning("tokend %s stream silent for %.0f s; reopening", self.name,
                        self._idle_timeout)
            self._last_event = monotonic()
            self.cancel()

    def _run(self) -> None:
        delay = _FIRST_BACKOFF
        while not self._stop.is_set():
            if self._follow_once():
                delay = _FIRST_BACKOFF  # it worked for a while: reconnect promptly
            if self._stop.is_set():
                return
            self.reconnects += 1
            # Jitter: a fleet of backends must not reconnect to a restarted tokend at once.
            self._stop.wait(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self._max_backoff)

    def _follow_once(self) -> bool:
        """One stream until it ends; True when it delivered at least one event."""
        received = False
        try:
            self._last_event = monotonic()
            self._watch = watch = self._open()
            if self._stop.is_set():  # closed while opening: close() could not cancel it
                watch.cancel()
            for event in watch:
                self._last_event = monotonic()
                self._handle(event)
                received = True
        except TokendError as exc:
            log.warning("tokend %s stream ended: %s", self.name, exc)
            self._on_error(exc)
        except Exception:
            log.exception("tokend %s stream failed", self.name)
        finally:
            watch, self._watch = self._watch, None
            if watch is not None:
                watch.cancel()  # after a failure in handle(): do not leave the call open
        return received


class LiveSource(KeySource):
    """Keys and revocations pushed by tokend over ``client``'s channel; see the module.

    ``ready_timeout``: how long the first use waits for the revocations in force.
    ``idle_timeout``: a stream silent this long is reopened (tokend sends a keep-alive
    every 15 s). ``max_backoff``: the longest wait between reconnection attempts.
    ``min_refetch_interval``: as for every key source, the rate limit of GetJwks calls
    caused by tokens naming an unknown ``kid``. ``max_staleness``: how long the
    revocation feed may deliver nothing (no event, no keep-alive) before its state is
    stale; then ``stale_policy`` "fail-closed" makes verify raise KeySourceError and
    "fail-open" keeps the last state. ``on_stale(stale, silent_for)`` is called from a
    background thread on every change between fresh and stale (an alert, a metric).
    """

    def __init__(self, client: _WatchingClient, *, ready_timeout: float = 10.0,
                 idle_timeout: float = 60.0, max_backoff: float = 30.0,
                 min_refetch_interval: float = 5, max_staleness: float = 120.0,
                 stale_policy: StalePolicy = "fail-closed",
                 on_stale: OnStale | None = None) -> None:
        for name in ("get_jwks", "watch_jwks", "watch_revocations"):
            if not callable(getattr(client, name, None)):
                raise TypeError("LiveSource needs a TokenClient (an AsyncTokenClient cannot "
                                "be followed from a thread)")
        super().__init__(client.get_jwks, refresh_interval=None,
                         min_refetch_interval=min_refetch_interval)
        self._client = client
        self._ready_timeout = _seconds(ready_timeout, "ready_timeout", positive=True)
        self._synced = threading.Event()
        self._next_prune = 0.0
        self._max_staleness = _seconds(max_staleness, "max_staleness", positive=True)
        if stale_policy not in ("fail-closed", "fail-open"):
            raise ValueError("stale_policy must be 'fail-closed' or 'fail-open'")
        self._fail_closed = stale_policy == "fail-closed"
        self._on_stale = on_stale
        self._last_revocation_event = monotonic()
        self._reported_stale = False
        self.revocations = RevocationSet()
        options = {"stop": self._stop, "max_backoff": _seconds(max_backoff, "max_backoff",
                                                                positive=True),
                   "idle_timeout": _seconds(idle_timeout, "idle_timeout", positive=True)}
        self._followers = (
            _Follower("jwks", client.watch_jwks, self._on_jwks, **options),
            _Follower("revocations", self._open_revocations, self._on_revocation,
                      on_error=self._on_revocation_error, **options),
        )
        self._watchdog = threading.Thread(target=self._watch_idle, name="tokend-live-watchdog",
                                          daemon=True)

    @property
    def synced(self) -> bool:
        """True once the revocations in force when the stream opened have all arrived."""
        return self._synced.is_set()

    @property
    def reconnects(self) -> int:
        """How many times a stream was reopened (for monitoring)."""
        return sum(follower.reconnects for follower in self._followers)

    def keys(self) -> JwkSet:
        """The current key set; the first call also waits for the revocations in force."""
        keys = super().keys()
        if not self._synced.is_set() and not self._synced.wait(self._ready_timeout):
            raise KeySourceError(f"tokend's revocations did not arrive within "
                                 f"{self._ready_timeout:g} s; is tokend reachable?")
        return keys

    @property
    def stale(self) -> bool:
        """True while the revocation feed has been silent longer than ``max_staleness``."""
        return self._silent_for() > self._max_staleness

    def is_revoked(self, claims: Mapping[str, Any], now: float | None = None) -> bool:
        """Whether verified ``claims`` name a revoked token (LocalVerifier asks this).

        Raises KeySourceError while the state is stale under the fail-closed policy: the
        token was not found invalid, its revocation state is unknown.
        """
        if self._fail_closed and self.stale:
            raise KeySourceError(
                f"tokend's revocation feed has been silent for {self._silent_for():.0f} s "
                f"(max_staleness {self._max_staleness:g} s, stale_policy fail-closed); "
                "is tokend reachable?")
        return self.revocations.is_revoked(claims, time() if now is None else now)

    def _silent_for(self) -> float:
        return monotonic() - self._last_revocation_event

    def close(self) -> None:
        """Close both streams and stop the threads (the last state stays usable)."""
        self._stop.set()
        for follower in self._followers:
            follower.cancel()
        for follower in self._followers:
            follower.join()
        super().close()

    def _start_refresher(self) -> None:
        # Called by KeySource after the first fetch: the streams replace periodic polling.
        if self._stop.is_set() or self._watchdog.is_alive():
            return
        for follower in self._followers:
            follower.start()
        self._watchdog.start()

    def _watch_idle(self) -> None:
        while not self._stop.wait(min(1.0, self._max_staleness / 4)):
            for follower in self._followers:
                follower.cancel_if_idle()
            self._report_staleness()

    def _report_staleness(self) -> None:
        stale = self.stale
        if stale == self._reported_stale:
            return
        self._reported_stale = stale
        log.log(logging.WARNING if stale else logging.INFO,
                "tokend revocation feed %s after %.1f s", "stale" if stale else "fresh again",
                self._silent_for())
        if self._on_stale is not None:
            try:
                self._on_stale(stale, self._silent_for())
            except Exception:
                log.exception("on_stale callback failed")

    def _on_jwks(self, event: pb.JwksEvent) -> None:
        if event.keep_alive and self._keys is not None:
            return  # unchanged: no need to parse it again
        try:
            keys = _usable_key_set(event.jwks_json)
        except (TypeError, ValueError) as exc:
            log.warning("tokend sent an unusable key set, keeping the current keys: %s", exc)
            return
        with self._lock:
            self._keys = keys

    def _open_revocations(self) -> Watch[pb.RevocationEvent]:
        return self._client.watch_revocations(self.revocations.sequence)

    def _on_revocation(self, event: pb.RevocationEvent) -> None:
        self.revocations.apply(event)
        self._last_revocation_event = monotonic()
        if event.checkpoint:
            self._synced.set()
            now = time()
            if now >= self._next_prune:
                self.revocations.prune(now)
                self._next_prune = now + _PRUNE_INTERVAL

    def _on_revocation_error(self, exc: TokendError) -> None:
        if exc.code is grpc.StatusCode.FAILED_PRECONDITION:
            # Our sequence is ahead of tokend's feed (its store was replaced): replay
            # from the start. What we hold stays: it only ever denies more, and expires.
            self.revocations.sequence = 0


def _seconds_of(stamp: timestamp_pb2.Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9
