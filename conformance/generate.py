#!/usr/bin/env python3
"""Make the language-neutral verifier conformance vectors (conformance/vectors/*.json).

Hand-written RSASSA-PSS signing (RFC 8017 §9.1.1 with a salt derived from the message)
because `cryptography` always draws a random salt, and the vectors must be reproduced
byte for byte by ``--check``. Everything else uses `cryptography`: fixed test keys from
conformance/keys/ (TEST ONLY), RFC 6979 deterministic ECDSA, Ed25519 and PKCS#1 v1.5
are deterministic by nature.

Every case states the reason it expects; before anything is written the reference
verifier (Python ``tokend_client.LocalVerifier``) must give exactly that result.

    .venv/bin/python conformance/generate.py            # (re)write vectors/ and vectors-next/
    .venv/bin/python conformance/generate.py --check    # compare with the committed files
    .venv/bin/python conformance/generate.py --new-keys # make missing keys (never needed in CI)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

HERE = Path(__file__).resolve().parent
# The reference is this checkout's Python client, whatever else is installed.
CLIENT_DIR = HERE.parent / "clients" / "python"
if str(CLIENT_DIR) not in sys.path:
    sys.path.insert(0, str(CLIENT_DIR))
KEY_DIR = HERE / "keys"
VECTOR_DIR = HERE / "vectors"
# Cases only the Python runner reads yet (conformance/README.md "vectors-next"): rules
# the Go, Node and Java verifiers do not enforce yet (docs/verifier-contract.md §9, A).
NEXT_VECTOR_DIR = HERE / "vectors-next"
# Options only vectors-next cases of act.json carry (a runner of vectors/ knows none).
NEXT_OPTIONS: dict[str, Any] = {"delegation": "any"}

ISSUER = "https://tokend.test"
AUDIENCE = "orders"
NOW = 1767225600  # 2026-01-01T00:00:00Z: every case's clock unless it says otherwise
ALGORITHMS = ["ES256", "RS256", "PS256", "EdDSA"]
REQUIRED_CLAIMS = ["exp", "iat", "iss", "sub", "aud", "jti"]
DEFAULT_OPTIONS: dict[str, Any] = {
    "issuer": ISSUER,
    "audience": [AUDIENCE],
    "algorithms": ALGORITHMS,
    "leeway": 30,
    "max_lifetime": None,
    "max_token_bytes": 8192,
    "required_claims": REQUIRED_CLAIMS,
    "required_typ": "at+jwt",
}
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493
ZWSP = "\u200b"

# ---------------------------------------------------------------------------
# Keys (conformance/keys/*.pem: test-only private keys, committed on purpose)
# ---------------------------------------------------------------------------

# file stem -> (kid, alg, how to make one)
KEY_SPECS: dict[str, tuple[str, str, Callable[[], Any]]] = {
    "es256": ("es256-1", "ES256", lambda: ec.generate_private_key(ec.SECP256R1())),
    "rs256": ("rs256-1", "RS256", lambda: rsa.generate_private_key(65537, 2048)),
    "ps256": ("ps256-1", "PS256", lambda: rsa.generate_private_key(65537, 2048)),
    "eddsa": ("eddsa-1", "EdDSA", ed25519.Ed25519PrivateKey.generate),
    "es384": ("es384-1", "ES384", lambda: ec.generate_private_key(ec.SECP384R1())),
    # Deliberately too small: the vectors check that verifiers drop it.
    "rsa1024": ("rs256-weak", "RS256", lambda: rsa.generate_private_key(65537, 1024)),  # noqa: S505
    "attacker-es256": ("attacker-1", "ES256", lambda: ec.generate_private_key(ec.SECP256R1())),
    "attacker-eddsa": ("attacker-2", "EdDSA", ed25519.Ed25519PrivateKey.generate),
}


@dataclass(frozen=True)
class Key:
    kid: str
    alg: str
    private: Any

    def sign(self, data: bytes, alg: str | None = None) -> bytes:
        return sign(self.private, alg or self.alg, data)

    def jwk(self, **overrides: Any) -> dict[str, Any]:
        jwk = {**public_members(self.private.public_key()), "kid": self.kid, "alg": self.alg}
        jwk["use"] = "sig"
        jwk.update(overrides)
        return {k: v for k, v in jwk.items() if v is not None}

    def with_kid(self, kid: str | None) -> Key:
        return Key(kid, self.alg, self.private)  # type: ignore[arg-type]


def load_keys(create_missing: bool) -> dict[str, Key]:
    keys: dict[str, Key] = {}
    for stem, (kid, alg, make) in KEY_SPECS.items():
        path = KEY_DIR / f"{stem}.pem"
        if not path.exists():
            if not create_missing:
                sys.exit(f"missing {path}: run with --new-keys once (and commit the key)")
            pem = make().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            path.write_bytes(pem)
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        keys[stem] = Key(kid, alg, private)
    return keys


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64_uint(value: int) -> str:
    return b64(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def public_members(public: Any) -> dict[str, str]:
    if isinstance(public, ec.EllipticCurvePublicKey):
        size = (public.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384"}[public.curve.name]
        nums = public.public_numbers()
        return {
            "kty": "EC",
            "crv": crv,
            "x": b64(nums.x.to_bytes(size, "big")),
            "y": b64(nums.y.to_bytes(size, "big")),
        }
    if isinstance(public, rsa.RSAPublicKey):
        nums = public.public_numbers()
        return {"kty": "RSA", "n": b64_uint(nums.n), "e": b64_uint(nums.e)}
    return {"kty": "OKP", "crv": "Ed25519", "x": b64(public.public_bytes_raw())}


_HASH = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}


def sign(private: Any, alg: str, data: bytes) -> bytes:
    """A JWS signature of ``data`` made the way ``alg`` does, deterministically."""
    if isinstance(private, ec.EllipticCurvePrivateKey):
        size = (private.curve.key_size + 7) // 8
        # RFC 6979: the same input always gives the same signature.
        der = private.sign(data, ec.ECDSA(_HASH[alg[2:]], deterministic_signing=True))
        r, s = decode_dss_signature(der)
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if isinstance(private, rsa.RSAPrivateKey):
        if alg.startswith("PS"):
            return pss_sign(private, data)
        return private.sign(data, padding.PKCS1v15(), _HASH[alg[2:]])
    return private.sign(data)


def _mgf1(seed: bytes, length: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:length]


def pss_sign(private: rsa.RSAPrivateKey, message: bytes, salt_length: int = 32) -> bytes:
    """RSASSA-PSS-SIGN with SHA-256, MGF1-SHA-256 and a 32-byte salt (RFC 7518 §3.5; other
    lengths for the forgeries), the salt derived from the message so the signature is
    reproducible (RFC 8017 §9.1.1)."""
    em_bits = private.key_size - 1
    em_len = (em_bits + 7) // 8
    m_hash = hashlib.sha256(message).digest()
    salt = (hashlib.sha512(b"tokend-conformance-pss-salt" + message).digest() * 4)[:salt_length]
    h = hashlib.sha256(b"\x00" * 8 + m_hash + salt).digest()
    db = b"\x00" * (em_len - len(salt) - len(h) - 2) + b"\x01" + salt
    masked = bytes(a ^ b for a, b in zip(db, _mgf1(h, em_len - len(h) - 1), strict=True))
    masked = bytes([masked[0] & (0xFF >> (8 * em_len - em_bits))]) + masked[1:]
    return rsa_raw_sign(private, masked + h + b"\xbc")


def rsa_raw_sign(private: rsa.RSAPrivateKey, encoded: bytes) -> bytes:
    """The RSA signature primitive (RFC 8017 §5.2.1) on an already encoded message: lets
    the generator sign malformed encodings with a genuine key."""
    numbers = private.private_numbers()
    n, d = numbers.public_numbers.n, numbers.d
    k = (private.key_size + 7) // 8
    return pow(int.from_bytes(encoded, "big"), d, n).to_bytes(k, "big")


SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def pkcs1_encoding(message: bytes, k: int, **variant: Any) -> bytes:
    """EMSA-PKCS1-v1_5 (RFC 8017 §9.2) for SHA-256, or a deliberately broken variant."""
    digest_info = variant.get("digest_info", SHA256_DIGEST_INFO) + hashlib.sha256(message).digest()
    digest_info += variant.get("trailer", b"")
    block_type = variant.get("block_type", b"\x01")
    fill = k - len(digest_info) - 3 - variant.get("short_by", 0)
    em = b"\x00" + block_type + variant.get("fill_byte", b"\xff") * fill + b"\x00" + digest_info
    return em + variant.get("garbage", b"")


# ---------------------------------------------------------------------------
# Token building
# ---------------------------------------------------------------------------


def jbytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def claims(**overrides: Any) -> dict[str, Any]:
    """tokend's usual claims; an override of None removes the claim."""
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": AUDIENCE,
        "exp": NOW + 300,
        "iat": NOW - 60,
        "nbf": NOW - 60,
        "jti": "4f1c2a9e-jti",
        "scope": "orders:read orders:write",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def header(key: Key, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign_segments(key: Key, head: str, body: str, alg: str | None = None) -> str:
    """Sign the exact segment text given (which may be deliberately non-canonical)."""
    signing_input = f"{head}.{body}"
    return f"{signing_input}.{b64(key.sign(signing_input.encode('latin-1'), alg))}"


def raw_token(key: Key, head: bytes, body: bytes, alg: str | None = None) -> str:
    """A token from raw header and payload bytes (any JSON text, or not JSON at all)."""
    return sign_segments(key, b64(head), b64(body), alg)


def token(key: Key, payload: dict[str, Any] | None = None, **head: Any) -> str:
    return raw_token(
        key, jbytes(header(key, **head)), jbytes(claims() if payload is None else payload)
    )


def replace_segment(tok: str, index: int, segment: str) -> str:
    parts = tok.split(".")
    parts[index] = segment
    return ".".join(parts)


def set_unused_bits(segment: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(segment) % 4 in (2, 3), "segment has no unused bits"
    return segment[:-1] + alphabet[alphabet.index(segment[-1]) | 1]


def b64_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    rule: str
    token: str | bytes
    expect: str  # "valid" or a Reason name
    jwks: dict[str, Any]
    options: dict[str, Any]
    now: int | float
    required_scopes: list[str]
    sub: str | None
    presenter: str | None = None  # the presenter's x5t#S256 (vectors-next only)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "rule": self.rule,
            "jwks": self.jwks,
            "options": self.options,
            "now": self.now,
        }
        if isinstance(self.token, bytes):
            out["token_b64"] = base64.b64encode(self.token).decode("ascii")
        else:
            out["token"] = self.token
        out["required_scopes"] = self.required_scopes
        if self.presenter is not None:
            out["presenter_x5t_s256"] = self.presenter
        if self.expect == "valid":
            out["expect"] = {"valid": True, "sub": self.sub}
        else:
            out["expect"] = {"valid": False, "reason": self.expect}
        return out


class Suite:
    """Collects the cases of one vector file."""

    def __init__(self, name: str, description: str, default_jwks: dict[str, Any],
                 extra_options: dict[str, Any] | None = None) -> None:
        self.name, self.description = name, description
        self.default_jwks = default_jwks
        self.defaults = {**DEFAULT_OPTIONS, **(extra_options or {})}
        self.cases: list[Case] = []

    def add(
        self,
        case_id: str,
        rule: str,
        tok: str | bytes,
        expect: str,
        *,
        jwks: dict[str, Any] | None = None,
        now: int | float = NOW,
        scopes: list[str] | tuple[str, ...] = (),
        sub: str | None = "alice",
        presenter: str | None = None,
        **options: Any,
    ) -> None:
        unknown = set(options) - set(self.defaults)
        assert not unknown, f"{case_id}: unknown options {unknown}"
        self.cases.append(
            Case(
                id=case_id,
                rule=rule,
                token=tok,
                expect=expect,
                jwks=self.default_jwks if jwks is None else jwks,
                options={**self.defaults, **options},
                now=now,
                required_scopes=list(scopes),
                sub=sub,
                presenter=presenter,
            )
        )

    def document(self) -> dict[str, Any]:
        return {"description": self.description, "cases": [c.as_json() for c in self.cases]}


# Rules, worded as in docs/verifier-contract.md.
R_COMPACT = "C1 compact form: exactly three base64url segments (RFC 7515 §3.1, §7.1)"
R_B64 = "C2 canonical unpadded base64url, no other characters (RFC 7515 §2, RFC 4648 §3.5, §5)"
R_ASCII = "C2 the token is ASCII text; anything else is MALFORMED (RFC 7515 §7.1)"
R_SIZE = (
    "C0 a token longer than max_token_bytes is TOO_LARGE, checked before any decoding (tokend"
    " policy: bounds the work per token)"
)
R_JSON = (
    "C3 strict JSON: UTF-8 without BOM, exactly one object, RFC 8259 grammar (RFC 7515 §5.2 "
    "step 3; RFC 7519 §7.2 step 10)"
)
R_JSON_NUMBER = (
    "C3 JSON numbers: RFC 8259 §6 grammar only (no NaN, Infinity, leading zero, +, hex), "
    "integer literals of at most 64 characters (sign included), finite as a double"
)
R_JSON_DEPTH = (
    "C3 JSON nesting: at most 64 arrays and objects open at once, the outer object included "
    "(tokend policy; RFC 8259 §9 lets parsers limit depth)"
)
R_DUP = (
    "C3 duplicate member names are refused, never first- or last-wins (RFC 7515 §4, RFC 7519 "
    "§4: reject is the allowed strict choice)"
)
R_SURROGATE = "C3 no lone UTF-16 surrogate escapes (RFC 8259 §8.2, RFC 7493 §2.1)"
R_UTF8 = "C3 header and payload are valid UTF-8 (RFC 8259 §8.1, RFC 7515 §5.2 step 3)"
R_ALG_NONE = "H1 alg none and MAC algorithms are never accepted (RFC 8725 §2.1, §3.1, §3.2)"
R_ALG_KEY = (
    "H2 the algorithm is bound to the key: header alg must equal the JWK alg (RFC 8725 §3.1)"
)
R_ALG_ALLOWED = "H2 header alg must be in the caller's algorithms (RFC 8725 §3.1)"
R_ALG_TYPE = "H1 alg is a required string (RFC 7515 §4.1.1)"
R_KID = "H3 the key is chosen by kid from the configured set only (RFC 7515 §4.1.4, RFC 8725 §3.10)"
R_EMBEDDED = (
    "H4 jku, x5u, jwk, x5c are refused: keys never come from the token (RFC 7515 "
    "§4.1.2-4.1.6, RFC 8725 §3.10)"
)
R_CRIT = "H5 any crit header is refused: no extension is understood (RFC 7515 §4.1.11)"
R_B64HDR = "H5 b64:false (unencoded payload) is refused (RFC 7797 §3)"
R_TYP = (
    "H6 typ must be at+jwt, compared case-insensitively with application/ implied (RFC 9068 "
    "§2.1, §4; RFC 8725 §3.11; RFC 7515 §4.1.9)"
)
R_IGNORED_HDR = (
    "H7 other header parameters are ignored; the key is chosen by kid only (RFC 7515 §4)"
)
R_SIG = (
    "S1 the signature must verify with the selected key over the exact signing input (RFC "
    "7515 §5.2 step 8)"
)
R_SIG_EC = (
    "S2 ECDSA signatures are exactly R||S, each the curve size, 0 < r,s < n; DER is refused "
    "(RFC 7518 §3.4)"
)
R_SIG_ED = (
    "S3 EdDSA signatures are exactly 64 bytes (Ed25519), S < L (RFC 8037 §3.1, RFC 8032 §5.1.7)"
)
R_SIG_RSA = (
    "S4 RSA signatures are exactly the modulus length (RFC 8017 §8.1.2, §8.2.2 step 1; RFC "
    "7518 §3.3, §3.5)"
)
R_KEYSET = (
    "K1 unusable keys are dropped from the set, per key; tokens naming them are UNKNOWN_KEY "
    "and other keys still work (RFC 7517 §5, RFC 7518 §3.3, RFC 8725 §3.1)"
)
R_REQUIRED = "J1 every required claim is present (RFC 9068 §2.2; option required_claims)"
R_NUMERIC = (
    "J2 exp, nbf, iat are NumericDates: finite JSON numbers, not strings/booleans/null (RFC "
    "7519 §2)"
)
R_ISS = "J3 iss is a string equal to the configured issuer (RFC 7519 §4.1.1, RFC 9068 §4)"
R_EXP = "J4 now must be before exp + leeway; exp == now with leeway 0 is expired (RFC 7519 §4.1.4)"
R_NBF = "J5 now + leeway must be at or after nbf (RFC 7519 §4.1.5)"
R_IAT = "J6 iat must not be after now + leeway (RFC 7519 §4.1.6)"
R_LIFETIME = (
    "J7 with max_lifetime set, exp - iat must not exceed it and both claims are required "
    "(tokend policy over RFC 7519 §4.1.4, §4.1.6)"
)
R_AUD = (
    "J8 aud is a string or a non-empty array of strings and must contain an expected "
    "audience; with no audience configured a token with aud is refused (RFC 7519 §4.1.3, RFC "
    "9068 §4)"
)
R_IDS = "J9 sub and jti are non-empty strings (RFC 7519 §4.1.2, §4.1.7, RFC 9068 §2.2)"
R_SCOPE = (
    "J10 scope is one space-separated string and holds every required scope (RFC 9068 §2.2.3,"
    " RFC 6749 §3.3)"
)
R_VALID = "V valid token: every rule passes (RFC 9068 §4)"


def default_jwks(k: dict[str, Key]) -> dict[str, Any]:
    return {"keys": [k[name].jwk() for name in ("es256", "rs256", "ps256", "eddsa")]}


# -- valid.json ---------------------------------------------------------------


def valid_cases(k: dict[str, Key]) -> Suite:
    s = Suite(
        "valid",
        "Tokens every verifier must accept, one per algorithm and option variant.",
        default_jwks(k),
    )
    for name in ("es256", "rs256", "ps256", "eddsa"):
        s.add(f"valid-{name}", R_VALID, token(k[name]), "valid")
    es = k["es256"]
    s.add("valid-leeway-0", R_VALID, token(es), "valid", leeway=0)
    s.add(
        "valid-max-lifetime-exact",
        R_LIFETIME,
        token(es, claims(iat=NOW - 60, exp=NOW + 240)),
        "valid",
        max_lifetime=300,
    )
    s.add(
        "valid-audience-null-no-aud",
        R_AUD,
        token(es, claims(aud=None)),
        "valid",
        audience=None,
        required_claims=["exp", "iat", "iss", "sub", "jti"],
    )
    s.add(
        "valid-audience-list-second",
        R_AUD,
        token(es, claims(aud="billing")),
        "valid",
        audience=["orders", "billing"],
    )
    s.add("valid-aud-array", R_AUD, token(es, claims(aud=["inventory", "orders"])), "valid")
    s.add("valid-aud-array-one", R_AUD, token(es, claims(aud=["orders"])), "valid")
    s.add(
        "valid-required-scopes", R_SCOPE, token(es), "valid", scopes=["orders:read", "orders:write"]
    )
    s.add("valid-required-scope-one", R_SCOPE, token(es), "valid", scopes=["orders:write"])
    s.add(
        "valid-scope-double-space",
        R_SCOPE,
        token(es, claims(scope="orders:read  orders:write")),
        "valid",
        scopes=["orders:write"],
    )
    s.add("valid-scope-absent-none-required", R_SCOPE, token(es, claims(scope=None)), "valid")
    s.add(
        "valid-custom-required-claims-fewer",
        R_REQUIRED,
        token(es, claims(jti=None, iat=None, nbf=None)),
        "valid",
        required_claims=["exp", "iss", "sub"],
    )
    s.add(
        "valid-custom-required-claims-extra",
        R_REQUIRED,
        token(es, claims(client_id="shop-frontend")),
        "valid",
        required_claims=[*REQUIRED_CLAIMS, "client_id"],
    )
    s.add(
        "valid-custom-required-claims-aud-absent",
        R_AUD,
        token(es, claims(aud=None)),
        "valid",
        required_claims=["exp", "iat", "iss", "sub", "jti"],
    )
    s.add("valid-no-nbf", R_VALID, token(es, claims(nbf=None)), "valid")
    s.add("valid-typ-application", R_TYP, token(es, typ="application/at+jwt"), "valid")
    s.add("valid-typ-uppercase", R_TYP, token(es, typ="AT+JWT"), "valid")
    s.add("valid-typ-mixed-case-application", R_TYP, token(es, typ="Application/At+Jwt"), "valid")
    s.add("valid-required-typ-option-jwt", R_TYP, token(es, typ="JWT"), "valid", required_typ="jwt")
    s.add("valid-exp-fraction", R_NUMERIC, token(es, claims(exp=NOW + 300.5)), "valid")
    exp_text = jbytes(claims()).replace(str(NOW + 300).encode(), b"1.7672259E9")
    s.add(
        "valid-exp-exponent-notation",
        R_NUMERIC,
        raw_token(es, jbytes(header(es)), exp_text),
        "valid",
    )
    s.add(
        "valid-exp-trailing-zero-fraction",
        R_NUMERIC,
        raw_token(
            es,
            jbytes(header(es)),
            jbytes(claims()).replace(str(NOW + 300).encode(), str(NOW + 300).encode() + b".0"),
        ),
        "valid",
    )
    s.add("valid-header-unknown-member", R_IGNORED_HDR, token(es, foo="bar", cty=None), "valid")
    s.add(
        "valid-header-x5t-ignored",
        R_IGNORED_HDR,
        token(es, **{"x5t": "dGhpcy1pcy1ub3QtdXNlZA", "x5t#S256": "dGhpcy1pcy1ub3QtdXNlZA"}),
        "valid",
    )
    s.add("valid-header-b64-true", R_B64HDR, token(es, b64=True), "valid")
    # Member names are case-sensitive (RFC 7515 §4): "ALG" is another, ignored parameter.
    s.add(
        "valid-header-uppercase-alg-member-ignored",
        R_IGNORED_HDR,
        token(es, ALG="none", KID="x"),
        "valid",
    )
    escaped_kid = jbytes(header(es)).replace(b'"es256-1"', b'"es256\\u002d1"')
    s.add("valid-kid-escaped", R_KID, raw_token(es, escaped_kid, jbytes(claims())), "valid")
    s.add("valid-header-cty-jwt-ignored", R_IGNORED_HDR, token(es, cty="JWT"), "valid")
    s.add("valid-header-zip-ignored", R_IGNORED_HDR, token(es, zip="DEF"), "valid")
    s.add("valid-header-enc-ignored", R_IGNORED_HDR, token(es, enc="A256GCM"), "valid")
    s.add(
        "valid-required-claims-empty",
        R_REQUIRED,
        token(es, {"iss": ISSUER, "sub": "alice"}),
        "valid",
        required_claims=[],
    )
    s.add(
        "valid-custom-required-claim-null-is-present",
        R_REQUIRED,
        token(es, claims(client_id=None) | {"client_id": None}),
        "valid",
        required_claims=[*REQUIRED_CLAIMS, "client_id"],
    )
    s.add(
        "valid-required-scopes-repeated",
        R_SCOPE,
        token(es),
        "valid",
        scopes=["orders:read", "orders:read"],
    )
    s.add(
        "valid-extra-claims",
        R_VALID,
        token(es, claims(client_id="c", roles=["a", {"b": [1, 2.5, None, True]}])),
        "valid",
    )
    s.add(
        "valid-json-whitespace",
        R_JSON,
        raw_token(
            es,
            b' {\n "alg" : "ES256",\t"kid":"es256-1", "typ":"at+jwt"\r\n} ',
            b"\n" + json.dumps(claims(), indent=2).encode() + b"\n",
        ),
        "valid",
    )
    s.add(
        "valid-sub-unicode-escaped",
        R_IDS,
        raw_token(es, jbytes(header(es)), json.dumps(claims(sub="\u00e5lice \U0001f600")).encode()),
        "valid",
        sub="\u00e5lice \U0001f600",
    )
    s.add(
        "valid-sub-unicode-raw-utf8",
        R_IDS,
        token(es, claims(sub="\u00e5lice \U0001f600")),
        "valid",
        sub="\u00e5lice \U0001f600",
    )
    s.add(
        "valid-escaped-member-name",
        R_JSON,
        raw_token(
            es,
            jbytes(header(es)),
            jbytes(claims(sub=None)).replace(b'{"', b'{"s\\u0075b":"alice","', 1),
        ),
        "valid",
    )
    s.add("valid-es256-high-s", R_SIG_EC, high_s(token(es)), "valid")
    nul = jbytes(claims(sub=None))[:-1] + b',"sub":"ali\\u0000ce"}'
    s.add(
        "valid-sub-escaped-nul",
        R_JSON,
        raw_token(es, jbytes(header(es)), nul),
        "valid",
        sub="ali\x00ce",
    )
    slash = jbytes(claims(iss=None))[:-1] + b',"iss":"https:\\/\\/tokend.test"}'
    s.add("valid-iss-escaped-slashes", R_ISS, raw_token(es, jbytes(header(es)), slash), "valid")
    s.add("valid-nbf-negative", R_NUMERIC, token(es, claims(nbf=-1)), "valid")
    s.add("valid-exp-huge-float", R_NUMERIC, token(es, claims(exp=1e300)), "valid")
    s.add(
        "valid-now-fraction",
        R_EXP,
        token(es, claims(exp=NOW + 1)),
        "valid",
        now=NOW + 0.5,
        leeway=0,
    )
    return s


def high_s(tok: str) -> str:
    head, body, sig = tok.split(".")
    raw = b64_decode(sig)
    s_value = int.from_bytes(raw[32:], "big")
    return f"{head}.{body}.{b64(raw[:32] + (P256_ORDER - s_value).to_bytes(32, 'big'))}"


# -- base64url.json -------------------------------------------------------------


def _padded_token(es: Key) -> str:
    """A valid token whose three segments all end mid-quantum (len % 4 in {2, 3})."""
    for filler in range(64):
        tok = token(es, claims(pad="x" * filler), cty=None, foo="y" * (filler % 3))
        if all(len(seg) % 4 in (2, 3) for seg in tok.split(".")):
            return tok
    raise AssertionError("no padded token found")


def _with_std_alphabet(es: Key) -> tuple[str, list[int]]:
    """A valid token where header, payload and signature each contain '-' or '_'."""
    for filler in range(500):
        tok = token(
            es,
            claims(n=filler, note="\u00ff\u00fe?>?>" * (filler % 5)),
            foo="~~~>>>???"[: filler % 9],
        )
        parts = tok.split(".")
        if all(("-" in p or "_" in p) for p in parts):
            return tok, [0, 1, 2]
    raise AssertionError("no token with url-only characters found")


def base64url_cases(k: dict[str, Key]) -> Suite:
    s = Suite(
        "base64url",
        "Every base64url leniency and every way of breaking the compact form.",
        default_jwks(k),
    )
    es = k["es256"]
    tok = _padded_token(es)
    names = ("header", "payload", "signature")
    for index, name in enumerate(names):
        parts = tok.split(".")
        seg = parts[index]
        pad = "=" * (-len(seg) % 4)
        variants = {
            "padding": seg + pad,
            "padding-extra": seg + pad + "====",
            "space-inside": seg[:7] + " " + seg[7:],
            "newline-inside": seg[:7] + "\n" + seg[7:],
            "crlf-inside": seg[:7] + "\r\n" + seg[7:],
            "tab-inside": seg[:7] + "\t" + seg[7:],
            "trailing-space": seg + " ",
            "percent-encoded": seg[:7] + "%2D" + seg[7:],
            "non-canonical-bits": set_unused_bits(seg),
            "impossible-length": seg + "A" * ((1 - len(seg)) % 4),
            "zero-width-space": seg[:7] + ZWSP + seg[7:],
            "nbsp": seg[:7] + "\u00a0" + seg[7:],
        }
        for variant, new_seg in variants.items():
            if index < 2:
                # Re-signed over the altered text: only strict decoding can refuse it.
                parts[index] = new_seg
                forged = (
                    sign_segments(es, parts[0], parts[1])
                    if new_seg.isascii()
                    else _sign_unicode(es, parts)
                )
                parts = tok.split(".")
            else:
                forged = replace_segment(tok, 2, new_seg)
            rule = R_ASCII if not new_seg.isascii() else R_B64
            s.add(f"b64-{name}-{variant}", rule, forged, "MALFORMED")
    std_tok, _ = _with_std_alphabet(es)
    for index, name in enumerate(names):
        parts = std_tok.split(".")
        parts[index] = parts[index].replace("-", "+").replace("_", "/")
        forged = sign_segments(es, parts[0], parts[1]) if index < 2 else ".".join(parts)
        s.add(f"b64-{name}-standard-alphabet", R_B64, forged, "MALFORMED")
        parts = std_tok.split(".")
        std = base64.b64encode(b64_decode(parts[index])).decode()
        parts[index] = std
        forged = sign_segments(es, parts[0], parts[1]) if index < 2 else ".".join(parts)
        s.add(f"b64-{name}-standard-base64-padded", R_B64, forged, "MALFORMED")
    good = token(es)
    head, body, sig = good.split(".")
    s.add("compact-empty-token", R_COMPACT, "", "MALFORMED")
    s.add("compact-one-segment", R_COMPACT, head, "MALFORMED")
    s.add("compact-two-segments", R_COMPACT, f"{head}.{body}", "MALFORMED")
    s.add("compact-four-segments", R_COMPACT, f"{good}.{sig}", "MALFORMED")
    s.add(
        "compact-five-segments-jwe-shape",
        R_COMPACT,
        f"{head}.{body}.{sig}.{body}.{sig}",
        "MALFORMED",
    )
    s.add("compact-trailing-dot", R_COMPACT, good + ".", "MALFORMED")
    s.add("compact-leading-dot", R_COMPACT, "." + good, "MALFORMED")
    s.add("compact-double-dot", R_COMPACT, f"{head}..{body}.{sig}", "MALFORMED")
    s.add("compact-only-dots", R_COMPACT, "..", "MALFORMED")
    s.add("compact-empty-header", R_COMPACT, f".{body}.{sig}", "MALFORMED")
    s.add("compact-empty-payload", R_JSON, sign_segments(es, head, ""), "MALFORMED")
    s.add("compact-empty-signature", R_SIG, f"{head}.{body}.", "BAD_SIGNATURE")
    s.add("compact-whitespace-leading", R_B64, " " + good, "MALFORMED")
    s.add("compact-whitespace-trailing", R_B64, good + " ", "MALFORMED")
    s.add("compact-newline-trailing", R_B64, good + "\n", "MALFORMED")
    s.add("compact-crlf-trailing", R_B64, good + "\r\n", "MALFORMED")
    s.add("compact-tab-leading", R_B64, "\t" + good, "MALFORMED")
    s.add("compact-bearer-prefix", R_B64, "Bearer " + good, "MALFORMED")
    s.add("compact-quoted", R_B64, f'"{good}"', "MALFORMED")
    s.add("compact-bom-before-token", R_ASCII, "\ufeff" + good, "MALFORMED")
    s.add("compact-zero-width-after-token", R_ASCII, good + ZWSP, "MALFORMED")
    s.add("compact-nul-after-token", R_B64, good + "\u0000", "MALFORMED")
    s.add("compact-fullwidth-dot", R_ASCII, f"{head}\uff0e{body}.{sig}", "MALFORMED")
    s.add(
        "compact-json-serialization",
        R_COMPACT,
        json.dumps({"protected": head, "payload": body, "signature": sig}, separators=(",", ":")),
        "MALFORMED",
    )
    s.add(
        "compact-raw-invalid-utf8-byte",
        R_ASCII,
        good.encode()[:20] + b"\xff" + good.encode()[20:],
        "MALFORMED",
    )
    s.add("compact-raw-latin1-byte-in-signature", R_ASCII, good.encode() + b"\xe9", "MALFORMED")
    s.add(
        "compact-raw-overlong-dot",
        R_ASCII,
        f"{head}.{body}".encode() + b"\xc0\xae" + sig.encode(),
        "MALFORMED",
    )
    return s


def _sign_unicode(es: Key, parts: list[str]) -> str:
    """Sign header.payload text that holds non-ASCII characters (as its UTF-8 bytes)."""
    signing_input = f"{parts[0]}.{parts[1]}"
    return f"{signing_input}.{b64(es.sign(signing_input.encode('utf-8')))}"


# -- json.json -----------------------------------------------------------------


def json_cases(k: dict[str, Key]) -> Suite:
    s = Suite(
        "json",
        "Strict JSON in header and payload: duplicates, BOM, UTF-8, surrogates, grammar.",
        default_jwks(k),
    )
    es = k["es256"]
    head = jbytes(header(es))
    body = jbytes(claims())

    def dup_header(name: str, first: Any, second: Any) -> bytes:
        h = header(es)
        h.pop(name, None)
        text = jbytes(h)[1:-1]
        return (
            b"{"
            + jbytes({name: first})[1:-1]
            + b","
            + text
            + b","
            + jbytes({name: second})[1:-1]
            + b"}"
        )

    def dup_payload(name: str, first: Any, second: Any) -> bytes:
        c = claims()
        c.pop(name, None)
        text = jbytes(c)[1:-1]
        return (
            b"{"
            + jbytes({name: first})[1:-1]
            + b","
            + text
            + b","
            + jbytes({name: second})[1:-1]
            + b"}"
        )

    # Each duplicate pair: both values pass every rule alone, so only duplicate
    # detection can refuse the token (first-wins and last-wins parsers both accept).
    for name, first, second in (
        ("alg", "ES256", "ES256"),
        ("alg", "none", "ES256"),
        ("alg", "ES256", "none"),
        ("kid", "es256-1", "es256-1"),
        ("kid", "unknown-kid", "es256-1"),
        ("typ", "at+jwt", "at+jwt"),
        ("typ", "JWT", "at+jwt"),
        ("crit", ["exp"], ["exp"]),
    ):
        s.add(
            f"json-header-duplicate-{name}-{_slug(first)}-{_slug(second)}",
            R_DUP,
            raw_token(es, dup_header(name, first, second), body),
            "MALFORMED",
        )
    for name, first, second in (
        ("iss", ISSUER, ISSUER),
        ("iss", "https://evil.test", ISSUER),
        ("sub", "alice", "admin"),
        ("sub", "admin", "alice"),
        ("exp", NOW + 300, NOW + 300),
        ("exp", NOW - 3600, NOW + 300),
        ("exp", NOW + 300, NOW - 3600),
        ("aud", "orders", "orders"),
        ("aud", "billing", "orders"),
        ("aud", "orders", "billing"),
        ("jti", "a", "b"),
        ("nbf", NOW - 60, NOW + 3600),
        ("iat", NOW - 60, NOW - 60),
        ("scope", "orders:read", "orders:admin"),
    ):
        s.add(
            f"json-payload-duplicate-{name}-{_slug(first)}-{_slug(second)}",
            R_DUP,
            raw_token(es, head, dup_payload(name, first, second)),
            "MALFORMED",
        )
    s.add(
        "json-payload-duplicate-escaped-name",
        R_DUP,
        raw_token(es, head, body[:-1] + b',"s\\u0075b":"admin"}'),
        "MALFORMED",
    )
    s.add(
        "json-header-duplicate-escaped-alg",
        R_DUP,
        raw_token(es, head[:-1] + b',"\\u0061lg":"ES256"}', body),
        "MALFORMED",
    )
    s.add(
        "json-payload-duplicate-nested",
        R_DUP,
        raw_token(es, head, body[:-1] + b',"cnf":{"jkt":"a","jkt":"b"}}'),
        "MALFORMED",
    )
    s.add(
        "json-payload-duplicate-in-array-object",
        R_DUP,
        raw_token(es, head, body[:-1] + b',"roles":[{"r":1,"r":2}]}'),
        "MALFORMED",
    )
    s.add(
        "json-payload-same-name-different-case-ok",
        R_DUP,
        raw_token(es, head, body[:-1] + b',"SUB":"admin"}'),
        "valid",
    )
    # BOM (RFC 8259 §8.1: MUST NOT add one; we refuse one).
    bom = b"\xef\xbb\xbf"
    s.add("json-header-bom", R_JSON, raw_token(es, bom + head, body), "MALFORMED")
    s.add("json-payload-bom", R_JSON, raw_token(es, head, bom + body), "MALFORMED")
    s.add(
        "json-payload-utf16le",
        R_UTF8,
        raw_token(es, head, json.dumps(claims()).encode("utf-16-le")),
        "MALFORMED",
    )
    s.add(
        "json-payload-utf16-bom",
        R_UTF8,
        raw_token(es, head, json.dumps(claims()).encode("utf-16")),
        "MALFORMED",
    )
    s.add(
        "json-header-utf16be",
        R_UTF8,
        raw_token(es, json.dumps(header(es)).encode("utf-16-be"), body),
        "MALFORMED",
    )
    # Invalid UTF-8 inside strings (encoding/json and others substitute U+FFFD).
    bad_utf8 = {
        "ff": b"\xff",
        "lone-continuation": b"\x80",
        "truncated": b"\xe2\x82",
        "overlong-slash": b"\xc0\xaf",
        "encoded-surrogate": b"\xed\xa0\x80",
        "above-max": b"\xf4\x90\x80\x80",
        "latin1": b"\xe9",
    }
    for name, raw in bad_utf8.items():
        s.add(
            f"json-payload-invalid-utf8-{name}",
            R_UTF8,
            raw_token(es, head, jbytes(claims(sub=None))[:-1] + b',"sub":"ali' + raw + b'ce"}'),
            "MALFORMED",
        )
    s.add(
        "json-header-invalid-utf8",
        R_UTF8,
        raw_token(es, head[:-1] + b',"x":"\xff"}', body),
        "MALFORMED",
    )
    s.add(
        "json-payload-invalid-utf8-in-name",
        R_UTF8,
        raw_token(es, head, body[:-1] + b',"\xc3":1}'),
        "MALFORMED",
    )
    s.add(
        "json-payload-invalid-utf8-outside-string",
        R_UTF8,
        raw_token(es, head, body + b"\xff"),
        "MALFORMED",
    )
    # Lone surrogates written as escapes.
    for name, esc in (
        ("high", b"\\ud800"),
        ("low", b"\\udc00"),
        ("reversed-pair", b"\\ude00\\ud83d"),
        ("high-then-text", b"\\ud83dx"),
    ):
        s.add(
            f"json-payload-lone-surrogate-{name}",
            R_SURROGATE,
            raw_token(es, head, jbytes(claims(sub=None))[:-1] + b',"sub":"alice' + esc + b'"}'),
            "MALFORMED",
        )
    s.add(
        "json-payload-lone-surrogate-in-other-claim",
        R_SURROGATE,
        raw_token(es, head, body[:-1] + b',"note":"\\udfff"}'),
        "MALFORMED",
    )
    s.add(
        "json-payload-lone-surrogate-in-name",
        R_SURROGATE,
        raw_token(es, head, body[:-1] + b',"\\ud800":1}'),
        "MALFORMED",
    )
    s.add(
        "json-header-lone-surrogate-kid",
        R_SURROGATE,
        raw_token(es, head[:-1] + b',"x":"\\ud800"}', body),
        "MALFORMED",
    )
    # Grammar.
    grammar = {
        "trailing-comma": body[:-1] + b",}",
        "trailing-garbage": body + b"x",
        "two-objects": body + b"{}",
        "single-quotes": body.replace(b'"sub"', b"'sub'"),
        "unquoted-name": body.replace(b'"sub"', b"sub"),
        "comment": body[:-1] + b"/*c*/}",
        "nul-after": body + b"\x00",
        "unescaped-control": jbytes(claims(sub=None))[:-1] + b',"sub":"ali\nce"}',
        "invalid-escape": jbytes(claims(sub=None))[:-1] + b',"sub":"ali\\xce"}',
        "array": jbytes([claims()]),
        "string": jbytes("alice"),
        "null": b"null",
        "number": b"1",
        "empty": b"",
        "truncated": body[:-1],
        "nan": body[:-1] + b',"x":NaN}',
        "infinity": body[:-1] + b',"x":-Infinity}',
        "leading-zero": body[:-1] + b',"x":01}',
        "plus-number": body[:-1] + b',"x":+1}',
        "hex-number": body[:-1] + b',"x":0x10}',
        "dot-number": body[:-1] + b',"x":.5}',
        "true-uppercase": body[:-1] + b',"x":True}',
        "integer-65-digits": body[:-1] + b',"x":' + b"9" * 65 + b"}",
        "number-overflow": body[:-1] + b',"x":1e400}',
        "form-feed-whitespace": b"\x0c" + body,
        "vertical-tab-whitespace": body[:-1] + b"\x0b}",
        "nbsp-whitespace": b"\xc2\xa0" + body,
        "ideographic-space-whitespace": body + "\u3000".encode(),
        "uppercase-u-escape": jbytes(claims(sub=None))[:-1] + b',"sub":"\\U00e9"}',
        "short-u-escape": jbytes(claims(sub=None))[:-1] + b',"sub":"\\u00e"}',
        "unescaped-tab-in-string": jbytes(claims(sub=None))[:-1] + b',"sub":"a\tb"}',
    }
    numbers = {"nan", "infinity", "leading-zero", "plus-number", "hex-number", "dot-number"}
    numbers |= {"integer-65-digits", "number-overflow"}
    for name, text in grammar.items():
        rule = R_JSON_NUMBER if name in numbers else R_JSON
        s.add(f"json-payload-{name}", rule, raw_token(es, head, text), "MALFORMED")
    for name, text in {
        "array": jbytes([header(es)]),
        "trailing-comma": head[:-1] + b",}",
        "single-quotes": head.replace(b'"alg"', b"'alg'"),
        "trailing-garbage": head + b"]",
        "null": b"null",
        "empty": b"",
    }.items():
        s.add(f"json-header-{name}", R_JSON, raw_token(es, text, body), "MALFORMED")
    # Nesting: at most 64 arrays/objects open at once, the outer object included.
    for depth, expect in ((64, "valid"), (65, "MALFORMED"), (1000, "MALFORMED")):
        for kind, opener, bottom, closer in (
            ("array", b"[", b"", b"]"),
            ("object", b'{"a":', b"1", b"}"),
        ):
            nested = opener * (depth - 1) + bottom + closer * (depth - 1)
            s.add(
                f"json-payload-depth-{depth}-{kind}",
                R_JSON_DEPTH,
                raw_token(es, head, body[:-1] + b',"x":' + nested + b"}"),
                expect,
                max_token_bytes=16384,
            )
    s.add(
        "json-header-depth-65",
        R_JSON_DEPTH,
        raw_token(es, head[:-1] + b',"x":' + b"[" * 64 + b"]" * 64 + b"}", body),
        "MALFORMED",
    )
    s.add(
        "json-payload-brackets-in-string-ok",
        R_JSON_DEPTH,
        raw_token(es, head, body[:-1] + b',"x":"' + b"[{" * 100 + b'\\"]"}'),
        "valid",
    )
    # The integer limit counts the literal's characters, minus sign included; a literal with
    # a fraction or an exponent is a float, whatever its length.
    for name, literal, expect in (
        ("negative-integer-64-digits", b"-" + b"9" * 64, "MALFORMED"),
        ("negative-integer-63-digits-ok", b"-" + b"9" * 63, "valid"),
        ("float-65-digits-fraction-ok", b"9" * 65 + b".5", "valid"),
        ("float-65-digits-exponent-ok", b"9" * 65 + b"e0", "valid"),
    ):
        s.add(
            f"json-payload-{name}",
            R_JSON_NUMBER,
            raw_token(es, head, body[:-1] + b',"x":' + literal + b"}"),
            expect,
        )
    s.add(
        "json-payload-integer-64-digits-ok",
        R_JSON_NUMBER,
        raw_token(es, head, body[:-1] + b',"x":' + b"9" * 64 + b"}"),
        "valid",
    )
    return s


def _slug(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    if isinstance(value, int) and not isinstance(value, bool):
        text = "past" if value < NOW - 100 else ("future" if value > NOW + 1000 else "now")
    out = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(filter(None, out.split("-")))[:24] or "x"


# -- numericdate.json -----------------------------------------------------------


def numericdate_cases(k: dict[str, Key]) -> Suite:
    s = Suite(
        "numericdate",
        "exp, nbf and iat: JSON types and the time boundaries with leeway 0 and 30.",
        default_jwks(k),
    )
    es = k["es256"]
    head = jbytes(header(es))
    not_numbers: dict[str, Any] = {
        "null": None,
        "string": str(NOW + 300),
        "string-float": f"{NOW + 300}.0",
        "true": True,
        "false": False,
        "array": [NOW + 300],
        "empty-array": [],
        "object": {"$date": NOW + 300},
        "empty-string": "",
    }
    for claim in ("exp", "nbf", "iat"):
        for name, value in not_numbers.items():
            body = jbytes(claims(**{claim: "__X__"})).replace(b'"__X__"', jbytes(value))
            s.add(f"numericdate-{claim}-{name}", R_NUMERIC, raw_token(es, head, body), "MALFORMED")
        for name, literal in {
            "nan": b"NaN",
            "infinity": b"Infinity",
            "minus-infinity": b"-Infinity",
            "overflow": b"1e400",
            "huge-integer": b"1" + b"0" * 70,
            "leading-zero": b"0" + str(NOW + 300).encode(),
            "plus-sign": b"+" + str(NOW + 300).encode(),
            "hex": b"0x6955b900",
            "trailing-dot": str(NOW + 300).encode() + b".",
        }.items():
            body = jbytes(claims(**{claim: "__X__"})).replace(b'"__X__"', literal)
            s.add(
                f"numericdate-{claim}-{name}",
                # Not JSON numbers (RFC 8259 §6), or beyond the number limits.
                R_JSON_NUMBER,
                raw_token(es, head, body),
                "MALFORMED",
            )
    # Negative and huge but finite numbers are NumericDates; the time rules decide.
    s.add("numericdate-exp-negative", R_EXP, token(es, claims(exp=-1)), "EXPIRED")
    s.add("numericdate-exp-zero", R_EXP, token(es, claims(exp=0)), "EXPIRED")
    s.add("numericdate-iat-negative", R_IAT, token(es, claims(iat=-1, nbf=None)), "valid")
    s.add(
        "numericdate-iat-negative-max-lifetime",
        R_LIFETIME,
        token(es, claims(iat=-1, nbf=None)),
        "LIFETIME_TOO_LONG",
        max_lifetime=3600,
    )
    s.add(
        "numericdate-exp-huge-max-lifetime",
        R_LIFETIME,
        token(es, claims(exp=1e300)),
        "LIFETIME_TOO_LONG",
        max_lifetime=3600,
    )
    s.add("numericdate-nbf-huge", R_NBF, token(es, claims(nbf=1e300)), "NOT_YET_VALID")
    s.add("numericdate-iat-huge", R_IAT, token(es, claims(iat=1e300, nbf=None)), "ISSUED_IN_FUTURE")
    s.add(
        "numericdate-exp-negative-zero",
        R_EXP,
        raw_token(es, head, jbytes(claims(exp="__X__")).replace(b'"__X__"', b"-0")),
        "EXPIRED",
    )
    s.add(
        "numericdate-exp-20-digits",
        R_NUMERIC,
        raw_token(es, head, jbytes(claims(exp="__X__")).replace(b'"__X__"', b"1" + b"0" * 19)),
        "valid",
    )
    # NumericDates are compared as IEEE 754 doubles (the JSON number rounded to nearest):
    # these fractions are lost in a double, so the boundaries hold exactly.
    for claim, base, expect in (("nbf", NOW + 30, "valid"), ("exp", NOW - 30, "EXPIRED")):
        literal = f"{base}.00000000001".encode()
        body = jbytes(claims(**{claim: "__X__"})).replace(b'"__X__"', literal)
        s.add(
            f"numericdate-{claim}-beyond-double-precision",
            R_NUMERIC,
            raw_token(es, head, body),
            expect,
        )
    # Boundaries (RFC 7519 §4.1.4: exp is the first instant the token is NOT accepted).
    for leeway in (0, 30):
        s.add(
            f"time-exp-equals-now-leeway-{leeway}",
            R_EXP,
            token(es, claims(exp=NOW - leeway)),
            "EXPIRED",
            leeway=leeway,
        )
        s.add(
            f"time-exp-one-second-left-leeway-{leeway}",
            R_EXP,
            token(es, claims(exp=NOW - leeway + 1)),
            "valid",
            leeway=leeway,
        )
        s.add(
            f"time-exp-half-second-left-leeway-{leeway}",
            R_EXP,
            token(es, claims(exp=NOW - leeway + 0.5)),
            "valid",
            leeway=leeway,
        )
        s.add(
            f"time-exp-half-second-past-leeway-{leeway}",
            R_EXP,
            token(es, claims(exp=NOW - leeway - 0.5)),
            "EXPIRED",
            leeway=leeway,
        )
        s.add(
            f"time-exp-long-past-leeway-{leeway}",
            R_EXP,
            token(es, claims(exp=NOW - 3600, iat=NOW - 7200, nbf=None)),
            "EXPIRED",
            leeway=leeway,
        )
        s.add(
            f"time-nbf-equals-now-plus-leeway-{leeway}",
            R_NBF,
            token(es, claims(nbf=NOW + leeway)),
            "valid",
            leeway=leeway,
        )
        s.add(
            f"time-nbf-one-second-early-leeway-{leeway}",
            R_NBF,
            token(es, claims(nbf=NOW + leeway + 1)),
            "NOT_YET_VALID",
            leeway=leeway,
        )
        s.add(
            f"time-nbf-half-second-early-leeway-{leeway}",
            R_NBF,
            token(es, claims(nbf=NOW + leeway + 0.5)),
            "NOT_YET_VALID",
            leeway=leeway,
        )
        s.add(
            f"time-iat-equals-now-plus-leeway-{leeway}",
            R_IAT,
            token(es, claims(iat=NOW + leeway, nbf=None)),
            "valid",
            leeway=leeway,
        )
        s.add(
            f"time-iat-one-second-future-leeway-{leeway}",
            R_IAT,
            token(es, claims(iat=NOW + leeway + 1, nbf=None)),
            "ISSUED_IN_FUTURE",
            leeway=leeway,
        )
    s.add("time-exp-clock-moved", R_EXP, token(es), "EXPIRED", now=NOW + 330)
    # The clock has sub-second resolution: now = exp = x.5 is expired, x.4 is not.
    half = claims(exp=NOW + 0.5)
    s.add("time-fractional-now-at-exp", R_EXP, token(es, half), "EXPIRED", now=NOW + 0.5, leeway=0)
    s.add(
        "time-fractional-now-before-exp", R_EXP, token(es, half), "valid", now=NOW + 0.4, leeway=0
    )
    s.add("time-exp-clock-moved-just-inside", R_EXP, token(es), "valid", now=NOW + 329)
    # No rule orders exp and iat: each is judged against the clock alone.
    s.add(
        "time-exp-before-iat-within-leeway",
        R_IAT,
        token(es, claims(iat=NOW + 20, exp=NOW + 10, nbf=None)),
        "valid",
        max_lifetime=300,
    )
    # Order of time rules: expired wins over not-yet-valid (both wrong).
    s.add(
        "time-expired-and-not-yet-valid",
        R_EXP,
        token(es, claims(exp=NOW - 100, nbf=NOW + 100)),
        "EXPIRED",
    )
    # max_lifetime.
    s.add(
        "lifetime-one-second-too-long",
        R_LIFETIME,
        token(es, claims(iat=NOW - 60, exp=NOW + 241)),
        "LIFETIME_TOO_LONG",
        max_lifetime=300,
    )
    s.add(
        "lifetime-without-iat",
        R_LIFETIME,
        token(es, claims(iat=None)),
        "MISSING_CLAIM",
        max_lifetime=300,
        required_claims=["exp", "iss", "sub", "aud", "jti"],
    )
    s.add(
        "lifetime-without-exp",
        R_LIFETIME,
        token(es, claims(exp=None)),
        "MISSING_CLAIM",
        max_lifetime=300,
        required_claims=["iat", "iss", "sub", "aud", "jti"],
    )
    s.add(
        "lifetime-exp-absent-not-required",
        R_EXP,
        token(es, claims(exp=None)),
        "valid",
        required_claims=["iat", "iss", "sub", "aud", "jti"],
    )
    return s


# -- claims.json ----------------------------------------------------------------


def claims_cases(k: dict[str, Key]) -> Suite:
    s = Suite(
        "claims", "Required claims, claim types, issuer, audience and scopes.", default_jwks(k)
    )
    es = k["es256"]
    for name in REQUIRED_CLAIMS:
        s.add(
            f"claims-missing-{name}", R_REQUIRED, token(es, claims(**{name: None})), "MISSING_CLAIM"
        )
    s.add(
        "claims-missing-custom-required",
        R_REQUIRED,
        token(es),
        "MISSING_CLAIM",
        required_claims=[*REQUIRED_CLAIMS, "client_id"],
    )
    s.add(
        "claims-missing-nbf-when-required",
        R_REQUIRED,
        token(es, claims(nbf=None)),
        "MISSING_CLAIM",
        required_claims=[*REQUIRED_CLAIMS, "nbf"],
    )
    head = jbytes(header(es))
    null_exp = raw_token(es, head, jbytes(claims(exp="__N__")).replace(b'"__N__"', b"null"))
    s.add("claims-exp-null-present", R_NUMERIC, null_exp, "MALFORMED")
    for name, value, reason in (
        ("sub-integer", {"sub": 12345}, "MALFORMED"),
        ("sub-empty", {"sub": ""}, "MALFORMED"),
        ("sub-null", {"sub": "__N__"}, "MALFORMED"),
        ("sub-array", {"sub": ["alice"]}, "MALFORMED"),
        ("sub-object", {"sub": {"id": "alice"}}, "MALFORMED"),
        ("sub-true", {"sub": True}, "MALFORMED"),
        ("jti-integer", {"jti": 7}, "MALFORMED"),
        ("jti-empty", {"jti": ""}, "MALFORMED"),
        ("iss-array", {"iss": [ISSUER]}, "MALFORMED"),
        ("iss-integer", {"iss": 1}, "MALFORMED"),
        ("iss-null", {"iss": "__N__"}, "MALFORMED"),
        ("aud-number", {"aud": 1}, "MALFORMED"),
        ("aud-null", {"aud": "__N__"}, "MALFORMED"),
        ("aud-empty-array", {"aud": []}, "MALFORMED"),
        ("aud-array-of-number", {"aud": [1]}, "MALFORMED"),
        ("aud-array-mixed", {"aud": ["orders", 1]}, "MALFORMED"),
        ("aud-array-nested", {"aud": [["orders"]]}, "MALFORMED"),
        ("aud-object", {"aud": {"orders": True}}, "MALFORMED"),
        ("scope-array", {"scope": ["orders:read", "orders:write"]}, "MALFORMED"),
        ("scope-integer", {"scope": 1}, "MALFORMED"),
        ("scope-null", {"scope": "__N__"}, "MALFORMED"),
        ("scope-true", {"scope": True}, "MALFORMED"),
    ):
        body = jbytes(claims(**value)).replace(b'"__N__"', b"null")
        rule = {"sub": R_IDS, "jti": R_IDS, "iss": R_ISS, "aud": R_AUD, "scope": R_SCOPE}[
            name.split("-")[0]
        ]
        s.add(f"claims-{name}", rule, raw_token(es, head, body), reason)
    # Issuer.
    s.add(
        "claims-issuer-absent-not-required",
        R_ISS,
        token(es, claims(iss=None)),
        "WRONG_ISSUER",
        required_claims=["exp", "iat", "sub", "aud", "jti"],
    )
    for name, iss in (
        ("other", "https://evil.test"),
        ("trailing-slash", ISSUER + "/"),
        ("uppercase-host", "https://TOKEND.test"),
        ("trailing-space", ISSUER + " "),
        ("http-scheme", "http://tokend.test"),
        ("empty", ""),
        ("prefix", "https://tokend.test.evil"),
    ):
        s.add(f"claims-issuer-{name}", R_ISS, token(es, claims(iss=iss)), "WRONG_ISSUER")
    # Audience.
    for name, aud in (
        ("other", "billing"),
        ("prefix", "order"),
        ("uppercase", "ORDERS"),
        ("array-other", ["billing", "inventory"]),
        ("trailing-space", "orders "),
        ("empty-string", ""),
    ):
        s.add(f"claims-audience-{name}", R_AUD, token(es, claims(aud=aud)), "WRONG_AUDIENCE")
    s.add(
        "claims-audience-none-configured-token-has-aud",
        R_AUD,
        token(es),
        "WRONG_AUDIENCE",
        audience=None,
        required_claims=["exp", "iat", "iss", "sub", "jti"],
    )
    s.add(
        "claims-audience-none-configured-aud-array",
        R_AUD,
        token(es, claims(aud=["orders"])),
        "WRONG_AUDIENCE",
        audience=None,
        required_claims=["exp", "iat", "iss", "sub", "jti"],
    )
    s.add(
        "claims-audience-none-configured-aud-required",
        R_REQUIRED,
        token(es, claims(aud=None)),
        "MISSING_CLAIM",
        audience=None,
    )
    # Scopes.
    for name, scope, required in (
        ("not-granted", "orders:read orders:write", ["orders:admin"]),
        ("one-of-two-missing", "orders:read", ["orders:read", "orders:write"]),
        ("comma-separated", "orders:read,orders:write", ["orders:read"]),
        ("tab-separated", "orders:read\torders:write", ["orders:read"]),
        ("prefix-only", "orders:readx", ["orders:read"]),
        ("case", "ORDERS:READ", ["orders:read"]),
        ("empty-scope", "", ["orders:read"]),
    ):
        s.add(
            f"claims-scope-{name}",
            R_SCOPE,
            token(es, claims(scope=scope)),
            "MISSING_SCOPE",
            scopes=required,
        )
    s.add(
        "claims-scope-required-name-with-space",
        R_SCOPE,
        token(es),
        "MISSING_SCOPE",
        scopes=["orders:read orders:write"],
    )
    s.add(
        "claims-scope-absent-required",
        R_SCOPE,
        token(es, claims(scope=None)),
        "MISSING_SCOPE",
        scopes=["orders:read"],
    )
    # Order of the claim rules (the first failure wins):
    # missing > type > issuer > time > audience > identifiers > scope.
    s.add(
        "order-missing-before-wrong-issuer",
        R_REQUIRED,
        token(es, claims(iss="https://evil.test", jti=None)),
        "MISSING_CLAIM",
    )
    s.add(
        "order-issuer-before-expired",
        R_ISS,
        token(es, claims(iss="https://evil.test", exp=NOW - 3600)),
        "WRONG_ISSUER",
    )
    s.add(
        "order-expired-before-audience",
        R_EXP,
        token(es, claims(aud="billing", exp=NOW - 3600)),
        "EXPIRED",
    )
    s.add(
        "order-audience-before-scope",
        R_AUD,
        token(es, claims(aud="billing")),
        "WRONG_AUDIENCE",
        scopes=["orders:admin"],
    )
    s.add(
        "order-audience-before-sub-type",
        R_AUD,
        token(es, claims(aud="billing", sub=7)),
        "WRONG_AUDIENCE",
        sub=None,
    )
    return s


# -- header.json ----------------------------------------------------------------


def header_cases(k: dict[str, Key]) -> Suite:
    s = Suite(
        "header", "typ, crit, embedded keys, alg and kid rules of the JOSE header.", default_jwks(k)
    )
    es, rs, ps, ed = k["es256"], k["rs256"], k["ps256"], k["eddsa"]
    att = k["attacker-es256"]
    body = jbytes(claims())
    # typ (RFC 9068 §2.1, §4).
    for name, typ in (
        ("missing", None),
        ("jwt", "JWT"),
        ("jwt-lowercase", "jwt"),
        ("application-jwt", "application/jwt"),
        ("trailing-space", "at+jwt "),
        ("with-parameter", "at+jwt; charset=utf-8"),
        ("empty", ""),
        ("other-prefix", "text/at+jwt"),
        ("secevent", "secevent+jwt"),
        ("id-token-style", "id_token+jwt"),
    ):
        s.add(f"header-typ-{name}", R_TYP, token(es, typ=typ), "WRONG_TYPE")
    for name, raw in (
        ("number", b"1"),
        ("null", b"null"),
        ("array", b'["at+jwt"]'),
        ("object", b'{"v":"at+jwt"}'),
    ):
        h = jbytes(header(es, typ="__X__")).replace(b'"__X__"', raw)
        s.add(f"header-typ-{name}", R_TYP, raw_token(es, h, body), "WRONG_TYPE")
    s.add(
        "header-typ-wrong-with-required-typ-jwt", R_TYP, token(es), "WRONG_TYPE", required_typ="jwt"
    )
    # crit (RFC 7515 §4.1.11).
    for name, crit in (
        ("exp", ["exp"]),
        ("b64", ["b64"]),
        ("unknown", ["urn:x-unknown"]),
        ("empty", []),
        ("string", "exp"),
        ("null", None),
        ("number", 1),
    ):
        h = header(es, crit="__X__")
        text = jbytes(h).replace(b'"__X__"', jbytes(crit))
        s.add(f"header-crit-{name}", R_CRIT, raw_token(es, text, body), "MALFORMED")
    s.add("header-crit-b64-false", R_CRIT, token(es, crit=["b64"], b64=False), "MALFORMED")
    s.add("header-b64-false", R_B64HDR, token(es, b64=False), "MALFORMED")
    s.add("header-b64-string", R_B64HDR, token(es, b64="false"), "MALFORMED")
    s.add(
        "header-b64-null",
        R_B64HDR,
        raw_token(es, jbytes(header(es, b64="__X__")).replace(b'"__X__"', b"null"), body),
        "MALFORMED",
    )
    # Embedded keys (RFC 8725 §3.10): signed by the attacker with the attacker's key
    # in the header, and also by our own key (the header alone is enough to refuse).
    att_jwk = {k2: v for k2, v in att.jwk().items() if k2 not in ("use",)}
    embedded: dict[str, Any] = {
        "jwk": att_jwk,
        "jku": "https://evil.test/jwks.json",
        "x5u": "https://evil.test/cert.pem",
        "x5c": ["MIIBszCCAVmgAwIBAgIUQ29uZm9ybWFuY2UtdGVzdC1vbmx5MAoGCCqGSM49BAMC"],
    }
    for name, value in embedded.items():
        s.add(
            f"header-embedded-{name}-attacker-signed",
            R_EMBEDDED,
            token(att, **{name: value}, kid=None),
            "MALFORMED",
        )
        s.add(
            f"header-embedded-{name}-attacker-signed-our-kid",
            R_EMBEDDED,
            token(att.with_kid("es256-1"), **{name: value}),
            "MALFORMED",
        )
        s.add(
            f"header-embedded-{name}-genuine-signature",
            R_EMBEDDED,
            token(es, **{name: value}),
            "MALFORMED",
        )
    s.add(
        "header-embedded-jwk-null",
        R_EMBEDDED,
        raw_token(es, jbytes(header(es, jwk="__X__")).replace(b'"__X__"', b"null"), body),
        "MALFORMED",
    )
    # alg (RFC 8725 §2.1, §3.1).
    unsigned = f"{b64(jbytes(header(es, alg='none')))}.{b64(body)}"
    s.add("header-alg-none-empty-signature", R_ALG_NONE, unsigned + ".", "DISALLOWED_ALGORITHM")
    for variant in ("None", "NONE", "nOnE"):
        u = f"{b64(jbytes(header(es, alg=variant)))}.{b64(body)}."
        s.add(
            f"header-alg-none-spelled-{variant}".lower() + f"-{sum(c.isupper() for c in variant)}",
            R_ALG_NONE,
            u,
            "DISALLOWED_ALGORITHM",
        )
    genuine_sig = token(es).split(".")[2]
    s.add(
        "header-alg-none-with-genuine-signature",
        R_ALG_NONE,
        f"{unsigned}.{genuine_sig}",
        "DISALLOWED_ALGORITHM",
    )
    s.add(
        "header-alg-none-no-kid",
        R_ALG_NONE,
        f"{b64(jbytes({'alg': 'none', 'typ': 'at+jwt'}))}.{b64(body)}.",
        "DISALLOWED_ALGORITHM",
    )
    for key_name in ("es256", "rs256", "eddsa"):
        key = k[key_name]
        public = key.private.public_key()
        pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        for secret_name, secret in (("pem", pem), ("der", der), ("jwk", jbytes(key.jwk()))):
            signing_input = f"{b64(jbytes(header(key, alg='HS256')))}.{b64(body)}"
            mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
            s.add(
                f"header-alg-hs256-{key_name}-public-{secret_name}-as-secret",
                R_ALG_NONE,
                f"{signing_input}.{b64(mac)}",
                "DISALLOWED_ALGORITHM",
            )
    # Algorithm bound to the key: each signed genuinely with the named key's private
    # half, but under another algorithm than the JWK's.
    s.add(
        "header-alg-rs256-on-ps256-key", R_ALG_KEY, token(ps, alg="RS256"), "DISALLOWED_ALGORITHM"
    )
    s.add(
        "header-alg-ps256-on-rs256-key", R_ALG_KEY, token(rs, alg="PS256"), "DISALLOWED_ALGORITHM"
    )
    s.add(
        "header-alg-rs256-on-es256-key",
        R_ALG_KEY,
        raw_token(rs, jbytes(header(es, alg="RS256")), body),
        "DISALLOWED_ALGORITHM",
    )
    s.add(
        "header-alg-es256-on-eddsa-key",
        R_ALG_KEY,
        raw_token(es, jbytes(header(ed, alg="ES256")), body),
        "DISALLOWED_ALGORITHM",
    )
    s.add(
        "header-alg-eddsa-on-es256-key",
        R_ALG_KEY,
        raw_token(ed, jbytes(header(es, alg="EdDSA")), body),
        "DISALLOWED_ALGORITHM",
    )
    s.add(
        "header-alg-es384-on-es256-key", R_ALG_KEY, token(es, alg="ES384"), "DISALLOWED_ALGORITHM"
    )
    s.add(
        "header-alg-rs512-on-rs256-key", R_ALG_KEY, token(rs, alg="RS512"), "DISALLOWED_ALGORITHM"
    )
    s.add("header-alg-lowercase", R_ALG_KEY, token(es, alg="es256"), "DISALLOWED_ALGORITHM")
    for name in ("ES256K", "Ed25519", "HS512", "RSA-OAEP", "dir", "ES256 ", ""):
        s.add(
            f"header-alg-unsupported-{_slug(name) or 'empty'}"
            + ("-space" if name[-1:] == " " else ""),
            R_ALG_NONE,
            token(es, alg=name),
            "DISALLOWED_ALGORITHM",
        )
    for name, raw in (
        ("missing", None),
        ("null", b"null"),
        ("number", b"256"),
        ("array", b'["ES256"]'),
        ("object", b'{"name":"ES256"}'),
        ("true", b"true"),
    ):
        if raw is None:
            h = jbytes(header(es, alg=None))
        else:
            h = jbytes(header(es, alg="__X__")).replace(b'"__X__"', raw)
        s.add(f"header-alg-{name}", R_ALG_TYPE, raw_token(es, h, body), "MALFORMED")
    # Caller's algorithm allowlist.
    s.add(
        "header-alg-not-in-allowed-rs256",
        R_ALG_ALLOWED,
        token(rs),
        "DISALLOWED_ALGORITHM",
        algorithms=["ES256"],
    )
    s.add(
        "header-alg-not-in-allowed-es256",
        R_ALG_ALLOWED,
        token(es),
        "DISALLOWED_ALGORITHM",
        algorithms=["EdDSA", "PS256"],
    )
    s.add(
        "header-alg-not-in-allowed-eddsa",
        R_ALG_ALLOWED,
        token(ed),
        "DISALLOWED_ALGORITHM",
        algorithms=["ES256", "RS256", "PS256"],
    )
    s.add(
        "header-alg-allowed-subset-valid", R_ALG_ALLOWED, token(ed), "valid", algorithms=["EdDSA"]
    )
    # kid.
    for name, kid in (
        ("unknown", "es256-2"),
        ("case", "ES256-1"),
        ("trailing-space", "es256-1 "),
        ("empty", ""),
        ("path", "../es256-1"),
    ):
        s.add(f"header-kid-{name}", R_KID, token(es, kid=kid), "UNKNOWN_KEY")
    s.add("header-kid-missing", R_KID, token(es, kid=None), "UNKNOWN_KEY")
    for name, raw in (("null", b"null"), ("number", b"1"), ("array", b'["es256-1"]')):
        h = jbytes(header(es, kid="__X__")).replace(b'"__X__"', raw)
        s.add(f"header-kid-{name}", R_KID, raw_token(es, h, body), "UNKNOWN_KEY")
    s.add(
        "header-kid-of-other-algorithm-key",
        R_ALG_KEY,
        token(es, kid="rs256-1"),
        "DISALLOWED_ALGORITHM",
    )
    # Order of header rules.
    s.add(
        "order-alg-none-before-unknown-kid",
        R_ALG_NONE,
        f"{b64(jbytes({'alg': 'none', 'kid': 'nope', 'typ': 'at+jwt'}))}.{b64(body)}.",
        "DISALLOWED_ALGORITHM",
    )
    s.add(
        "order-embedded-key-before-unknown-kid",
        R_EMBEDDED,
        token(att, jku="https://evil.test/j"),
        "MALFORMED",
    )
    s.add(
        "order-unknown-kid-before-signature",
        R_KID,
        replace_segment(token(es, kid="nope"), 2, "AAAA"),
        "UNKNOWN_KEY",
    )
    s.add(
        "order-signature-before-typ",
        R_SIG,
        replace_segment(token(es, typ="JWT"), 2, genuine_sig),
        "BAD_SIGNATURE",
    )
    s.add(
        "order-typ-before-claims", R_TYP, token(es, claims(exp=NOW - 3600), typ="JWT"), "WRONG_TYPE"
    )
    return s


# -- signature.json -------------------------------------------------------------


def signature_cases(k: dict[str, Key]) -> Suite:
    s = Suite(
        "signature",
        "Signature encodings and lengths per algorithm, forged and tampered signatures.",
        default_jwks(k),
    )
    es, rs, ps, ed = k["es256"], k["rs256"], k["ps256"], k["eddsa"]
    good = token(es)
    head, body, sig = good.split(".")
    raw = b64_decode(sig)
    r, s_value = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")

    def with_sig(tok: str, signature: bytes) -> str:
        return replace_segment(tok, 2, b64(signature))

    s.add(
        "sig-es256-der", R_SIG_EC, with_sig(good, encode_dss_signature(r, s_value)), "BAD_SIGNATURE"
    )
    s.add("sig-es256-63-bytes", R_SIG_EC, with_sig(good, raw[:63]), "BAD_SIGNATURE")
    s.add(
        "sig-es256-65-bytes-trailing-zero", R_SIG_EC, with_sig(good, raw + b"\x00"), "BAD_SIGNATURE"
    )
    s.add("sig-es256-leading-zero-r", R_SIG_EC, with_sig(good, b"\x00" + raw), "BAD_SIGNATURE")
    s.add("sig-es256-r-s-swapped", R_SIG_EC, with_sig(good, raw[32:] + raw[:32]), "BAD_SIGNATURE")
    s.add("sig-es256-all-zero", R_SIG_EC, with_sig(good, bytes(64)), "BAD_SIGNATURE")
    s.add("sig-es256-r-zero", R_SIG_EC, with_sig(good, bytes(32) + raw[32:]), "BAD_SIGNATURE")
    s.add("sig-es256-s-zero", R_SIG_EC, with_sig(good, raw[:32] + bytes(32)), "BAD_SIGNATURE")
    order = P256_ORDER.to_bytes(32, "big")
    s.add("sig-es256-r-equals-n", R_SIG_EC, with_sig(good, order + raw[32:]), "BAD_SIGNATURE")
    s.add("sig-es256-s-equals-n", R_SIG_EC, with_sig(good, raw[:32] + order), "BAD_SIGNATURE")
    s.add(
        "sig-es256-s-plus-n",
        R_SIG_EC,
        with_sig(good, raw[:32] + ((s_value + P256_ORDER) % 2**256).to_bytes(32, "big")),
        "BAD_SIGNATURE",
    )
    s.add("sig-es256-all-ff", R_SIG_EC, with_sig(good, b"\xff" * 64), "BAD_SIGNATURE")
    s.add("sig-es256-p384-length", R_SIG_EC, with_sig(good, raw + raw[:32]), "BAD_SIGNATURE")
    s.add(
        "sig-es256-bit-flip",
        R_SIG,
        with_sig(good, raw[:-1] + bytes([raw[-1] ^ 1])),
        "BAD_SIGNATURE",
    )
    s.add(
        "sig-es256-other-key-same-kid",
        R_SIG,
        token(k["attacker-es256"].with_kid("es256-1")),
        "BAD_SIGNATURE",
    )
    s.add(
        "sig-es256-tampered-payload",
        R_SIG,
        f"{head}.{b64(jbytes(claims(sub='admin')))}.{sig}",
        "BAD_SIGNATURE",
    )
    s.add(
        "sig-es256-reencoded-payload",
        R_SIG,
        f"{head}.{b64(json.dumps(claims()).encode())}.{sig}",
        "BAD_SIGNATURE",
    )
    s.add(
        "sig-es256-signature-of-other-token",
        R_SIG,
        replace_segment(good, 2, token(es, claims(sub="bob")).split(".")[2]),
        "BAD_SIGNATURE",
    )
    s.add(
        "sig-es256-signed-without-header",
        R_SIG,
        with_sig(good, es.sign(body.encode())),
        "BAD_SIGNATURE",
    )
    s.add(
        "sig-es256-sha384-digest",
        R_SIG,
        with_sig(good, es.sign(f"{head}.{body}".encode(), "ES384")),
        "BAD_SIGNATURE",
    )
    # EdDSA.
    ed_good = token(ed)
    ed_raw = b64_decode(ed_good.split(".")[2])
    s.add(
        "sig-eddsa-trailing-extra-byte",
        R_SIG_ED,
        with_sig(ed_good, ed_raw + b"\x00"),
        "BAD_SIGNATURE",
    )
    s.add(
        "sig-eddsa-trailing-extra-byte-ff",
        R_SIG_ED,
        with_sig(ed_good, ed_raw + b"\xff"),
        "BAD_SIGNATURE",
    )
    s.add("sig-eddsa-63-bytes", R_SIG_ED, with_sig(ed_good, ed_raw[:63]), "BAD_SIGNATURE")
    s.add(
        "sig-eddsa-128-bytes-doubled", R_SIG_ED, with_sig(ed_good, ed_raw + ed_raw), "BAD_SIGNATURE"
    )
    s.add("sig-eddsa-all-zero", R_SIG_ED, with_sig(ed_good, bytes(64)), "BAD_SIGNATURE")
    s_ed = int.from_bytes(ed_raw[32:], "little")
    s.add(
        "sig-eddsa-s-plus-l",
        R_SIG_ED,
        with_sig(ed_good, ed_raw[:32] + (s_ed + ED25519_ORDER).to_bytes(32, "little")),
        "BAD_SIGNATURE",
    )
    s.add(
        "sig-eddsa-bit-flip",
        R_SIG,
        with_sig(ed_good, bytes([ed_raw[0] ^ 0x80]) + ed_raw[1:]),
        "BAD_SIGNATURE",
    )
    s.add(
        "sig-eddsa-other-key-same-kid",
        R_SIG,
        token(k["attacker-eddsa"].with_kid("eddsa-1")),
        "BAD_SIGNATURE",
    )
    # RSA.
    for key, name in ((rs, "rs256"), (ps, "ps256")):
        g = token(key)
        raw_rsa = b64_decode(g.split(".")[2])
        s.add(
            f"sig-{name}-leading-zero-257-bytes",
            R_SIG_RSA,
            with_sig(g, b"\x00" + raw_rsa),
            "BAD_SIGNATURE",
        )
        s.add(
            f"sig-{name}-truncated-255-bytes", R_SIG_RSA, with_sig(g, raw_rsa[1:]), "BAD_SIGNATURE"
        )
        s.add(
            f"sig-{name}-trailing-byte", R_SIG_RSA, with_sig(g, raw_rsa + b"\x00"), "BAD_SIGNATURE"
        )
        s.add(f"sig-{name}-all-zero", R_SIG_RSA, with_sig(g, bytes(256)), "BAD_SIGNATURE")
        s.add(f"sig-{name}-above-modulus", R_SIG_RSA, with_sig(g, b"\xff" * 256), "BAD_SIGNATURE")
        s.add(f"sig-{name}-one", R_SIG_RSA, with_sig(g, (1).to_bytes(256, "big")), "BAD_SIGNATURE")
        s.add(
            f"sig-{name}-modulus",
            R_SIG_RSA,
            with_sig(g, b64_decode(key.jwk()["n"])),
            "BAD_SIGNATURE",
        )
        s.add(
            f"sig-{name}-bit-flip",
            R_SIG,
            with_sig(g, raw_rsa[:-1] + bytes([raw_rsa[-1] ^ 1])),
            "BAD_SIGNATURE",
        )
    g = token(ps)
    s.add(
        "sig-ps256-key-pkcs1-signature",
        R_SIG,
        with_sig(
            g, ps.private.sign(g.rsplit(".", 1)[0].encode(), padding.PKCS1v15(), hashes.SHA256())
        ),
        "BAD_SIGNATURE",
    )
    g = token(rs)
    s.add(
        "sig-rs256-key-pss-signature",
        R_SIG,
        with_sig(g, pss_sign(rs.private, g.rsplit(".", 1)[0].encode())),
        "BAD_SIGNATURE",
    )
    # PKCS#1 v1.5 encodings a parsing (instead of comparing) verifier might accept, each
    # signed with the genuine private key.
    signing_input = g.rsplit(".", 1)[0].encode()
    genuine = b64_decode(g.split(".")[2])
    assert rsa_raw_sign(rs.private, pkcs1_encoding(signing_input, 256)) == genuine
    no_null = bytes.fromhex("302f300b0609608648016503040201") + b"\x04\x20"
    for name, variant in {
        "digest-info-without-null": {"digest_info": no_null},
        "digest-info-sha512-oid": {
            "digest_info": bytes.fromhex("3031300d060960864801650304020305000420")
        },
        "trailing-garbage": {"garbage": b"\x00" * 4, "short_by": 4},
        "garbage-in-digest-info": {"trailer": b"\x00", "short_by": 1},
        "block-type-2": {"block_type": b"\x02"},
        "padding-not-ff": {"fill_byte": b"\xfe"},
    }.items():
        forged = with_sig(
            g, rsa_raw_sign(rs.private, pkcs1_encoding(signing_input, 256, **variant))
        )
        s.add(f"sig-rs256-pkcs1-{name}", R_SIG, forged, "BAD_SIGNATURE")
    # PSS with another salt length than the hash length (RFC 7518 §3.5): "auto" salt
    # detection would accept these.
    gp = token(ps)
    auto = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
    for salt_length in (0, 20, 64, 222):
        pss_input = gp.rsplit(".", 1)[0].encode()
        signature = pss_sign(ps.private, pss_input, salt_length)
        ps.private.public_key().verify(signature, pss_input, auto, hashes.SHA256())  # genuine
        forged = with_sig(gp, signature)
        s.add(f"sig-ps256-salt-length-{salt_length}", R_SIG_RSA, forged, "BAD_SIGNATURE")
    s.add(
        "sig-rs256-sha512-digest",
        R_SIG,
        with_sig(
            g, rs.private.sign(g.rsplit(".", 1)[0].encode(), padding.PKCS1v15(), hashes.SHA512())
        ),
        "BAD_SIGNATURE",
    )
    return s


# -- keys.json --------------------------------------------------------------------


def keys_cases(k: dict[str, Key]) -> Suite:
    s = Suite(
        "keys",
        "Unusable keys in the set: each is a per-token rejection; the good keys keep working.",
        default_jwks(k),
    )
    es = k["es256"]
    good_jwks = [es.jwk()]
    weak = k["rsa1024"]
    es_pub = es.jwk()

    def set_with(*bad: dict[str, Any]) -> dict[str, Any]:
        return {"keys": [*bad, *good_jwks]}

    def pair(
        name: str,
        bad_jwk: dict[str, Any],
        bad_token: str,
        rule: str = R_KEYSET,
        reason: str = "UNKNOWN_KEY",
    ) -> None:
        jwks = set_with(bad_jwk)
        s.add(f"keys-{name}-token", rule, bad_token, reason, jwks=jwks)
        s.add(f"keys-{name}-other-key-still-valid", rule, token(es), "valid", jwks=jwks)

    pair("rsa-1024", weak.jwk(), token(weak))
    other = k["attacker-es256"]
    pair(
        "ec-alg-rs256-mismatch",
        {**other.jwk(), "kid": "bad-1", "alg": "RS256"},
        token(other.with_kid("bad-1")),
    )
    pair(
        "ec-alg-es384-on-p256",
        {**other.jwk(), "kid": "bad-1", "alg": "ES384"},
        token(other.with_kid("bad-1"), alg="ES384"),
    )
    off_curve = {**other.jwk(), "kid": "bad-1", "y": es_pub["x"]}
    pair("ec-point-not-on-curve", off_curve, token(other.with_kid("bad-1")))
    pair(
        "ec-crv-p384-with-p256-point",
        {**other.jwk(), "kid": "bad-1", "crv": "P-384"},
        token(other.with_kid("bad-1")),
    )
    short_x = {
        **other.jwk(),
        "kid": "bad-1",
        "x": b64(b64_decode(other.jwk()["x"]).lstrip(b"\x00")[1:]),
    }
    pair("ec-x-wrong-length", short_x, token(other.with_kid("bad-1")))
    rsa_other = k["ps256"]
    no_alg = {**rsa_other.jwk(alg=None), "kid": "bad-1"}
    pair("rsa-without-alg", no_alg, token(Key("bad-1", "RS256", rsa_other.private)))
    pair("use-enc", {**other.jwk(), "kid": "bad-1", "use": "enc"}, token(other.with_kid("bad-1")))
    pair(
        "key-ops-sign-only",
        {**other.jwk(), "kid": "bad-1", "key_ops": ["sign"]},
        token(other.with_kid("bad-1")),
    )
    pair(
        "kty-unknown",
        {"kty": "XYZ", "kid": "bad-1", "alg": "ES256", "x": "AA"},
        token(other.with_kid("bad-1")),
    )
    pair(
        "kty-oct-public-looking",
        {"kty": "oct", "kid": "bad-1", "alg": "HS256"},
        token(other.with_kid("bad-1")),
    )
    okp_x448 = {"kty": "OKP", "crv": "X25519", "kid": "bad-1", "x": k["eddsa"].jwk()["x"]}
    pair("okp-x25519", okp_x448, token(k["eddsa"].with_kid("bad-1")))
    okp_short = {
        **k["attacker-eddsa"].jwk(),
        "kid": "bad-1",
        "x": k["attacker-eddsa"].jwk()["x"][:-2],
    }
    pair("okp-x-wrong-length", okp_short, token(k["attacker-eddsa"].with_kid("bad-1")))
    rsa_e1 = {**rsa_other.jwk(), "kid": "bad-1", "alg": "RS256", "e": "AQ"}
    # With e = 1 a "signature" is the encoded message itself: anyone could forge.
    forged = _rsa_e1_forgery(rsa_other, "bad-1")
    pair("rsa-exponent-1", rsa_e1, forged)
    rsa_even = {**rsa_other.jwk(), "kid": "bad-1", "alg": "RS256", "e": "AQAA"}
    pair("rsa-exponent-even", rsa_even, token(Key("bad-1", "RS256", rsa_other.private)))
    lead0 = {
        **rsa_other.jwk(),
        "kid": "bad-1",
        "alg": "RS256",
        "n": b64(b"\x00" + b64_decode(rsa_other.jwk()["n"])),
    }
    pair("rsa-modulus-leading-zero", lead0, token(Key("bad-1", "RS256", rsa_other.private)))
    pair(
        "ec-x-padded-base64",
        {**other.jwk(), "kid": "bad-1", "x": other.jwk()["x"] + "="},
        token(other.with_kid("bad-1")),
    )
    pair(
        "ec-alg-none",
        {**other.jwk(), "kid": "bad-1", "alg": "none"},
        token(other.with_kid("bad-1")),
    )
    pair("ec-alg-number", {**other.jwk(), "kid": "bad-1", "alg": 7}, token(other.with_kid("bad-1")))
    pair(
        "ed25519-alg-es256",
        {**k["attacker-eddsa"].jwk(), "kid": "bad-1", "alg": "ES256"},
        token(k["attacker-eddsa"].with_kid("bad-1")),
    )
    # Ed25519 public keys of small order (and non-canonical encodings of them): with one,
    # R = identity, S = 0 verifies for every message whose k is a multiple of the order.
    for name, y in ED25519_SMALL_ORDER_Y.items():
        x = y.to_bytes(32, "little")
        pair(f"ed25519-small-order-{name}", _okp("bad-1", x), _small_order_forgery("bad-1", x))
    identity_noncanonical = (ED25519_P + 1).to_bytes(32, "little")
    pair(
        "ed25519-non-canonical-identity",
        _okp("bad-1", identity_noncanonical),
        _small_order_forgery("bad-1", identity_noncanonical),
    )
    signed_identity = (1 | 1 << 255).to_bytes(32, "little")
    pair(
        "ed25519-identity-sign-bit",
        _okp("bad-1", signed_identity),
        _small_order_forgery("bad-1", signed_identity),
    )
    pair("kid-empty-string", {**other.jwk(), "kid": ""}, token(other.with_kid("")))
    pair(
        "rsa-exponent-leading-zero",
        {**no_alg, "alg": "RS256", "e": "AAEAAQ"},
        token(Key("bad-1", "RS256", rsa_other.private)),
    )
    pair("ec-x-number", {**other.jwk(), "kid": "bad-1", "x": 12345}, token(other.with_kid("bad-1")))
    pair("ec-y-missing", {**other.jwk(y=None), "kid": "bad-1"}, token(other.with_kid("bad-1")))
    pair(
        "rsa-2047-bits-claimed-2048",
        _rsa_2047(rsa_other),
        token(Key("bad-1", "RS256", rsa_other.private)),
    )
    # A key without kid is never selected, even when it is the only key.
    s.add(
        "keys-lone-key-without-kid-token-without-kid",
        R_KID,
        token(es, kid=None),
        "UNKNOWN_KEY",
        jwks={"keys": [es.jwk(kid=None)]},
    )
    s.add(
        "keys-lone-key-without-kid-token-with-kid",
        R_KID,
        token(es),
        "UNKNOWN_KEY",
        jwks={"keys": [es.jwk(kid=None)]},
    )
    s.add("keys-empty-set", R_KID, token(es), "UNKNOWN_KEY", jwks={"keys": []})
    s.add(
        "keys-es384-key-alg-not-allowed",
        R_ALG_ALLOWED,
        token(k["es384"]),
        "DISALLOWED_ALGORITHM",
        jwks={"keys": [k["es384"].jwk(), es.jwk()]},
    )
    s.add(
        "keys-es384-key-other-key-still-valid",
        R_ALG_ALLOWED,
        token(es),
        "valid",
        jwks={"keys": [k["es384"].jwk(), es.jwk()]},
    )
    s.add(
        "keys-every-bad-key-at-once-good-key-valid",
        R_KEYSET,
        token(es),
        "valid",
        jwks={
            "keys": [
                weak.jwk(),
                *(
                    {**j, "kid": f"bad-{i}"}
                    for i, j in enumerate((off_curve, no_alg, rsa_e1, okp_x448))
                ),
                es.jwk(),
            ]
        },
    )
    s.add(
        "keys-extra-jwk-members-ignored",
        R_KEYSET,
        token(es),
        "valid",
        jwks={"keys": [{**es.jwk(), "x5t": "abc", "ext": True, "foo": {"bar": 1}}]},
    )
    s.add(
        "keys-key-ops-verify",
        R_KEYSET,
        token(es),
        "valid",
        jwks={"keys": [es.jwk(key_ops=["verify"])]},
    )
    s.add("keys-no-use", R_KEYSET, token(es), "valid", jwks={"keys": [es.jwk(use=None)]})
    s.add(
        "keys-ec-without-alg-implied",
        R_KEYSET,
        token(es),
        "valid",
        jwks={"keys": [es.jwk(alg=None)]},
    )
    s.add(
        "keys-same-rsa-key-two-algs",
        R_ALG_KEY,
        token(Key("ps-twin", "PS256", k["rs256"].private)),
        "valid",
        jwks={"keys": [k["rs256"].jwk(), {**k["rs256"].jwk(), "kid": "ps-twin", "alg": "PS256"}]},
    )
    s.add(
        "too-large-one-over", R_SIZE, _sized_token(es, 1024, 1), "TOO_LARGE", max_token_bytes=1024
    )
    s.add(
        "too-large-exact-limit-valid",
        R_SIZE,
        _sized_token(es, 1024, 0),
        "valid",
        max_token_bytes=1024,
    )
    s.add("too-large-garbage-over-limit", R_SIZE, "a" * 8193, "TOO_LARGE")
    s.add("too-large-before-json", R_SIZE, "!" * 300, "TOO_LARGE", max_token_bytes=256)
    return s


ED25519_P = 2**255 - 19
ED25519_ORDER_8_Y = 2707385501144840649318225287225658788936804267575313519463743609750303402022
ED25519_SMALL_ORDER_Y = {
    "identity": 1,
    "order-2": ED25519_P - 1,
    "order-4": 0,
    "order-8": ED25519_ORDER_8_Y,
    "order-8-negated": ED25519_P - ED25519_ORDER_8_Y,
}


def _okp(kid: str, x: bytes) -> dict[str, Any]:
    return {"kty": "OKP", "crv": "Ed25519", "x": b64(x), "kid": kid, "alg": "EdDSA", "use": "sig"}


def _small_order_forgery(kid: str, x: bytes) -> str:
    """An EdDSA token that verifies under the small-order key ``x`` without any private
    key: R = identity, S = 0, and a jti chosen so that k = H(R || A || M) mod L is a
    multiple of 8 (then [k]A is the identity and [S]B = R + [k]A holds)."""
    identity = (1).to_bytes(32, "little")
    head = b64(jbytes({"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}))
    for attempt in range(1000):
        body = b64(jbytes(claims(jti=f"forged-{attempt}")))
        digest = hashlib.sha512(identity + x + f"{head}.{body}".encode()).digest()
        if int.from_bytes(digest, "little") % ED25519_ORDER % 8 == 0:
            forged = f"{head}.{body}.{b64(identity + bytes(32))}"
            _assert_plain_ed25519_accepts(x, forged)
            return forged
    raise AssertionError("no forgeable jti found")


def _assert_plain_ed25519_accepts(x: bytes, forged: str) -> None:
    """Prove the forgery is real: plain Ed25519 verification (no key policy) accepts it,
    where the library can load the point at all."""
    try:
        public = ed25519.Ed25519PublicKey.from_public_bytes(x)
    except ValueError:
        return
    signing_input, _, signature = forged.rpartition(".")
    public.verify(b64_decode(signature), signing_input.encode())


def _sized_token(es: Key, limit: int, over: int) -> str:
    for filler in range(2000):
        tok = token(es, claims(pad="p" * filler))
        if len(tok) == limit + over:
            return tok
        if len(tok) > limit + over:
            break
    # The signature segment has a fixed length: pad with a header member instead.
    for filler in range(2000):
        for hfill in range(4):
            tok = token(es, claims(pad="p" * filler), foo="f" * hfill)
            if len(tok) == limit + over:
                return tok
    raise AssertionError("no token of the wanted size")


def _rsa_2047(key: Key) -> dict[str, Any]:
    """A JWK whose modulus is the key's shifted right by one bit: 2047 bits, too small."""
    n = int.from_bytes(b64_decode(key.jwk()["n"]), "big") >> 1
    return {**key.jwk(), "kid": "bad-1", "alg": "RS256", "n": b64_uint(n | 1)}


def _rsa_e1_forgery(key: Key, kid: str) -> str:
    """RS256 token whose 'signature' is its own EMSA-PKCS1-v1_5 encoding (valid if e = 1)."""
    signing_input = f"{b64(jbytes(header(Key(kid, 'RS256', key.private))))}.{b64(jbytes(claims()))}"
    digest_info = (
        bytes.fromhex("3031300d060960864801650304020105000420")
        + hashlib.sha256(signing_input.encode()).digest()
    )
    k_len = (key.private.key_size + 7) // 8
    em = b"\x00\x01" + b"\xff" * (k_len - len(digest_info) - 3) + b"\x00" + digest_info
    return f"{signing_input}.{b64(em)}"


# -- vectors-next/cnf.json: certificate-bound tokens ---------------------------

R_CNF_SHAPE = (
    "B1 cnf, when present, is a JSON object and its x5t#S256 a 43-character canonical "
    "base64url string; otherwise MALFORMED (RFC 7800 §3.1, RFC 8705 §3.1)"
)
R_CNF_UNKNOWN = (
    "B2 a cnf with any member but x5t#S256, or with none, cannot be checked: "
    "CERTIFICATE_MISMATCH (RFC 7800 §3)"
)
R_CNF_MATCH = (
    "B3 a bound token is valid only when the presenter's x5t#S256 equals cnf's exactly; "
    "no presenter: CERTIFICATE_MISMATCH (RFC 8705 §3)"
)
R_CNF_UNBOUND = "B4 a token without cnf ignores the presenter (RFC 8705 §3)"
R_CNF_ORDER = "B5 the binding is checked after every claim rule, before revocation"


def thumbprint(label: bytes) -> str:
    """A stand-in x5t#S256: base64url(SHA-256(label)) (the DER of a certificate in life)."""
    return b64(hashlib.sha256(label).digest())


def cnf_cases(k: dict[str, Key]) -> Suite:
    s = Suite(
        "cnf",
        "Certificate-bound tokens (RFC 8705 §3): the cnf claim against the per-case "
        "presenter_x5t_s256 (absent: no certificate was presented).",
        default_jwks(k),
    )
    es = k["es256"]
    mine, other = thumbprint(b"client certificate A"), thumbprint(b"client certificate B")

    def bound(cnf: Any, **more: Any) -> str:
        return token(es, claims(cnf=cnf, **more))

    s.add("cnf-bound-presenter-matches", R_CNF_MATCH, bound({"x5t#S256": mine}), "valid",
          presenter=mine)
    s.add("cnf-bound-no-presenter", R_CNF_MATCH, bound({"x5t#S256": mine}),
          "CERTIFICATE_MISMATCH")
    s.add("cnf-bound-other-presenter", R_CNF_MATCH, bound({"x5t#S256": mine}),
          "CERTIFICATE_MISMATCH", presenter=other)
    swapped = mine.swapcase()  # base64url is case-sensitive: another value
    s.add("cnf-bound-presenter-case-differs", R_CNF_MATCH, bound({"x5t#S256": mine}),
          "CERTIFICATE_MISMATCH", presenter=swapped)
    s.add("cnf-unbound-presenter-ignored", R_CNF_UNBOUND, token(es), "valid", presenter=other)
    escaped = raw_token(es, jbytes(header(es)), jbytes(claims())[:-1]
                        + b',"cnf":{"x5t\\u0023S256":"' + mine.encode() + b'"}}')
    s.add("cnf-member-name-escaped-matches", R_CNF_MATCH, escaped, "valid", presenter=mine)
    duplicate = raw_token(es, jbytes(header(es)), jbytes(claims())[:-1]
                          + b',"cnf":{"x5t#S256":"' + other.encode() + b'","x5t#S256":"'
                          + mine.encode() + b'"}}')
    s.add("cnf-member-duplicate", "C3 duplicate member names are refused at any depth "
          "(RFC 7515 §4, RFC 7519 §4)", duplicate, "MALFORMED", presenter=mine)
    for name, value in (("string", mine), ("array", [{"x5t#S256": mine}]), ("null", None),
                        ("number", 1), ("true", True)):
        payload = {**claims(), "cnf": value}
        s.add(f"cnf-not-object-{name}", R_CNF_SHAPE, token(es, payload), "MALFORMED",
              presenter=mine)
    for name, value in (
        ("short", mine[:-1]),
        ("long", mine + "A"),
        ("padded", mine + "="),
        ("standard-alphabet", "+/" + mine[2:]),
        ("padding-bits-set", mine[:-1] + chr(ord(mine[-1]) + 1)),
        ("hex", hashlib.sha256(b"client certificate A").hexdigest()),
        ("number", 5),
        ("null", None),
        ("empty", ""),
    ):
        payload = {**claims(), "cnf": {"x5t#S256": value}}
        s.add(f"cnf-x5t-{name}", R_CNF_SHAPE, token(es, payload), "MALFORMED", presenter=mine)
    for name, cnf in (
        ("empty", {}),
        ("jkt-only", {"jkt": mine}),
        ("x5t-and-jkt", {"x5t#S256": mine, "jkt": mine}),
        ("x5t-sha1-only", {"x5t": mine[:27]}),
        ("member-case-differs", {"X5T#S256": mine}),
    ):
        s.add(f"cnf-unknown-{name}", R_CNF_UNKNOWN, bound(cnf), "CERTIFICATE_MISMATCH",
              presenter=mine)
    s.add("cnf-order-expired-first", R_CNF_ORDER,
          bound({"x5t#S256": mine}, exp=NOW - 100), "EXPIRED", presenter=other)
    s.add("cnf-order-audience-first", R_CNF_ORDER,
          bound({"x5t#S256": mine}, aud="billing"), "WRONG_AUDIENCE")
    s.add("cnf-order-scope-first", R_CNF_ORDER, bound({"x5t#S256": mine}),
          "MISSING_SCOPE", scopes=["orders:admin"], presenter=other)
    s.add("cnf-order-malformed-after-expired", R_CNF_ORDER,
          bound("not an object", exp=NOW - 100), "EXPIRED", presenter=mine)
    return s


# ---------------------------------------------------------------------------
# Checking against the reference verifier, writing, --check
# ---------------------------------------------------------------------------

# -- vectors-next/act.json --------------------------------------------------

R_ACT = (
    "A1 act, when present, is a JSON object with a non-empty string sub; a nested act is an "
    "object of the same shape; at most 8 act objects in all; other members are ignored; "
    "anything else is MALFORMED, checked after the J rules (RFC 8693 §4.1; depth: tokend "
    "policy)"
)
R_DELEGATION = (
    "A2 option delegation: required refuses a token without act, refused a token with act "
    "(DELEGATION), after A1; any accepts both (tokend policy; RFC 8693 §4.1)"
)


def _chain(*subs: str) -> dict[str, Any]:
    act: dict[str, Any] | None = None
    for sub in reversed(subs):
        act = {"sub": sub} if act is None else {"sub": sub, "act": act}
    assert act is not None
    return act


def act_cases(k: dict[str, Key]) -> Suite:
    s = Suite(
        "act",
        "The act (actor) claim of delegated tokens and the delegation option (rules A1, A2).",
        default_jwks(k), NEXT_OPTIONS,
    )
    es = k["es256"]
    deepest = [f"svc-{i}" for i in range(8)]
    for case_id, act in (
        ("act-one-actor", _chain("orders")),
        ("act-two-actors", _chain("payments-caller", "orders")),
        ("act-eight-actors", _chain(*deepest)),
        ("act-other-members-ignored",
         {"sub": "orders", "iss": "https://elsewhere.test", "exp": 1, "client_id": None}),
        ("act-nested-other-members-ignored",
         {"sub": "orders", "act": {"sub": "login", "may_act": {"sub": "x"}}}),
        ("act-sub-unicode", {"sub": "spiffe://test/ns/ø/sa/api"}),
    ):
        s.add(case_id, R_ACT, token(es, claims(act=act)), "valid")
    for case_id, act in (
        ("act-string", "orders"),
        ("act-array", [{"sub": "orders"}]),
        ("act-number", 1),
        ("act-true", True),
        ("act-empty-object", {}),
        ("act-sub-absent", {"client_id": "orders"}),
        ("act-sub-empty", {"sub": ""}),
        ("act-sub-number", {"sub": 7}),
        ("act-sub-null", {"sub": None}),
        ("act-sub-array", {"sub": ["orders"]}),
        ("act-sub-object", {"sub": {"sub": "orders"}}),
        ("act-nested-string", {"sub": "orders", "act": "login"}),
        ("act-nested-null", {"sub": "orders", "act": None}),
        ("act-nested-empty", {"sub": "orders", "act": {}}),
        ("act-nested-sub-empty", {"sub": "orders", "act": {"sub": ""}}),
        ("act-deep-nested-array", _chain("a", "b", "c") | {"act": {"sub": "b", "act": []}}),
        ("act-nine-actors", _chain(*deepest, "one-too-many")),
    ):
        s.add(case_id, R_ACT, token(es, claims(act=act)), "MALFORMED")
    # claims() drops members set to None: a JSON null act needs the raw payload.
    null_act = jbytes(claims())[:-1] + b',"act":null}'
    s.add("act-null", R_ACT, raw_token(es, jbytes(header(es)), null_act), "MALFORMED")
    # The member name written with an escape is still act.
    escaped = jbytes(claims())[:-1] + b',"\\u0061ct":"orders"}'
    s.add("act-name-escaped", R_ACT, raw_token(es, jbytes(header(es)), escaped), "MALFORMED")
    escaped_ok = jbytes(claims())[:-1] + b',"\\u0061ct":{"\\u0073ub":"orders"}}'
    s.add("act-name-escaped-valid", R_ACT, raw_token(es, jbytes(header(es)), escaped_ok),
          "valid")
    # Order: the J rules first, then A1, then A2.
    bad = claims(act="orders")
    s.add("act-malformed-but-expired", R_ACT, token(es, claims(act="orders", exp=NOW - 100)),
          "EXPIRED")
    s.add("act-malformed-but-wrong-audience", R_ACT,
          token(es, claims(act="orders", aud="billing")), "WRONG_AUDIENCE")
    s.add("act-malformed-but-missing-scope", R_ACT, token(es, bad), "MISSING_SCOPE",
          scopes=["admin"])
    s.add("act-malformed-delegation-refused", R_ACT, token(es, bad), "MALFORMED",
          delegation="refused")
    s.add("act-malformed-delegation-required", R_ACT, token(es, bad), "MALFORMED",
          delegation="required")
    direct, delegated = token(es), token(es, claims(act=_chain("orders")))
    for option, direct_expect, delegated_expect in (
        ("any", "valid", "valid"),
        ("required", "DELEGATION", "valid"),
        ("refused", "valid", "DELEGATION"),
    ):
        s.add(f"delegation-{option}-direct", R_DELEGATION, direct, direct_expect,
              delegation=option)
        s.add(f"delegation-{option}-delegated", R_DELEGATION, delegated, delegated_expect,
              delegation=option)
    s.add("delegation-required-expired", R_DELEGATION, token(es, claims(exp=NOW - 100)),
          "EXPIRED", delegation="required")
    s.add("delegation-refused-missing-scope", R_DELEGATION, delegated, "MISSING_SCOPE",
          delegation="refused", scopes=["admin"])
    return s



SUITES = (
    valid_cases,
    base64url_cases,
    json_cases,
    numericdate_cases,
    claims_cases,
    header_cases,
    signature_cases,
    keys_cases,
)
NEXT_SUITES = (cnf_cases, act_cases)


def reference_result(case: Case) -> tuple[str, str | None]:
    """("valid", sub) or (reason, None) from tokend_client.LocalVerifier."""
    from tokend_client import InvalidToken, LocalVerifier

    o = case.options
    verifier = LocalVerifier(
        case.jwks,
        issuer=o["issuer"],
        audience=o["audience"],
        algorithms=o["algorithms"],
        leeway=o["leeway"],
        max_lifetime=o["max_lifetime"],
        required_typ=o["required_typ"],
        max_token_bytes=o["max_token_bytes"],
        required_claims=o["required_claims"],
    )
    try:
        result = verifier.verify(case.token, now=case.now, required_scopes=case.required_scopes,
                                 presenter_x5t_s256=case.presenter,
                                 delegation=o.get("delegation", "any"))
    except InvalidToken as exc:
        return exc.reason.value, None
    return "valid", result.get("sub")


def build(keys: dict[str, Key], suites: tuple[Any, ...] = SUITES,
          seen: set[str] | None = None) -> dict[str, str]:
    """File name -> exact file text, after checking every case with the reference."""
    files: dict[str, str] = {}
    seen = set() if seen is None else seen
    problems: list[str] = []
    for make in suites:
        suite = make(keys)
        for case in suite.cases:
            if (
                case.id in seen
                or not case.id.replace("-", "").isalnum()
                or case.id != case.id.lower()
            ):
                problems.append(f"bad or duplicate id {case.id!r}")
            seen.add(case.id)
            try:
                got, sub = reference_result(case)
            except (TypeError, ValueError) as exc:
                got, sub = f"configuration error {exc}", None
            if got != case.expect or (got == "valid" and sub != case.sub):
                problems.append(
                    f"{suite.name}/{case.id}: expected {case.expect} (sub {case.sub!r}), "
                    f"reference gives {got} (sub {sub!r})"
                )
        files[f"{suite.name}.json"] = (
            json.dumps(suite.document(), indent=2, ensure_ascii=True) + "\n"
        )
    if problems:
        sys.exit("reference verifier disagrees:\n  " + "\n  ".join(problems))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="compare with the committed files; write nothing"
    )
    parser.add_argument("--new-keys", action="store_true", help="create missing test keys")
    args = parser.parse_args(argv)
    keys = load_keys(create_missing=args.new_keys)
    seen: set[str] = set()  # case ids are unique across both directories
    # Module globals read at call time: the drift test points VECTOR_DIR elsewhere.
    outputs = ((VECTOR_DIR, SUITES), (NEXT_VECTOR_DIR, NEXT_SUITES))
    built = [(directory, build(keys, suites, seen)) for directory, suites in outputs]
    if args.check:
        return _check(built)
    for directory, files in built:
        directory.mkdir(exist_ok=True)
        for name, text in files.items():
            (directory / name).write_text(text, "utf-8")
        for path in directory.glob("*.json"):
            if path.name not in files:
                path.unlink()
        print(f"wrote {len(files)} files to {directory}")
    return 0


def _check(built: list[tuple[Path, dict[str, str]]]) -> int:
    for directory, files in built:
        stale = sorted(
            name
            for name, text in files.items()
            if not (directory / name).is_file() or (directory / name).read_text("utf-8") != text
        )
        extra = sorted(p.name for p in directory.glob("*.json") if p.name not in files)
        if stale or extra:
            print(
                f"conformance vectors in {directory.name}/ out of date: {stale + extra}; "
                "run conformance/generate.py",
                file=sys.stderr,
            )
            return 1
    cases = sum(len(json.loads(text)["cases"]) for _, files in built for text in files.values())
    count = sum(len(files) for _, files in built)
    print(f"conformance vectors up to date ({cases} cases in {count} files)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
