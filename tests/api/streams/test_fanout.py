"""The fan-out behind WatchRevocations and WatchJwks, over real gRPC and a real SQLite feed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
import structlog

from tests.api.streams.conftest import FeedServer, live, read_until, revocations
from tokend.store import NewRevocation, Revocation
from tokend.tokens.denylist import Denylist, DenylistFollower
from tokend_client.v1 import tokend_pb2 as pb


def watch(server: FeedServer, from_sequence: int = 0) -> grpc.aio.UnaryStreamCall:
    return server.stub.WatchRevocations(pb.WatchRevocationsRequest(from_sequence=from_sequence))


def first_checkpoint(events: list[pb.RevocationEvent]) -> bool:
    return any(event.checkpoint for event in events)


async def test_history_then_checkpoint_then_live(feeds: FeedServer) -> None:
    rows = await feeds.writer.add_revocations([live("j1"), live("alice", "subject")])
    await feeds.writer.add_revocations([NewRevocation("jti", "dead", time.time() - 1, "t")])
    call = watch(feeds)
    events = await read_until(call, first_checkpoint)
    assert revocations(events) == [row.seq for row in rows]  # the expired row is not sent
    jti, subject, mark = events
    assert (jti.kind, jti.value, jti.HasField("not_before")) == ("jti", "j1", False)
    assert (subject.kind, subject.value) == ("subject", "alice")
    assert subject.not_before.seconds == int(rows[1].not_before)
    assert subject.expires_at.seconds == int(rows[1].expires_at)
    assert mark.checkpoint and mark.sequence >= rows[-1].seq

    started = time.monotonic()
    new = await feeds.writer.add_revocations([live("j2")])
    events = await read_until(call, lambda got: bool(revocations(got)))
    assert revocations(events) == [new[0].seq]
    assert time.monotonic() - started < 1.0  # another replica's revocation, within a second
    call.cancel()


async def test_resume_sends_only_what_follows(feeds: FeedServer) -> None:
    rows = await feeds.writer.add_revocations([live(f"j{i}") for i in range(5)])
    events = await read_until(watch(feeds, rows[2].seq), first_checkpoint)
    assert revocations(events) == [row.seq for row in rows[3:]]
    assert events[-1].sequence == rows[-1].seq


async def test_no_gap_or_duplicate_at_the_seam(feed_path: Path) -> None:
    # Rows keep arriving while a subscriber replays a long history page by page, so
    # some reach it both from the store and from the follower: each must come once.
    async with FeedServer(feed_path, page_size=7) as server:
        await server.writer.add_revocations([live(f"old{i}") for i in range(60)])
        writing = asyncio.create_task(_keep_writing(server, 40))
        calls = [watch(server) for _ in range(3)]
        await asyncio.sleep(0.01)
        await writing
        last = await server.writer.last_seq()
        for call in calls:
            events = await read_until(call, lambda got: bool(got) and got[-1].sequence >= last)
            sequences = revocations(events)
            assert sequences == list(range(1, last + 1))
            marks = [event.sequence for event in events if event.checkpoint]
            assert marks and marks == sorted(marks)
            call.cancel()


async def _keep_writing(server: FeedServer, count: int) -> None:
    for i in range(count):
        await server.writer.add_revocations([live(f"new{i}")])
        await asyncio.sleep(0.003)


async def test_idle_stream_gets_checkpoints(feeds: FeedServer) -> None:
    rows = await feeds.writer.add_revocations([live("j1")])
    call = watch(feeds)
    await read_until(call, first_checkpoint)
    started = time.monotonic()
    events = await read_until(call, lambda got: len(got) == 2)
    assert all(event.checkpoint and event.sequence == rows[0].seq for event in events)
    assert time.monotonic() - started < 1.5  # keepalive is 0.2 s here


async def test_sequence_ahead_of_the_store_is_refused(feeds: FeedServer) -> None:
    rows = await feeds.writer.add_revocations([live("j1")])
    call = watch(feeds, rows[0].seq + 5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read_until(call, first_checkpoint)
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    details = info.value.details() or ""
    assert "resume from 0" in details and "last sequence you applied" not in details


async def test_sequence_ahead_of_this_follower_but_not_the_store_is_fine(
    feed_path: Path,
) -> None:
    # A client coming from a replica whose follower is ahead of this one's.
    async with FeedServer(feed_path, poll=30) as slow:
        rows = await slow.writer.add_revocations([live("j1"), live("j2")])
        assert slow.follower.seq == 0
        events = await read_until(watch(slow, rows[0].seq), first_checkpoint)
        assert revocations(events) == [rows[1].seq]
        events = await read_until(watch(slow, rows[1].seq), first_checkpoint)
        assert events == [pb.RevocationEvent(sequence=rows[1].seq, checkpoint=True)]


async def test_negative_sequence_is_invalid(feeds: FeedServer) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read_until(watch(feeds, -1), first_checkpoint)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def fake_rows(start: int, count: int, size: int) -> list[Revocation]:
    expires = time.time() + 3600
    return [Revocation(seq, "jti", f"{seq}-" + "x" * size, 0.0, expires, "t", 0.0)
            for seq in range(start, start + count)]


async def test_slow_subscriber_is_dropped_without_holding_back_others(
    feed_path: Path,
) -> None:
    async with FeedServer(feed_path, queue_size=32, write_timeout=60) as server:
        slow, fast = watch(server), watch(server)
        await read_until(slow, first_checkpoint)
        await read_until(fast, first_checkpoint)
        received: list[int] = []
        reading = asyncio.create_task(_read_all(fast, received))
        # Big events fill the slow client's transport buffers, then its queue.
        sent = 0
        with structlog.testing.capture_logs() as logs:
            async with asyncio.timeout(30):
                while not dropped(logs) and sent < 20_000:
                    server.feed.publish(fake_rows(sent + 1, 8, 4096))
                    sent += 8
                    while len(received) < sent - 16:  # the fast one keeps up
                        await asyncio.sleep(0.001)
        assert [e["event"] for e in logs].count("stream.subscriber_too_slow") == 1
        assert sent < 20_000, "the slow subscriber was never dropped"
        server.feed.publish(fake_rows(sent + 1, 1, 10))
        async with asyncio.timeout(5):
            while len(received) < sent + 1:
                await asyncio.sleep(0.01)
        assert received == list(range(1, sent + 2))  # everything, in order, once
        # The slow one reads what was buffered for it, then learns why it was dropped.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await read_until(slow, lambda got: False, timeout=30)
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "from_sequence" in (info.value.details() or "")
        reading.cancel()


def dropped(logs: list[dict[str, object]]) -> bool:
    return any(e["event"] == "stream.subscriber_too_slow" for e in logs)


async def _read_all(call: grpc.aio.UnaryStreamCall, into: list[int]) -> None:
    while (event := await call.read()) is not grpc.aio.EOF:
        if not event.checkpoint:
            into.append(event.sequence)


async def test_a_client_that_stops_reading_is_cut_after_the_write_timeout(
    feed_path: Path,
) -> None:
    async with FeedServer(feed_path, queue_size=10_000, write_timeout=0.5) as server:
        stuck = watch(server)
        await read_until(stuck, first_checkpoint)
        async with asyncio.timeout(30):
            sent = 0
            while server.feed.subscribers:
                server.feed.publish(fake_rows(sent + 1, 50, 4096))
                sent += 50
                await asyncio.sleep(0.01)
        stuck.cancel()


async def test_too_many_subscribers(feed_path: Path) -> None:
    async with FeedServer(feed_path, max_subscribers=2) as server:
        calls = [watch(server) for _ in range(2)]
        for call in calls:
            await read_until(call, first_checkpoint)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await read_until(watch(server), first_checkpoint)
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        calls[0].cancel()
        async with asyncio.timeout(5):
            while server.feed.subscribers == 2:
                await asyncio.sleep(0.01)
        await read_until(watch(server), first_checkpoint)  # a place is free again


async def test_closing_ends_every_stream_with_unavailable(feeds: FeedServer) -> None:
    revocation_call = watch(feeds)
    jwks_call = feeds.stub.WatchJwks(pb.WatchJwksRequest())
    await read_until(revocation_call, first_checkpoint)
    await read_until(jwks_call, lambda got: len(got) == 1)
    feeds.feed.close()
    feeds.jwks.close()
    for call in (revocation_call, jwks_call):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await read_until(call, lambda got: False, timeout=2)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read_until(watch(feeds), first_checkpoint)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_jwks_at_once_then_unchanged_as_keepalive(feeds: FeedServer) -> None:
    feeds.jwks.publish('{"keys":["v1"]}')
    call = feeds.stub.WatchJwks(pb.WatchJwksRequest())
    (first,) = await read_until(call, lambda got: len(got) == 1)
    assert (first.jwks_json, first.keep_alive) == ('{"keys":["v1"]}', False)
    (idle,) = await read_until(call, lambda got: len(got) == 1)  # keepalive is 0.2 s
    assert (idle.jwks_json, idle.keep_alive) == ('{"keys":["v1"]}', True)
    call.cancel()


async def test_a_new_jwks_is_pushed_at_once(feed_path: Path) -> None:
    async with FeedServer(feed_path, keepalive=30) as server:
        server.jwks.publish('{"keys":["v1"]}')
        call = server.stub.WatchJwks(pb.WatchJwksRequest())
        await read_until(call, lambda got: len(got) == 1)
        started = time.monotonic()
        server.jwks.publish('{"keys":["v1","v2"]}')
        server.jwks.publish('{"keys":["v1","v2"]}')  # the same set again: no event
        (changed,) = await read_until(call, lambda got: len(got) == 1)
        assert (changed.jwks_json, changed.keep_alive) == ('{"keys":["v1","v2"]}', False)
        assert time.monotonic() - started < 1.0  # not at the next keepalive, 30 s away
        call.cancel()


async def test_follower_reads_behind_rows_applied_locally(feeds: FeedServer) -> None:
    # This replica's own Revoke (seq 2) is applied at once, before its follower has read
    # another replica's seq 1: the follower must still read, apply and publish seq 1.
    first = await feeds.writer.add_revocations([live("from-another-replica")])
    second = await feeds.store.add_revocations([live("from-this-replica")])
    denylist = Denylist()
    denylist.apply(second)  # what TokenAuthority does after a local Revoke
    published: list[int] = []
    follower = DenylistFollower(feeds.store, denylist,
                                on_applied=lambda rows: published.extend(r.seq for r in rows))
    await follower.catch_up()
    assert denylist.is_revoked("from-another-replica", "x", 0, time.time())
    assert published == [first[0].seq, second[0].seq]
    assert follower.seq == second[0].seq
