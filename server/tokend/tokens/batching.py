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

Failing fast (with a `SigningCircuit`): a batch that fails as a whole (Vault timed out,
unreachable, sealed) opens the circuit; every input still queued fails at once, and new
ones are refused until a probe batch, sent by the batcher every `circuit.cooldown`,
succeeds. So a hung Vault costs each caller at most about one Vault timeout, however
many wait, instead of one timeout per batch ahead of it. `give_up_after` bounds each
caller's wait (queue plus Vault) on its own, and inputs whose callers have gone
(cancelled: the client left or its deadline passed) are dropped before their batch leaves.
"""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tokend import metrics, tracing
from tokend.keys.keyring import PROBE, Keyring, SigningKey
from tokend.tokens.circuit import SigningCircuit
from tokend.tokens.errors import SigningUnavailable

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

# Transit signs 100 inputs per call ~20x faster than 100 calls; beyond a few dozen the
# per-item work dominates and a larger batch only makes its members wait longer. Few
# batches in flight: every call costs CPU on this side too, and inputs that wait for a
# slot make the next batch larger.
DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_WAIT = 0.003  # signing.batch_wait's default
DEFAULT_MAX_IN_FLIGHT = 2


@dataclass
class _Pending:
    """Inputs waiting for one key version, with the futures of their callers."""

    inputs: list[bytes] = field(default_factory=list)
    futures: list[asyncio.Future[bytes]] = field(default_factory=list)
    # The callers' RPC spans, only while tracing is on (else stays empty).
    spans: list[Any] = field(default_factory=list)


class SignBatcher:
    """`await sign(key, data)` from the event loop; every batch goes out through the
    keyring's `sign_batch`, which signs where its custody signs best (Transit: an HTTP
    POST from the loop; kv ES256/EdDSA: on the loop; otherwise a thread of `executor`).

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
        circuit: SigningCircuit | None = None,
        give_up_after: float | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        if max_batch < 1 or max_in_flight < 1 or not 0 <= max_wait <= 1:
            raise ValueError("max_batch and max_in_flight must be >= 1, max_wait 0-1 s")
        if give_up_after is not None and give_up_after <= 0:
            raise ValueError("give_up_after must be > 0")
        self._circuit = circuit
        self._tracer = tracer  # None: tracing off; else a span per batch (tokend.tracing)
        self._give_up_after = give_up_after
        self._probe_timer: asyncio.TimerHandle | None = None
        self._probing = False
        self._keyring = keyring
        self._executor = executor
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
        raised for this input (or for its whole batch); SigningUnavailable at once while
        the circuit is open, or when no signature came within `give_up_after`."""
        if self._circuit is not None:
            self._circuit.check()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        pending = self._pending.setdefault(key, _Pending())
        pending.inputs.append(signing_input)
        pending.futures.append(future)
        if self._tracer is not None:
            pending.spans.append(tracing.member_span())
        if len(pending.inputs) >= self._max_batch and self._in_flight < self._max_in_flight:
            self._send(key, loop)
        else:
            self._dispatch(loop)
        if self._give_up_after is None:
            return await future
        timer = loop.call_later(self._give_up_after, _give_up, future, self._give_up_after)
        try:
            return await future
        finally:
            timer.cancel()

    @property
    def can_sign(self) -> bool:
        """False while the circuit is open (Issue answers UNAVAILABLE at once)."""
        return self._circuit is None or self._circuit.can_sign

    def close(self) -> None:
        """Stop probing (the process is stopping)."""
        if self._probe_timer is not None:
            self._probe_timer.cancel()
            self._probe_timer = None

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
        waiting = _waiting(self._pending.pop(key))
        inputs, futures, spans = waiting.inputs, waiting.futures, waiting.spans
        size = self._max_batch
        if len(inputs) > size:  # the rest waits for the next batch
            self._pending[key] = _Pending(inputs[size:], futures[size:], spans[size:])
            inputs, futures, spans = inputs[:size], futures[:size], spans[:size]
        if not inputs:  # every caller of this batch has gone: nothing to send
            return
        self._in_flight += 1
        self.calls += 1
        self.signed += len(inputs)
        self._last_sent = loop.time()
        if self._timer is not None:  # set for an earlier departure; _dispatch sets anew
            self._timer.cancel()
            self._timer = None
        job = self._start(key, inputs, loop, spans)
        started = self._last_sent
        job.add_done_callback(lambda done: self._done(done, futures, loop, started))

    def _start(self, key: SigningKey, inputs: list[bytes], loop: asyncio.AbstractEventLoop,
               spans: list[Any] | None = None) -> asyncio.Future[list[bytes | Exception]]:
        metrics.SIGN_INPUTS.inc(len(inputs))
        batch = self._keyring.sign_batch(key, inputs, executor=self._executor)
        if self._tracer is None or not spans:  # tracing off, or the circuit's probe
            return asyncio.ensure_future(batch, loop=loop)
        span, token = tracing.start_batch_span(self._tracer, spans, size=len(inputs),
                                               kid=key.kid)
        try:  # the task copies the current context: the Vault call nests in the batch
            job = asyncio.ensure_future(batch, loop=loop)
        finally:
            tracing.detach(token)
        job.add_done_callback(lambda done: _end_span(span, done))
        return job

    def _done(self, job: asyncio.Future[list[bytes | Exception]],
              futures: list[asyncio.Future[bytes]], loop: asyncio.AbstractEventLoop,
              started: float) -> None:
        self._in_flight -= 1
        metrics.SIGN_SECONDS.observe(loop.time() - started)
        _settle(job, futures)
        if self._circuit is not None and not job.cancelled():
            self._judge(job.exception(), loop)
        # A slot is free: what gathered meanwhile leaves when it is due, one batch per key.
        self._dispatch(loop)

    # -- the circuit ---------------------------------------------------------------------

    def _judge(self, error: BaseException | None, loop: asyncio.AbstractEventLoop) -> None:
        """A whole call failed: open, fail what queues behind it, probe later. A call that
        worked closes the circuit (per-input refusals say nothing about Vault's health)."""
        assert self._circuit is not None
        if error is None:
            self._circuit.succeeded()
            return
        self._circuit.failed(error)
        self._fail_queued(error)
        self._schedule_probe(loop)

    def _fail_queued(self, error: BaseException) -> None:
        pending, self._pending = self._pending, {}
        refusal = f"cannot sign: a signing call just failed ({error})"
        retry = self._circuit.retry_after() if self._circuit is not None else None
        for batch in pending.values():
            for future in batch.futures:
                if not future.done():
                    metrics.child(metrics.SIGN_SHED, "circuit_open").inc()
                    future.set_exception(SigningUnavailable(refusal, retry_after=retry))

    def _schedule_probe(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._circuit is not None
        if self._probing or self._probe_timer is not None:
            return
        self._probe_timer = loop.call_later(self._circuit.cooldown, self._probe, loop)

    def _probe(self, loop: asyncio.AbstractEventLoop) -> None:
        """One call with a fixed input that is not a token (keys.keyring.PROBE); Issue
        keeps answering UNAVAILABLE meanwhile."""
        self._probe_timer = None
        circuit = self._circuit
        if circuit is None or circuit.can_sign:
            return
        circuit.probing()
        self._probing = True
        try:
            job = self._start(self._keyring.active(), [PROBE], loop)
        except Exception as exc:  # the keyring could not even start a call
            self._probed(exc, loop)
            return
        job.add_done_callback(lambda done: self._probe_done(done, loop))

    def _probe_done(self, job: asyncio.Future[list[bytes | Exception]],
                    loop: asyncio.AbstractEventLoop) -> None:
        if job.cancelled():  # shutting down
            self._probing = False
            return
        error = job.exception()
        if error is None:
            error = next((r for r in job.result() if isinstance(r, BaseException)), None)
        self._probed(error, loop)

    def _probed(self, error: BaseException | None, loop: asyncio.AbstractEventLoop) -> None:
        assert self._circuit is not None
        self._probing = False
        if error is None:
            self._circuit.succeeded()
        else:
            self._circuit.failed(error)
            self._schedule_probe(loop)


def _waiting(pending: _Pending) -> _Pending:
    """The inputs whose callers still wait: one that was cancelled (the client went away
    or its deadline passed) or gave up is never sent to the key custody."""
    kept = _Pending()
    spans = pending.spans
    for index, (data, future) in enumerate(zip(pending.inputs, pending.futures, strict=True)):
        if not future.done():
            kept.inputs.append(data)
            kept.futures.append(future)
            if spans:
                kept.spans.append(spans[index])
        elif future.cancelled():
            metrics.child(metrics.SIGN_SHED, "cancelled").inc()
    return kept


def _end_span(span: Any, job: asyncio.Future[list[bytes | Exception]]) -> None:
    if job.cancelled():
        tracing.end_batch_span(span, asyncio.CancelledError(), 0)
        return
    error = job.exception()
    failed = 0 if error is not None else sum(isinstance(r, BaseException) for r in job.result())
    tracing.end_batch_span(span, error, failed)


def _give_up(future: asyncio.Future[bytes], after: float) -> None:
    if not future.done():
        metrics.child(metrics.SIGN_SHED, "gave_up").inc()
        future.set_exception(SigningUnavailable(f"cannot sign: no signature within {after:g}s"))


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
