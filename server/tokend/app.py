"""Wiring: builds keys, store, verifier and servers from the settings; nothing else constructs."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import structlog
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from tokend.api.admission import Admission
from tokend.api.decoding import add_guarded
from tokend.api.policy import CallerPolicy, load_policy
from tokend.api.ratelimit import RateLimiter
from tokend.api.servicer import TokenServicer, add_to_server
from tokend.api.signals import RejectionWatch
from tokend.api.streams import JwksFeed, LiveStreams, RevocationFeed
from tokend.api.tls import ReloadingCredentials
from tokend.audit import AuditLog
from tokend.config import Settings, split_host_port
from tokend.keys.custody import build_keyring
from tokend.keys.keyring import Keyring, PhasedKeyring
from tokend.keys.publisher import JwksPublisher
from tokend.keys.session import VaultSession
from tokend.keys.vault import VaultError
from tokend.store import Store, open_store
from tokend.store.maintenance import purge_forever
from tokend.tokens.authority import TokenAuthority
from tokend.tokens.denylist import Denylist, DenylistFollower
from tokend.tokens.minting import TokenMinter
from tokend.web.http import build_http_app
from tokend_client import LocalVerifier
from tokend_client.v1 import tokend_pb2

log = structlog.get_logger("tokend.app")

# Vault errors worth waiting out at start; anything else is a configuration error.
_TRANSIENT = frozenset({"unreachable", "sealed", "uninitialized"})

SERVICE_NAME = tokend_pb2.DESCRIPTOR.services_by_name["TokenService"].full_name
# Requests are small; anything larger is refused by gRPC before it reaches a handler.
MAX_MESSAGE_BYTES = 64 * 1024


class App:
    """One tokend process: `await start()`, then `await stop()`.

    ``reuse_port``: several processes (`tokend serve --workers N`) listen on the same
    ports (SO_REUSEPORT) and the kernel spreads connections among them. Without it a
    port already taken is an error rather than silently shared.
    """

    def __init__(self, settings: Settings, *, reuse_port: bool = False) -> None:
        self.settings = settings
        self.reuse_port = reuse_port
        self.grpc_port = 0
        self.http_port = 0
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="tokend-io")
        self._tasks: list[asyncio.Task[None]] = []
        self._store: Store | None = None
        self._publisher: JwksPublisher | None = None
        self._streams: LiveStreams | None = None
        self._audit: AuditLog | None = None
        self._vault: VaultSession | None = None
        self._keyring: Keyring | None = None
        self.tls: ReloadingCredentials | None = None
        self._grpc: grpc.aio.Server | None = None
        self._http: web.AppRunner | None = None
        self._health = health.aio.HealthServicer()

    async def start(self) -> None:
        """Health endpoints first (not serving), then keys and store, then serving.
        On failure everything started so far is stopped again before the error rises."""
        try:
            await self._start()
        except BaseException:
            await self.stop(grace=0)
            raise

    async def _start(self) -> None:
        settings = self.settings
        self._audit = audit = AuditLog(settings.audit_log)
        servicer = TokenServicer(settings, self._admission(audit), audit,
                                 RejectionWatch(settings.security, audit))
        await self._set_serving(False)
        await self._start_http()
        await self._start_grpc(servicer)
        self._keyring = keyring = await self._load_keys_patiently()
        verifier = LocalVerifier(
            keyring.jwks(), issuer=settings.tokens.issuer, leeway=settings.tokens.leeway,
            max_lifetime=settings.tokens.max_ttl, max_token_bytes=settings.tokens.max_token_bytes,
        )
        self._publisher = publisher = JwksPublisher(keyring, verifier)
        publisher.publish()
        jwks_feed = JwksFeed()
        publisher.on_change(jwks_feed.publish)
        store = open_store(settings.store_url, migrate=settings.store_migrate)
        await store.open()
        self._store = store
        denylist = Denylist()
        # The feed streams what the follower applies and asks it how far it has read.
        revocation_feed = RevocationFeed(store, position=lambda: follower.seq)
        follower = DenylistFollower(store, denylist, interval=settings.revocation_poll_interval,
                                    on_applied=revocation_feed.publish)
        await follower.catch_up()
        self._streams = streams = LiveStreams(revocation_feed, jwks_feed)
        authority = TokenAuthority(
            minter=TokenMinter(keyring, settings.tokens.issuer, self._executor),
            store=store, denylist=denylist, verifier=verifier, config=settings.tokens,
            audit=audit,
        )
        servicer.attach(authority, publisher, streams)
        self._tasks = [
            asyncio.create_task(follower.run()),
            asyncio.create_task(purge_forever(store, settings.store_purge_interval)),
            asyncio.create_task(publisher.follow(settings.vault.key_refresh_interval,
                                                 self._executor)),
            asyncio.create_task(self._vault.maintain(self._executor)),
        ]
        await self._set_serving(True)
        log.info("tokend.started", grpc_port=self.grpc_port, http_port=self.http_port,
                 issuer=settings.tokens.issuer, kid=keyring.active().kid)

    async def _load_keys_patiently(self) -> PhasedKeyring:
        """Retries an unreachable or sealed Vault for vault.startup_timeout; a denied path
        or a missing key is a configuration error and fails at once."""
        deadline = time.monotonic() + self.settings.vault.startup_timeout
        delay = 0.5
        while True:
            try:
                return await self._load_keys()
            except VaultError as exc:
                if exc.reason not in _TRANSIENT or time.monotonic() + delay > deadline:
                    raise
                log.warning("vault.waiting", error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _load_keys(self) -> PhasedKeyring:
        """Log in to Vault, then read the key (vault.custody) and prove it signs (fail fast)."""
        vault = self.settings.vault
        # One hvac client for the process: the session logs in and keeps its token alive
        # (start() runs `maintain`), and the keyring signs with whatever token it holds.
        self._vault = session = VaultSession(vault)
        # Before any Vault call: inconsistent rotation settings are a configuration error.
        keyring = build_keyring(self.settings, session.client)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, session.login)
        await loop.run_in_executor(self._executor, keyring.load)
        await loop.run_in_executor(self._executor, keyring.check_sign_permission)
        return keyring

    def _admission(self, audit: AuditLog) -> Admission:
        settings = self.settings
        if settings.policy_file is not None:
            caller_policy = load_policy(settings.policy_file)
        else:
            # Without a policy file only plaintext loopback (development) may change state.
            caller_policy = CallerPolicy(allow_all=settings.insecure_plaintext)
            log.warning("policy.none", allow_all=caller_policy.allow_all)
        return Admission(caller_policy, RateLimiter(settings.rate_limit), audit,
                         settings.default_client_id)

    async def _start_grpc(self, servicer: TokenServicer) -> None:
        server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
            # gRPC turns SO_REUSEPORT on by default; only workers may share a port.
            ("grpc.so_reuseport", 1 if self.reuse_port else 0),
        ])
        # Every service decodes its requests through api/decoding.py: malformed bytes are
        # INVALID_ARGUMENT, not UNKNOWN with a traceback.
        add_to_server(servicer, server)
        add_guarded(health_pb2_grpc.add_HealthServicer_to_server, self._health, server)
        add_guarded(reflection_pb2_grpc.add_ServerReflectionServicer_to_server,
                    reflection.aio.ReflectionServicer(
                        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                         reflection.SERVICE_NAME)), server)
        listen = self.settings.grpc_listen
        if self.settings.insecure_plaintext:
            self.grpc_port = server.add_insecure_port(listen)
        else:
            self.tls = ReloadingCredentials(self.settings.tls)
            self.grpc_port = server.add_secure_port(listen, self.tls.credentials())
        await server.start()
        self._grpc = server

    async def _start_http(self) -> None:
        app = build_http_app(issuer=self.settings.tokens.issuer, publisher=lambda: self._publisher,
                             ready=self._ready, jwks_max_age=self.settings.jwks_max_age)
        self._http = runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, port = split_host_port(self.settings.http_listen)
        site = web.TCPSite(runner, host, port, reuse_address=True,
                           reuse_port=self.reuse_port or None)
        await site.start()
        self.http_port = runner.addresses[0][1]

    async def _ready(self) -> tuple[bool, dict[str, bool]]:
        # Local state only: a database outage must not take every replica out of the
        # Service, since Verify still answers from memory.
        keys_ok = self._publisher is not None and bool(self._publisher.algorithms)
        checks = {"keys": keys_ok, "store": self._store is not None,
                  "grpc": self._grpc is not None}
        return all(checks.values()), checks

    async def _set_serving(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", SERVICE_NAME):
            await self._health.set(name, status)

    async def stop(self, grace: float = 5.0) -> None:
        """Idempotent: stops what is running, in the reverse order of start."""
        await self._set_serving(False)
        streams, self._streams = self._streams, None
        if streams is not None:
            streams.close()  # ends every Watch stream now instead of after the grace period
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        grpc_server, self._grpc = self._grpc, None
        if grpc_server is not None:
            await grpc_server.stop(grace)
        http, self._http = self._http, None
        if http is not None:
            await http.cleanup()
        keyring, self._keyring = self._keyring, None
        aclose = getattr(keyring, "aclose", None)
        if aclose is not None:  # the event-loop HTTP session of Transit signing
            await aclose()
        store, self._store = self._store, None
        if store is not None:
            await store.close()
        audit, self._audit = self._audit, None
        if audit is not None:
            audit.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        log.info("tokend.stopped")


async def serve_forever(settings: Settings, *, reuse_port: bool = False) -> None:
    """Runs until SIGINT/SIGTERM, then shuts down gracefully."""
    app = App(settings, reuse_port=reuse_port)
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await app.stop()
