"""Two replicas refreshing the same refresh token at the same moment.

Observed, and asserted every round: exactly one call wins (a new pair); the other gets
UNAUTHENTICATED, and because it presented a token that is spent by then, it counts as
reuse (RFC 9700 §4.14.2): the whole family is revoked, including the pair the winner
just received. The store serialises the race on the family row (PostgreSQL: `SELECT …
FOR UPDATE`); the loser meets the spent token either in `rotate_refresh` (waiting on
that lock) or already in its first lookup, and the two paths leave different reasons
on the rows ("refresh token reuse detected" vs "refresh token reuse"): the test reports
how often each happened. The rows must be exactly what one rotation plus one family
revocation write: nothing of the loser's own attempt, no duplicates.
"""

from __future__ import annotations

import collections
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import psycopg

from tests.support.bao import BaoDevServer
from tests.support.tokend import RunningTokend, make_settings
from tokend.tokens.refresh import parse_refresh_token
from tokend_client.v1 import tokend_pb2 as pb

from .procs import wait_for

ROUNDS = 10
AUDIENCE = "orders"


def race(replicas: tuple[RunningTokend, RunningTokend], refresh_token: str
         ) -> list[pb.IssueResponse | grpc.StatusCode]:
    """Both replicas refresh ``refresh_token`` at once; each outcome, response or code."""
    barrier = threading.Barrier(len(replicas))

    def attempt(replica: RunningTokend) -> pb.IssueResponse | grpc.StatusCode:
        request = pb.RefreshRequest(refresh_token=refresh_token)
        barrier.wait(5)
        try:
            return replica.stub.Refresh(request, timeout=10)
        except grpc.RpcError as exc:
            return exc.code()

    with ThreadPoolExecutor(len(replicas)) as pool:
        return list(pool.map(attempt, replicas))


def family_rows(url: str, family_id: str) -> tuple[object, list[tuple], list[tuple]]:
    """(revoked_at, refresh-token rows, revocation rows) of one family, from the store."""
    with psycopg.connect(url) as conn:
        (revoked_at,) = conn.execute(
            "SELECT revoked_at FROM refresh_families WHERE family_id = %s", (family_id,)
        ).fetchone() or (None,)
        tokens = conn.execute(
            "SELECT token_hash, access_jti, spent_at IS NOT NULL FROM refresh_tokens"
            " WHERE family_id = %s ORDER BY issued_at", (family_id,)).fetchall()
        revocations = conn.execute(
            "SELECT kind, value, reason FROM revocations r WHERE (kind = 'family' AND value = %s)"
            " OR (kind = 'jti' AND value IN (SELECT access_jti FROM refresh_tokens t"
            " WHERE t.family_id = %s)) ORDER BY kind, value", (family_id, family_id)).fetchall()
    return revoked_at, tokens, revocations


def test_the_same_refresh_token_on_two_replicas_at_once(
    bao: BaoDevServer, postgres_database: str, tmp_path: Path
) -> None:
    def settings(name: str):  # type: ignore[no-untyped-def]
        return make_settings(bao.addr, bao.token, tmp_path / name, store_url=postgres_database,
                             vault={"key_name": "race"})

    paths: collections.Counter[str] = collections.Counter()
    with RunningTokend(settings("a")) as a, RunningTokend(settings("b")) as b:
        for round_ in range(ROUNDS):
            first = a.stub.Issue(pb.IssueRequest(subject=f"race-{round_}", audience=[AUDIENCE],
                                                 include_refresh_token=True), timeout=10)
            outcomes = race((a, b), first.refresh_token)
            winners = [o for o in outcomes if isinstance(o, pb.IssueResponse)]
            assert len(winners) == 1, outcomes
            assert [o for o in outcomes if not isinstance(o, pb.IssueResponse)] == [
                grpc.StatusCode.UNAUTHENTICATED]
            (winner,) = winners

            # Reuse: the family is dead, the winner's fresh pair with it, on both replicas.
            for replica in (a, b):
                for access in (first.access_token, winner.access_token):
                    check = pb.VerifyRequest(token=access, audience=AUDIENCE)
                    wait_for(lambda r=replica, c=check: r.stub.Verify(c, timeout=5).reason
                             == pb.REASON_REVOKED, 5, "family revoked")
            for replica in (a, b):
                try:
                    replica.stub.Refresh(pb.RefreshRequest(refresh_token=winner.refresh_token),
                                         timeout=10)
                    raise AssertionError("the winner's refresh token outlived the family")
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAUTHENTICATED

            revoked_at, tokens, revocations = family_rows(postgres_database, first.jti)
            assert revoked_at is not None
            # One rotation: the first token spent, the winner's stored; the loser's none.
            assert tokens == [
                (parse_refresh_token(first.refresh_token), first.jti, True),
                (parse_refresh_token(winner.refresh_token), winner.jti, False),
            ]
            # One family revocation: its access tokens and the family, each once.
            assert sorted((kind, value) for kind, value, _ in revocations) == sorted([
                ("family", first.jti), ("jti", first.jti), ("jti", winner.jti)])
            (reason,) = {reason for _, _, reason in revocations}
            paths[reason] += 1
    print(f"\n[refresh race] {ROUNDS} rounds, one winner each, family revoked each time; "
          f"reasons: {dict(paths)}")
