"""Coalesces concurrent signing requests into one keyring call per batch.

A Transit sign call costs a couple of hundred microseconds of client CPU (HTTP, JSON)
whether it carries one signing input or a hundred, so under load Issue calls that arrive
close together are signed by one `transit/sign` request with `batch_input`. All inputs of
a batch name the same key version (the version stays pinned per token), and each answer
goes back to its own caller: a per-item error fails only that caller's Issue. Keys in
memory (custody kv) are batched too, though a signature costs them no round trip: the
callers of a batch all resume in one event-loop turn and their answers leave together,
which costs gRPC's event loop integration markedly less per call than one at a time.

Bounds: a batch holds at most `max_batch` inputs, and batches leave at most once per
`max_wait` seconds (a full one at once), so an input waits at most `max_wait` for its
batch to leave, except while `max_in_flight` batches are already at Vault, when it
leaves as soon as one of them returns. Pacing departures, rather than sending whatever
waits the moment Vault answers, is what makes batches larger than one or two under
load. An input arriving when no batch left in the last `max_wait` leaves at once: at
low load there is nobody to wait for.
"""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import Executor
from dataclasses import dataclass, field

from tokend import metrics
from tokend.keys.keyring import Keyring, SigningKey

# Transit signs 100 inputs per call ~20x faster than 100 calls; beyond a few dozen the
# per-item work dominates and a larger batch only makes its members wait longer. Few
# batches in flight: every call costs CPU on this side too, and inputs that wait for a
# slot make the next batch larger.
DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_WAIT = 0.002
DEFAULT_MAX_IN_FLIGHT = 2


@dataclass
class _Pending:
    """Inputs waiting for one key version, with the futures of their callers."""

    inputs: list[bytes] = field(default_factory=list)
    futures: list[asyncio.Future[bytes]] = field(default_factory=list)


class SignBatcher:
    """`await sign(key, data)` from the event loop; batches go out through the keyring's
    `sign_many_async` when it has one, else `sign_many` in `executor`.

    Not thread-safe: owned by one event loop, like the rest of the request path.
    """

    def __init__(
        self,
        keyring: Keyring,
        executor: Executor,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait: float = DEFAULT_MAX_WAIT,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        if max_batch < 1 or max_in_flight < 1 or not 0 <= max_wait <= 1:
            raise ValueError("max_batch and max_in_flight must be >= 1, max_wait 0-1 s")
        self._keyring = keyring
        self._executor = executor
        # A custody that can sign from the event loop (Transit over HTTP) does; one whose
        # signatures are cheap CPU work (`signs_inline`) signs right on the loop; the
        # others sign in `executor`, off the loop.
        self._sign_async = getattr(keyring, "sign_many_async", None)
        self._inline = bool(getattr(keyring, "signs_inline", False))
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._max_in_flight = max_in_flight
        self._pending: dict[SigningKey, _Pending] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._in_flight = 0
        self._last_sent = -math.inf  # loop time the last batch left
        # How many keyring calls and inputs went out: lets tests and metrics see coalescing.
        self.calls = 0
        self.signed = 0

    async def sign(self, key: SigningKey, signing_input: bytes) -> bytes:
        """The signature of `signing_input` by exactly `key`; raises what the keyring
        raised for this input (or for its whole batch)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        pending = self._pending.setdefault(key, _Pending())
        pending.inputs.append(signing_input)
        pending.futures.append(future)
        if len(pending.inputs) >= self._max_batch and self._in_flight < self._max_in_flight:
            self._send(key, loop)
        else:
            self._dispatch(loop)
        return await future

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send what waits once the last batch left `max_wait` ago, else set a timer.

        With every slot taken this does nothing: the next batch to return calls it, so a
        slow Vault gets fewer, larger batches instead of a queue of small ones.
        """
        if not self._pending or self._in_flight >= self._max_in_flight:
            return
        due = self._last_sent + self._max_wait
        if loop.time() >= due:
            while self._pending and self._in_flight < self._max_in_flight:
                self._send(next(iter(self._pending)), loop)
        elif self._timer is None:
            self._timer = loop.call_at(due, self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._dispatch(loop)

    def _send(self, key: SigningKey, loop: asyncio.AbstractEventLoop) -> None:
        pending = self._pending.pop(key)
        size = self._max_batch
        if len(pending.inputs) > size:  # the rest waits for the next batch
            self._pending[key] = _Pending(pending.inputs[size:], pending.futures[size:])
        inputs, futures = pending.inputs[:size], pending.futures[:size]
        self._in_flight += 1
        self.calls += 1
        self.signed += len(inputs)
        self._last_sent = loop.time()
        if self._timer is not None:  # set for an earlier departure; _dispatch sets anew
            self._timer.cancel()
            self._timer = None
        job: asyncio.Future[list[bytes | Exception]]
        if self._sign_async is not None:
            job = asyncio.ensure_future(self._sign_async(key, inputs))
        elif self._inline:
            job = _signed_now(loop, self._keyring, key, inputs)
        else:
            job = loop.run_in_executor(self._executor, self._keyring.sign_many, key, inputs)
        started = self._last_sent
        job.add_done_callback(lambda done: self._done(done, futures, loop, started))

    def _done(self, job: asyncio.Future[list[bytes | Exception]],
              futures: list[asyncio.Future[bytes]], loop: asyncio.AbstractEventLoop,
              started: float) -> None:
        self._in_flight -= 1
        metrics.SIGN_SECONDS.observe(loop.time() - started)
        _settle(job, futures)
        # A slot is free: what gathered meanwhile leaves when it is due, one batch per key.
        self._dispatch(loop)


def _signed_now(loop: asyncio.AbstractEventLoop, keyring: Keyring, key: SigningKey,
                inputs: list[bytes]) -> asyncio.Future[list[bytes | Exception]]:
    """A finished job: the batch signed here and now, on the event loop."""
    job: asyncio.Future[list[bytes | Exception]] = loop.create_future()
    try:
        job.set_result(list(keyring.sign_many(key, inputs)))
    except Exception as exc:  # the batch's callers get it, as from any other custody
        job.set_exception(exc)
    return job


def _settle(job: asyncio.Future[list[bytes | Exception]],
            futures: list[asyncio.Future[bytes]]) -> None:
    """Hand each caller its own signature or error; callers that gave up are skipped."""
    if job.cancelled():  # the executor shut down: so does every caller's wait
        for future in futures:
            future.cancel()
        return
    error = job.exception()
    results: list[bytes | Exception] = [] if error is not None else job.result()
    if error is None and len(results) != len(futures):
        error = RuntimeError(f"keyring answered {len(results)} of {len(futures)} inputs")
    for index, future in enumerate(futures):
        if future.done():
            continue
        outcome = error if error is not None else results[index]
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
