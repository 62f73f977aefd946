"""HTTP side: JWKS, discovery, health and metrics, served from in-memory state."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from tokend import metrics
from tokend.keys.publisher import JwksPublisher

ReadyCheck = Callable[[], Awaitable[tuple[bool, dict[str, bool]]]]
# The publisher exists once keys are loaded; before that JWKS answers 503.
PublisherRef = Callable[[], JwksPublisher | None]

JWKS_PATH = "/.well-known/jwks.json"


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

    async def jwks(_: web.Request) -> web.Response:
        # RFC 7517 §8.5: application/jwk-set+json; caching bounds how long a
        # verifier may miss a new key, which key rotation has to wait out.
        return web.Response(text=keys().json, content_type="application/jwk-set+json",
                            headers={"Cache-Control": f"public, max-age={jwks_max_age}"})

    async def discovery(_: web.Request) -> web.Response:
        document = {
            "issuer": issuer,
            "jwks_uri": issuer.rstrip("/") + JWKS_PATH,
            "id_token_signing_alg_values_supported": list(keys().algorithms),
            "access_token_signing_alg_values_supported": list(keys().algorithms),
            "subject_types_supported": ["public"],
        }
        return web.json_response(document, headers={"Cache-Control": "public, max-age=300"})

    async def healthz(_: web.Request) -> web.Response:
        # Liveness only: the event loop answers. Readiness is /readyz.
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ok, checks = await ready()
        return web.Response(text=json.dumps({"ready": ok, "checks": checks}),
                            status=200 if ok else 503, content_type="application/json")

    app.router.add_get(JWKS_PATH, jwks)
    app.router.add_get("/.well-known/openid-configuration", discovery)
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
