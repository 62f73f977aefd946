"""Vault from the event loop: the POST behind every Transit sign batch.

hvac (requests) costs ~0.7 ms of CPU per call and, run in a worker thread, holds the GIL
against the event loop; aiohttp costs about half of that, on the loop itself. A
hand-written HTTP/1.1 client measured ~40 us less per Issue (at ~4.5 tokens a batch) and
was not kept: HTTP framing towards the key custodian is where a well-kept library earns
its cost.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.request
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from tokend import tracing
from tokend.config import VaultConfig
from tokend.vault.client import (
    TlsFiles,
    answer_detail,
    net_reason,
    refused,
    tls_files,
    unreachable,
    unusable_files,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

#: Told (HTTP status, Vault path) of every error answer: the session listens for 403s.
OnRefused = Callable[[int, str], None]


class VaultTransport:
    """POST to Vault from the event loop with aiohttp, with tokend's own Vault settings.

    Address, namespace, TLS files (`tls_files`: the settings, else Vault's variables, as
    for the hvac client) and timeout come from `config`; the token is read per call from
    `token` (the session's current one: renewal and re-login replace it). Failures are
    the VaultErrors `call_vault` makes of the same failures through hvac. Where requests
    would route elsewhere (a proxy named in the environment) `usable` is False and
    callers stay on hvac. Redirects (a standby pointing at the active node) are
    followed, as requests follows them for hvac.
    """

    def __init__(self, config: VaultConfig, token: Callable[[], str | None], *,
                 on_refused: OnRefused | None = None, tracer: Tracer | None = None) -> None:
        self._addr = config.addr
        self._url = config.addr.rstrip("/")
        self._namespace = config.namespace or None
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=float(config.timeout))
        self._tls = tls_files(config.cacert, config.client_cert, config.client_key)
        self._ssl: ssl.SSLContext | bool | None = None  # built on first use
        self._session: aiohttp.ClientSession | None = None
        self.on_refused = on_refused
        self._tracer = tracer  # None: tracing off; else a CLIENT span per POST
        where = urlsplit(self._url)
        self._server = {"server.address": where.hostname or "", "server.port":
                        where.port or (443 if where.scheme == "https" else 80)}
        # requests (hvac) follows HTTP(S)_PROXY; this transport does not (trust_env off).
        self.usable = not urllib.request.getproxies()

    async def post(self, path: str, body: dict[str, Any], verb: str) -> Any:
        """POST `body` to /v1/`path`; the JSON answer, or a VaultError naming `path`."""
        if self._tracer is None:
            return await self._post(path, body, verb, None)
        # HTTP client semantic conventions; never the body, the token header or the answer.
        span = tracing.client_span(self._tracer, "POST", {
            "http.request.method": "POST", "url.path": f"/v1/{path}", **self._server,
            "tokend.vault.operation": verb})
        assert span is not None
        with tracing.use(span):
            try:
                return await self._post(path, body, verb, span)
            except BaseException as exc:
                tracing.failed(span, exc)
                raise

    async def _post(self, path: str, body: dict[str, Any], verb: str, span: Span | None
                    ) -> Any:
        context = self._context(verb, path)
        try:
            async with self._open().post(f"{self._url}/v1/{path}", data=json.dumps(body),
                                         headers=self._headers(), ssl=context,
                                         timeout=self._timeout) as response:
                status, text = response.status, await response.text()
            if span is not None:
                span.set_attribute("http.response.status_code", status)
        except aiohttp.ClientSSLError as exc:
            raise unreachable(self._addr, verb, path, net_reason(str(exc), "TLS error"),
                              tls=True) from exc
        except TimeoutError as exc:
            raise unreachable(self._addr, verb, path, "timed out") from exc
        except aiohttp.ClientError as exc:
            reason = net_reason(str(exc), type(exc).__name__)
            raise unreachable(self._addr, verb, path, reason) from exc
        decoded = _decoded(text)
        if 200 <= status < 300:
            return decoded
        if status >= 400 and self.on_refused is not None:
            self.on_refused(status, path)
        errors = decoded.get("errors") if isinstance(decoded, dict) else None
        raise refused(status, answer_detail(errors, text), verb=verb, path=path,
                      addr=self._addr)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self) -> dict[str, str]:
        headers = {"X-Vault-Request": "true", "Content-Type": "application/json"}
        token = self._token()
        if token:
            headers["X-Vault-Token"] = token
        if self._namespace:
            headers["X-Vault-Namespace"] = self._namespace
        return headers

    def _context(self, verb: str, path: str) -> ssl.SSLContext | bool:
        """The TLS context (False for plain HTTP); a file it cannot load is a VaultError."""
        if self._ssl is None:
            try:
                self._ssl = _ssl_context(self._url, self._tls)
            except OSError as exc:  # ssl.SSLError too: a file that is not a certificate
                problem = f"cannot load {_files(self._tls)}: {exc.strerror or exc}"
                raise unusable_files(self._addr, verb, path, problem) from exc
        return self._ssl

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = session = aiohttp.ClientSession(trust_env=False)
            # An owner that never awaited close() while the loop still ran: the
            # connections go with the transport, quietly.
            weakref.finalize(self, _drop_connections, session)
        return self._session


def _drop_connections(session: aiohttp.ClientSession) -> None:
    connector = session.connector
    if connector is not None and not connector.closed:
        # Synchronous part of connector.close(): closes the sockets (or, once the loop is
        # closed, only marks the connector closed), so no "unclosed" warning follows.
        connector._close()


def _ssl_context(url: str, tls: TlsFiles) -> ssl.SSLContext | bool:
    """The TLS context requests would use for `tls`; False for plain HTTP (requests
    ignores TLS files there too)."""
    if not url.startswith("https://"):
        return False
    if tls.verify is True:
        import certifi  # requests' own default bundle

        context = ssl.create_default_context(cafile=certifi.where())
    elif isinstance(tls.verify, str) and os.path.isdir(tls.verify):  # as requests allows
        context = ssl.create_default_context(capath=tls.verify)
    else:
        context = ssl.create_default_context(cafile=str(tls.verify))
    if isinstance(tls.cert, tuple):
        context.load_cert_chain(tls.cert[0], tls.cert[1])
    elif tls.cert is not None:
        context.load_cert_chain(tls.cert)
    return context


def _files(tls: TlsFiles) -> str:
    """The TLS files in use, for a message."""
    names = [] if tls.verify is True else [str(tls.verify)]
    cert = tls.cert
    names += list(cert) if isinstance(cert, tuple) else [] if cert is None else [cert]
    return ", ".join(names) or "the default CA bundle"


def _decoded(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None

