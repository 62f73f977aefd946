"""The event-loop Vault transport: tokend's own Vault settings and the session's token,
errors named as hvac's would be, refusals reported, timeouts, redirects. A scripted
server on loopback plays Vault, so every failure can be produced on purpose;
tests/tokens/test_batching.py signs through it against real OpenBao."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.bao import BaoDevServer, vault_session
from tokend.config import VaultConfig
from tokend.keys.transit import TransitKeyring
from tokend.vault.client import VaultError, tls_files
from tokend.vault.transport import VaultTransport
from tokend_client.jose import verify_signature

SILENT = b"silent"  # never answer
OK_BODY = b'{"data":{"ok":true}}'


def answer(status: str = "200 OK", body: bytes = OK_BODY, *headers: str) -> bytes:
    fields = "".join(f"{h}\r\n" for h in headers)
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{fields}\r\n").encode() + body


class ScriptedVault:
    """Answers each request with the next scripted reply (the last one repeats)."""

    def __init__(self, *replies: bytes) -> None:
        self.replies = list(replies)
        self.requests: list[bytes] = []
        self.connections = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                self.requests.append(head + await reader.readexactly(length))
                reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
                if reply == SILENT:
                    await asyncio.sleep(30)
                writer.write(reply)
                await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedVault]:
    server = ScriptedVault(answer())
    await server.start()
    yield server
    await server.stop()


def vault_for(server: ScriptedVault, token: str = "s.test-token", timeout: float = 5,  # noqa: S107
              **settings: Any) -> VaultTransport:
    http = VaultTransport(VaultConfig(addr=server.url, timeout=timeout, **settings),
                          lambda: token)
    assert http.usable
    return http


async def post(http: VaultTransport) -> Any:
    return await http.post("transit/sign/k", {"input": "aGk="}, "sign")


def header(request: bytes, name: bytes) -> bytes | None:
    for line in request.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.lower() == name.lower():
            return value.strip()
    return None


async def test_a_silent_vault_times_out(scripted: ScriptedVault) -> None:
    scripted.replies = [SILENT]
    with pytest.raises(VaultError) as caught:
        await post(vault_for(scripted, timeout=0.3))
    assert caught.value.reason == "unreachable" and "timed out" in str(caught.value)


async def test_error_answers_are_the_errors_hvac_raises(scripted: ScriptedVault) -> None:
    scripted.replies = [answer("400 Bad Request", b'{"errors":["invalid key version"]}')]
    with pytest.raises(VaultError) as caught:
        await post(vault_for(scripted))
    assert caught.value.reason == "rejected" and "invalid key version" in str(caught.value)
    assert caught.value.status == 400


async def test_refusals_are_reported_successes_are_not(scripted: ScriptedVault) -> None:
    """The Vault session listens to wake its token check on a 403; successes cost nothing."""
    scripted.replies = [answer(), answer("403 Forbidden", b'{"errors":["permission denied"]}')]
    http = vault_for(scripted)
    seen: list[tuple[int, str]] = []
    http.on_refused = lambda status, path: seen.append((status, path))
    await post(http)
    assert seen == []
    with pytest.raises(VaultError) as caught:
        await post(http)
    assert caught.value.reason == "denied"
    assert seen == [(403, "transit/sign/k")]
    await http.close()


async def test_the_session_token_is_read_per_call(scripted: ScriptedVault) -> None:
    """Renewal and re-login replace the session's token: the next sign carries the new one,
    with the namespace from the settings."""
    session = vault_session(scripted.url, "s.first", namespace="team-a")
    await post(session.transport)
    session.client.token = "s.second"  # what a re-login does
    await post(session.transport)
    assert [header(r, b"X-Vault-Token") for r in scripted.requests] == [b"s.first", b"s.second"]
    assert {header(r, b"X-Vault-Namespace") for r in scripted.requests} == {b"team-a"}
    await session.transport.close()


def test_a_proxy_keeps_signing_on_hvac(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests (hvac) would take the proxy; this transport does not, so it stands aside."""
    config = VaultConfig(addr="http://127.0.0.1:8200")
    assert VaultTransport(config, lambda: "s.t").usable
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    assert not VaultTransport(config, lambda: "s.t").usable


async def test_a_certificate_file_it_cannot_load_is_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "absent-ca.pem")
    http = VaultTransport(VaultConfig(addr="https://127.0.0.1:8200", cacert=missing),
                          lambda: "s.t")
    with pytest.raises(VaultError) as caught:
        await post(http)
    assert caught.value.reason == "unreachable" and missing in str(caught.value)
    assert "s.t" not in str(caught.value)


def test_tls_files_fall_back_to_vaults_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both transports take their files from tls_files: settings first, then VAULT_*."""
    monkeypatch.setenv("VAULT_CACERT", "/env/ca.pem")
    monkeypatch.setenv("VAULT_CLIENT_CERT", "/env/cert.pem")
    monkeypatch.setenv("VAULT_CLIENT_KEY", "/env/key.pem")
    from_env = tls_files()
    assert (from_env.verify, from_env.cert) == ("/env/ca.pem", ("/env/cert.pem", "/env/key.pem"))
    given = tls_files("/etc/ca.pem", "/etc/both.pem")
    assert (given.verify, given.cert) == ("/etc/ca.pem", "/etc/both.pem")
    monkeypatch.delenv("VAULT_CACERT")
    monkeypatch.delenv("VAULT_CLIENT_CERT")
    assert tls_files().verify is True and tls_files().cert is None


async def test_a_path_prefix_is_kept(scripted: ScriptedVault) -> None:
    http = VaultTransport(VaultConfig(addr=scripted.url + "/vault/"), lambda: "s.t")
    await post(http)
    assert scripted.requests[0].startswith(b"POST /vault/v1/transit/sign/k HTTP/1.1\r\n")
    await http.close()


async def test_transit_follows_a_redirect_as_hvac_would(
        bao: BaoDevServer, scripted: ScriptedVault) -> None:
    """A standby Vault redirecting to the active one: followed from the event loop."""
    name = f"redirected-{uuid.uuid4().hex[:8]}"
    direct = TransitKeyring(bao.client(), key_name=name, create_if_missing=True)
    direct.load()
    scripted.replies = [answer("307 Temporary Redirect", b"",
                               f"Location: {bao.addr}/v1/transit/sign/{name}")]
    session = vault_session(scripted.url, bao.token)
    keyring = TransitKeyring(session.client, key_name=name, transport=session.transport)
    keyring._keyset = direct._keyset  # the keys as loaded; signing goes via the redirect
    key = keyring.active()
    signatures = await keyring.sign_batch(key, [b"one", b"two"])
    public = direct._current().versions[key.version].public_key
    assert isinstance(public, ec.EllipticCurvePublicKey)
    for data, signature in zip([b"one", b"two"], signatures, strict=True):
        assert isinstance(signature, bytes)
        verify_signature(key.alg, public, signature, data)
    assert session.transport.usable
    assert len(scripted.requests) == 1  # the redirect; the signing happened at OpenBao
    await session.transport.close()
