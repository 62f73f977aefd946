"""In-process verification rates: LocalVerifier and peer libraries against raw `cryptography`.

    python -m bench.crypto --seconds 4 > result.json

Single thread, in its own process. For each algorithm (ES256, RS256, EdDSA) the same
pool of distinct tokens (shaped like tokend's: typ at+jwt, kid, RFC 9068 claims) is
verified by:

- raw: `cryptography`'s verify of the signature alone (DER already built for ECDSA,
  padding and hash objects built once): the floor nothing in Python can beat;
- tokend_client.LocalVerifier: every strict check on (typ, issuer, audience, lifetime,
  algorithm bound to the key, canonical base64url, strict JSON);
- jwcrypto, PyJWT and joserfc, each with its key object built once and its own claim
  checks for exp, iss and aud.

Rates are per CPU-second of the measuring thread. The implementations take turns in
short rounds and each reports its median round, so a burst of noise on this shared
machine lands on all of them alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tokend_client import LocalVerifier
from tokend_client.jose import b64url_encode, public_jwk

ISSUER = "https://tokend.bench"
AUDIENCE = "bench-api"
ALGORITHMS = ("ES256", "RS256", "EdDSA")
POOL = 256  # distinct tokens per algorithm, cycled


@dataclass
class Signed:
    """One token and the pieces a raw verify needs."""

    token: str
    signing_input: bytes
    signature: bytes  # as the raw verify wants it (DER for ECDSA)


class Signer:
    """A private key for one JWS algorithm, with its public JWK."""

    def __init__(self, alg: str) -> None:
        self.alg = alg
        if alg == "ES256":
            self.key: Any = ec.generate_private_key(ec.SECP256R1())
        elif alg == "RS256":
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.key = ed25519.Ed25519PrivateKey.generate()
        self.public = self.key.public_key()
        self.jwk = public_jwk(self.public, kid=f"bench-{alg.lower()}-v1", alg=alg)

    def token(self, index: int, now: int) -> Signed:
        header = {"alg": self.alg, "kid": self.jwk["kid"], "typ": "at+jwt"}
        claims = {"iss": ISSUER, "sub": f"user-{index}", "aud": AUDIENCE, "exp": now + 900,
                  "iat": now, "nbf": now, "jti": f"jti-{index:08d}-bench",
                  "client_id": "bench", "scope": "orders:read"}
        signing_input = ".".join(b64url_encode(json.dumps(part, separators=(",", ":"))
                                               .encode()) for part in (header, claims)).encode()
        raw, jws = self._sign(signing_input)
        return Signed(f"{signing_input.decode()}.{b64url_encode(jws)}", signing_input, raw)

    def _sign(self, data: bytes) -> tuple[bytes, bytes]:
        """(signature as the raw verify takes it, signature as JWS carries it)."""
        if self.alg == "ES256":
            der = self.key.sign(data, ec.ECDSA(hashes.SHA256()))
            r, s = decode_dss_signature(der)
            return der, r.to_bytes(32, "big") + s.to_bytes(32, "big")
        if self.alg == "RS256":
            signature = self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
            return signature, signature
        signature = self.key.sign(data)
        return signature, signature


def raw_verifier(signer: Signer) -> Callable[[Signed], None]:
    public = signer.public
    if signer.alg == "ES256":
        ecdsa = ec.ECDSA(hashes.SHA256())
        return lambda t: public.verify(t.signature, t.signing_input, ecdsa)
    if signer.alg == "RS256":
        pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
        return lambda t: public.verify(t.signature, t.signing_input, pkcs1, sha256)
    return lambda t: public.verify(t.signature, t.signing_input)


def local_verifier(signer: Signer) -> Callable[[Signed], Any]:
    verifier = LocalVerifier({"keys": [signer.jwk]}, issuer=ISSUER, audience=AUDIENCE,
                             max_lifetime=3600)
    return lambda t: verifier.verify(t.token)


def pyjwt_verifier(signer: Signer) -> Callable[[Signed], Any]:
    import jwt

    key = jwt.PyJWK(dict(signer.jwk)).key
    options = {"require": ["exp", "iat", "iss", "aud", "sub", "jti"]}
    return lambda t: jwt.decode(t.token, key, algorithms=[signer.alg], audience=AUDIENCE,
                                issuer=ISSUER, options=options)


def jwcrypto_verifier(signer: Signer) -> Callable[[Signed], Any]:
    from jwcrypto import jwk, jwt

    key = jwk.JWK(**signer.jwk)
    checks = {"iss": ISSUER, "aud": AUDIENCE, "exp": None}
    return lambda t: jwt.JWT(jwt=t.token, key=key, algs=[signer.alg], check_claims=checks,
                             expected_type="JWS")


def joserfc_verifier(signer: Signer) -> Callable[[Signed], Any]:
    from joserfc import jwt
    from joserfc.jwk import JWKRegistry

    key = JWKRegistry.import_key(dict(signer.jwk))
    registry = jwt.JWTClaimsRegistry(iss={"essential": True, "value": ISSUER},
                                     aud={"essential": True, "value": AUDIENCE},
                                     exp={"essential": True})

    def verify(t: Signed) -> None:
        registry.validate(jwt.decode(t.token, key, algorithms=[signer.alg]).claims)
    return verify


IMPLEMENTATIONS: dict[str, Callable[[Signer], Callable[[Signed], Any]]] = {
    "raw": raw_verifier,
    "LocalVerifier": local_verifier,
    "jwcrypto": jwcrypto_verifier,
    "PyJWT": pyjwt_verifier,
    "joserfc": joserfc_verifier,
}


def _round(verify: Callable[[Signed], Any], tokens: list[Signed], seconds: float) -> float:
    """Operations per CPU-second of this thread over one round (at least one pass).

    CPU time, not wall time: while another process has the core, this thread's clock
    stops too, so a busy neighbour does not count as slowness of the code measured.
    """
    count = 0
    deadline = time.perf_counter() + seconds
    started = time.thread_time()
    while True:
        for token in tokens:
            verify(token)
        count += len(tokens)
        if time.perf_counter() >= deadline:
            return count / max(time.thread_time() - started, 1e-9)


def pool(signer: Signer, now: int, count: int = POOL) -> list[Signed]:
    """Distinct `iat` (and `jti`, `sub`) per token, so no cache of verified tokens (or of
    parsed claims) can flatter an implementation."""
    return [signer.token(i, now - i) for i in range(count)]


def measure(alg: str, seconds: float, rounds: int,
            impls: tuple[str, ...] = tuple(IMPLEMENTATIONS)) -> dict[str, Any]:
    signer = Signer(alg)
    tokens = pool(signer, int(time.time()))
    verifiers = {name: IMPLEMENTATIONS[name](signer) for name in impls}
    for verify in verifiers.values():  # every implementation accepts every token
        verify(tokens[0])
    samples: dict[str, list[float]] = {name: [] for name in verifiers}
    per_round = seconds / rounds / len(verifiers)
    for index in range(rounds):
        # Rotate who goes first so no implementation always follows the same one.
        names = list(verifiers)[index % len(verifiers):] + list(verifiers)[:index % len(verifiers)]
        for name in names:
            samples[name].append(_round(verifiers[name], tokens, per_round))
    rates = {name: statistics.median(values) for name, values in samples.items()}
    return {"alg": alg, "ops_per_s": {k: round(v) for k, v in rates.items()},
            "ratio_to_raw": {k: round(v / rates["raw"], 3) for k, v in rates.items()},
            "rounds": rounds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.crypto", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="per algorithm")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--algs", default=",".join(ALGORITHMS), help="e.g. ES256,EdDSA")
    parser.add_argument("--impls", default=",".join(IMPLEMENTATIONS),
                        help="which of " + ", ".join(IMPLEMENTATIONS) + " (raw is always in)")
    args = parser.parse_args(argv)
    impls = tuple(dict.fromkeys(["raw", *args.impls.split(",")]))
    unknown = set(impls) - set(IMPLEMENTATIONS) or set(args.algs.split(",")) - set(ALGORITHMS)
    if unknown:
        parser.error(f"unknown: {sorted(unknown)}")
    results = [measure(alg, args.seconds, args.rounds, impls) for alg in args.algs.split(",")]
    print(json.dumps({"crypto": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
