"""Vault client construction and error translation shared by every Vault caller.

hvac raises one exception class per HTTP status and requests raises its own for the
network; neither says which Vault path the service was trying to use, so an operator
cannot tell a missing policy from a missing key. `call_vault` turns them all into one
`VaultError` that names the path, the verb and the reason, and never the token; the
event-loop transport (`tokend.vault.transport`) builds the same errors from its own
answers with `refused` and `unreachable`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import hvac
import hvac.exceptions
import requests

T = TypeVar("T")

_DOCS = "see docs/vault.md"


class VaultError(Exception):
    """Vault could not be used for one path; the message says which path and why.

    `path` is the Vault API path without `/v1/` (e.g. `transit/keys/tokend`), `status`
    the HTTP status when Vault answered (None when it could not be reached), `reason`
    one short word for callers that branch on it: unreachable, denied, not_found,
    no_mount, sealed, uninitialized, rejected, failed, bad_answer (Vault answered but
    not what tokend needs: wrong key type, malformed signature, …).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        status: int | None = None,
        reason: str = "failed",
    ):
        super().__init__(message)
        self.path = path
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class TlsFiles:
    """What to trust and what to present on Vault's TLS listener, as requests takes them.

    `verify`: a CA bundle file or folder, or True for the default bundle; `cert`: the
    client certificate and key files, one file holding both, or None.
    """

    verify: str | bool
    cert: tuple[str, str] | str | None


def tls_files(cacert: str | None = None, client_cert: str | None = None,
              client_key: str | None = None) -> TlsFiles:
    """The TLS files tokend uses towards Vault: the settings, else Vault's own variables.

    `cacert=None` honours VAULT_CACERT, then VAULT_CAPATH, and `client_cert=None`
    VAULT_CLIENT_CERT / VAULT_CLIENT_KEY, as Vault's CLI and hvac do. `client_cert`
    without `client_key` is one PEM file holding both. Both transports (hvac and the
    event-loop one) take their files from here, so they always agree.
    """
    verify: str | bool = cacert or os.environ.get("VAULT_CACERT") or \
        os.environ.get("VAULT_CAPATH") or True
    if not client_cert:
        client_cert = os.environ.get("VAULT_CLIENT_CERT") or None
        client_key = os.environ.get("VAULT_CLIENT_KEY") or None
    cert: tuple[str, str] | str | None = None
    if client_cert:
        cert = (client_cert, client_key) if client_key else client_cert
    return TlsFiles(verify, cert)


def make_vault_client(
    addr: str,
    token: str | None,
    *,
    namespace: str | None = None,
    cacert: str | None = None,
    timeout: float = 5.0,
    client_cert: str | None = None,
    client_key: str | None = None,
) -> hvac.Client:
    """Build an hvac client for `addr`.

    `token=None` lets hvac fall back to VAULT_TOKEN / ~/.vault-token (`""` means no token
    at all); the TLS files come from `tls_files`, so Vault's own variables keep working.
    """
    tls = tls_files(cacert, client_cert, client_key)
    return hvac.Client(
        url=addr,
        token=token,
        cert=tls.cert,
        namespace=namespace or None,
        verify=tls.verify,
        timeout=timeout,
    )


def call_vault(client: hvac.Client, verb: str, path: str, fn: Callable[[], T]) -> T:
    """Run one hvac call, turning hvac/requests failures into a VaultError naming `path`.

    `verb` is the operation in words ("read", "sign", "create"), used in the message.
    """
    addr = _addr(client)
    try:
        return fn()
    except requests.exceptions.SSLError as exc:
        raise unreachable(addr, verb, path, _net_reason(exc), tls=True) from exc
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise unreachable(addr, verb, path, _net_reason(exc)) from exc
    except hvac.exceptions.VaultError as exc:
        raise refused(_STATUS.get(type(exc)), vault_detail(exc), verb=verb, path=path,
                      addr=addr) from exc
    except OSError as exc:  # requests could not load a CA or client certificate file
        raise unusable_files(addr, verb, path, str(exc)) from exc


def unreachable(addr: str, verb: str, path: str, reason: str, *, tls: bool = False
                ) -> VaultError:
    """Vault did not answer: `reason` is short ('timed out', '[Errno 111] …')."""
    if tls:
        return VaultError(
            f"cannot reach Vault at {addr}: TLS failed ({reason}); "
            f"check VAULT_CACERT, and VAULT_CLIENT_CERT/VAULT_CLIENT_KEY if Vault wants a "
            f"client certificate (wanted to {verb} {path})",
            path=path,
            reason="unreachable",
        )
    return VaultError(
        f"cannot reach Vault at {addr}: {reason} (wanted to {verb} {path})",
        path=path,
        reason="unreachable",
    )


def unusable_files(addr: str, verb: str, path: str, problem: str) -> VaultError:
    """A CA or client certificate file could not be loaded (`problem` says which)."""
    return VaultError(
        f"cannot reach Vault at {addr}: {problem}; check vault.cacert (VAULT_CACERT) and "
        f"vault.client_cert/client_key (wanted to {verb} {path})",
        path=path,
        reason="unreachable",
    )


def _addr(client: hvac.Client) -> str:
    # The URL never carries the token (hvac sends it as a header), so it is safe to show.
    return str(client.url)


_STATUS = {
    hvac.exceptions.InvalidRequest: 400,
    hvac.exceptions.Unauthorized: 401,
    hvac.exceptions.Forbidden: 403,
    hvac.exceptions.InvalidPath: 404,
    hvac.exceptions.RateLimitExceeded: 429,
    hvac.exceptions.InternalServerError: 500,
    hvac.exceptions.VaultNotInitialized: 501,
    hvac.exceptions.BadGateway: 502,
    hvac.exceptions.VaultDown: 503,
}


def refused(status: int | None, detail: str, *, verb: str, path: str, addr: str
            ) -> VaultError:
    """Vault answered `status` (None: a status hvac does not name) with `detail`."""
    reason, msg = "failed", f"Vault failed to {verb} {path} (HTTP {status or '?'}): {detail}"
    if status in (401, 403):
        # Vault answers 403 both for a missing policy and for a bad or expired token.
        reason = "denied"
        msg = (
            f"Vault denied {verb} on {path}: the token lacks permission, "
            f"or is invalid or expired ({_DOCS})"
        )
    elif status == 404 and "no handler for route" in detail:
        reason = "no_mount"
        msg = f"Vault at {addr} has no secrets engine mounted for {path} (wanted to {verb} it)"
    elif status == 404:
        reason, msg = "not_found", f"Vault has nothing at {path} (wanted to {verb} it)"
    elif status == 503:
        reason = "sealed"
        msg = f"Vault at {addr} is sealed or unavailable (wanted to {verb} {path}): {detail}"
    elif status == 501:
        reason = "uninitialized"
        msg = f"Vault at {addr} is not initialized (wanted to {verb} {path})"
    elif status == 400:
        reason, msg = "rejected", f"Vault rejected {verb} on {path}: {detail}"
    return VaultError(msg, path=path, status=status, reason=reason)


def vault_detail(exc: hvac.exceptions.VaultError) -> str:
    """Vault's own error text, without the multi-error list decoration."""
    return answer_detail(exc.errors, str(exc.args[0] if exc.args else ""))


def answer_detail(errors: object, text: str) -> str:
    """The detail of an error answer: its `errors` list, else its text."""
    raw = "; ".join(str(e) for e in errors) if isinstance(errors, list) and errors else text
    # Vault wraps errors as "1 error occurred:\n\t* permission denied\n\n".
    raw = re.sub(r"\d+ errors? occurred:", "", raw)
    parts = [p.strip(" \t\n*") for p in raw.split("\n")]
    return "; ".join(p for p in parts if p) or "no detail given"


def _net_reason(exc: BaseException) -> str:
    """A short reason ('[Errno 111] Connection refused', 'timed out') from a requests error."""
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    return net_reason(str(exc), type(exc).__name__)


def net_reason(text: str, otherwise: str) -> str:
    """The short reason inside a network error's text; `otherwise` when it holds none."""
    found = re.search(r"\[Errno -?\d+\] [^'\")\]]+", text)
    if found:
        return found.group(0).strip()
    if "SSL" in text or "certificate" in text:
        found = re.search(r"\[SSL[^\]]*\][^'\")]*", text)
        # Drop OpenSSL's source location, e.g. " (_ssl.c:1006".
        return re.sub(r"\s*\(_ssl\.c:\d+$", "", found.group(0).strip()) if found else "TLS error"
    return otherwise
