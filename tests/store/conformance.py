"""The store conformance suite: every backend must pass it unchanged.

A backend's test module subclasses `StoreConformance` and provides one fixture,
``store_factory``: an async callable that returns a new, opened store on the same
database each time it is called (and closes them all at teardown). The suite derives
``store`` from it, reopens through it for durability, and uses two instances for the
concurrency tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tokend.store import (
    ConflictError,
    ExchangeLink,
    NewRevocation,
    RefreshFamily,
    RefreshRetry,
    RefreshToken,
    Revocation,
    RotateStatus,
    Store,
    StoreError,
)

StoreFactory = Callable[[], Awaitable[Store]]


@contextlib.asynccontextmanager
async def opening(make: Callable[[], Store]) -> AsyncIterator[StoreFactory]:
    """A `store_factory` for a backend: each call opens a new store from `make()`;
    every store it opened is closed at the end."""
    opened: list[Store] = []

    async def factory() -> Store:
        store = make()
        await store.open()
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


async def answers(store: Store, within: float = 2.0) -> bool:
    """Whether the store serves a read now (its feed position), within `within` seconds;
    never raises. tokend itself has no such probe: the denylist follower's reads are
    what tell it, and the operator (tokend_store_up), that the store is reachable."""
    try:
        async with asyncio.timeout(within):
            await store.last_seq()
    except (StoreError, TimeoutError):
        return False
    return True

NOW = 1_700_000_000.0  # the stores take `now` from the caller; a fixed clock keeps it exact
HOUR = 3600.0
DAY = 86400.0


def h(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def family(
    family_id: str = "fam-1",
    subject: str = "alice",
    *,
    created_at: float = NOW,
    expires_at: float = NOW + 30 * DAY,
) -> RefreshFamily:
    return RefreshFamily(
        family_id=family_id,
        subject=subject,
        client_id="spiffe://example.org/ns/web/sa/frontend",
        audience=("api://orders", "api://billing"),
        scopes=("orders:read", "orders:write"),
        claims={"tenant": "acme", "roles": ["admin", "ops"], "level": 3, "beta": True},
        access_ttl=900.0,
        created_at=created_at,
        expires_at=expires_at,
    )


def token(
    name: str,
    family_id: str = "fam-1",
    *,
    issued_at: float = NOW,
    ttl: float = DAY,
    access_ttl: float = 900.0,
) -> RefreshToken:
    return RefreshToken(
        token_hash=h(name),
        family_id=family_id,
        issued_at=issued_at,
        expires_at=issued_at + ttl,
        access_jti=f"jti-{name}",
        access_expires_at=issued_at + access_ttl,
    )


def jti(value: str, expires_at: float = NOW + HOUR, reason: str = "test") -> NewRevocation:
    return NewRevocation("jti", value, expires_at, reason)


# Links expire by the store's own clock (the real one), unlike rows given a `now`.
LINK_EXPIRY = time.time() + 10 * 365 * DAY


def link(parent: str, child: str, *, subject: str = "alice", parent_iat: float = NOW,
         expires_at: float = LINK_EXPIRY) -> ExchangeLink:
    return ExchangeLink(parent_jti=parent, parent_iat=parent_iat, subject=subject,
                        child_jti=child, child_expires_at=expires_at)


def by_kind(rows: list[Revocation]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in rows:
        out.setdefault(row.kind, []).append(row.value)
    return out


class StoreConformance:
    """Semantics every `Store` shares; see tokend/store/base.py."""

    @pytest.fixture
    async def store(self, store_factory: StoreFactory) -> AsyncIterator[Store]:
        store = await store_factory()
        yield store
        await store.close()

    # -- lifecycle -------------------------------------------------------------------

    async def test_is_a_store(self, store: Store) -> None:
        assert isinstance(store, Store)

    async def test_an_open_store_answers(self, store: Store) -> None:
        assert await answers(store) is True

    async def test_a_closed_store_refuses_with_store_error(self, store: Store) -> None:
        await store.close()
        with pytest.raises(StoreError):
            await store.last_seq()
        assert await answers(store) is False

    async def test_open_twice_is_harmless(self, store: Store) -> None:
        await store.open()
        assert await answers(store)

    # -- revocation feed -------------------------------------------------------------

    async def test_add_returns_rows_with_fields(self, store: Store) -> None:
        before = time.time()
        rows = await store.add_revocations(
            [
                jti("a", NOW + 100, "stolen laptop"),
                NewRevocation("subject", "bob", NOW + 200, "offboarded", not_before=NOW),
                NewRevocation("family", "fam-x", NOW + 300, "logout"),
            ]
        )
        assert [(r.kind, r.value, r.not_before, r.expires_at, r.reason) for r in rows] == [
            ("jti", "a", 0.0, NOW + 100, "stolen laptop"),
            ("subject", "bob", NOW, NOW + 200, "offboarded"),
            ("family", "fam-x", 0.0, NOW + 300, "logout"),
        ]
        assert rows[0].seq < rows[1].seq < rows[2].seq
        assert all(before - 1 <= r.created_at <= time.time() + 1 for r in rows)

    async def test_add_nothing(self, store: Store) -> None:
        assert await store.add_revocations([]) == []
        assert await store.last_seq() == 0

    async def test_since_returns_what_add_returned(self, store: Store) -> None:
        added = await store.add_revocations([jti("a"), jti("b")])
        assert await store.revocations_since(0, NOW) == added

    async def test_since_is_exclusive_and_ascending(self, store: Store) -> None:
        added = await store.add_revocations([jti(f"j{i}") for i in range(5)])
        rows = await store.revocations_since(added[1].seq, NOW)
        assert [r.value for r in rows] == ["j2", "j3", "j4"]
        assert await store.revocations_since(added[-1].seq, NOW) == []

    async def test_since_returns_live_rows_only(self, store: Store) -> None:
        await store.add_revocations([jti("dead", NOW - 1), jti("edge", NOW), jti("live", NOW + 1)])
        # expires_at == now is already useless: the token it names has expired.
        assert [r.value for r in await store.revocations_since(0, NOW)] == ["live"]
        assert [r.value for r in await store.revocations_since(0, NOW - 10)] == [
            "dead",
            "edge",
            "live",
        ]

    async def test_since_limit_and_paging(self, store: Store) -> None:
        added = await store.add_revocations([jti(f"j{i:02d}") for i in range(25)])
        first = await store.revocations_since(0, NOW, limit=10)
        assert first == added[:10]
        seen: list[Revocation] = []
        cursor = 0
        while page := await store.revocations_since(cursor, NOW, limit=7):
            seen += page
            cursor = page[-1].seq
        assert seen == added

    async def test_last_seq(self, store: Store) -> None:
        assert await store.last_seq() == 0
        rows = await store.add_revocations([jti("a"), jti("b")])
        assert await store.last_seq() == rows[-1].seq

    async def test_seq_increases_across_all_writers(self, store: Store) -> None:
        await store.create_family(family("f1"), token("t1", "f1"))
        await store.create_family(family("f2", "bob"), token("t2", "f2"))
        rows = await store.add_revocations([jti("a")])
        rows += await store.revoke_family("f1", "logout", NOW)
        rows += await store.revoke_subject("bob", "offboarded", NOW, NOW + HOUR)
        rows += await store.add_revocations([jti("b")])
        seqs = [r.seq for r in rows]
        assert seqs == sorted(set(seqs))
        assert await store.revocations_since(0, NOW) == rows

    async def test_seq_never_reused_after_purge(self, store: Store) -> None:
        old = await store.add_revocations([jti("a", NOW + 1), jti("b", NOW + 1)])
        assert await store.purge(NOW + 10) == 2
        assert await store.last_seq() == old[-1].seq  # purge does not lower it
        (new,) = await store.add_revocations([jti("c", NOW + HOUR)])
        assert new.seq > old[-1].seq

    async def test_durable_across_reopen(self, store: Store, store_factory: StoreFactory) -> None:
        rows = await store.add_revocations([jti("a")])
        await store.create_family(family(), token("t1"))
        await store.close()
        reopened = await store_factory()
        assert await reopened.revocations_since(0, NOW) == rows
        assert await reopened.last_seq() == rows[-1].seq
        assert await reopened.get_refresh(h("t1")) == (family(), token("t1"))

    async def test_new_revocation_is_validated(self) -> None:
        with pytest.raises(ValueError, match="kind"):
            NewRevocation("session", "x", NOW, "r")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="value"):
            NewRevocation("jti", "", NOW, "r")

    # -- refresh families ------------------------------------------------------------

    async def test_create_and_get(self, store: Store) -> None:
        await store.create_family(family(), token("t1"))
        found = await store.get_refresh(h("t1"))
        assert found == (family(), token("t1"))
        fam, _ = found
        assert isinstance(fam.audience, tuple)
        assert isinstance(fam.scopes, tuple)
        assert isinstance(found[1].token_hash, bytes)

    async def test_get_unknown(self, store: Store) -> None:
        assert await store.get_refresh(h("nobody")) is None

    async def test_create_rejects_token_of_other_family(self, store: Store) -> None:
        with pytest.raises(ValueError):
            await store.create_family(family("f1"), token("t1", "f2"))
        assert await store.get_refresh(h("t1")) is None

    async def test_create_duplicate_family(self, store: Store) -> None:
        await store.create_family(family(), token("t1"))
        with pytest.raises(ConflictError):
            await store.create_family(family(), token("t2"))
        assert await store.get_refresh(h("t2")) is None  # nothing half-written

    async def test_create_duplicate_token_hash(self, store: Store) -> None:
        await store.create_family(family("f1"), token("t1", "f1"))
        with pytest.raises(ConflictError):
            await store.create_family(family("f2"), token("t1", "f2"))

    # -- rotation --------------------------------------------------------------------

    async def test_rotate_ok(self, store: Store) -> None:
        await store.create_family(family(), token("t1"))
        new = token("t2", issued_at=NOW + 60)
        result = await store.rotate_refresh(h("t1"), new, NOW + 60)
        assert result.status is RotateStatus.OK
        assert result.family == family()
        assert result.revocations == ()
        _, old = await store.get_refresh(h("t1")) or pytest.fail("old token vanished")
        assert old.spent_at == NOW + 60
        assert await store.get_refresh(h("t2")) == (family(), new)

    async def test_rotate_chain(self, store: Store) -> None:
        await store.create_family(family(), token("t1"))
        for i in range(1, 5):
            now = NOW + i
            result = await store.rotate_refresh(h(f"t{i}"), token(f"t{i + 1}", issued_at=now), now)
            assert result.status is RotateStatus.OK

    async def test_rotate_not_found(self, store: Store) -> None:
        result = await store.rotate_refresh(h("ghost"), token("t2"), NOW)
        assert result.status is RotateStatus.NOT_FOUND
        assert result.family is None
        assert await store.get_refresh(h("t2")) is None

    @pytest.mark.parametrize("offset", [0.0, 1.0])  # now == expires_at is already expired
    async def test_rotate_expired_token(self, store: Store, offset: float) -> None:
        await store.create_family(family(), token("t1", ttl=HOUR))
        result = await store.rotate_refresh(h("t1"), token("t2"), NOW + HOUR + offset)
        assert result.status is RotateStatus.EXPIRED
        assert result.family == family()
        assert await store.get_refresh(h("t2")) is None

    async def test_rotate_expired_family(self, store: Store) -> None:
        await store.create_family(family(expires_at=NOW + HOUR), token("t1", ttl=DAY))
        result = await store.rotate_refresh(h("t1"), token("t2"), NOW + HOUR)
        assert result.status is RotateStatus.EXPIRED

    async def test_rotate_revoked(self, store: Store) -> None:
        await store.create_family(family(), token("t1"))
        await store.revoke_family("fam-1", "logout", NOW + 1)
        result = await store.rotate_refresh(h("t1"), token("t2"), NOW + 2)
        assert result.status is RotateStatus.REVOKED
        assert result.family is not None
        assert result.family.revoked_at == NOW + 1
        assert result.revocations == ()

    async def test_rotate_rejects_new_token_of_other_family(self, store: Store) -> None:
        await store.create_family(family(), token("t1"))
        with pytest.raises(ValueError):
            await store.rotate_refresh(h("t1"), token("t2", "other"), NOW + 1)
        _, old = await store.get_refresh(h("t1")) or pytest.fail("old token vanished")
        assert old.spent_at is None  # rolled back

    async def test_rotate_reused_revokes_family(self, store: Store) -> None:
        # t1 (access expired by the time of reuse) -> t2 -> t3; then t2 comes back.
        await store.create_family(family(), token("t1", access_ttl=60))
        await store.rotate_refresh(h("t1"), token("t2", issued_at=NOW + 100), NOW + 100)
        await store.rotate_refresh(h("t2"), token("t3", issued_at=NOW + 200), NOW + 200)
        now = NOW + 300
        result = await store.rotate_refresh(h("t2"), token("t4", issued_at=now), now)

        assert result.status is RotateStatus.REUSED
        assert result.family is not None
        assert result.family.revoked_at == now
        assert by_kind(list(result.revocations)) == {
            "jti": ["jti-t2", "jti-t3"],  # jti-t1 has expired: nothing left to deny
            "family": ["fam-1"],
        }
        expiries = {r.value: r.expires_at for r in result.revocations}
        assert expiries["jti-t2"] == NOW + 100 + 900
        assert expiries["jti-t3"] == NOW + 200 + 900
        assert expiries["fam-1"] >= family().expires_at
        # Committed and in the feed, and the family is dead for every token.
        assert await store.revocations_since(0, now) == list(result.revocations)
        assert await store.get_refresh(h("t4")) is None
        after = await store.rotate_refresh(h("t3"), token("t5"), now + 1)
        assert after.status is RotateStatus.REVOKED

    async def test_reuse_after_revocation_reports_revoked(self, store: Store) -> None:
        await store.create_family(family(), token("t1"))
        await store.rotate_refresh(h("t1"), token("t2"), NOW + 1)
        first = await store.rotate_refresh(h("t1"), token("t3"), NOW + 2)
        second = await store.rotate_refresh(h("t1"), token("t4"), NOW + 3)
        assert first.status is RotateStatus.REUSED
        assert second.status is RotateStatus.REVOKED  # the family is revoked only once
        assert second.revocations == ()

    async def test_concurrent_rotation_one_store(self, store: Store) -> None:
        await store.create_family(family(), token("t1"))
        results = await asyncio.gather(
            store.rotate_refresh(h("t1"), token("a"), NOW + 1),
            store.rotate_refresh(h("t1"), token("b"), NOW + 1),
        )
        assert sorted(r.status.value for r in results) == ["ok", "reused"]

    async def test_concurrent_rotation_two_stores(
        self, store: Store, store_factory: StoreFactory
    ) -> None:
        other = await store_factory()
        for i in range(5):
            fam = f"fam-{i}"
            await store.create_family(family(fam), token(f"t{i}", fam))
            results = await asyncio.gather(
                store.rotate_refresh(h(f"t{i}"), token(f"a{i}", fam), NOW + 1),
                other.rotate_refresh(h(f"t{i}"), token(f"b{i}", fam), NOW + 1),
            )
            statuses = [r.status for r in results]
            assert statuses.count(RotateStatus.OK) == 1, statuses
            assert statuses.count(RotateStatus.REUSED) == 1, statuses

    # -- revoke family / subject -----------------------------------------------------

    async def test_revoke_family(self, store: Store) -> None:
        await store.create_family(family(), token("t1", access_ttl=60))
        await store.rotate_refresh(h("t1"), token("t2", issued_at=NOW + 100), NOW + 100)
        now = NOW + 200
        rows = await store.revoke_family("fam-1", "logout", now)
        assert by_kind(rows) == {"jti": ["jti-t2"], "family": ["fam-1"]}
        assert {r.reason for r in rows} == {"logout"}
        fam, _ = await store.get_refresh(h("t2")) or pytest.fail("token vanished")
        assert fam.revoked_at == now
        assert await store.revocations_since(0, now) == rows

    async def test_revoke_family_is_idempotent(self, store: Store) -> None:
        await store.create_family(family(), token("t1"))
        assert await store.revoke_family("fam-1", "logout", NOW + 1) != []
        last = await store.last_seq()
        assert await store.revoke_family("fam-1", "logout", NOW + 2) == []
        assert await store.last_seq() == last
        fam, _ = await store.get_refresh(h("t1")) or pytest.fail("token vanished")
        assert fam.revoked_at == NOW + 1  # the first revocation time stands

    async def test_revoke_unknown_family(self, store: Store) -> None:
        assert await store.revoke_family("nope", "logout", NOW) == []

    async def test_revoke_subject(self, store: Store) -> None:
        await store.create_family(family("a1", "alice"), token("ta1", "a1"))
        await store.create_family(family("a2", "alice"), token("ta2", "a2"))
        await store.create_family(family("b1", "bob"), token("tb1", "b1"))
        await store.create_family(
            family("a-old", "alice", expires_at=NOW + 10), token("tao", "a-old", ttl=5)
        )
        await store.revoke_family("a2", "earlier", NOW + 20)
        now = NOW + 30
        horizon = now + HOUR + 60

        rows = await store.revoke_subject("alice", "offboarded", now, horizon)

        subject = [r for r in rows if r.kind == "subject"]
        assert [(r.value, r.not_before, r.expires_at, r.reason) for r in subject] == [
            ("alice", now, horizon, "offboarded")
        ]
        # Only the live, not yet revoked family; its access tokens are covered by the
        # subject entry, so jti rows (if any) must name alice's tokens only.
        assert by_kind(rows)["family"] == ["a1"]
        assert set(by_kind(rows).get("jti", [])) <= {"jti-ta1"}
        assert (await store.rotate_refresh(h("ta1"), token("x", "a1"), now)).status is (
            RotateStatus.REVOKED
        )
        assert (await store.rotate_refresh(h("tb1"), token("y", "b1"), now)).status is (
            RotateStatus.OK
        )
        assert await store.revocations_since(rows[0].seq - 1, now) == rows

    async def test_revoke_subject_without_families(self, store: Store) -> None:
        rows = await store.revoke_subject("carol", "offboarded", NOW, NOW + HOUR)
        assert [(r.kind, r.value, r.not_before) for r in rows] == [("subject", "carol", NOW)]

    async def test_revoke_subject_denies_access_tokens_outliving_the_entry(
        self, store: Store
    ) -> None:
        # If the caller's horizon is shorter than an access token's life, that token must
        # still be denied after the subject entry expires.
        await store.create_family(family(), token("t1", access_ttl=2 * HOUR))
        rows = await store.revoke_subject("alice", "offboarded", NOW, NOW + HOUR)
        assert "jti-t1" in by_kind(rows).get("jti", [])

    # -- Exchange links (RFC 8693): children die with their parent --------------------

    async def test_revoking_a_parent_jti_revokes_what_was_exchanged_from_it(
        self, store: Store
    ) -> None:
        assert await store.record_exchange(link("root", "child"))
        assert await store.record_exchange(link("child", "grandchild", parent_iat=NOW + 1))
        assert await store.record_exchange(link("other", "unrelated"))
        rows = await store.add_revocations([jti("root", reason="stolen")])
        assert [(r.value, r.reason) for r in rows] == [
            ("root", "stolen"), ("child", "stolen"), ("grandchild", "stolen")]
        assert [r.expires_at for r in rows[1:]] == [LINK_EXPIRY] * 2
        assert await store.revocations_since(rows[0].seq - 1, NOW) == rows
        # Revoking a middle link cascades downwards only.
        rows = await store.add_revocations([jti("other")])
        assert by_kind(rows) == {"jti": ["other", "unrelated"]}

    async def test_revoking_a_subject_revokes_its_exchanged_tokens(self, store: Store) -> None:
        # Children minted after the cutoff (iat > cutoff) would escape the subject entry.
        assert await store.record_exchange(link("root", "child", subject="alice"))
        assert await store.record_exchange(link("b-root", "b-child", subject="bob"))
        rows = await store.revoke_subject("alice", "offboarded", NOW + 5, NOW + DAY)
        assert by_kind(rows) == {"subject": ["alice"], "jti": ["child"]}

    async def test_revoking_a_family_revokes_what_its_tokens_were_exchanged_for(
        self, store: Store
    ) -> None:
        await store.create_family(family(), token("t1"))
        assert await store.record_exchange(link("jti-t1", "child"))
        rows = await store.revoke_family("fam-1", "logout", NOW + 1)
        assert by_kind(rows) == {"jti": ["jti-t1", "child"], "family": ["fam-1"]}

    async def test_no_exchange_from_a_revoked_parent(self, store: Store) -> None:
        await store.add_revocations([jti("root", expires_at=LINK_EXPIRY)])
        assert not await store.record_exchange(link("root", "child"))
        await store.revoke_subject("alice", "offboarded", NOW + 5, NOW + DAY)
        assert not await store.record_exchange(link("p2", "c2", parent_iat=NOW + 5))
        assert await store.record_exchange(link("p3", "c3", parent_iat=NOW + 6))
        # Nothing was recorded for the refused ones: revoking their parents writes no child.
        rows = await store.add_revocations([jti("root"), jti("p2")])
        assert by_kind(rows) == {"jti": ["root", "p2"]}

    async def test_links_racing_a_revocation_are_never_missed(
        self, store_factory: StoreFactory
    ) -> None:
        one, two = await store_factory(), await store_factory()
        for round_ in range(20):
            parent = f"p{round_}"
            recorded, rows = await asyncio.gather(
                one.record_exchange(link(parent, f"c{round_}")),
                two.add_revocations([jti(parent, expires_at=LINK_EXPIRY)]))
            # Either the link was refused, or the revocation saw it and revoked the child.
            assert recorded == (f"c{round_}" in by_kind(rows)["jti"]), round_

    async def test_purge_drops_expired_links(self, store: Store) -> None:
        soon = time.time() + 60
        assert await store.record_exchange(link("root", "child", expires_at=soon))
        assert await store.record_exchange(link("root", "kept"))
        assert await store.purge(soon + 1) >= 1
        rows = await store.add_revocations([jti("root", expires_at=LINK_EXPIRY)])
        assert by_kind(rows) == {"jti": ["root", "kept"]}

    # -- Revoke(subject) against families created meanwhile ---------------------------

    async def test_family_started_at_or_before_the_subject_cutoff_is_dead(
        self, store: Store
    ) -> None:
        # An Issue that began before Revoke(subject) creates its family after the
        # revocation committed: it must be born revoked, not spendable.
        cutoff = NOW + 10
        await store.revoke_subject("alice", "sign out", cutoff, cutoff + HOUR)
        await store.create_family(family("early", created_at=NOW + 5), token("te", "early"))
        await store.create_family(family("tie", created_at=cutoff), token("tt", "tie"))
        await store.create_family(family("later", created_at=cutoff + 1), token("tl", "later"))
        for name, fam_id in (("te", "early"), ("tt", "tie")):
            found = await store.get_refresh(h(name)) or pytest.fail("family vanished")
            assert found[0].revoked_at is not None
            rotated = await store.rotate_refresh(
                h(name), token(name + "2", fam_id, issued_at=cutoff + 2), cutoff + 2)
            assert rotated.status is RotateStatus.REVOKED
        rotated = await store.rotate_refresh(
            h("tl"), token("tl2", "later", issued_at=cutoff + 2), cutoff + 2)
        assert rotated.status is RotateStatus.OK
        other = await store.get_refresh(h("tl2")) or pytest.fail("rotation lost")
        assert other[0].revoked_at is None

    async def test_rotation_refuses_a_family_its_subject_revocation_missed(
        self, store: Store
    ) -> None:
        # Belt and braces: a subject entry that did not revoke a live family of the
        # subject (written by add_revocations here) still stops it at its next rotation,
        # for good: the family is revoked with its live access tokens.
        await store.create_family(family(created_at=NOW + 5), token("t1", issued_at=NOW + 5))
        cutoff = NOW + 10
        await store.add_revocations(
            [NewRevocation("subject", "alice", cutoff + HOUR, "test", not_before=cutoff)])
        rotated = await store.rotate_refresh(
            h("t1"), token("t2", issued_at=cutoff + 1), cutoff + 1)
        assert rotated.status is RotateStatus.REVOKED
        assert by_kind(list(rotated.revocations)) == {"jti": ["jti-t1"], "family": ["fam-1"]}
        found = await store.get_refresh(h("t1")) or pytest.fail("family vanished")
        assert found[0].revoked_at == cutoff + 1
        assert await store.get_refresh(h("t2")) is None

    async def test_subject_revocation_racing_family_creation_never_misses_one(
        self, store_factory: StoreFactory
    ) -> None:
        # Two stores (two replicas on PostgreSQL): whichever commits first, the family
        # of an Issue that began before the cutoff ends up revoked.
        a, b = await store_factory(), await store_factory()
        for i in range(20):
            subject, fam_id, name = f"racer-{i}", f"race-{i}", f"tr-{i}"
            cutoff = NOW + 100 + i
            await asyncio.gather(
                a.revoke_subject(subject, "race", cutoff, cutoff + HOUR),
                b.create_family(family(fam_id, subject, created_at=cutoff - 0.5),
                                token(name, fam_id)),
            )
            found = await a.get_refresh(h(name)) or pytest.fail("family vanished")
            assert found[0].revoked_at is not None, f"round {i}: family left spendable"

    # -- retry of a Refresh whose answer was lost -------------------------------------

    async def _spend_with_retry(self, store: Store, key: bytes) -> RefreshRetry:
        await store.create_family(family(), token("t1"))
        retry = RefreshRetry(key, b"sealed answer", NOW + 60)
        rotated = await store.rotate_refresh(
            h("t1"), token("t2", issued_at=NOW + 1), NOW + 1, retry_key=key, retry=retry)
        assert rotated.status is RotateStatus.OK
        return retry

    async def test_rotate_again_under_the_same_key_is_a_retry(self, store: Store) -> None:
        key = h("key-1")
        retry = await self._spend_with_retry(store, key)
        _, spent = await store.get_refresh(h("t1")) or pytest.fail("token vanished")
        assert spent.retry == retry
        last = await store.last_seq()
        again = await store.rotate_refresh(
            h("t1"), token("t3", issued_at=NOW + 2), NOW + 2, retry_key=key)
        assert again.status is RotateStatus.RETRY
        assert again.retry == retry
        assert await store.get_refresh(h("t3")) is None  # the retry writes nothing
        assert await store.last_seq() == last
        fam, fresh = await store.get_refresh(h("t2")) or pytest.fail("successor vanished")
        assert fam.revoked_at is None and fresh.spent_at is None

    @pytest.mark.parametrize("other_key", [None, "key-2"])
    async def test_rotate_again_under_another_key_is_reuse(
        self, store: Store, other_key: str | None
    ) -> None:
        await self._spend_with_retry(store, h("key-1"))
        again = await store.rotate_refresh(
            h("t1"), token("t3", issued_at=NOW + 2), NOW + 2,
            retry_key=h(other_key) if other_key else None)
        assert again.status is RotateStatus.REUSED
        assert again.family is not None and again.family.revoked_at is not None

    async def test_retry_window_closes(self, store: Store) -> None:
        key = h("key-1")
        await self._spend_with_retry(store, key)
        late = await store.rotate_refresh(
            h("t1"), token("t3", issued_at=NOW + 60), NOW + 60, retry_key=key)
        assert late.status is RotateStatus.REUSED

    async def test_purge_drops_sealed_answers_after_their_window(self, store: Store) -> None:
        await self._spend_with_retry(store, h("key-1"))
        await store.purge(NOW + 61)
        _, spent = await store.get_refresh(h("t1")) or pytest.fail("spent token purged")
        assert spent.spent_at is not None and spent.retry is None

    # -- purge -----------------------------------------------------------------------

    async def test_purge_revocations(self, store: Store) -> None:
        await store.add_revocations([jti("dead", NOW - 1), jti("edge", NOW), jti("live")])
        assert await store.purge(NOW) == 2
        assert [r.value for r in await store.revocations_since(0, 0)] == ["live"]
        assert await store.purge(NOW) == 0

    async def test_purge_refresh_state(self, store: Store) -> None:
        # f-dead: family and tokens fully expired -> gone.
        await store.create_family(
            family("f-dead", expires_at=NOW + HOUR), token("d1", "f-dead", ttl=HOUR)
        )
        # f-live: t1 spent and expired with its access token -> row gone; t2 stays.
        await store.create_family(family("f-live"), token("t1", "f-live", ttl=HOUR))
        await store.rotate_refresh(h("t1"), token("t2", "f-live", ttl=DAY), NOW + 1)
        # f-tail: family expired, but its last access token is still valid -> kept, so a
        # later revoke_family can still deny that access token.
        await store.create_family(
            family("f-tail", expires_at=NOW + 2 * HOUR),
            token("x1", "f-tail", issued_at=NOW + 2 * HOUR - 10, ttl=5, access_ttl=900),
        )
        now = NOW + 2 * HOUR

        assert await store.purge(now) == 3  # d1 + family f-dead + t1

        assert await store.get_refresh(h("d1")) is None
        assert await store.get_refresh(h("t1")) is None
        assert await store.get_refresh(h("t2")) is not None
        assert await store.get_refresh(h("x1")) is not None
        rows = await store.revoke_family("f-tail", "late", now)
        assert "jti-x1" in by_kind(rows)["jti"]

        assert await store.purge(now + DAY * 40) >= 4  # everything else, eventually
        assert await store.get_refresh(h("t2")) is None
        assert await store.get_refresh(h("x1")) is None

    async def test_purge_keeps_spent_token_for_reuse_detection(self, store: Store) -> None:
        await store.create_family(family(), token("t1", access_ttl=60))
        await store.rotate_refresh(h("t1"), token("t2"), NOW + 1)
        await store.purge(NOW + HOUR)  # t1's access token is long expired, t1 itself is not
        result = await store.rotate_refresh(h("t1"), token("t3"), NOW + HOUR)
        assert result.status is RotateStatus.REUSED
