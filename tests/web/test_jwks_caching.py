"""JWKS and discovery caching as a mesh sees it: ETag, 304, max-age, and a rotation that
publishes the new key long before it signs (docs/mesh.md, docs/keys.md)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.api.test_issue_verify import issue, segments
from tests.support.bao import BaoDevServer
from tests.support.tokend import ISSUER, RunningTokend, make_settings
from tokend_client import LocalVerifier

JWKS = "/.well-known/jwks.json"
OPENID = "/.well-known/openid-configuration"
OAUTH = "/.well-known/oauth-authorization-server"


def get(server: RunningTokend, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(server.http_url + path, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:  # urllib raises for 304 too
        return error.code, dict(error.headers), error.read()


def test_etag_is_stable_and_if_none_match_answers_304(tokend: RunningTokend) -> None:
    for path in (JWKS, OPENID, OAUTH):
        status, headers, body = get(tokend, path)
        etag = headers["ETag"]
        assert status == 200 and body and etag.startswith('"') and etag.endswith('"')
        assert headers["Cache-Control"] == "public, max-age=300"  # jwks_max_age, both
        assert get(tokend, path)[1]["ETag"] == etag  # same key set, same validator
        for validator in (etag, "W/" + etag, f'"other", {etag}', "*"):
            status, again, body = get(tokend, path, **{"If-None-Match": validator})
            assert (status, body) == (304, b""), validator
            # RFC 9110 §15.4.5: the 304 carries what the 200 would have.
            assert again["ETag"] == etag and again["Cache-Control"] == "public, max-age=300"
        for validator in ('"other"', "W/\"other\"", etag.strip('"'), "garbage"):
            status, _, body = get(tokend, path, **{"If-None-Match": validator})
            assert status == 200 and body, validator


def test_discovery_is_jwks_only_issuer_metadata(tokend: RunningTokend) -> None:
    """Every member OpenID Connect Discovery 1.0 §3 and RFC 8414 §2 mark REQUIRED that a
    JWKS-only issuer can state truthfully, with the right JSON types; nothing claimed
    that tokend does not do (docs/mesh.md, "Discovery")."""
    _, _, openid = get(tokend, OPENID)
    _, _, oauth = get(tokend, OAUTH)
    document = json.loads(openid)
    assert json.loads(oauth) == document
    assert document["issuer"] == ISSUER and document["jwks_uri"] == ISSUER + JWKS
    for member in ("response_types_supported", "subject_types_supported",
                   "id_token_signing_alg_values_supported", "grant_types_supported"):
        assert isinstance(document[member], list), member
    assert document["subject_types_supported"] == ["public"]
    # No ID tokens, no authorization or token endpoint: nothing offered for them.
    assert document["id_token_signing_alg_values_supported"] == []
    assert document["response_types_supported"] == [] == document["grant_types_supported"]
    assert "authorization_endpoint" not in document and "token_endpoint" not in document
    assert document["access_token_signing_alg_values_supported"] == ["ES256"]


def wait_for_second_key(server: RunningTokend) -> tuple[dict[str, str], bytes]:
    deadline = time.monotonic() + 15
    while True:
        _, headers, body = get(server, JWKS)
        if len(json.loads(body)["keys"]) == 2:
            return headers, body
        assert time.monotonic() < deadline, "the new key version was not published in 15 s"
        time.sleep(0.2)


def test_rotation_changes_the_etag_and_a_stale_mesh_jwks_still_verifies(
        bao: BaoDevServer, tmp_path: Path) -> None:
    """With the default settings a sidecar whose istiod fetched the JWKS just before a
    rotation keeps accepting every token issued after it: the new key only signs once
    istiod's 20-minute refresh has surely picked it up."""
    settings = make_settings(bao.addr, bao.token, tmp_path, jwks_consumer_refresh="20m",
                             vault={"key_name": "mesh-rotation", "key_refresh_interval": 0.2})
    with RunningTokend(settings) as server:
        _, before_headers, stale_jwks = get(server, JWKS)  # what istiod pushed to sidecars
        old_etag = before_headers["ETag"]
        old_kid = segments(issue(server).access_token)[0]["kid"]
        bao.client().secrets.transit.rotate_key("mesh-rotation")
        headers, body = wait_for_second_key(server)
        assert headers["ETag"] != old_etag
        new_kids = {k["kid"] for k in json.loads(body)["keys"]} - {old_kid}
        assert len(new_kids) == 1  # published (phase next), so a fresh fetch has it
        assert get(server, JWKS, **{"If-None-Match": old_etag})[0] == 200
        assert get(server, JWKS, **{"If-None-Match": headers["ETag"]})[0] == 304
        sidecar = LocalVerifier(stale_jwks.decode(), issuer=ISSUER, audience="orders")
        for _ in range(3):
            token = issue(server).access_token
            assert segments(token)[0]["kid"] == old_kid  # the new key waits to sign
            assert sidecar.verify(token)["aud"] == "orders"
