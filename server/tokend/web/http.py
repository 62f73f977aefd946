"""HTTP side: JWKS, discovery, health and metrics, served from in-memory state."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from tokend import metrics
from tokend.keys.publisher import JwksPublisher

ReadyCheck = Callable[[], Awaitable[tuple[bool, dict[str, bool]]]]
# The publisher exists once keys are loaded; before that JWKS answers 503.
PublisherRef = Callable[[], JwksPublisher | None]

JWKS_PATH = "/.well-known/jwks.json"
OPENID_PATH = "/.well-known/openid-configuration"
OAUTH_PATH = "/.well-known/oauth-authorization-server"


def metadata(issuer: str, algorithms: tuple[str, ...]) -> dict[str, object]:
    """Issuer metadata of a JWKS-only issuer: the same members at both well-known paths.

    tokend issues RFC 9068 access tokens over gRPC; it has no authorization or token
    endpoint and issues no ID tokens, so it claims none (docs/mesh.md, "Discovery").
    """
    return {
        "issuer": issuer,
        "jwks_uri": issuer.rstrip("/") + JWKS_PATH,
        # OIDC Discovery §3 / RFC 8414 §2: REQUIRED; no authorization endpoint, no types.
        "response_types_supported": [],
        # RFC 8414 §2: omitted means authorization_code + implicit; tokend has neither.
        "grant_types_supported": [],
        "subject_types_supported": ["public"],  # OIDC Discovery §3: REQUIRED
        # OIDC Discovery §3: REQUIRED. No ID tokens are issued, so no algorithm is
        # offered for them: a library that reads this list must not take an access
        # token for an ID token (RFC 8725 §3.11).
        "id_token_signing_alg_values_supported": [],
        "access_token_signing_alg_values_supported": list(algorithms),
    }


def _etag(body: str) -> str:
    """A strong validator for `body` (RFC 9110 §8.8.3): the same key set, the same tag,
    in every replica, so a verifier's If-None-Match works across the load balancer."""
    return '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'


def _cached(request: web.Request, body: str, content_type: str, max_age: int) -> web.Response:
    """200 with ETag and Cache-Control, or 304 when If-None-Match names this ETag."""
    etag = _etag(body)
    headers = {"Cache-Control": f"public, max-age={max_age}", "ETag": etag}
    if _matches(request, etag):
        # RFC 9110 §15.4.5: a 304 repeats the ETag and Cache-Control a 200 would send.
        return web.Response(status=304, headers=headers)
    return web.Response(text=body, content_type=content_type, headers=headers)


def _matches(request: web.Request, etag: str) -> bool:
    """RFC 9110 §13.1.2: If-None-Match compares weakly, and a bare `*` matches any.

    aiohttp stops reading the list at the first malformed entry; what it did read counts.
    """
    if request.headers.get(hdrs.IF_NONE_MATCH, "").strip() == "*":
        return True
    opaque = etag.strip('"')
    return any(tag.value == opaque for tag in request.if_none_match or ())


def build_http_app(*, issuer: str, publisher: PublisherRef, ready: ReadyCheck,
                   jwks_max_age: int, with_metrics: bool = True) -> web.Application:
    """JWKS, discovery and health; /metrics too unless it has a listener of its own
    (`http.metrics_listen`), so that this one can face the public."""
    # Small requests only: nothing here takes a body.
    app = web.Application(client_max_size=1024)

    def keys() -> JwksPublisher:
        current = publisher()
        if current is None:
            raise web.HTTPServiceUnavailable(text="keys are not loaded yet",
                                             headers={"Retry-After": "1"})
        return current

    async def jwks(request: web.Request) -> web.Response:
        # RFC 7517 §8.5: application/jwk-set+json; caching bounds how long a
        # verifier may miss a new key, which key rotation has to wait out.
        return _cached(request, keys().json, "application/jwk-set+json", jwks_max_age)

    async def discovery(request: web.Request) -> web.Response:
        # Same lifetime as the JWKS: the algorithms listed here follow the published keys.
        body = json.dumps(metadata(issuer, keys().algorithms), separators=(",", ":"))
        return _cached(request, body, "application/json", jwks_max_age)

    async def healthz(_: web.Request) -> web.Response:
        # Liveness only: the event loop answers. Readiness is /readyz.
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ok, checks = await ready()
        return web.Response(text=json.dumps({"ready": ok, "checks": checks}),
                            status=200 if ok else 503, content_type="application/json")

    app.router.add_get(JWKS_PATH, jwks)
    app.router.add_get(OPENID_PATH, discovery)
    app.router.add_get(OAUTH_PATH, discovery)  # RFC 8414 §3
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if with_metrics:
        app.router.add_get("/metrics", _metrics)
    return app


def build_metrics_app() -> web.Application:
    """/metrics alone, for the internal listener `http.metrics_listen`."""
    app = web.Application(client_max_size=1024)
    app.router.add_get("/metrics", _metrics)
    return app


async def _metrics(_: web.Request) -> web.Response:
    body, content_type = metrics.exposition()  # with workers: all of them, not this one
    return web.Response(body=body, headers={"Content-Type": content_type})
