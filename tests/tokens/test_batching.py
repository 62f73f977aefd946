"""The Issue coalescer: concurrent signing requests share Transit calls (batch_input).

Against a real OpenBao: fewer Transit calls than tokens, every token valid under the
key version its kid names, a version Transit refuses failing only its own callers. The
timing and error-mapping rules use a gated keyring, so they do not depend on how fast
this machine happens to be.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor

import pytest
from cryptography.exceptions import InvalidSignature
from prometheus_client import REGISTRY

from tests.support.bao import BaoDevServer, free_port, vault_session
from tokend.keys.keyring import PROBE, SigningKey, ThreadedBatches
from tokend.keys.transit import TransitKeyring
from tokend.tokens.batching import SignBatcher
from tokend.tokens.circuit import SigningCircuit
from tokend.tokens.errors import SigningUnavailable
from tokend.tokens.input_rules import AccessTokenSpec
from tokend.tokens.minting import TokenMinter
from tokend.vault.client import VaultError
from tokend_client import LocalVerifier
from tokend_client.jose import VerifyingKey, b64url_decode, verify_signature

ISSUER = "https://tokend.test"
SPEC = AccessTokenSpec(subject="alice", audience=("orders",), scopes=("orders:read",),
                       claims={}, ttl=300, client_id="batching-test")


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-sign")
    yield pool
    pool.shutdown(wait=True)


class CountingTransit(TransitKeyring):
    """The real TransitKeyring, recording each batch it sends (key version, size)."""

    batches: list[tuple[int, int]]

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.batches: list[tuple[int, int]] = []

    async def sign_batch(self, key: SigningKey, signing_inputs: Sequence[bytes], *,
                         executor: Executor | None = None) -> list[bytes | VaultError]:
        self.batches.append((key.version, len(signing_inputs)))
        return await super().sign_batch(key, signing_inputs, executor=executor)


@pytest.fixture
async def transit(bao: BaoDevServer) -> AsyncIterator[CountingTransit]:
    """As tokend builds it: hvac client and event-loop transport from one session."""
    name = f"batching-{uuid.uuid4().hex[:8]}"
    session = vault_session(bao.addr, bao.token)
    keyring = CountingTransit(session.client, key_name=name, create_if_missing=True,
                              transport=session.transport)
    keyring.load()
    yield keyring
    await session.transport.close()


def rotate(bao: BaoDevServer, keyring: TransitKeyring) -> tuple[SigningKey, SigningKey]:
    """A second version in Transit; both are published (the new one in phase next)."""
    bao.client().secrets.transit.rotate_key(keyring.key_name)
    keyring.load()
    held = keyring._current().versions
    return held[1].key, held[2].key


def public_keys(keyring: TransitKeyring) -> dict[int, VerifyingKey]:
    return {v: p.public_key for v, p in keyring._current().versions.items()}


async def test_concurrent_mints_share_transit_calls(
        transit: CountingTransit, executor: ThreadPoolExecutor) -> None:
    minter = TokenMinter(transit, ISSUER, executor,
                         batcher=SignBatcher(transit, executor, max_batch=16))
    observed_before = _sign_calls_observed()
    minted = await asyncio.gather(*(minter.mint(SPEC) for _ in range(40)))

    assert sum(size for _, size in transit.batches) == 40
    # tokend_sign_duration_seconds: one observation per signing call, not per token.
    assert _sign_calls_observed() - observed_before == len(transit.batches)
    assert len(transit.batches) <= 8, transit.batches  # 40 tokens, a handful of calls
    assert max(size for _, size in transit.batches) <= 16
    verifier = LocalVerifier(transit.jwks(), issuer=ISSUER, audience="orders")
    active = transit.active()
    for token in minted:
        claims = verifier.verify(token.token)
        header = json.loads(b64url_decode(token.token.split(".")[0]))
        assert header["kid"] == token.kid == active.kid
        assert claims["jti"] == token.jti
    assert len({token.jti for token in minted}) == 40


def _sign_calls_observed() -> float:
    value = REGISTRY.get_sample_value("tokend_sign_duration_seconds_count")
    assert value is not None
    return value


async def test_versions_go_in_separate_batches_each_pinned(
        bao: BaoDevServer, transit: CountingTransit, executor: ThreadPoolExecutor) -> None:
    old, new = rotate(bao, transit)
    batcher = SignBatcher(transit, executor)
    keys = [old, new] * 10
    inputs = [f"input-{i}".encode() for i in range(len(keys))]
    signatures = await asyncio.gather(*(batcher.sign(k, d) for k, d in zip(keys, inputs,
                                                                          strict=True)))

    assert sum(size for _, size in transit.batches) == 20
    assert {version for version, _ in transit.batches} == {1, 2}
    public = public_keys(transit)
    for key, data, signature in zip(keys, inputs, signatures, strict=True):
        verify_signature(key.alg, public[key.version], signature, data)
        other = 2 if key.version == 1 else 1
        with pytest.raises(InvalidSignature):  # the pin held: not the other version's
            verify_signature(key.alg, public[other], signature, data)


async def test_a_version_transit_refuses_fails_only_its_callers(
        bao: BaoDevServer, transit: CountingTransit, executor: ThreadPoolExecutor) -> None:
    old, new = rotate(bao, transit)
    # Transit now refuses to sign with version 1, item by item inside a batch answer.
    bao.client().secrets.transit.update_key_configuration(
        transit.key_name, min_encryption_version=2)
    batcher = SignBatcher(transit, executor)
    keys = [old, new] * 5
    outcomes = await asyncio.gather(*(batcher.sign(k, b"data") for k in keys),
                                    return_exceptions=True)

    for key, outcome in zip(keys, outcomes, strict=True):
        if key == old:
            assert isinstance(outcome, VaultError), outcome
            assert outcome.reason == "rejected"
            assert "minimum encryption key version" in str(outcome)
        else:
            assert isinstance(outcome, bytes), outcome
            verify_signature(new.alg, public_keys(transit)[2], outcome, b"data")


class GatedKeyring(ThreadedBatches):
    """Signs instantly, but holds every batch until `gate` opens; records each batch.
    Its batches run in worker threads (the default `sign_batch`)."""

    def __init__(self, fail_on: bytes | None = None, fail_all: bool = False) -> None:
        self.gate = threading.Event()
        self.batches: list[tuple[float, list[bytes]]] = []
        self.second_batch = threading.Event()
        self._fail_on = fail_on
        self._fail_all = fail_all

    def sign_many(self, key: SigningKey, signing_inputs: Sequence[bytes]
                  ) -> list[bytes | VaultError]:
        self.batches.append((time.monotonic(), list(signing_inputs)))
        if len(self.batches) == 2:
            self.second_batch.set()
        self.gate.wait(10)
        if self._fail_all:
            raise VaultError("transit/sign/k: Vault is sealed", reason="sealed")
        return [VaultError("refused", reason="rejected") if data == self._fail_on
                else b"sig:" + data for data in signing_inputs]


class InstantAsyncKeyring:
    """Signs at once from the event loop (as Transit over HTTP does); records each batch."""

    def __init__(self) -> None:
        self.batches: list[tuple[float, list[bytes]]] = []

    async def sign_batch(self, key: SigningKey, signing_inputs: Sequence[bytes], *,
                         executor: Executor | None = None) -> list[bytes | VaultError]:
        self.batches.append((time.monotonic(), list(signing_inputs)))
        return [b"sig:" + data for data in signing_inputs]


KEY = SigningKey(kid="k-v1", alg="ES256", version=1)


async def test_wait_is_bounded_even_while_a_batch_is_out(
        executor: ThreadPoolExecutor) -> None:
    keyring = GatedKeyring()
    batcher = SignBatcher(keyring, executor, max_wait=0.05)  # type: ignore[arg-type]
    first = asyncio.ensure_future(batcher.sign(KEY, b"a"))
    await asyncio.sleep(0.01)  # idle: "a" leaves at once and is held at the gate
    assert len(keyring.batches) == 1
    first_sent = keyring.batches[0][0]
    rest = [asyncio.ensure_future(batcher.sign(KEY, data)) for data in (b"b", b"c")]
    loop = asyncio.get_running_loop()
    # The first batch is still out, yet b and c leave together max_wait after it did.
    assert await loop.run_in_executor(None, keyring.second_batch.wait, 5)
    sent_at, inputs = keyring.batches[1]
    assert inputs == [b"b", b"c"]
    assert 0.045 <= sent_at - first_sent < 2.0
    keyring.gate.set()
    assert await first == b"sig:a"
    assert await asyncio.gather(*rest) == [b"sig:b", b"sig:c"]


async def test_a_steady_stream_leaves_in_paced_batches(executor: ThreadPoolExecutor) -> None:
    """Under load batches leave once per max_wait, not whenever Vault happens to answer:
    Vault answering at once must not shrink them to one input each."""
    keyring = InstantAsyncKeyring()  # Vault answers at once: nothing stays in flight
    batcher = SignBatcher(keyring, executor, max_wait=0.04)  # type: ignore[arg-type]
    calls, queued = [], []
    for i in range(40):  # one input every ~5 ms for ~0.2 s
        queued.append(time.monotonic())
        calls.append(asyncio.ensure_future(batcher.sign(KEY, str(i).encode())))
        await asyncio.sleep(0.005)
    assert await asyncio.gather(*calls) == [b"sig:" + str(i).encode() for i in range(40)]

    sent = [at for at, _ in keyring.batches]
    assert sum(len(batch) for _, batch in keyring.batches) == 40
    assert len(sent) <= 12, [len(batch) for _, batch in keyring.batches]  # ~8 per 0.04 s
    assert all(later - earlier >= 0.03 for earlier, later in itertools.pairwise(sent))
    # No input waited much more than max_wait (scheduling slack on a loaded machine).
    position = 0
    for at, batch in keyring.batches:
        waited = at - queued[position]
        assert waited < 0.04 + 0.5, (position, waited)
        position += len(batch)


async def test_after_a_quiet_spell_an_input_leaves_at_once(executor: ThreadPoolExecutor) -> None:
    keyring = GatedKeyring()
    keyring.gate.set()
    batcher = SignBatcher(keyring, executor, max_wait=1.0)  # type: ignore[arg-type]
    assert await batcher.sign(KEY, b"a") == b"sig:a"  # the first: nothing before it
    await asyncio.sleep(0.05)
    started = time.monotonic()
    assert await batcher.sign(KEY, b"b") == b"sig:b"  # within max_wait: paced
    assert time.monotonic() - started >= 0.8
    await asyncio.sleep(1.05)  # quiet for longer than max_wait
    started = time.monotonic()
    assert await batcher.sign(KEY, b"c") == b"sig:c"
    assert time.monotonic() - started < 0.5


async def test_a_full_batch_leaves_without_waiting(executor: ThreadPoolExecutor) -> None:
    keyring = GatedKeyring()
    keyring.gate.set()
    batcher = SignBatcher(keyring, executor, max_batch=4,  # type: ignore[arg-type]
                          max_wait=1.0)
    assert await batcher.sign(KEY, b"first") == b"sig:first"
    started = time.monotonic()
    inputs = [str(i).encode() for i in range(4)]
    assert await asyncio.gather(*(batcher.sign(KEY, d) for d in inputs)) == [
        b"sig:" + d for d in inputs]
    assert time.monotonic() - started < 0.5  # full: it did not wait out the 1 s pacing
    assert [len(batch) for _, batch in keyring.batches] == [1, 4]


async def test_with_one_slot_inputs_wait_for_the_batch_out(executor: ThreadPoolExecutor) -> None:
    """max_in_flight=1: nothing leaves while a batch is out, however long; everything
    that gathered meanwhile leaves together when it returns."""
    keyring = GatedKeyring()
    batcher = SignBatcher(keyring, executor, max_wait=0.01,  # type: ignore[arg-type]
                          max_in_flight=1)
    first = asyncio.ensure_future(batcher.sign(KEY, b"a"))
    await asyncio.sleep(0.01)
    rest = [asyncio.ensure_future(batcher.sign(KEY, str(i).encode())) for i in range(5)]
    await asyncio.sleep(0.1)  # ten times max_wait
    assert len(keyring.batches) == 1
    keyring.gate.set()
    assert await first == b"sig:a"
    assert await asyncio.gather(*rest) == [b"sig:" + str(i).encode() for i in range(5)]
    assert [len(batch) for _, batch in keyring.batches] == [1, 5]


async def test_per_item_error_reaches_only_its_caller(executor: ThreadPoolExecutor) -> None:
    keyring = GatedKeyring(fail_on=b"bad")
    keyring.gate.set()
    batcher = SignBatcher(keyring, executor, max_wait=0.01)  # type: ignore[arg-type]
    inputs = [b"one", b"two", b"bad", b"four", b"five"]
    outcomes = await asyncio.gather(*(batcher.sign(KEY, d) for d in inputs),
                                    return_exceptions=True)
    assert len(keyring.batches) < len(inputs)  # coalesced, so the error shared a batch
    for data, outcome in zip(inputs, outcomes, strict=True):
        if data == b"bad":
            assert isinstance(outcome, VaultError) and outcome.reason == "rejected"
        else:
            assert outcome == b"sig:" + data


async def test_failed_call_fails_every_caller_of_that_batch(
        executor: ThreadPoolExecutor) -> None:
    keyring = GatedKeyring(fail_all=True)
    keyring.gate.set()
    batcher = SignBatcher(keyring, executor, max_wait=0.01)  # type: ignore[arg-type]
    outcomes = await asyncio.gather(*(batcher.sign(KEY, b"x") for _ in range(6)),
                                    return_exceptions=True)
    assert all(isinstance(o, VaultError) and o.reason == "sealed" for o in outcomes)


async def test_batches_never_exceed_max_batch(executor: ThreadPoolExecutor) -> None:
    keyring = GatedKeyring()
    keyring.gate.set()
    batcher = SignBatcher(keyring, executor, max_batch=4,  # type: ignore[arg-type]
                          max_wait=0.01)
    inputs = [str(i).encode() for i in range(30)]
    signatures = await asyncio.gather(*(batcher.sign(KEY, d) for d in inputs))
    assert signatures == [b"sig:" + d for d in inputs]
    assert max(len(batch) for _, batch in keyring.batches) <= 4
    assert batcher.calls == len(keyring.batches) and batcher.signed == 30


async def test_cancelled_caller_does_not_disturb_the_others(
        executor: ThreadPoolExecutor) -> None:
    keyring = GatedKeyring()
    batcher = SignBatcher(keyring, executor, max_wait=0.01)  # type: ignore[arg-type]
    calls = [asyncio.ensure_future(batcher.sign(KEY, d)) for d in (b"a", b"b", b"c")]
    await asyncio.sleep(0.05)
    calls[1].cancel()
    keyring.gate.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert outcomes[0] == b"sig:a" and outcomes[2] == b"sig:c"
    assert isinstance(outcomes[1], asyncio.CancelledError)


class InlineKeyring(ThreadedBatches):
    """A custody whose signatures are cheap (kv, ES256): it signs batches on the loop."""

    def __init__(self, fail_all: bool = False) -> None:
        self.batches: list[tuple[str, list[bytes]]] = []
        self._fail_all = fail_all

    def sign_many(self, key: SigningKey, signing_inputs: Sequence[bytes]
                  ) -> list[bytes | VaultError]:
        self.batches.append((threading.current_thread().name, list(signing_inputs)))
        if self._fail_all:
            raise ValueError("key k-v1 (version 1) is gone")
        return [VaultError("refused", reason="rejected") if data == b"bad"
                else b"sig:" + data for data in signing_inputs]

    async def sign_batch(self, key: SigningKey, signing_inputs: Sequence[bytes], *,
                         executor: Executor | None = None) -> list[bytes | VaultError]:
        return self.sign_many(key, signing_inputs)  # as KvKeyring does for ES256


async def test_inline_custodies_are_batched_on_the_event_loop(
        executor: ThreadPoolExecutor) -> None:
    keyring = InlineKeyring()
    batcher = SignBatcher(keyring, executor, max_wait=0.01)  # type: ignore[arg-type]
    inputs = [b"a", b"b", b"bad", b"d"]
    outcomes = await asyncio.gather(*(batcher.sign(KEY, d) for d in inputs),
                                    return_exceptions=True)
    assert outcomes[:2] == [b"sig:a", b"sig:b"] and outcomes[3] == b"sig:d"
    assert isinstance(outcomes[2], VaultError) and outcomes[2].reason == "rejected"
    # The first left at once (nothing before it), the rest together: no worker thread.
    assert [batch for _, batch in keyring.batches] == [[b"a"], [b"b", b"bad", b"d"]]
    assert {thread for thread, _ in keyring.batches} == {threading.current_thread().name}


async def test_an_inline_batch_that_fails_fails_all_its_callers(
        executor: ThreadPoolExecutor) -> None:
    batcher = SignBatcher(InlineKeyring(fail_all=True), executor,  # type: ignore[arg-type]
                          max_wait=0.01)
    outcomes = await asyncio.gather(*(batcher.sign(KEY, b"x") for _ in range(3)),
                                    return_exceptions=True)
    assert all(isinstance(o, ValueError) and "gone" in str(o) for o in outcomes)


def test_limits_are_checked(executor: ThreadPoolExecutor) -> None:
    for bad in ({"max_batch": 0}, {"max_in_flight": 0}, {"max_wait": -1}):
        with pytest.raises(ValueError):
            SignBatcher(GatedKeyring(), executor, **bad)  # type: ignore[arg-type]


# -- Transit from the event loop (aiohttp): same answers and errors as through hvac ------


async def test_event_loop_transit_signs_like_hvac(transit: CountingTransit) -> None:
    key = transit.active()
    inputs = [b"first", b"second"]
    from_loop = await transit.sign_batch(key, inputs)
    assert transit.transport is not None and transit.transport.usable
    public = public_keys(transit)[key.version]
    for data, signature in zip(inputs, from_loop, strict=True):
        assert isinstance(signature, bytes)
        verify_signature(key.alg, public, signature, data)


async def test_event_loop_transit_errors_name_the_path(bao: BaoDevServer,
                                                       transit: CountingTransit) -> None:
    key = transit.active()
    transit._client.token = "not-a-token"  # what an expired or revoked token looks like
    with pytest.raises(VaultError) as denied:
        await transit.sign_batch(key, [b"x"])
    assert denied.value.reason == "denied" and transit.sign_path in str(denied.value)

    session = vault_session(f"http://127.0.0.1:{free_port()}", bao.token)
    gone = TransitKeyring(session.client, key_name=transit.key_name,
                          transport=session.transport)
    gone._keyset = transit._keyset  # loaded keys, but nothing listens at this address
    with pytest.raises(VaultError) as unreachable:
        await gone.sign_batch(key, [b"x"])
    assert unreachable.value.reason == "unreachable"
    await session.transport.close()


async def test_a_proxy_keeps_signing_on_hvac(monkeypatch: pytest.MonkeyPatch,
                                             bao: BaoDevServer) -> None:
    """Where aiohttp could not take the route requests would (a proxy), hvac signs."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    session = vault_session(bao.addr, bao.token)  # the transport sees the proxy
    monkeypatch.delenv("HTTPS_PROXY")
    keyring = CountingTransit(session.client, key_name=f"proxied-{uuid.uuid4().hex[:8]}",
                              create_if_missing=True, transport=session.transport)
    keyring.load()
    assert keyring.transport is not None and not keyring.transport.usable
    signatures = await keyring.sign_batch(keyring.active(), [b"data"])
    assert isinstance(signatures[0], bytes)


# -- failing fast: the signing circuit (tokend.tokens.circuit) ---------------------------


class SwitchKeyring:
    """Signs from the event loop; while `hung`, every call waits `hang` seconds and fails
    as a timed-out Vault would. Records each batch."""

    def __init__(self, hang: float = 0.3) -> None:
        self.hung = False
        self.hang = hang
        self.batches: list[list[bytes]] = []

    async def sign_batch(self, key: SigningKey, signing_inputs: Sequence[bytes], *,
                         executor: Executor | None = None) -> list[bytes | VaultError]:
        self.batches.append(list(signing_inputs))
        if self.hung:
            await asyncio.sleep(self.hang)
            raise VaultError("cannot reach Vault: timed out", reason="unreachable")
        return [b"sig:" + data for data in signing_inputs]

    def active(self) -> SigningKey:
        return KEY


async def test_a_failed_call_opens_the_circuit_and_fails_the_queue_at_once(
        executor: ThreadPoolExecutor) -> None:
    keyring = SwitchKeyring(hang=0.3)
    keyring.hung = True
    changes: list[bool] = []
    circuit = SigningCircuit(60.0, on_change=changes.append)
    batcher = SignBatcher(keyring, executor, max_wait=0.01, max_in_flight=1,  # type: ignore[arg-type]
                          circuit=circuit)
    started = time.monotonic()
    calls = [asyncio.ensure_future(batcher.sign(KEY, str(i).encode())) for i in range(20)]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    # One call went to Vault; the other 19 queued behind it and failed with it, not after.
    assert len(keyring.batches) == 1 and time.monotonic() - started < 0.3 + 0.25
    assert isinstance(outcomes[0], VaultError)
    assert all(isinstance(o, SigningUnavailable) for o in outcomes[1:]), outcomes
    assert changes == [False] and not batcher.can_sign
    with pytest.raises(SigningUnavailable, match="cannot sign"):  # refused without a call
        await batcher.sign(KEY, b"late")
    assert len(keyring.batches) == 1
    batcher.close()


async def test_a_probe_closes_the_circuit_when_the_custody_answers_again(
        executor: ThreadPoolExecutor) -> None:
    keyring = SwitchKeyring(hang=0.05)
    keyring.hung = True
    changes: list[bool] = []
    batcher = SignBatcher(keyring, executor, max_wait=0.01,  # type: ignore[arg-type]
                          circuit=SigningCircuit(0.1, on_change=changes.append))
    with pytest.raises(VaultError):
        await batcher.sign(KEY, b"a")
    await asyncio.sleep(0.3)  # probes keep failing meanwhile; the circuit stays open
    assert changes == [False] and PROBE in keyring.batches[-1]
    probes = len(keyring.batches)
    keyring.hung = False
    for _ in range(50):
        if batcher.can_sign:
            break
        await asyncio.sleep(0.02)
    assert changes == [False, True] and len(keyring.batches) > probes
    assert await batcher.sign(KEY, b"b") == b"sig:b"  # no Issue was needed to close it


async def test_no_caller_waits_longer_than_give_up_after(executor: ThreadPoolExecutor) -> None:
    keyring = GatedKeyring()  # never answers until the gate opens
    batcher = SignBatcher(keyring, executor, max_wait=0.01,  # type: ignore[arg-type]
                          give_up_after=0.2)
    started = time.monotonic()
    outcomes = await asyncio.gather(*(batcher.sign(KEY, b"x") for _ in range(5)),
                                    return_exceptions=True)
    assert all(isinstance(o, SigningUnavailable) for o in outcomes)
    assert time.monotonic() - started < 0.2 + 0.3
    keyring.gate.set()


async def test_inputs_of_callers_that_left_are_never_sent(executor: ThreadPoolExecutor) -> None:
    keyring = GatedKeyring()
    batcher = SignBatcher(keyring, executor, max_wait=0.01,  # type: ignore[arg-type]
                          max_in_flight=1)
    first = asyncio.ensure_future(batcher.sign(KEY, b"first"))
    await asyncio.sleep(0.02)  # "first" holds the only slot
    queued = {data: asyncio.ensure_future(batcher.sign(KEY, data))
              for data in (b"stay", b"leave1", b"leave2")}
    await asyncio.sleep(0.02)
    queued[b"leave1"].cancel()
    queued[b"leave2"].cancel()
    keyring.gate.set()
    assert await first == b"sig:first" and await queued[b"stay"] == b"sig:stay"
    assert [inputs for _, inputs in keyring.batches] == [[b"first"], [b"stay"]]
