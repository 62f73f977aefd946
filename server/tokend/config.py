"""One settings object, read from a YAML file and the environment, validated at start.

Precedence, highest first: explicit overrides (the CLI), `TOKEND_*` variables
(nested with `__`, e.g. `TOKEND_TOKENS__MAX_TTL=30m`), Vault's own variables
(`VAULT_ADDR`, `VAULT_TOKEN`, `VAULT_NAMESPACE`, `VAULT_CACERT`), the YAML file,
the defaults below. docs/configuration.md lists every knob.
"""

from __future__ import annotations

import ipaddress
import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tokend.event_loop import EventLoop

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|[smhd])$")


def _parse_duration(value: Any) -> Any:
    """Accept seconds as a number, or a string such as `3ms`, `90s`, `15m`, `1h`, `30d`."""
    if isinstance(value, str):
        text = value.strip()
        match = _DURATION.match(text)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2)]
        try:
            return float(text)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a duration: use seconds or e.g. 3ms, 90s, 15m, 1h, 30d"
            ) from None
    return value


Seconds = Annotated[float, BeforeValidator(_parse_duration), Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VaultAuthConfig(_Section):
    """How tokend logs in to Vault. `token` uses vault.token as is (renewed when renewable)."""

    method: Literal["token", "approle", "kubernetes"] = "token"
    # Where the auth method is mounted; defaults to the method's name.
    mount: str | None = None
    # AppRole: the role id, and the secret id inline or (better) from a file.
    role_id: str | None = None
    secret_id: SecretStr | None = None
    secret_id_file: Path | None = None
    # Kubernetes: the Vault role, and the service-account token at its standard path.
    role: str | None = None
    jwt_file: Path = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
    # Renew the Vault token when this fraction of its TTL has passed.
    renew_fraction: float = Field(0.67, gt=0.1, lt=0.95)

    @model_validator(mode="after")
    def _method_needs(self) -> VaultAuthConfig:
        if self.method == "approle" and (not self.role_id or
                                         not (self.secret_id or self.secret_id_file)):
            raise ValueError("vault.auth.method approle needs role_id and secret_id or "
                             "secret_id_file")
        if self.method == "kubernetes" and not self.role:
            raise ValueError("vault.auth.method kubernetes needs vault.auth.role")
        return self


class VaultConfig(_Section):
    addr: str = "http://127.0.0.1:8200"
    token: SecretStr | None = None
    namespace: str | None = None
    cacert: str | None = None
    # Client certificate for Vault's TLS listener (VAULT_CLIENT_CERT / VAULT_CLIENT_KEY).
    client_cert: str | None = None
    client_key: str | None = None
    timeout: Seconds = 5.0
    auth: VaultAuthConfig = VaultAuthConfig()
    transit_mount: str = "transit"
    key_name: str = Field("tokend", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    algorithm: Literal["ES256", "RS256", "PS256", "EdDSA"] = "ES256"
    rsa_bits: Literal[2048, 3072, 4096] = 2048
    # Creating keys is a deliberate act in production; `tokend dev` turns it on.
    create_key: bool = False
    # How often key versions are re-read from Vault (picks up rotations).
    key_refresh_interval: Seconds = 60.0
    # At start, keep retrying an unreachable or sealed Vault this long before giving up
    # (/healthz answers meanwhile, /readyz says not ready). 0: fail at once.
    startup_timeout: float = Field(0.0, ge=0, le=3600)
    # Key custody: "transit" (Vault signs; the private key never leaves it) or "kv" (a
    # private JWK kept in Vault KV v2 under <kv_mount>/data/tokend/keys/<key_name>,
    # signing in process). docs/keys.md says when to choose which.
    custody: Literal["transit", "kv"] = "transit"
    kv_mount: str = "secret"
    # A new key version is published this long before it signs. Unset:
    # key_refresh_interval + max(jwks_max_age, jwks_consumer_refresh) + 60 s (22 min by
    # default); never less than key_refresh_interval + max(jwks_max_age,
    # jwks_consumer_refresh) (checked at start, see tokend.keys.lifecycle).
    propagation_delay: Annotated[
        float | None, BeforeValidator(_parse_duration), Field(ge=0)] = None
    # Rotate on a schedule: a new version when the newest is this old. 0: never.
    rotation_period: Annotated[float, BeforeValidator(_parse_duration), Field(ge=0)] = 0.0


class TokenConfig(_Section):
    issuer: str = "http://127.0.0.1:8080"
    default_ttl: Seconds = 900.0
    max_ttl: Seconds = 3600.0
    leeway: int = Field(30, ge=0, le=300)
    refresh_ttl: Seconds = 86400.0
    refresh_family_lifetime: Seconds = 30 * 86400.0
    # A Refresh sent with an idempotency key may be retried by the same caller this long
    # after it was answered, and gets the same answer (docs/configuration.md). 0: never.
    refresh_retry_window: Annotated[
        float, BeforeValidator(_parse_duration), Field(ge=0, le=600)] = 60.0
    # Empty: any well-formed audience may be issued.
    allowed_audiences: tuple[str, ...] = ()
    max_token_bytes: int = Field(8192, ge=1024, le=65536)
    max_claims_bytes: int = Field(4096, ge=0, le=65536)
    max_claims_depth: int = Field(4, ge=1, le=16)
    # Fail closed: when the revocation feed has not been read for longer than this (the
    # store is unreachable), Verify answers UNAVAILABLE instead of possibly accepting a
    # token revoked elsewhere meanwhile. 0: off, Verify keeps answering from memory.
    revocation_max_staleness: Annotated[
        float, BeforeValidator(_parse_duration), Field(ge=0, le=86400)] = 0.0

    @model_validator(mode="after")
    def _ttls_consistent(self) -> TokenConfig:
        if self.default_ttl > self.max_ttl:
            raise ValueError("tokens.default_ttl must not exceed tokens.max_ttl")
        if self.refresh_ttl > self.refresh_family_lifetime:
            raise ValueError("tokens.refresh_ttl must not exceed tokens.refresh_family_lifetime")
        return self


class TlsConfig(_Section):
    cert_file: Path | None = None
    key_file: Path | None = None
    # With a client CA, every caller must present a certificate it signed (mutual TLS).
    client_ca_file: Path | None = None


class RateLimitConfig(_Section):
    """Token bucket per caller on Issue, Refresh and Revoke; a policy entry may override it."""

    per_second: float = Field(100.0, gt=0)
    burst: int = Field(200, ge=1)


class SecurityConfig(_Section):
    """Thresholds for security signals (events + tokend_security_events_total)."""

    # This many rejected tokens from one caller, or for one subject, within the window
    # raise a `security.rejected_burst` event (once per window per caller/subject).
    rejected_burst: int = Field(20, ge=1)
    rejected_window: Seconds = 60.0


class SigningConfig(_Section):
    """Issue and Refresh against a failing or hung key custody (docs/operations.md)."""

    # Longest one Issue or Refresh waits for its signature, queueing included; then
    # UNAVAILABLE. Unset: vault.timeout.
    max_wait: Annotated[Seconds | None, Field(le=60)] = None
    # After a signing call fails, Issue and Refresh answer UNAVAILABLE at once, and one
    # probe call tests the custody this often until it signs again.
    probe_interval: Annotated[Seconds, Field(le=300)] = 2.0
    # Concurrent signatures leave for Vault together, one batch at most this often (a
    # full one at once): longer makes larger batches, so fewer Transit calls per token,
    # for that much more latency at load (tokens/batching.py; bench/README.md).
    batch_wait: Annotated[float, BeforeValidator(_parse_duration), Field(ge=0, le=0.05)] = 0.003


class HttpConfig(_Section):
    """The HTTP listener(s): JWKS, discovery, health, metrics (docs/configuration.md)."""

    # A second listener for /metrics only; when set, the http_listen port no longer
    # serves /metrics (so that port can be public while metrics stay internal).
    metrics_listen: str | None = None
    # Open connections per HTTP listener; at the cap the oldest one is closed to make
    # room for the new one (tokend.web.listener).
    max_connections: int = Field(1000, ge=8, le=100_000)
    # A connection must send a complete request (headers) within this long of opening,
    # and is closed after this long idle between requests.
    request_timeout: Annotated[Seconds, Field(le=300)] = 10.0


class GrpcConfig(_Section):
    """Connection limits of the gRPC listener (docs/configuration.md)."""

    # Open connections (handshaking included); beyond it gRPC closes new ones at once.
    max_connections: int = Field(1000, ge=8, le=100_000)
    # TLS handshake plus the client's HTTP/2 preface must finish within this long.
    handshake_timeout: Annotated[Seconds, Field(le=120)] = 10.0
    # A connection without any call (no RPC, no Watch stream) for this long is closed
    # (GOAWAY; clients reconnect when they next call).
    idle_timeout: Seconds = 300.0
    # Ping a connection after this long without traffic; one that does not answer
    # within keepalive_timeout is closed (a peer that vanished behind a Watch stream).
    keepalive_time: Annotated[Seconds, Field(ge=10)] = 60.0
    keepalive_timeout: Annotated[Seconds, Field(le=300)] = 20.0
    # A connection this old (±10 % jitter) gets GOAWAY, so clients reconnect and a
    # load balancer can send them to replicas added since; 0: never.
    max_connection_age: Annotated[float, BeforeValidator(_parse_duration),
                                  Field(ge=0)] = 300.0
    # After that GOAWAY, calls in flight (Watch streams too) get this long to finish.
    max_connection_age_grace: Annotated[Seconds, Field(le=3600)] = 30.0
    # Client pings closer together than this without data count as strikes; after
    # two strikes the connection gets GOAWAY too_many_pings. The clients ping every
    # 60 s during calls (docs/clients.md), well above it.
    min_client_ping_interval: Annotated[Seconds, Field(ge=1)] = 30.0


class TracingConfig(_Section):
    """OpenTelemetry tracing (tokend.tracing). Off: no tracer is built and the request
    path pays one None check. On: exporter, endpoint, sampler and service name come from
    the standard OTEL_* variables (docs/operations.md, "Tracing")."""

    enabled: bool = False


class StreamsConfig(_Section):
    """Caps on WatchRevocations / WatchJwks streams, per stream kind and process."""

    max_total: int = Field(1000, ge=1, le=100_000)
    # Per caller identity, so that one caller cannot take every slot from the others.
    max_per_caller: int = Field(100, ge=1, le=100_000)

    @model_validator(mode="after")
    def _per_caller_within_total(self) -> StreamsConfig:
        if self.max_per_caller > self.max_total:
            raise ValueError("streams.max_per_caller must not exceed streams.max_total")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TOKEND_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    grpc_listen: str = "127.0.0.1:50051"
    http_listen: str = "127.0.0.1:8080"
    # Plaintext gRPC is only ever allowed on a loopback address.
    insecure_plaintext: bool = False
    store_url: str = "sqlite:///.tokend-data/tokend.db"
    # Run schema migrations at start; off: `tokend migrate` must have run (separate rights).
    store_migrate: bool = True
    # How often expired revocations and refresh tokens are deleted from the store.
    store_purge_interval: Seconds = 3600.0
    # The caller identity recorded as `client_id` when there is no client certificate.
    default_client_id: str = Field("tokend-local", pattern=r"^[\x21-\x7e]{1,256}$")
    jwks_max_age: int = Field(300, ge=0, le=86400)
    # The longest a JWKS consumer that ignores Cache-Control keeps a key set before it
    # fetches again: istiod refetches every 20 min (PILOT_JWT_PUB_KEY_REFRESH_INTERVAL),
    # Envoy's remote_jwks after its cache_duration (10 min unless set). Key rotation
    # waits for it (vault.propagation_delay). 0: every consumer honours max-age.
    jwks_consumer_refresh: Annotated[
        float, BeforeValidator(_parse_duration), Field(ge=0, le=86400)] = 1200.0
    revocation_poll_interval: Seconds = 0.5
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # The event loop of every tokend process (tokend.event_loop): uvloop spends less CPU
    # per call than the standard library's loop (bench/README.md); asyncio is the fallback.
    event_loop: EventLoop = "uvloop"
    # Audit events (one JSON line per Issue/Refresh/Revoke and rejected Verify):
    # "-" is stdout (application logs go to stderr), or a file path (appended).
    audit_log: str = "-"
    # Who may call what (docs/policy.md). Unset: only Verify and GetJwks, except with
    # insecure_plaintext on loopback (development), where every RPC is allowed.
    policy_file: Path | None = None
    rate_limit: RateLimitConfig = RateLimitConfig()
    security: SecurityConfig = SecurityConfig()
    streams: StreamsConfig = StreamsConfig()
    tls: TlsConfig = TlsConfig()
    vault: VaultConfig = VaultConfig()
    tokens: TokenConfig = TokenConfig()
    signing: SigningConfig = SigningConfig()
    http: HttpConfig = HttpConfig()
    grpc: GrpcConfig = GrpcConfig()
    tracing: TracingConfig = TracingConfig()

    @model_validator(mode="after")
    def _tls_or_loopback_plaintext(self) -> Settings:
        if self.insecure_plaintext:
            if not is_loopback(self.grpc_listen):
                raise ValueError(
                    f"insecure_plaintext is only allowed on a loopback address, "
                    f"not {self.grpc_listen}"
                )
        elif self.tls.cert_file is None or self.tls.key_file is None:
            raise ValueError(
                "gRPC needs TLS: set tls.cert_file and tls.key_file, or insecure_plaintext: "
                "true on a loopback address (development only)"
            )
        return self

    @model_validator(mode="after")
    def _metrics_listener_apart(self) -> Settings:
        listen = self.http.metrics_listen
        if listen is not None:
            split_host_port(listen)  # raises for anything but host:port
            if listen == self.http_listen and not listen.endswith(":0"):
                raise ValueError("http.metrics_listen must differ from http_listen")
        return self

    @model_validator(mode="after")
    def _policy_needs_client_certificates(self) -> Settings:
        # Without client certificates every caller is default_client_id: a policy would
        # guard nothing and the Watch streams would be open to whoever reaches the port.
        if self.policy_file is not None and self.tls.client_ca_file is None \
                and not self.insecure_plaintext:
            raise ValueError(
                "policy_file is set but tls.client_ca_file is not: without mutual TLS no "
                "caller can be told apart, so the policy would guard nothing. Set "
                "tls.client_ca_file to the CA that signs your callers' certificates "
                "(or, for development only, insecure_plaintext: true on a loopback address)")
        return self

    @model_validator(mode="after")
    def _local_identity_is_no_certificate_name(self) -> Settings:
        # The kind prefixes of tokend.api.identity: a local caller must never read as a
        # certificate identity in client_id or the audit.
        if self.default_client_id.lower().startswith(("spiffe:", "dns:", "cn:", "local:")):
            raise ValueError("default_client_id must not start with spiffe:, dns:, cn: or "
                             "local: (those name certificate identities)")
        return self

    @model_validator(mode="after")
    def _staleness_above_polling(self) -> Settings:
        limit = self.tokens.revocation_max_staleness
        if limit and limit < max(1.0, 2 * self.revocation_poll_interval):
            raise ValueError(
                "tokens.revocation_max_staleness must be 0 (off) or at least 1 s and twice "
                "revocation_poll_interval, or Verify would fail between two ordinary polls"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            _VaultEnvSource(settings_cls),
            _YamlFileSource(settings_cls),
        )


_config_file: ContextVar[Path | None] = ContextVar("tokend_config_file", default=None)


class _YamlFileSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _config_file.get()
        if path is None:
            return {}
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the top level must be a mapping of settings")
        return data


class _VaultEnvSource(PydanticBaseSettingsSource):
    """Vault's own variables, so an operator's usual Vault environment just works."""

    _NAMES: ClassVar[dict[str, str]] = {
        "VAULT_ADDR": "addr", "VAULT_TOKEN": "token",
        "VAULT_NAMESPACE": "namespace", "VAULT_CACERT": "cacert",
        "VAULT_CLIENT_CERT": "client_cert", "VAULT_CLIENT_KEY": "client_key",
    }

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        vault = {key: os.environ[name] for name, key in self._NAMES.items() if os.environ.get(name)}
        return {"vault": vault} if vault else {}


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings; raises pydantic.ValidationError naming every bad field."""
    token = _config_file.set(config_file)
    try:
        return Settings(**overrides)
    finally:
        _config_file.reset(token)


def is_loopback(listen: str) -> bool:
    host = split_host_port(listen)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host_port(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{listen!r} is not host:port")
    return host.strip("[]"), int(port)
