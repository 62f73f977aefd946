"""tokend_client (TokenClient, AsyncTokenClient, key sources) against a live tokend.

The sync and async flows use the shared mutual-TLS interop server. The key-rotation
test and the README examples run on this module's own tokend (mutual TLS, a policy
that allows any audience) with its own Transit key ("pyclient") re-read every 0.2 s,
so rotating that key does not disturb the other languages' tests.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bao import BaoDevServer
from tests.support.tokend import ISSUER, mtls_tokend
from tokend_client import (
    AsyncTokenClient,
    InvalidArgumentError,
    IssuedToken,
    JwksUrlSource,
    LocalVerifier,
    PermissionDeniedError,
    Reason,
    ServerKeySource,
    TokenClient,
    UnauthenticatedError,
)
from tokend_client.jose import b64url_decode

CLIENT_ID = "spiffe://tokend.test/interop"
README = Path(__file__).resolve().parents[2] / "clients" / "python" / "README.md"
OWN_POLICY = """
callers:
  - identity: "spiffe://tokend.test/pyclient"
    rpcs: [Issue, Refresh, Revoke]
    issue:
      audiences: ["*"]
      scopes: ["*"]
      claims: ["*"]
"""


def mtls_arguments(env: dict[str, str]) -> tuple[str, str, str, str]:
    return (env["TOKEND_ADDR"], env["TOKEND_CA_FILE"], env["TOKEND_CLIENT_CERT"],
            env["TOKEND_CLIENT_KEY"])


def kid_of(token: str) -> str:
    return json.loads(b64url_decode(token.split(".")[0]))["kid"]


def test_sync_client_full_flow(interop_env: dict[str, str]) -> None:
    audience = interop_env["TOKEND_AUDIENCE"]
    with TokenClient.mtls(*mtls_arguments(interop_env)) as client, \
            ServerKeySource(client) as keys:
        verifier = LocalVerifier(keys, issuer=interop_env["TOKEND_ISSUER"], audience=audience)
        issued = client.issue("py-sync", audience, scopes=["orders:read", "orders:write"],
                              claims={"tenant": "acme"}, ttl=300, refresh=True)
        assert issued.refresh_token and issued.refresh_expires_at
        assert issued.refresh_expires_at > issued.expires_at

        claims = verifier.verify(issued.access_token, required_scopes=["orders:read"])
        assert (claims["sub"], claims["jti"], claims["tenant"]) == ("py-sync", issued.jti, "acme")
        assert claims["client_id"] == CLIENT_ID
        assert claims["exp"] == int(issued.expires_at.timestamp())
        assert claims["exp"] - claims["iat"] == 300

        result = client.verify(issued.access_token, audience, required_scopes="orders:write")
        assert result.valid and result.reason is None
        assert result.claims == claims  # the server's view equals the local one
        assert (result.subject, result.expires_at) == ("py-sync", issued.expires_at)

        refreshed = client.refresh(issued.refresh_token, scopes=["orders:read"])
        assert refreshed.refresh_token not in (None, issued.refresh_token)
        assert verifier.verify(refreshed.access_token)["scope"] == "orders:read"

        assert client.revoke(token=refreshed.access_token, reason="interop test") >= 1
        revoked = client.verify(refreshed.access_token, audience)
        assert (revoked.valid, revoked.reason) == (False, Reason.REVOKED)
        # Local verification has no revocation list: only the server knows.
        assert verifier.verify(refreshed.access_token)["jti"] == refreshed.jti
        assert keys.fetch_count == 1  # no fetch per token


def test_sync_client_errors(interop_env: dict[str, str]) -> None:
    audience = interop_env["TOKEND_AUDIENCE"]
    with TokenClient.mtls(*mtls_arguments(interop_env)) as client:
        with pytest.raises(InvalidArgumentError, match="audience") as info:
            client.issue("py-sync", "not an audience!")
        assert "unknown format" in info.value.message
        # The interop policy lets this caller issue for "interop-*" audiences only.
        with pytest.raises(PermissionDeniedError, match="not-interop"):
            client.issue("py-sync", "not-interop")

        issued = client.issue("py-reuse", audience, refresh=True)
        assert issued.refresh_token
        second = client.refresh(issued.refresh_token)
        with pytest.raises(UnauthenticatedError):
            client.refresh(issued.refresh_token)  # reuse: the family is revoked
        assert client.verify(second.access_token, audience).reason is Reason.REVOKED

        result = client.verify(issued.access_token, "someone-else")
        assert (result.valid, result.reason) == (False, Reason.WRONG_AUDIENCE)


async def test_async_client_full_flow(interop_env: dict[str, str]) -> None:
    audience = interop_env["TOKEND_AUDIENCE"]
    async with AsyncTokenClient.mtls(*mtls_arguments(interop_env)) as client:
        with JwksUrlSource(interop_env["TOKEND_JWKS_URL"]) as keys:
            verifier = LocalVerifier(keys, issuer=interop_env["TOKEND_ISSUER"],
                                     audience=audience)
            issued = await client.issue("py-async", [audience, "interop-other"],
                                        scopes="orders:read", refresh=True)
            assert isinstance(issued, IssuedToken) and issued.refresh_token
            assert verifier.verify(issued.access_token)["aud"] == [audience, "interop-other"]
            assert verifier.jwks.get(kid_of(issued.access_token)) is not None
            assert (await client.get_jwks()).get(kid_of(issued.access_token)) is not None

            result = await client.verify(issued.access_token, audience,
                                         required_scopes=["orders:read"])
            assert result.valid and result.claims["client_id"] == CLIENT_ID

            refreshed = await client.refresh(issued.refresh_token)
            assert verifier.verify(refreshed.access_token)["sub"] == "py-async"

            assert await client.revoke(subject="py-async", reason="interop test") >= 1
            for token in (issued.access_token, refreshed.access_token):
                revoked = await client.verify(token, audience)
                assert (revoked.valid, revoked.reason) == (False, Reason.REVOKED)
            with pytest.raises(UnauthenticatedError):
                await client.refresh(refreshed.refresh_token or "")


@pytest.fixture(scope="module")
def own_tokend(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[dict[str, str]]:
    """A tokend for this module alone; yields TOKEND_* variables like the interop fixture."""
    directory: Path = tmp_path_factory.mktemp("pyclient")
    with mtls_tokend(bao.addr, bao.token, directory, identity="spiffe://tokend.test/pyclient",
                     policy=OWN_POLICY,
                     jwks_max_age=0,  # no verifier caches: no propagation wait
                     vault={"key_name": "pyclient", "key_refresh_interval": 0.2,
                            "propagation_delay": 0.2}) as (_, env):
        yield env


def issue_with_new_kid(client: TokenClient, old_kid: str, timeout: float = 15) -> IssuedToken:
    """Issue until tokend signs with a key other than ``old_kid`` (it re-reads keys at 0.2 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        issued = client.issue("py-rotation", "rotation-api")
        if kid_of(issued.access_token) != old_kid:
            return issued
        time.sleep(0.1)
    raise AssertionError("tokend never signed with the rotated key")


def test_unknown_kid_after_rotation_triggers_one_refetch(own_tokend: dict[str, str],
                                                         bao: BaoDevServer) -> None:
    fetches: list[float] = []
    with TokenClient.mtls(*mtls_arguments(own_tokend)) as client:

        def fetch() -> object:
            fetches.append(time.monotonic())
            return client.get_jwks()

        # No periodic refresh: only the unknown kid can make the source fetch again.
        # min_refetch_interval=0 so the test need not wait; the limit has unit tests.
        with ServerKeySource(fetch, refresh_interval=None, min_refetch_interval=0) as keys:
            verifier = LocalVerifier(keys, issuer=ISSUER, audience="rotation-api")
            before = client.issue("py-rotation", "rotation-api")
            verifier.verify(before.access_token)
            assert len(fetches) == 1

            bao.client().secrets.transit.rotate_key("pyclient")
            after = issue_with_new_kid(client, kid_of(before.access_token))
            assert keys.keys().get(kid_of(after.access_token)) is None

            assert verifier.verify(after.access_token)["jti"] == after.jti
            assert len(fetches) == 2
            verifier.verify(before.access_token)  # the old version is still published
            verifier.verify(after.access_token)
            assert len(fetches) == 2


def readme_examples() -> list[tuple[int, str]]:
    """The README's ```python blocks, with the line each starts on (```py blocks are
    fragments that need a running service around them: tests/api/test_binding.py
    runs what they show)."""
    text = README.read_text()
    return [(text.count("\n", 0, match.start()) + 2, match.group(1))
            for match in re.finditer(r"^```python\n(.*?)^```$", text, re.M | re.S)]


@pytest.mark.parametrize(("line", "code"), readme_examples(),
                         ids=lambda value: f"line{value}" if isinstance(value, int) else "")
def test_readme_example_runs(own_tokend: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str], line: int, code: str) -> None:
    for name, value in own_tokend.items():
        monkeypatch.setenv(name, value)
    exec(compile(code, f"{README}:{line}", "exec"), {"__name__": "__readme__"})  # noqa: S102
    assert capsys.readouterr().out  # every example shows something


def test_readme_has_every_example() -> None:
    assert len(readme_examples()) == 6
