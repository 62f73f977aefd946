"""A rotation under continuous Issue/Verify load, across two replicas and a cached JWKS.

Two tokend replicas share one OpenBao key and one SQLite file. Two load threads issue on
one replica and verify on the other, and also verify locally the way a backend does,
with a JWKS it fetches over HTTP only every `jwks_max_age`. Then an operator rotates
(`tokend keys rotate`). No valid token may be rejected anywhere; the new kid must sign
only from its activation time, and the old one must leave the JWKS once every token it
signed has expired.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import structlog
import yaml

from tests.support.bao import BaoDevServer
from tests.support.tokend import ISSUER, RunningTokend, make_settings
from tokend.cli import main
from tokend.keys.lifecycle import parse_time
from tokend_client import InvalidToken, LocalVerifier
from tokend_client.v1 import tokend_pb2 as pb

JWKS_MAX_AGE = 1
REFRESH = 0.2
PROPAGATION = 2.0  # >= JWKS_MAX_AGE + REFRESH
MAX_TTL, LEEWAY = 3, 1  # a retired key stays published MAX_TTL + LEEWAY after it stops
AUDIENCE = "load"
# Loopback only: never let an http_proxy variable route test traffic elsewhere.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def kid_of(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def jwks_of(server: RunningTokend) -> dict[str, object]:
    with _HTTP.open(server.http_url + "/.well-known/jwks.json", timeout=5) as answer:
        return json.load(answer)  # type: ignore[no-any-return]


class CachedJwksVerifier:
    """A backend verifying locally with a JWKS it refreshes every jwks_max_age, no sooner
    (an HTTP cache honouring Cache-Control), and never on an unknown kid."""

    def __init__(self, server: RunningTokend) -> None:
        self._server = server
        self._verifier = LocalVerifier(jwks_of(server), issuer=ISSUER, audience=AUDIENCE,
                                       leeway=LEEWAY)
        self._fetched = time.monotonic()

    def verify(self, token: str) -> None:
        if time.monotonic() - self._fetched >= JWKS_MAX_AGE:
            self._verifier.update_jwks(jwks_of(self._server))
            self._fetched = time.monotonic()
        self._verifier.verify(token)


@dataclass
class Load:
    """What the load threads saw."""

    stop: threading.Event = field(default_factory=threading.Event)
    issued: list[tuple[float, str, str]] = field(default_factory=list)  # (time, replica, token)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, issuer: RunningTokend, checker: RunningTokend, name: str) -> None:
        local = CachedJwksVerifier(checker)
        mine: list[tuple[float, str]] = []  # (exp, token) to verify again later
        deadline = time.monotonic() + 60  # bounded, whatever happens
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.step(issuer, checker, local, mine, name)
            time.sleep(0.005)

    def step(self, issuer: RunningTokend, checker: RunningTokend, local: CachedJwksVerifier,
             mine: list[tuple[float, str]], name: str) -> None:
        try:
            answer = issuer.stub.Issue(pb.IssueRequest(subject="load", audience=[AUDIENCE]),
                                       timeout=5)
        except grpc.RpcError as exc:
            self.fail(f"{name}: Issue failed: {exc.code()} {exc.details()}")
            return
        token = answer.access_token
        with self.lock:
            self.issued.append((time.time(), name, token))
        mine.append((time.time() + MAX_TTL, token))
        # The fresh token, and the oldest one still comfortably valid: a retired key
        # must stay published until the tokens it signed have expired.
        while mine and mine[0][0] - time.time() < 0.5:
            mine.pop(0)
        for candidate in {token, mine[0][1]}:
            self.check(checker, local, candidate, name)

    def check(self, checker: RunningTokend, local: CachedJwksVerifier, token: str,
              name: str) -> None:
        answer = checker.stub.Verify(pb.VerifyRequest(token=token, audience=AUDIENCE),
                                     timeout=5)
        if not answer.valid:
            self.fail(f"{name}: other replica rejected {kid_of(token)}: "
                      f"{pb.Reason.Name(answer.reason)}")
        try:
            local.verify(token)
        except InvalidToken as exc:
            self.fail(f"{name}: cached-JWKS verifier rejected {kid_of(token)}: {exc}")

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)


@pytest.fixture(autouse=True)
def _keep_logging_config() -> Iterator[None]:
    saved = structlog.get_config()  # `tokend keys` configures logging for the process
    yield
    structlog.configure(**saved)


@pytest.mark.parametrize("custody", ["transit", "kv"])
def test_rotation_under_load_with_two_replicas(bao: BaoDevServer, tmp_path: Path,
                                               custody: str) -> None:
    name = f"load-{custody}-{uuid.uuid4().hex[:6]}"
    vault = {"key_name": name, "custody": custody, "key_refresh_interval": REFRESH,
             "propagation_delay": PROPAGATION}
    tokens = {"max_ttl": MAX_TTL, "default_ttl": MAX_TTL, "leeway": LEEWAY}
    # No mesh sidecars here: the key-set readers are tokend's own clients (docs/keys.md).
    common = {"jwks_max_age": JWKS_MAX_AGE, "jwks_consumer_refresh": 0, "tokens": tokens,
              "rate_limit": {"per_second": 100000, "burst": 100000}}
    config = tmp_path / "tokend.yaml"
    config.write_text(yaml.safe_dump({
        **common, "insecure_plaintext": True,
        "vault": {**vault, "addr": bao.addr, "token": bao.token}}))
    settings = [make_settings(bao.addr, bao.token, tmp_path, vault=vault,
                              audit_log=str(tmp_path / f"audit-{r}.log"), **common)
                for r in "ab"]  # the same SQLite file: make_settings puts it in tmp_path
    load = Load()
    with RunningTokend(settings[0]) as a, RunningTokend(settings[1]) as b:
        old_kid = kid_of(a.stub.Issue(pb.IssueRequest(subject="x", audience=[AUDIENCE]),
                                      timeout=5).access_token)
        threads = [threading.Thread(target=load.run, args=(a, b, "a→b")),
                   threading.Thread(target=load.run, args=(b, a, "b→a"))]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.5)
            assert main(["keys", "rotate", "--config", str(config)]) == 0
            rotated_at = time.time()
            old, new = versions(config)[-2:]
            assert old["kid"] == old_kid and new["phase"] == "next"
            activates, gone = parse_time(new["activates"]), parse_time(old["gone"])
            assert activates == pytest.approx(parse_time(new["created"]) + PROPAGATION)
            assert gone == pytest.approx(activates + MAX_TTL + LEEWAY)
            wait_until(lambda: all(old_kid not in kids(r) for r in (a, b)),
                       within=gone - time.time() + 3)
            left_at = time.time()
            time.sleep(0.5)  # a little more load on the new key alone
        finally:
            load.stop.set()
            for thread in threads:
                thread.join(10)

    assert not load.failures, load.failures[:10]
    by_kid: dict[str, list[tuple[float, str]]] = {}
    for at, replica, token in load.issued:
        by_kid.setdefault(kid_of(token), []).append((at, replica))
    assert set(by_kid) == {old_kid, new["kid"]}, "the new kid never signed"
    assert {replica for _, replica in by_kid[new["kid"]]} == {"a→b", "b→a"}
    # Never before its activation; the old one not (much) after it: a call that started
    # just before may finish a moment later.
    assert min(at for at, _ in by_kid[new["kid"]]) >= activates
    assert max(at for at, _ in by_kid[old_kid]) < activates + 0.5
    assert rotated_at < activates and left_at >= gone
    assert len(load.issued) > 100  # it really was under load


def versions(config: Path) -> list[dict[str, str]]:
    """`tokend keys list --json`, as the operator would read it."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["keys", "list", "--json", "--config", str(config)]) == 0
    return json.loads(out.getvalue())  # type: ignore[no-any-return]


def kids(server: RunningTokend) -> set[str]:
    return {str(key["kid"]) for key in jwks_of(server)["keys"]}  # type: ignore[attr-defined]


def wait_until(condition: Callable[[], bool], *, within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within:.1f} s"
        time.sleep(0.1)
