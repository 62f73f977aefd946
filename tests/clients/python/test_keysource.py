"""Key sources behind LocalVerifier: refetch on an unknown kid, rate-limited, thread-safe."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.clients.python.client_test_support import SigningKey, generate_key, make_token
from tests.clients.python.scripted_server import ScriptedServer
from tokend_client import (
    AsyncTokenClient,
    InvalidToken,
    JwksUrlSource,
    KeySource,
    KeySourceError,
    LocalVerifier,
    Reason,
    ServerKeySource,
    TokenClient,
    keysource,
)

ISSUER = "https://tokend.test"
AUDIENCE = "orders"


@pytest.fixture(scope="module")
def key_a() -> SigningKey:
    return generate_key("ES256", kid="key-a")


@pytest.fixture(scope="module")
def key_b() -> SigningKey:
    return generate_key("EdDSA", kid="key-b")


def token_for(key: SigningKey, *, kid: str | None = None) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "iat": now, "exp": now + 300,
              "jti": secrets.token_hex(8)}
    return make_token(key, claims, header={"kid": kid} if kid else None)


class Publisher:
    """A fetch callable that counts calls and serves whatever key sets it is given."""

    def __init__(self, *keys: SigningKey, delay: float = 0.0) -> None:
        self.keys = list(keys)
        self.delay = delay
        self.failing = False
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        if self.failing:
            raise ConnectionError("publisher down")
        return {"keys": [key.public_jwk() for key in self.keys]}


class Clock:
    """Stands in for the key source's monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(keysource, "monotonic", fake)
    return fake


def follow(source: KeySource) -> LocalVerifier:
    return LocalVerifier(source, issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture
def following(key_a: SigningKey, make_source: Callable[..., KeySource],
              clock: Clock) -> tuple[Publisher, LocalVerifier]:
    """A verifier following a publisher of key_a (min_refetch_interval=60), once the
    interval after its first fetch has passed: the next unknown kid may refetch."""
    publisher = Publisher(key_a)
    verifier = follow(make_source(publisher, min_refetch_interval=60))
    clock.advance(60)
    return publisher, verifier


@pytest.fixture
def make_source() -> Iterator[Callable[..., KeySource]]:
    """Builds key sources without a refresh thread unless asked, and closes them."""
    made: list[KeySource] = []

    def make(fetch: Any, **settings: Any) -> KeySource:
        settings.setdefault("refresh_interval", None)
        source = ServerKeySource(fetch, **settings)
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


def test_known_kid_needs_no_fetch(key_a: SigningKey,
                                  make_source: Callable[..., KeySource]) -> None:
    publisher = Publisher(key_a)
    verifier = follow(make_source(publisher))
    for _ in range(50):
        assert verifier.verify(token_for(key_a))["sub"] == "alice"
    assert publisher.calls == 1  # the first fetch, at construction


def test_unknown_kid_after_rotation_refetches_once(
        key_b: SigningKey, following: tuple[Publisher, LocalVerifier]) -> None:
    publisher, verifier = following
    publisher.keys.append(key_b)  # the publisher rotates
    assert verifier.verify(token_for(key_b))["sub"] == "alice"
    assert verifier.verify(token_for(key_b))["sub"] == "alice"
    assert publisher.calls == 2
    assert verifier.jwks.get("key-b") is not None


def test_kid_spray_causes_one_fetch(key_a: SigningKey,
                                    following: tuple[Publisher, LocalVerifier]) -> None:
    # Many threads, each token naming a fresh random kid, while the fetch is slow.
    publisher, verifier = following
    publisher.delay = 0.05
    tokens = [token_for(key_a, kid=secrets.token_hex(8)) for _ in range(400)]

    def reason(token: str) -> Reason:
        with pytest.raises(InvalidToken) as info:
            verifier.verify(token)
        return info.value.reason

    with ThreadPoolExecutor(max_workers=16) as pool:
        reasons = set(pool.map(reason, tokens))
    assert reasons == {Reason.UNKNOWN_KEY}
    assert publisher.calls == 2  # construction, then one refetch for all 400 tokens
    assert verifier.verify(token_for(key_a))["sub"] == "alice"


def test_refetch_is_allowed_again_after_the_interval(
        key_a: SigningKey, key_b: SigningKey, make_source: Callable[..., KeySource],
        clock: Clock) -> None:
    publisher = Publisher(key_a)
    verifier = follow(make_source(publisher, min_refetch_interval=5))
    with pytest.raises(InvalidToken):
        verifier.verify(token_for(key_b))  # just after the first fetch: none
    assert publisher.calls == 1
    clock.advance(5)
    with pytest.raises(InvalidToken):
        verifier.verify(token_for(key_b))  # refetched, still unknown
    assert publisher.calls == 2
    publisher.keys.append(key_b)
    clock.advance(4.9)
    with pytest.raises(InvalidToken):
        verifier.verify(token_for(key_b))  # within the interval: no fetch
    assert publisher.calls == 2
    clock.advance(0.1)
    assert verifier.verify(token_for(key_b))["sub"] == "alice"
    assert publisher.calls == 3


def test_failed_fetch_keeps_the_keys_and_counts_for_the_limit(
        key_a: SigningKey, key_b: SigningKey, following: tuple[Publisher, LocalVerifier]) -> None:
    publisher, verifier = following
    publisher.failing = True
    for _ in range(3):
        with pytest.raises(InvalidToken) as info:
            verifier.verify(token_for(key_b))
        assert info.value.reason is Reason.UNKNOWN_KEY
    assert publisher.calls == 2
    assert verifier.verify(token_for(key_a))["sub"] == "alice"


def test_other_failures_do_not_refetch(key_a: SigningKey,
                                       make_source: Callable[..., KeySource]) -> None:
    publisher = Publisher(key_a)
    verifier = follow(make_source(publisher, min_refetch_interval=0))
    forged = token_for(key_a)[:-4] + "AAAA"
    with pytest.raises(InvalidToken) as info:
        verifier.verify(forged)
    assert info.value.reason is Reason.BAD_SIGNATURE
    with pytest.raises(InvalidToken):
        verifier.verify("not a token")
    assert publisher.calls == 1


def test_first_fetch_failure_is_raised(make_source: Callable[..., KeySource]) -> None:
    publisher = Publisher()
    with pytest.raises(KeySourceError, match="no usable key"):
        follow(make_source(publisher))  # an empty set is not a usable first set
    publisher.failing = True
    with pytest.raises(KeySourceError, match="publisher down"):
        follow(make_source(publisher))


def test_periodic_refresh_runs_in_a_daemon_thread_until_closed(
        key_a: SigningKey, key_b: SigningKey) -> None:
    publisher = Publisher(key_a)
    # Only this source's thread: an earlier test in the session may have left its own.
    before = set(threading.enumerate())
    with ServerKeySource(publisher, refresh_interval=0.05) as source:
        verifier = follow(source)
        publisher.keys = [key_b]
        deadline = time.monotonic() + 5
        while source.keys().get("key-b") is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert verifier.verify(token_for(key_b))["sub"] == "alice"
        threads = [t for t in threading.enumerate()
                   if t.name == "tokend-key-refresh" and t not in before]
        assert threads and all(t.daemon for t in threads)
    calls = publisher.calls
    time.sleep(0.2)
    assert publisher.calls == calls  # stopped
    assert not any(t.name == "tokend-key-refresh" and t.is_alive() and t in threads
                   for t in threading.enumerate())


def test_following_verifier_refuses_update_jwks(key_a: SigningKey,
                                                make_source: Callable[..., KeySource]) -> None:
    verifier = follow(make_source(Publisher(key_a)))
    with pytest.raises(TypeError, match="key source"):
        verifier.update_jwks(key_a.jwks())


def test_server_key_source_uses_get_jwks(key_a: SigningKey,
                                         make_source: Callable[..., KeySource]) -> None:
    with ScriptedServer() as server, TokenClient.insecure_loopback(server.target) as client:
        server.service.jwks = key_a.jwks()
        verifier = follow(make_source(client))
        assert verifier.verify(token_for(key_a))["sub"] == "alice"
        assert server.service.calls["GetJwks"] == 1


async def test_server_key_source_refuses_async_fetchers() -> None:
    async def fetch() -> dict[str, Any]:
        return {"keys": []}

    async with AsyncTokenClient.insecure_loopback("127.0.0.1:1") as client:
        with pytest.raises(TypeError, match="synchronous"):
            ServerKeySource(client)
    with pytest.raises(TypeError, match="synchronous"):
        ServerKeySource(fetch)


@pytest.mark.parametrize("settings", [
    {"refresh_interval": 0}, {"refresh_interval": -1}, {"min_refetch_interval": -1},
    {"min_refetch_interval": float("nan")}, {"refresh_interval": "300"},
])
def test_bad_intervals_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError)):
        ServerKeySource(lambda: {"keys": []}, **settings)


# ---------------------------------------------------------------------------
# JwksUrlSource against a real HTTP server on loopback
# ---------------------------------------------------------------------------


class _JwksHandler(BaseHTTPRequestHandler):
    jwks: bytes = b""

    def do_GET(self) -> None:
        routes = {
            "/jwks": (200, self.jwks),
            "/big": (200, b" " * 2000 + self.jwks),
            "/missing": (404, b"{}"),
            "/empty": (204, b""),
        }
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/jwks")
            self.end_headers()
            return
        if self.path == "/slow":
            time.sleep(1.5)
        status, body = routes.get(self.path, (200, self.jwks))
        self.send_response(status)
        self.send_header("Content-Type", "application/jwk-set+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass  # keep test output clean


@pytest.fixture(scope="module")
def jwks_server(key_a: SigningKey) -> Iterator[str]:
    handler = type("Handler", (_JwksHandler,), {"jwks": json.dumps(key_a.jwks()).encode()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_jwks_url_source_follows_the_url(jwks_server: str, key_a: SigningKey) -> None:
    with JwksUrlSource(jwks_server + "/jwks", refresh_interval=None) as source:
        assert follow(source).verify(token_for(key_a))["sub"] == "alice"


@pytest.mark.parametrize(("path", "settings", "message"), [
    ("/big", {"max_bytes": 1000}, "larger than 1000 bytes"),
    ("/missing", {}, "404"),
    ("/empty", {}, "HTTP 204"),
    ("/redirect", {}, "302"),
    ("/slow", {"timeout": 0.3}, "timed out"),
])
def test_jwks_url_source_refuses_bad_answers(jwks_server: str, path: str,
                                             settings: dict[str, Any], message: str) -> None:
    source = JwksUrlSource(jwks_server + path, refresh_interval=None, **settings)
    started = time.monotonic()
    with pytest.raises(KeySourceError, match=message):
        source.keys()
    assert time.monotonic() - started < 1.2


@pytest.mark.parametrize("url", [
    "http://tokend.example/.well-known/jwks.json", "http://10.0.0.1/jwks",
    "ftp://127.0.0.1/jwks", "file:///etc/passwd", "https:///jwks", "jwks.json",
])
def test_jwks_url_source_refuses_unsafe_urls(url: str) -> None:
    with pytest.raises(ValueError, match="https, or http to a loopback"):
        JwksUrlSource(url)


def test_jwks_url_source_accepts_https_without_io() -> None:
    source = JwksUrlSource("https://tokend.example/.well-known/jwks.json")
    assert source.url.startswith("https://") and source.fetch_count == 0
