"""Vault from the event loop: the POST behind every Transit sign batch, as hvac would send it.

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
from typing import Any

import aiohttp
import hvac
import hvac.utils
import requests

from tokend.vault.client import call_vault


class EventLoopVault:
    """POST to Vault from the event loop with aiohttp, as the hvac client would.

    Same address, token (read per call: renewal replaces it), namespace, TLS files and
    timeout as the hvac client; errors become the same VaultError through `call_vault`.
    Where it cannot copy the client's transport exactly (a proxy, an unusual TLS
    setting) `usable` is False and callers stay on hvac. Redirects (a standby pointing
    at the active node) are followed, as requests follows them for hvac.
    """

    def __init__(self, client: hvac.Client) -> None:
        self.client = client
        self._session: aiohttp.ClientSession | None = None
        adapter = client.adapter
        options = getattr(adapter, "_kwargs", {})
        self._timeout = aiohttp.ClientTimeout(total=float(options.get("timeout") or 30))
        self._url = str(client.url).rstrip("/")
        self._ssl = _ssl_of(self._url, options.get("verify", True), options.get("cert"))
        proxied = options.get("proxies") or (adapter.session.trust_env and
                                             urllib.request.getproxies())
        self.usable = self._ssl is not None and not proxied

    async def post(self, path: str, body: dict[str, Any], verb: str) -> Any:
        """POST `body` to /v1/`path`; the JSON answer, or a VaultError naming `path`."""
        url = f"{self._url}/v1/{path}"
        try:
            async with self._open().post(url, data=json.dumps(body), headers=self._headers(),
                                         ssl=self._ssl, timeout=self._timeout) as response:
                status, text = response.status, await response.text()
        except aiohttp.ClientSSLError as exc:
            failure: Exception = requests.exceptions.SSLError(str(exc))
        except TimeoutError as exc:
            failure = requests.exceptions.Timeout(str(exc) or "timed out")
        except aiohttp.ClientError as exc:
            failure = requests.exceptions.ConnectionError(str(exc) or type(exc).__name__)
        else:
            if status >= 400:  # the hooks look for refusals; a success costs them nothing
                self._run_response_hooks(url, status)
            return call_vault(self.client, verb, path, lambda: _answer(url, status, text))

        def fail() -> None:
            raise failure

        return call_vault(self.client, verb, path, fail)

    def _headers(self) -> dict[str, str]:
        adapter = self.client.adapter
        headers = {"X-Vault-Request": "true", "Content-Type": "application/json"}
        if adapter.token:
            headers["X-Vault-Token"] = adapter.token
        if adapter.namespace:
            headers["X-Vault-Namespace"] = adapter.namespace
        return headers

    def _run_response_hooks(self, url: str, status: int) -> None:
        """What requests does for the hvac client: the session's response hooks see an
        error answer, so a 403 here wakes the Vault session's token check like any other.
        Only error answers: building the request object costs ~50 us, and the one hook
        (`VaultSession._on_response`) acts on 403 alone."""
        hooks = self.client.session.hooks.get("response", [])
        if not hooks:
            return
        response = requests.Response()
        response.status_code = status
        response.url = url
        response.request = requests.Request("POST", url).prepare()
        for hook in hooks:
            hook(response)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = session = aiohttp.ClientSession(trust_env=False)
            # The keyring has no stop of its own: when it goes, its connections go too,
            # quietly, even if nobody awaited close() while the loop still ran.
            weakref.finalize(self, _drop_connections, session)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _drop_connections(session: aiohttp.ClientSession) -> None:
    connector = session.connector
    if connector is not None and not connector.closed:
        # Synchronous part of connector.close(): closes the sockets (or, once the loop is
        # closed, only marks the connector closed), so no "unclosed" warning follows.
        connector._close()


def _ssl_of(url: str, verify: Any, cert: Any) -> ssl.SSLContext | bool | None:
    """The TLS context requests would use; False for plain HTTP; None when it cannot be told."""
    if not url.startswith("https://"):
        return False if cert is None else None
    if verify is False:
        return None  # never copy "no verification" onto a second transport
    if verify is True or verify is None:
        import certifi  # requests' own default bundle

        context = ssl.create_default_context(cafile=certifi.where())
    elif isinstance(verify, str):  # a CA bundle file or, as requests allows, a folder
        if os.path.isdir(verify):
            context = ssl.create_default_context(capath=verify)
        else:
            context = ssl.create_default_context(cafile=verify)
    else:
        return None
    if isinstance(cert, tuple) and len(cert) == 2:
        context.load_cert_chain(cert[0], cert[1])
    elif isinstance(cert, str):
        context.load_cert_chain(cert)
    elif cert is not None:
        return None
    return context


def _answer(url: str, status: int, text: str) -> Any:
    """The decoded answer; for an error status, the hvac exception hvac would raise."""
    try:
        decoded = json.loads(text) if text else None
    except ValueError:
        decoded = None
    if 200 <= status < 300:
        return decoded
    errors = decoded.get("errors") if isinstance(decoded, dict) else None
    hvac.utils.raise_for_error("post", url, status, None if errors else text, errors=errors,
                               text=text, json=decoded)
    return None  # unreachable: raise_for_error raises for every error status
