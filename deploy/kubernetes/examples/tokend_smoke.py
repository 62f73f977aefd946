"""Smoke test of a deployed tokend, run as a caller with its client certificate.

The example Job (examples/smoke-job.yaml) runs it inside the tokend image, from the
caller's namespace; tests/deploy runs the same file against a local tokend with mutual
TLS. It issues a token, has tokend verify it, reads the key set both over gRPC
(GetJwks) and over HTTP (/.well-known/jwks.json), checks that they agree and verifies
the token locally with the keys from the authenticated channel. Tokens are never
printed: only their jti and kid.

Environment:
  TOKEND_ADDR          host:port of the gRPC endpoint (TLS, client certificate)
  TOKEND_CA_FILE       CA that signed tokend's certificate
  TOKEND_CLIENT_CERT   this caller's certificate (PEM), its identity for tokend's policy
  TOKEND_CLIENT_KEY    its private key (PEM)
  TOKEND_AUDIENCE      an audience the policy lets this caller issue for
  TOKEND_JWKS_URL      the HTTP JWKS URL
  TOKEND_ISSUER        optional: the issuer to expect (default: the discovery
                       document's, next to the JWKS URL)

Exit status 0 when every step passed, 1 otherwise (the failed step is printed).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from tokend_client import JwkSet, LocalVerifier, TokenClient

SUBJECT = "tokend-smoke-test"
JWKS_PATH = "/.well-known/jwks.json"
DISCOVERY_PATH = "/.well-known/openid-configuration"
HTTP_TIMEOUT = 5.0


class SmokeFailure(Exception):
    """One step did not give the expected answer."""


def main() -> int:
    """Run every step; print one line per step and return the exit status."""
    try:
        env = _environment()
        with TokenClient.mtls(env["TOKEND_ADDR"], env["TOKEND_CA_FILE"],
                              env["TOKEND_CLIENT_CERT"], env["TOKEND_CLIENT_KEY"],
                              timeout=10) as client:
            run_checks(client, env, report=print)
    except Exception as exc:  # any failure ends the smoke test the same way
        print(f"FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("tokend smoke test passed")
    return 0


def run_checks(client: TokenClient, env: dict[str, str],
               report: Callable[[str], None]) -> None:
    """Issue, verify remotely, compare both key sets, verify locally; raise SmokeFailure."""
    audience = env["TOKEND_AUDIENCE"]
    issued = client.issue(SUBJECT, audience)
    report(f"issue: ok (jti {issued.jti}, expires {issued.expires_at.isoformat()})")

    verdict = client.verify(issued.access_token, audience)
    if not verdict.valid or verdict.subject != SUBJECT:
        raise SmokeFailure(f"Verify refused the fresh token: {verdict.reason}")
    report("verify (rpc): ok")

    grpc_keys = client.get_jwks()
    http_keys = JwkSet.from_json(_http_get(env["TOKEND_JWKS_URL"]))
    if _kids(grpc_keys) != _kids(http_keys):
        raise SmokeFailure(f"GetJwks has {_kids(grpc_keys)}, HTTP JWKS has {_kids(http_keys)}")
    report(f"jwks: ok (kids {sorted(_kids(grpc_keys))} over gRPC and HTTP)")

    issuer = env.get("TOKEND_ISSUER") or _discovered_issuer(env["TOKEND_JWKS_URL"])
    # The keys that verify come from the mutually authenticated channel, not plain HTTP.
    claims = LocalVerifier(grpc_keys, issuer=issuer, audience=audience).verify(
        issued.access_token)
    report(f"verify (local): ok (iss {claims['iss']}, client_id {claims.get('client_id')})")


def _environment() -> dict[str, str]:
    required = ("TOKEND_ADDR", "TOKEND_CA_FILE", "TOKEND_CLIENT_CERT", "TOKEND_CLIENT_KEY",
                "TOKEND_AUDIENCE", "TOKEND_JWKS_URL")
    missing = [name for name in required if not os.environ.get(name)]
    if missing:
        raise SmokeFailure(f"set {', '.join(missing)}")
    return dict(os.environ)


def _kids(keys: JwkSet) -> set[str | None]:
    return {key.kid for key in keys}


def _discovered_issuer(jwks_url: str) -> str:
    if not jwks_url.endswith(JWKS_PATH):
        raise SmokeFailure(f"set TOKEND_ISSUER: {jwks_url} does not end with {JWKS_PATH}")
    document = json.loads(_http_get(jwks_url[: -len(JWKS_PATH)] + DISCOVERY_PATH))
    return str(document["issuer"])


def _http_get(url: str) -> bytes:
    # Only http(s): urlopen would also open file: and other schemes.
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise SmokeFailure(f"{url} is not an http(s) URL")
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
        body: Any = response.read(1 << 20)
    return bytes(body)


if __name__ == "__main__":
    sys.exit(main())
