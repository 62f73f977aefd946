"""A stand-in for ONE Kubernetes API: TokenReview, over HTTPS on 127.0.0.1.

OpenBao's kubernetes auth method parses the service-account JWT a client presents (for
its name and namespace), then asks the cluster's TokenReview API whether that JWT is
genuine. This server answers that question for one known service account and nothing
else, so tests exercise the real login path without a cluster:

- POST /apis/authentication.k8s.io/v1/tokenreviews with a bearer token it knows
  (the reviewer's JWT, or the service account's own when Vault has no reviewer JWT)
  → 201 with `status.authenticated` true for the known JWT, false for any other, and
  false when the JWT was not issued for the audiences the review asks about
  (`spec.audiences`; without them, the API server's own), as the API server does.
- Anything else → 404; a missing or unknown bearer → 401, as the API server would.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tests.support.pki import TestCA
from tokend_client.jose import b64url_encode

REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
_ISSUER = "https://kubernetes.default.svc.cluster.local"


class TokenReviewServer:
    """`with TokenReviewServer(dir) as k8s:` gives `k8s.url`, `k8s.ca_pem`, `k8s.jwt`.

    `jwt` is the service account's token (what a pod finds in its token file);
    `reviewer_jwt` is the token Vault may be given to call TokenReview with.
    `reviews` counts the answers given, by outcome, for assertions.
    """

    def __init__(self, directory: Path, *, namespace: str = "tokend",
                 service_account: str = "tokend", audience: str = "vault") -> None:
        """The known JWT is a projected token for `audience`, as a pod gets for Vault."""
        self.namespace = namespace
        self.service_account = service_account
        self.audience = audience
        self.uid = str(uuid.uuid4())
        self._ca = TestCA(directory / "k8s-pki", name="kubernetes test CA")
        self._tls = self._ca.server("kube-apiserver", dns=("localhost",), ips=("127.0.0.1",))
        # The cluster's service-account signing key; JWTs must parse as real ones do.
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.jwt = self.make_jwt(namespace, service_account, self.uid, audience=audience)
        self.reviewer_jwt = self.make_jwt("kube-system", "vault-reviewer", str(uuid.uuid4()))
        self.reviews = {"authenticated": 0, "rejected": 0}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def ca_pem(self) -> str:
        """The CA certificate (PEM) Vault must trust to call this server."""
        return self._ca.cert_file.read_text()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("TokenReviewServer is not running")
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def make_jwt(self, namespace: str, name: str, uid: str, *, audience: str = _ISSUER) -> str:
        """A projected service-account token (ES256) as the API server issues them."""
        now = int(time.time())
        claims = {
            "aud": [audience], "iss": _ISSUER, "iat": now, "nbf": now, "exp": now + 3600,
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "kubernetes.io": {"namespace": namespace,
                              "serviceaccount": {"name": name, "uid": uid}},
        }
        header = {"alg": "ES256", "kid": "test-cluster", "typ": "JWT"}
        signing_input = ".".join(b64url_encode(json.dumps(part).encode())
                                 for part in (header, claims))
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(),
                                                   ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def review(self, bearer: str | None, token: str,
               audiences: list[str]) -> tuple[int, dict[str, Any]]:
        """The (HTTP status, body) the API server would answer for one review."""
        if bearer not in (self.reviewer_jwt, self.jwt):
            return 401, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                         "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
        status: dict[str, Any]
        if token == self.jwt and self.audience in (audiences or [_ISSUER]):
            self.reviews["authenticated"] += 1
            status = {"authenticated": True, "audiences": [self.audience], "user": {
                "username": f"system:serviceaccount:{self.namespace}:{self.service_account}",
                "uid": self.uid,
                "groups": ["system:serviceaccounts",
                           f"system:serviceaccounts:{self.namespace}",
                           "system:authenticated"],
            }}
        else:
            self.reviews["rejected"] += 1
            status = {"authenticated": False, "user": {}, "error": "invalid bearer token"}
        return 201, {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                     "metadata": {"creationTimestamp": None}, "spec": {"token": ""},
                     "status": status}

    def start(self) -> TokenReviewServer:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self._tls.cert_file, self._tls.key_file)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> TokenReviewServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _handler(api: TokenReviewServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != REVIEW_PATH:
                self._answer(404, {"kind": "Status", "status": "Failure", "code": 404})
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                spec = json.loads(self.rfile.read(length))["spec"]
                token, audiences = spec["token"], list(spec.get("audiences") or [])
            except (ValueError, KeyError, TypeError):
                self._answer(400, {"kind": "Status", "status": "Failure", "code": 400})
                return
            auth = self.headers.get("Authorization", "")
            bearer = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
            self._answer(*api.review(bearer, token, audiences))

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tokens travel in these requests

    return Handler
