"""The event-loop Vault client: errors named as hvac's would be, hooks, timeouts,
redirects. A scripted server on loopback plays Vault, so every failure can be produced on
purpose; tests/server/test_batching.py signs through it against real OpenBao."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.bao import BaoDevServer
from tokend.keys.loopvault import EventLoopVault
from tokend.keys.transit import TransitKeyring
from tokend.keys.vault import VaultError, make_vault_client
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


def vault_for(server: ScriptedVault, token: str = "s.test-token", timeout: float = 5  # noqa: S107
              ) -> EventLoopVault:
    http = EventLoopVault(make_vault_client(server.url, token, timeout=timeout))
    assert http.usable
    return http


async def post(http: EventLoopVault) -> Any:
    return await http.post("transit/sign/k", {"input": "aGk="}, "sign")


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


async def test_response_hooks_see_error_answers_only(scripted: ScriptedVault) -> None:
    """The Vault session's hook wakes its token check on a 403; successes skip the hooks."""
    scripted.replies = [answer(), answer("403 Forbidden", b'{"errors":["permission denied"]}')]
    http = vault_for(scripted)
    seen: list[tuple[int, str]] = []

    def hook(response: requests.Response, *args: object, **kwargs: object) -> None:
        seen.append((response.status_code, response.request.path_url))

    http.client.session.hooks["response"].append(hook)
    await post(http)
    assert seen == []
    with pytest.raises(VaultError) as caught:
        await post(http)
    assert caught.value.reason == "denied"
    assert seen == [(403, "/v1/transit/sign/k")]
    await http.close()


def test_transports_it_cannot_copy_stay_on_hvac() -> None:
    unverified = make_vault_client("https://127.0.0.1:8200", "s.t")
    unverified.adapter._kwargs["verify"] = False  # never copied onto a second transport
    proxied = make_vault_client("http://127.0.0.1:8200", "s.t")
    proxied.adapter._kwargs["proxies"] = {"http": "http://127.0.0.1:3128"}
    assert EventLoopVault(make_vault_client("http://127.0.0.1:8200", "s.t")).usable
    assert not EventLoopVault(unverified).usable
    assert not EventLoopVault(proxied).usable


async def test_a_path_prefix_is_kept(scripted: ScriptedVault) -> None:
    http = EventLoopVault(make_vault_client(scripted.url + "/vault/", "s.t"))
    await post(http)
    assert scripted.requests[0].startswith(b"POST /vault/v1/transit/sign/k HTTP/1.1\r\n")
    await http.close()


async def test_transit_follows_a_redirect_as_hvac_would(
        bao: BaoDevServer, scripted: ScriptedVault) -> None:
    """A standby Vault redirecting to the active one: followed from the event loop."""
    name = f"redirected-{uuid.uuid4().hex[:8]}"
    direct = TransitKeyring(make_vault_client(bao.addr, bao.token), key_name=name,
                            create_if_missing=True)
    direct.load()
    scripted.replies = [answer("307 Temporary Redirect", b"",
                               f"Location: {bao.addr}/v1/transit/sign/{name}")]
    keyring = TransitKeyring(make_vault_client(scripted.url, bao.token), key_name=name)
    keyring._keyset = direct._keyset  # the keys as loaded; signing goes via the redirect
    key = keyring.active()
    signatures = await keyring.sign_many_async(key, [b"one", b"two"])
    public = direct._current().versions[key.version].public_key
    assert isinstance(public, ec.EllipticCurvePublicKey)
    for data, signature in zip([b"one", b"two"], signatures, strict=True):
        assert isinstance(signature, bytes)
        verify_signature(key.alg, public, signature, data)
    assert keyring._loop_vault().usable
    assert len(scripted.requests) == 1  # the redirect; the signing happened at OpenBao
    await keyring.aclose()
