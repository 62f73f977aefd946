"""Vault login and token upkeep: one hvac client whose token tokend keeps alive.

`VaultSession` owns the process's only `hvac.Client` and the event-loop transport
(`tokend.vault.transport`) that Transit signs through, both on the token it keeps.
`login()` authenticates with the configured method (token, AppRole, Kubernetes) and
`maintain()` then runs for the life of the process: it renews the token when
`renew_fraction` of its TTL has passed, logs in again when renewal is refused (max TTL
reached, token revoked) or when the max TTL is about to cut the token short, and backs
off while Vault is unreachable. A re-login swaps the token on the same client, so every
later call, through either, uses it.

Secrets (tokens, secret ids, service-account JWTs) never appear in messages, logs or
metric labels: errors say which Vault path failed and why, nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import threading
import time
import weakref
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import hvac.exceptions
import requests
import structlog
from prometheus_client import Counter, Gauge

from tokend import metrics
from tokend.config import VaultConfig
from tokend.vault.client import VaultError, call_vault, make_vault_client, vault_detail
from tokend.vault.transport import VaultTransport

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

log = structlog.get_logger("tokend.vault")

LOOKUP_SELF = "auth/token/lookup-self"
RENEW_SELF = "auth/token/renew-self"

LOGINS = Counter(
    "tokend_vault_logins_total",
    "Vault logins by auth method (method token: look-ups of the given token); "
    "outcome is ok or the failure reason (unreachable, denied, rejected, ...)",
    ["method", "outcome"],
)
RENEWALS = Counter(
    "tokend_vault_token_renewals_total",
    "Vault token renewals; outcome is ok or the failure reason",
    ["outcome"],
)
TOKEN_TTL = Gauge(
    "tokend_vault_token_ttl_seconds",
    "Seconds the current Vault token has left (+Inf: it never expires; 0: none)",
    multiprocess_mode="livemin",
)

# Vault reasons that say "try again later" rather than "this token or login is refused".
_TRANSIENT = frozenset({"unreachable", "sealed", "uninitialized"})
# Longest wait between retries while Vault is away: after a long outage, also the
# longest a recovered Vault waits for tokend to log in again.
MAX_BACKOFF = 30.0
# After a 403 elsewhere the token is checked, at most once per this many seconds.
CHECK_INTERVAL = 5.0
_MIN_DELAY = 0.05  # never spin, even when a step is overdue
_IDLE = 300.0  # how often to look again when there is nothing to renew
_LABELS = {"token": "token", "approle": "AppRole", "kubernetes": "Kubernetes"}


@dataclass(frozen=True)
class VaultStatus:
    """A snapshot for health checks and metrics; holds no secret."""

    method: str
    logged_in: bool
    # Unix time the token expires; None when it never expires (or before any login).
    token_expires_at: float | None
    renewable: bool
    # The last failed login/renewal, cleared by the next success.
    last_error: str | None
    logins: int
    renewals: int


@dataclass(frozen=True)
class _Lease:
    """What Vault granted the current token."""

    ttl: float | None  # seconds granted; None: the token never expires
    renewable: bool
    granted_at: float  # time.monotonic() when granted
    granted_wall: float  # time.time() when granted
    capped: bool = False  # a renewal granted less than before: the max TTL is near

    def remaining(self) -> float:
        if self.ttl is None:
            return math.inf
        return max(0.0, self.granted_at + self.ttl - time.monotonic())


class VaultSession:
    """Logs in to Vault and keeps the token of `client` (and `transport`) valid for the
    life of the process."""

    def __init__(self, config: VaultConfig, *, max_backoff: float | None = None,
                 tracer: Tracer | None = None) -> None:
        """Build the client and the transport (TLS, namespace, timeout from `config`);
        does not contact Vault.

        `max_backoff` caps the wait between retries while Vault is away (MAX_BACKOFF).
        """
        self._auth = config.auth
        self.method = config.auth.method
        mount = (config.auth.mount or config.auth.method).strip("/")
        self.login_path = LOOKUP_SELF if self.method == "token" else f"auth/{mount}/login"
        self._mount = mount
        if self.method == "token":
            # None lets hvac fall back to VAULT_TOKEN / ~/.vault-token, as Vault's CLI does.
            token = config.token.get_secret_value() if config.token else None
        else:
            token = ""  # a login method must not send some ambient token along
        self.client: hvac.Client = make_vault_client(
            config.addr, token, namespace=config.namespace, cacert=config.cacert,
            timeout=config.timeout, client_cert=config.client_cert,
            client_key=config.client_key,
        )
        self._max_backoff = MAX_BACKOFF if max_backoff is None else max_backoff
        self._lock = threading.Lock()  # login/renew run in worker threads
        self._lease: _Lease | None = None
        self._full_ttl: float | None = None  # the TTL a fresh login grants
        self._relogin = False
        self._last_error: str | None = None
        self._logins = 0
        self._renewals = 0
        # Set by maintain(): lets worker threads wake it when Vault answers 403.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._last_check = -math.inf
        self.client.session.hooks["response"].append(self._on_response)
        # The same settings and, read per call, the same token as `client`.
        self.transport = VaultTransport(config, self._token, on_refused=self._on_refused,
                                        tracer=tracer)

    # -- status ---------------------------------------------------------------------

    @property
    def status(self) -> VaultStatus:
        """The current state, for /readyz and metrics."""
        with self._lock:
            lease = self._lease
            expires = None
            if lease is not None and lease.ttl is not None:
                expires = lease.granted_wall + lease.ttl
            return VaultStatus(
                method=self.method, logged_in=lease is not None, token_expires_at=expires,
                renewable=bool(lease and lease.renewable), last_error=self._last_error,
                logins=self._logins, renewals=self._renewals,
            )

    def remaining_ttl(self) -> float:
        """Seconds the token has left: +inf if it never expires, 0 before any login."""
        lease = self._lease
        return 0.0 if lease is None else lease.remaining()

    # -- login ----------------------------------------------------------------------

    def login(self) -> None:
        """Authenticate with the configured method; raises VaultError naming the path.

        Method token looks the given token up (auth/token/lookup-self) to learn its TTL
        and whether it renews; AppRole and Kubernetes log in at auth/<mount>/login and
        put the new token on `client`.
        """
        try:
            lease = self._lookup_token() if self.method == "token" else self._log_in()
        except VaultError as exc:
            LOGINS.labels(self.method, exc.reason).inc()
            self._note_failure(exc)
            raise
        LOGINS.labels(self.method, "ok").inc()
        with self._lock:
            self._lease, self._full_ttl, self._relogin = lease, lease.ttl, False
            self._last_error = None
            self._logins += 1
        _TtlReport.follow(self)
        log.info("vault.logged_in", method=self.method, path=self.login_path,
                 ttl=lease.ttl, renewable=lease.renewable)
        if self.method == "token" and lease.ttl is not None and not lease.renewable:
            log.warning("vault.token_not_renewable", expires_in=lease.ttl,
                        hint="the token cannot be renewed: signing stops when it expires")

    def _lookup_token(self) -> _Lease:
        if not self.client.token:
            raise VaultError(
                "no Vault token: set vault.token (VAULT_TOKEN), or log in with "
                "vault.auth.method approle or kubernetes (see docs/vault.md)",
                path=LOOKUP_SELF, reason="denied",
            )
        answer = call_vault(self.client, "read", LOOKUP_SELF, self.client.auth.token.lookup_self)
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, dict):
            raise VaultError(f"{LOOKUP_SELF} returned no data", path=LOOKUP_SELF,
                             reason="bad_answer")
        return _new_lease(data.get("ttl"), data.get("renewable"), LOOKUP_SELF)

    def _log_in(self) -> _Lease:
        secret = self._read_credential()
        if self.method == "approle":
            role_id = self._auth.role_id

            def call() -> Any:
                return self.client.auth.approle.login(
                    role_id, secret, use_token=False, mount_point=self._mount)
        else:
            role = self._auth.role

            def call() -> Any:
                return self.client.auth.kubernetes.login(
                    role, secret, use_token=False, mount_point=self._mount)
        try:
            answer = call_vault(self.client, "log in through", self.login_path, call)
        except VaultError as exc:
            raise self._login_refused(exc, (secret,)) from exc
        auth = answer.get("auth") if isinstance(answer, dict) else None
        token = auth.get("client_token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise VaultError(f"{self.login_path} answered without a token",
                             path=self.login_path, reason="bad_answer")
        lease = _new_lease(auth.get("lease_duration"), auth.get("renewable"), self.login_path)
        self.client.token = token  # the same client: the keyring signs with it from now on
        return lease

    def _read_credential(self) -> str:
        """The AppRole secret id or the service-account JWT, read afresh (both rotate)."""
        auth = self._auth
        if self.method != "approle":
            path, what = auth.jwt_file, "service-account token"
        elif auth.secret_id_file is not None:
            path, what = auth.secret_id_file, "AppRole secret id"
        else:
            assert auth.secret_id is not None  # checked by VaultAuthConfig
            return auth.secret_id.get_secret_value()
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise VaultError(
                f"cannot read the {what} from {path}: {exc.strerror or exc} "
                f"(needed to log in through {self.login_path})",
                path=self.login_path, reason="failed",
            ) from None
        if not value:
            raise VaultError(f"the {what} file {path} is empty (needed to log in through "
                             f"{self.login_path})", path=self.login_path, reason="failed")
        return value

    def _login_refused(self, exc: VaultError, secrets: Iterable[str]) -> VaultError:
        """Say that the login was refused and what to check; never echo a credential."""
        if exc.reason in _TRANSIENT:
            return exc  # already names the address and the path
        cause = exc.__cause__
        detail = vault_detail(cause) if isinstance(cause, hvac.exceptions.VaultError) else ""
        detail = _redact(detail or exc.reason, secrets)
        if self.method == "approle":
            hint = "check vault.auth.role_id and the secret id, that the role exists"
        else:
            hint = (f"check vault.auth.role {self._auth.role!r} and that the token in "
                    f"{self._auth.jwt_file} belongs to a service account the role is bound to")
        label = _LABELS[self.method]
        return VaultError(
            f"Vault refused the {label} login at {self.login_path} (HTTP {exc.status or '?'}): "
            f"{detail}; {hint}, and that {label} is enabled at auth/{self._mount}/ "
            "(vault.auth.mount; see docs/vault.md)",
            path=self.login_path, status=exc.status, reason=exc.reason,
        )

    # -- renewal --------------------------------------------------------------------

    def renew(self) -> None:
        """Renew the token once through auth/token/renew-self; raises VaultError."""
        try:
            answer = call_vault(self.client, "renew", RENEW_SELF,
                                self.client.auth.token.renew_self)
            auth = answer.get("auth") if isinstance(answer, dict) else None
            if not isinstance(auth, dict):
                raise VaultError(f"{RENEW_SELF} answered without auth data", path=RENEW_SELF,
                                 reason="bad_answer")
            lease = _new_lease(auth.get("lease_duration"), auth.get("renewable"), RENEW_SELF)
        except VaultError as exc:
            RENEWALS.labels(exc.reason).inc()
            self._note_failure(exc)
            raise
        RENEWALS.labels("ok").inc()
        with self._lock:
            full = self._full_ttl
            # Vault caps a renewal at the token's max TTL: less than a fresh login grants.
            capped = full is not None and lease.ttl is not None and lease.ttl < full
            self._lease = replace(lease, capped=capped)
            if not capped and lease.ttl is not None:
                self._full_ttl = max(full or 0.0, lease.ttl)
            self._last_error = None
            self._renewals += 1
        log.info("vault.token_renewed", ttl=lease.ttl, capped_by_max_ttl=capped)

    def check(self) -> None:
        """Look the token up (auth/token/lookup-self); raises VaultError if it is refused.

        Run after a 403 elsewhere: a refusal here means the token itself is gone.
        """
        try:
            call_vault(self.client, "read", LOOKUP_SELF, self.client.auth.token.lookup_self)
        except VaultError as exc:
            self._note_failure(exc)
            raise
        log.warning("vault.token_valid_but_denied",
                    hint="Vault refused a request although the token is valid: its policy "
                         "lacks a path (see docs/vault.md)")

    # -- upkeep ---------------------------------------------------------------------

    async def maintain(self, executor: Executor) -> None:
        """Keep the token valid until cancelled; never raises.

        Renews at `renew_fraction` of the TTL; logs in again when a renewal is refused
        or capped by the max TTL (methods approle/kubernetes); retries with capped
        exponential backoff while Vault is unreachable or a login is refused. A 403 on
        any other call (say, a sign) has it check the token at once, so a token revoked
        or expired early is replaced within seconds, not at the next renewal.
        """
        loop = asyncio.get_running_loop()
        self._loop, self._wake = loop, asyncio.Event()
        failures, retry_in = 0, 0.0
        while True:
            action, delay = self._plan()
            # A login already due needs no check: 403s then are expected, not news.
            wait = max(retry_in if failures else delay, _MIN_DELAY)
            if await self._sleep(wait, listen=action != "login"):
                action, self._last_check = "check", time.monotonic()
            if action is None:
                continue
            step = {"renew": self.renew, "login": self.login, "check": self.check}[action]
            try:
                await loop.run_in_executor(executor, step)
            except Exception as exc:  # VaultError, or a surprise: neither ends the upkeep
                if not isinstance(exc, VaultError):
                    self._note_failure(exc)
                if self._relogin_after(action, exc):
                    failures, retry_in = 0, 0.0
                    continue
                failures += 1
                retry_in = _backoff(failures, self._max_backoff)
                log.warning(f"vault.{action}_failed", reason=_reason(exc), error=_describe(exc),
                            retry_in=round(retry_in, 1),
                            ttl_left=round(min(self.remaining_ttl(), 1e9), 1))
            else:
                failures = 0

    async def _sleep(self, seconds: float, *, listen: bool) -> bool:
        """Wait `seconds`; True when (`listen`ing) a 403 elsewhere cut the wait short.

        After a check, 403s are not heard for CHECK_INTERVAL: a token that is valid but
        lacks a policy would otherwise be looked up on every failed Issue.
        """
        assert self._wake is not None
        cooldown = self._last_check + CHECK_INTERVAL - time.monotonic()
        if not listen or cooldown >= seconds:
            await asyncio.sleep(seconds)
            return False
        if cooldown > 0:
            await asyncio.sleep(cooldown)
            seconds -= cooldown
        self._wake.clear()
        try:
            # asyncio.timeout: 3.11's wait_for can swallow a cancellation (App.stop).
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            return False
        return True

    def _token(self) -> str | None:
        return self.client.token

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """requests hook, in worker threads: a 403 outside auth/ may mean a dead token."""
        if response.status_code == 403 and not response.request.path_url.startswith("/v1/auth/"):
            self._doubt_token()

    def _on_refused(self, status: int, path: str) -> None:
        """The transport's error answers, on the event loop: as `_on_response`."""
        if status == 403 and not path.startswith("auth/"):
            self._doubt_token()

    def _doubt_token(self) -> None:
        """Wake `maintain` to check the token (from any thread)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
                loop.call_soon_threadsafe(wake.set)

    def _plan(self) -> tuple[str | None, float]:
        """The next action ("renew", "login" or None) and the seconds to wait for it."""
        with self._lock:
            lease, relogin = self._lease, self._relogin
        if lease is None or relogin:
            return "login", 0.0
        if lease.ttl is None:
            return None, _IDLE  # never expires (e.g. a root token): nothing to renew
        due = lease.granted_at + lease.ttl * self._auth.renew_fraction - time.monotonic()
        can_login = self.method != "token"
        if lease.renewable and not (lease.capped and can_login):
            return "renew", due
        if can_login:
            return "login", due
        return None, _IDLE  # a given token that cannot renew: it just runs out

    def _relogin_after(self, action: str, exc: Exception) -> bool:
        """True when a refused renewal (max TTL reached, revoked, 403) calls for a login."""
        refused = isinstance(exc, VaultError) and exc.reason not in _TRANSIENT
        if action not in ("renew", "check") or not refused or self.method == "token":
            return False
        with self._lock:
            self._relogin = True
        log.warning(f"vault.{action}_refused", reason=_reason(exc), error=_describe(exc),
                    next="login")
        return True

    def _note_failure(self, exc: BaseException) -> None:
        with self._lock:
            self._last_error = str(exc)


def _new_lease(ttl: Any, renewable: Any, path: str) -> _Lease:
    """A lease from Vault's `ttl`/`lease_duration` (0: never expires) and `renewable`."""
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) or ttl < 0:
        raise VaultError(f"{path} answered without a usable TTL", path=path,
                         reason="bad_answer")
    return _Lease(ttl=float(ttl) or None, renewable=renewable is True,
                  granted_at=time.monotonic(), granted_wall=time.time())


def _reason(exc: Exception) -> str:
    return exc.reason if isinstance(exc, VaultError) else "error"


def _describe(exc: Exception) -> str:
    # VaultError messages are written to be shown; others get their type for context.
    return str(exc) if isinstance(exc, VaultError) else f"{type(exc).__name__}: {exc}"


def _backoff(failures: int, cap: float) -> float:
    """1 s, 2 s, 4 s … up to `cap`, with jitter so replicas do not retry in step."""
    return min(cap, 2.0 ** (failures - 1)) * random.uniform(0.8, 1.0)


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


class _TtlReport:
    """Feeds TOKEN_TTL from the session that logged in last.

    One tokend runs per process; when tests run several, the latest login is reported.
    A weak reference keeps a stopped App collectable.
    """

    session: weakref.ref[VaultSession] | None = None

    @classmethod
    def follow(cls, session: VaultSession) -> None:
        cls.session = weakref.ref(session)

    @classmethod
    def value(cls) -> float:
        session = cls.session() if cls.session is not None else None
        return session.remaining_ttl() if session is not None else 0.0


metrics.track(TOKEN_TTL, _TtlReport.value)
