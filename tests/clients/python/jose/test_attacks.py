"""Attacks on the JWS layer, each with real keys and real signatures.

Every forged token here is signed with a genuine private key where that matters, so
a rejection proves the check under test fired, not that the signature was garbage.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tests.clients.python.client_test_support import (
    EC_ORDERS,
    SigningKey,
    b64,
    b64_uint,
    compact,
    generate_key,
    json_bytes,
    make_token,
    sign_as,
)
from tokend_client import InvalidToken, JwkSet, LocalVerifier, PublicKey, Reason, verify_compact
from tokend_client.jose import (
    MAX_JSON_DEPTH,
    SUPPORTED_ALGORITHMS,
    b64url_decode,
    strict_json_loads,
)

ALL_ALGS = tuple(sorted(SUPPORTED_ALGORITHMS))
CLAIMS = {"sub": "alice", "scope": "read"}
P256 = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF


@pytest.fixture(scope="module")
def keys(signing_keys: dict[str, SigningKey]) -> dict[str, SigningKey]:
    return signing_keys


@pytest.fixture(scope="module")
def jwks(keys: dict[str, SigningKey]) -> JwkSet:
    return JwkSet.from_json({"keys": [k.public_jwk() for k in keys.values()]})


@pytest.fixture(scope="module")
def es256(keys: dict[str, SigningKey]) -> SigningKey:
    return keys["ES256"]


def reason(token: Any, jwks: JwkSet | dict[str, Any], algorithms: Any = ALL_ALGS) -> Reason:
    """The rejection reason; fails the test if the token is accepted."""
    with pytest.raises(InvalidToken) as caught:
        verify_compact(token, jwks, algorithms)
    if isinstance(token, str) and len(token) > 8:
        assert token not in str(caught.value)  # messages never echo the token
    return caught.value.reason


def signed_header(key: SigningKey, header: dict[str, Any], payload: bytes | None = None) -> str:
    return compact(json_bytes(header), payload or json_bytes(CLAIMS), key)


def resign(token: str, key: SigningKey) -> str:
    """Keep header and payload text, replace the signature with a genuine one."""
    head, payload, _ = token.split(".")
    return f"{head}.{payload}.{b64(key.sign(f'{head}.{payload}'.encode()))}"


# -- sanity -------------------------------------------------------------------


def test_genuine_tokens_verify(keys: dict[str, SigningKey], jwks: JwkSet) -> None:
    for key in keys.values():
        token = make_token(key, CLAIMS)
        assert json.loads(verify_compact(token, jwks, ALL_ALGS)) == CLAIMS
        assert verify_compact(token.encode("ascii"), jwks, ALL_ALGS) == json_bytes(CLAIMS)


# -- algorithm confusion (RFC 8725 §2.1, §3.1) ---------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_refused(alg: str, es256: SigningKey, jwks: JwkSet) -> None:
    unsigned = f"{b64(json_bytes({'alg': alg, 'kid': es256.kid}))}.{b64(json_bytes(CLAIMS))}"
    assert reason(unsigned + ".", jwks) is Reason.DISALLOWED_ALGORITHM
    genuine_signature = make_token(es256, CLAIMS).split(".")[2]
    assert reason(f"{unsigned}.{genuine_signature}", jwks) is Reason.DISALLOWED_ALGORITHM


def _public_key_secrets(key: SigningKey) -> list[bytes]:
    public = key.private.public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return [pem, pem.strip(), der, json_bytes(key.public_jwk())]


@pytest.mark.parametrize("key_alg", ["ES256", "RS256", "EdDSA"])
@pytest.mark.parametrize("hs", ["HS256", "HS384", "HS512"])
def test_hmac_with_public_key_as_secret(
    key_alg: str, hs: str, keys: dict[str, SigningKey], jwks: JwkSet
) -> None:
    key = keys[key_alg]
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[hs]
    signing_input = f"{b64(json_bytes({'alg': hs, 'kid': key.kid}))}.{b64(json_bytes(CLAIMS))}"
    for secret in _public_key_secrets(key):
        mac = hmac.new(secret, signing_input.encode(), digest).digest()
        token = f"{signing_input}.{b64(mac)}"
        assert reason(token, jwks) is Reason.DISALLOWED_ALGORITHM
        # Even a caller who lists HS256 cannot turn HMAC on.
        assert reason(token, jwks, (hs, *ALL_ALGS)) is Reason.DISALLOWED_ALGORITHM


def test_rs256_token_against_ps256_key(keys: dict[str, SigningKey], jwks: JwkSet) -> None:
    ps_key = keys["PS256"]  # JWK alg PS256; sign PKCS#1 v1.5 with the same RSA key
    rs_signed = SigningKey(kid=ps_key.kid, alg="RS256", private=ps_key.private)
    assert reason(make_token(rs_signed, CLAIMS), jwks) is Reason.DISALLOWED_ALGORITHM


def test_ps256_token_against_rs256_key(keys: dict[str, SigningKey], jwks: JwkSet) -> None:
    rs_key = keys["RS256"]
    ps_signed = SigningKey(kid=rs_key.kid, alg="PS256", private=rs_key.private)
    assert reason(make_token(ps_signed, CLAIMS), jwks) is Reason.DISALLOWED_ALGORITHM


def test_header_alg_cannot_pick_another_hash(es256: SigningKey, jwks: JwkSet) -> None:
    token = make_token(es256, CLAIMS, header={"alg": "ES384"})
    assert reason(token, jwks) is Reason.DISALLOWED_ALGORITHM


def test_algorithm_outside_caller_allowlist(es256: SigningKey, jwks: JwkSet) -> None:
    token = make_token(es256, CLAIMS)
    assert reason(token, jwks, ("RS256", "EdDSA")) is Reason.DISALLOWED_ALGORITHM


@pytest.mark.parametrize("alg", ["HS256", "RSA1_5", "A256GCM", "ES256K", "Ed25519", "", "es256"])
def test_unknown_algorithms(alg: str, es256: SigningKey, jwks: JwkSet) -> None:
    token = make_token(es256, CLAIMS, header={"alg": alg})
    assert reason(token, jwks) is Reason.DISALLOWED_ALGORITHM


def test_algorithms_given_as_a_string_is_a_programming_error(
    es256: SigningKey, jwks: JwkSet
) -> None:
    with pytest.raises(TypeError):
        verify_compact(make_token(es256, CLAIMS), jwks, "ES256")


# -- ECDSA signature encoding (RFC 7518 §3.4) -----------------------------------


def _split_rs(signature: bytes) -> tuple[int, int]:
    half = len(signature) // 2
    return int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")


def _with_signature(token: str, signature: bytes) -> str:
    head, payload, _ = token.split(".")
    return f"{head}.{payload}.{b64(signature)}"


def test_der_signature_refused(es256: SigningKey, jwks: JwkSet) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    token = make_token(es256, CLAIMS)
    head, payload, _ = token.split(".")
    der = es256.private.sign(f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    assert reason(_with_signature(token, der), jwks) is Reason.BAD_SIGNATURE


@pytest.mark.parametrize(
    "mangle",
    [
        lambda sig: b"\x00" + sig,
        lambda sig: sig + b"\x00",
        lambda sig: sig[:32] + b"\x00" + sig[32:],
        lambda sig: sig[:-1],
        lambda sig: sig[1:],
        lambda sig: b"",
    ],
    ids=["leading-zero", "trailing-zero", "zero-between", "short", "short-front", "empty"],
)
def test_signature_length_must_be_exact(
    mangle: Callable[[bytes], bytes], es256: SigningKey, jwks: JwkSet
) -> None:
    token = make_token(es256, CLAIMS)
    signature = b64url_decode(token.split(".")[2])
    assert reason(_with_signature(token, mangle(signature)), jwks) is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_high_s_is_valid_ecdsa(alg: str, keys: dict[str, SigningKey], jwks: JwkSet) -> None:
    """ECDSA is malleable: (r, n - s) verifies too. RFC 7518 does not require low-s, so
    both are accepted; replay of a token is bounded by jti/exp and revocation, not by
    signature uniqueness."""
    key, order = keys[alg], EC_ORDERS[alg]
    token = make_token(key, CLAIMS)
    signature = b64url_decode(token.split(".")[2])
    r, s = _split_rs(signature)
    size = len(signature) // 2
    flipped = r.to_bytes(size, "big") + (order - s).to_bytes(size, "big")
    assert verify_compact(_with_signature(token, flipped), jwks, ALL_ALGS) == json_bytes(CLAIMS)


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_ecdsa_scalar_range(alg: str, keys: dict[str, SigningKey], jwks: JwkSet) -> None:
    key, order = keys[alg], EC_ORDERS[alg]
    token = make_token(key, CLAIMS)
    signature = b64url_decode(token.split(".")[2])
    size = len(signature) // 2
    r, s = _split_rs(signature)
    public = jwks.get(key.kid)
    assert public is not None
    cases = [(0, s), (r, 0), (0, 0), (order, s), (r, order), (r + order, s), (r, s + order)]
    for bad_r, bad_s in cases:
        if max(bad_r, bad_s) >= 2 ** (8 * size):
            continue  # not representable in the fixed width
        forged = bad_r.to_bytes(size, "big") + bad_s.to_bytes(size, "big")
        assert reason(_with_signature(token, forged), jwks) is Reason.BAD_SIGNATURE
        head, payload, _ = token.split(".")
        assert public.verify(f"{head}.{payload}".encode(), forged) is False


def test_public_key_verify_never_raises(keys: dict[str, SigningKey], jwks: JwkSet) -> None:
    rng = random.Random(7)
    for key in keys.values():
        public = jwks.get(key.kid)
        assert public is not None
        for length in (0, 1, 31, 32, 63, 64, 65, 96, 114, 132, 255, 256, 257, 512):
            for fill in (b"\x00", b"\xff", None):
                sig = fill * length if fill else rng.randbytes(length)
                assert public.verify(b"data", sig) is False


# -- base64url strictness (RFC 7515 §2, RFC 4648 §3.5) --------------------------


def _segment_variants(token: str) -> dict[str, list[str]]:
    parts = token.split(".")
    out: dict[str, list[str]] = {}
    for index, name in enumerate(("header", "payload", "signature")):
        seg = parts[index]
        variants = [
            seg + "=",
            seg + "==",
            seg + "=" * (-len(seg) % 4 or 4),
            " " + seg,
            seg + " ",
            seg[:5] + "\n" + seg[5:],
            seg[:5] + "\t" + seg[5:],
            seg[:5] + "\r\n" + seg[5:],
            seg[:5] + "%" + seg[5:],
        ]
        out[name] = [".".join([*parts[:index], v, *parts[index + 1 :]]) for v in variants]
    return out


def test_padding_and_whitespace_refused(es256: SigningKey, jwks: JwkSet) -> None:
    token = make_token(es256, CLAIMS)
    for name, variants in _segment_variants(token).items():
        for variant in variants:
            assert reason(variant, jwks) is Reason.MALFORMED, (name, variant)


def test_standard_alphabet_refused(es256: SigningKey, jwks: JwkSet) -> None:
    """'+' and '/' are plain base64, not base64url, even where they decode the same."""
    found = 0
    for attempt in range(200):
        token = make_token(es256, {**CLAIMS, "n": attempt})
        head, payload, sig = token.split(".")
        std = base64.b64encode(b64url_decode(sig)).rstrip(b"=").decode()
        if std != sig:
            found += 1
            assert reason(f"{head}.{payload}.{std}", jwks) is Reason.MALFORMED
        if found >= 3:
            break
    assert found >= 3


def _set_unused_bits(segment: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    value = alphabet.index(segment[-1])
    return segment[:-1] + alphabet[value | 1]


def test_non_canonical_trailing_bits_refused(es256: SigningKey, jwks: JwkSet) -> None:
    # Payload lengths chosen so every segment ends mid-quantum (len % 4 in {2, 3}).
    for extra in ("", "x", "xx"):
        token = make_token(es256, {**CLAIMS, "pad": extra})
        parts = token.split(".")
        for index in range(3):
            if len(parts[index]) % 4 == 0:
                continue
            mutated = parts.copy()
            mutated[index] = _set_unused_bits(parts[index])
            assert b64url_decode(parts[index])  # the genuine segment decodes
            with pytest.raises(ValueError):
                b64url_decode(mutated[index])
            assert reason(".".join(mutated), jwks) is Reason.MALFORMED


def test_impossible_length_refused(es256: SigningKey, jwks: JwkSet) -> None:
    head, payload, sig = make_token(es256, CLAIMS).split(".")
    while len(sig) % 4 != 1:
        sig += "A"
    assert reason(f"{head}.{payload}.{sig}", jwks) is Reason.MALFORMED


def test_b64url_helpers() -> None:
    assert b64url_decode("") == b""
    assert b64url_decode(b"AQ") == b"\x01"
    for bad in ("AR", "AQ=", "A", "A+", "A/", "AQ==", "QQ\n", "Q\u00e9"):
        with pytest.raises(ValueError):
            b64url_decode(bad)


# -- header and payload JSON (RFC 7515 §4, §5.2; RFC 7519 §4) --------------------


@pytest.mark.parametrize(
    "header_text",
    [
        '{"alg":"ES256","kid":"%s","alg":"ES256"}',
        '{"alg":"ES256","kid":"%s","kid":"other"}',
        '{"alg":"ES256","kid":"%s","x":NaN}',
        '{"alg":"ES256","kid":"%s","x":Infinity}',
        '{"alg":"ES256","kid":"%s","x":-Infinity}',
        '{"alg":"ES256","kid":"%s","x":1e999}',
        '{"alg":"ES256","kid":"%s","x":' + "9" * 100 + "}",
        '{"alg":"ES256","kid":"%s","x":"\\ud800"}',
        '{"alg":"ES256","kid":"%s","x":' + "[" * 5000 + "]" * 5000 + "}",
        '{"alg":"ES256","kid":"%s",}',
        '{"alg":"ES256","kid":"%s"} x',
        "\ufeff" + '{"alg":"ES256","kid":"%s"}',
        '["ES256","%s"]',
        '"%s"',
        "null",
        "",
    ],
)
def test_strict_header_json(header_text: str, es256: SigningKey, jwks: JwkSet) -> None:
    header = (header_text % es256.kid) if "%s" in header_text else header_text
    token = compact(header.encode("utf-8"), json_bytes(CLAIMS), es256)
    assert reason(token, jwks) is Reason.MALFORMED


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32", "latin-1"])
def test_header_must_be_utf8(encoding: str, es256: SigningKey, jwks: JwkSet) -> None:
    header = '{"alg":"ES256","kid":"%s","n":"é"}' % es256.kid  # noqa: UP031
    token = compact(header.encode(encoding), json_bytes(CLAIMS), es256)
    assert reason(token, jwks) is Reason.MALFORMED


def test_valid_surrogate_pair_is_fine() -> None:
    assert strict_json_loads('{"a":"\\ud83d\\ude00"}') == {"a": "\U0001f600"}


@pytest.mark.parametrize("alg", [None, 1, ["ES256"], {"ES256": 1}, True])
def test_alg_must_be_a_string(alg: Any, es256: SigningKey, jwks: JwkSet) -> None:
    token = signed_header(es256, {"alg": alg, "kid": es256.kid})
    assert reason(token, jwks) is Reason.MALFORMED
    assert reason(signed_header(es256, {"kid": es256.kid}), jwks) is Reason.MALFORMED


def test_duplicate_claims_refused_by_local_verifier(es256: SigningKey, jwks: JwkSet) -> None:
    payload = b'{"iss":"https://issuer","sub":"alice","sub":"admin","aud":"api",' + (
        b'"exp":4102444800,"iat":1700000000,"jti":"j"}'
    )
    header = json_bytes({"alg": "ES256", "kid": es256.kid, "typ": "at+jwt"})
    token = compact(header, payload, es256)
    assert verify_compact(token, jwks, ALL_ALGS) == payload  # the JWS itself is fine
    verifier = LocalVerifier(jwks, issuer="https://issuer", audience="api")
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token, now=1700000000)
    assert caught.value.reason is Reason.MALFORMED


# -- headers that bring their own key or extensions (RFC 8725 §3.10, RFC 7515 §4.1.11)


@pytest.mark.parametrize("name", ["jku", "x5u", "jwk", "x5c"])
def test_key_source_headers_refused(name: str, es256: SigningKey, jwks: JwkSet) -> None:
    values = {
        "jku": "https://attacker.example/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "jwk": es256.public_jwk(),
        "x5c": ["MIIB"],
    }
    # Genuinely signed by the real key: the header alone must cause the refusal.
    token = make_token(es256, CLAIMS, header={name: values[name]})
    assert reason(token, jwks) is Reason.MALFORMED


def test_embedded_attacker_jwk(es256: SigningKey, jwks: JwkSet) -> None:
    attacker = generate_key("ES256", kid=es256.kid)
    token = make_token(attacker, CLAIMS, header={"jwk": attacker.public_jwk()})
    assert reason(token, jwks) is Reason.MALFORMED
    token = make_token(attacker, CLAIMS)  # same kid, attacker's signature
    assert reason(token, jwks) is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("crit", [["exp"], ["b64"], ["jku"], [], "exp", [1], None, {}])
def test_crit_refused(crit: Any, es256: SigningKey, jwks: JwkSet) -> None:
    token = make_token(es256, CLAIMS, header={"crit": crit, "exp": 1})
    assert reason(token, jwks) is Reason.MALFORMED


@pytest.mark.parametrize(
    "extra", [{"b64": False, "crit": ["b64"]}, {"b64": False}, {"b64": "false"}, {"b64": 0}]
)
def test_unencoded_payload_refused(extra: dict[str, Any], es256: SigningKey, jwks: JwkSet) -> None:
    assert reason(make_token(es256, CLAIMS, header=extra), jwks) is Reason.MALFORMED


def test_b64_true_is_the_default(es256: SigningKey, jwks: JwkSet) -> None:
    token = make_token(es256, CLAIMS, header={"b64": True})
    assert verify_compact(token, jwks, ALL_ALGS) == json_bytes(CLAIMS)


# -- serialization shape (RFC 7515 §7) -----------------------------------------


def test_segment_count_and_json_serialization(es256: SigningKey, jwks: JwkSet) -> None:
    token = make_token(es256, CLAIMS)
    head, payload, sig = token.split(".")
    general = {"payload": payload, "signatures": [{"protected": head, "signature": sig}]}
    flattened = {"payload": payload, "protected": head, "signature": sig}
    shapes = [
        f"{head}.{payload}",
        f"{head}.{payload}.{sig}.",
        f"{head}.{payload}.{sig}.{sig}",
        f"{head}.{head}.{payload}.{sig}.{sig}",  # JWE-like, five segments
        f"{head}..{payload}.{sig}",
        head,
        "",
        ".",
        "..",
        "...",
        json.dumps(general),
        json.dumps(flattened),
    ]
    for shape in shapes:
        assert reason(shape, jwks) is Reason.MALFORMED, shape
    assert reason(general, jwks) is Reason.MALFORMED  # not even a string


# -- kid (RFC 7515 §4.1.4) ------------------------------------------------------


@pytest.mark.parametrize("kid", ["missing", "unknown", "", 1, None, ["kid-es256"], {"k": 1}, True])
def test_kid_must_name_a_key(kid: Any, es256: SigningKey, jwks: JwkSet) -> None:
    header: dict[str, Any] = {"alg": "ES256"}
    if kid != "missing":
        header["kid"] = kid
    assert reason(signed_header(es256, header), jwks) is Reason.UNKNOWN_KEY


# -- key set hygiene (RFC 7517, RFC 7518 §6) -------------------------------------


def _only_key(jwk: dict[str, Any]) -> JwkSet:
    return JwkSet.from_json({"keys": [jwk]})


def _assert_dropped(jwk: dict[str, Any], token: str | None = None) -> None:
    key_set = _only_key(jwk)
    assert len(key_set) == 0
    assert len(key_set.rejected) == 1
    if token is not None:
        assert reason(token, key_set) is Reason.UNKNOWN_KEY


def test_rsa_1024_refused() -> None:
    weak = generate_key("RS256", kid="weak", rsa_bits=1024)
    _assert_dropped(weak.public_jwk(), make_token(weak, CLAIMS))
    with pytest.raises(ValueError, match="2048"):
        PublicKey("weak", "RS256", weak.private.public_key())


def test_rsa_exponent_rules(keys: dict[str, SigningKey]) -> None:
    jwk = keys["RS256"].public_jwk()
    for e in ("AQ", "Ag", "BA", "AAEAAQ", "", "AA"):  # 1, 2, 4, 65537 non-minimal, empty, 0
        _assert_dropped({**jwk, "e": e})
    _assert_dropped({**jwk, "e": b64_uint(2**65 + 1)})  # absurdly large exponent
    _assert_dropped({**jwk, "n": "AA" + jwk["n"]})  # non-minimal modulus


def test_rsa_exponent_three_is_accepted() -> None:
    private = rsa.generate_private_key(public_exponent=3, key_size=2048)
    key = SigningKey(kid="e3", alg="RS256", private=private)
    key_set = _only_key(key.public_jwk())
    assert verify_compact(make_token(key, CLAIMS), key_set, ALL_ALGS) == json_bytes(CLAIMS)


def test_rsa_exponent_one_signature_is_just_the_message(keys: dict[str, SigningKey]) -> None:
    """With e = 1 the "signature" is the padded digest itself: anyone can forge one."""
    n = keys["RS256"].private.public_key().public_numbers().n
    with pytest.raises(ValueError):
        _public = rsa.RSAPublicNumbers(1, n).public_key()
        PublicKey("e1", "RS256", _public)


def test_rsa_needs_alg(keys: dict[str, SigningKey]) -> None:
    jwk = keys["RS256"].public_jwk(alg=None)
    _assert_dropped(jwk, make_token(keys["RS256"], CLAIMS))
    assert "alg" in _only_key(jwk).rejected[0][1]


def test_ec_point_not_on_curve(es256: SigningKey) -> None:
    jwk = es256.public_jwk()
    y = int.from_bytes(b64url_decode(jwk["y"]), "big")
    _assert_dropped({**jwk, "y": b64((y ^ 1).to_bytes(32, "big"))}, make_token(es256, CLAIMS))
    _assert_dropped({**jwk, "x": b64(bytes(32)), "y": b64(bytes(32))})


def test_ec_coordinate_encoding(es256: SigningKey) -> None:
    jwk = es256.public_jwk()
    x = b64url_decode(jwk["x"])
    _assert_dropped({**jwk, "x": b64(b"\x00" + x)})  # 33 bytes
    _assert_dropped({**jwk, "x": b64(x[1:])})  # 31 bytes
    _assert_dropped({**jwk, "x": b64(P256.to_bytes(32, "big"))})  # x = p, not reduced
    _assert_dropped({**jwk, "x": jwk["x"] + "="})  # padded base64url
    _assert_dropped({**jwk, "x": 12345})


def test_ec_alg_and_curve_must_agree(keys: dict[str, SigningKey]) -> None:
    jwk = keys["ES256"].public_jwk()
    for changes in ({"alg": "ES384"}, {"alg": "RS256"}, {"crv": "P-384"}, {"crv": "secp256k1"}):
        _assert_dropped({**jwk, **changes})
    _assert_dropped({**keys["ES384"].public_jwk(), "crv": "P-256"})
    _assert_dropped({**keys["EdDSA"].public_jwk(), "alg": "ES256"})
    _assert_dropped({**keys["EdDSA"].public_jwk(), "crv": "X25519"})


def test_private_members_refuse_the_whole_set(es256: SigningKey) -> None:
    d = es256.private.private_numbers().private_value
    jwk = {**es256.public_jwk(), "d": b64(d.to_bytes(32, "big"))}
    with pytest.raises(ValueError, match="private"):
        JwkSet.from_json({"keys": [jwk]})
    with pytest.raises(ValueError, match="private"):
        PublicKey.from_jwk(jwk)
    for member in ("p", "q", "dp", "dq", "qi", "oth", "k"):
        with pytest.raises(ValueError):
            JwkSet.from_json(
                {"keys": [es256.public_jwk(), {**es256.public_jwk(kid="b"), member: "AQ"}]}
            )


def test_oct_keys_never_accepted(es256: SigningKey, jwks: JwkSet) -> None:
    secret = {"kty": "oct", "kid": "hmac", "alg": "HS256", "k": b64(b"s" * 32)}
    with pytest.raises(ValueError):
        JwkSet.from_json({"keys": [es256.public_jwk(), secret]})
    without_secret = {k: v for k, v in secret.items() if k != "k"}
    key_set = JwkSet.from_json({"keys": [es256.public_jwk(), without_secret]})
    assert [k.kid for k in key_set.keys] == [es256.kid]
    assert key_set.rejected == (("hmac", "symmetric (oct) keys are never accepted"),)


@pytest.mark.parametrize(
    "usage",
    [
        {"use": "enc"},
        {"use": "SIG"},
        {"use": 1},
        {"key_ops": ["sign"]},
        {"key_ops": ["encrypt", "wrapKey"]},
        {"key_ops": "verify"},
        {"key_ops": ["verify", "verify"]},
        {"key_ops": []},
        {"use": "enc", "key_ops": ["verify"]},
    ],
)
def test_key_usage_must_allow_verify(usage: dict[str, Any], es256: SigningKey) -> None:
    _assert_dropped(es256.public_jwk(**usage), make_token(es256, CLAIMS))


def test_key_usage_verify_accepted(es256: SigningKey) -> None:
    for usage in ({"key_ops": ["verify"]}, {"use": None, "key_ops": ["verify", "sign"]}):
        key_set = _only_key(es256.public_jwk(**usage))
        assert verify_compact(make_token(es256, CLAIMS), key_set, ALL_ALGS) == json_bytes(CLAIMS)


def test_duplicate_kids_refused(es256: SigningKey, keys: dict[str, SigningKey]) -> None:
    with pytest.raises(ValueError, match="duplicate kid"):
        JwkSet.from_json({"keys": [es256.public_jwk(), keys["ES384"].public_jwk(kid=es256.kid)]})
    # Even when one of the two would have been dropped: the publisher is confused.
    with pytest.raises(ValueError, match="duplicate kid"):
        JwkSet.from_json({"keys": [es256.public_jwk(), es256.public_jwk(use="enc")]})
    public = PublicKey.from_jwk(es256.public_jwk())
    with pytest.raises(ValueError, match="duplicate kid"):
        JwkSet([public, public])


@pytest.mark.parametrize(
    "document",
    [
        [],
        "keys",
        {},
        {"keys": {}},
        {"keys": ["x"]},
        {"keys": [1]},
        '{"keys": [], "keys": []}',
        '{"keys": [NaN]}',
        "not json",
        b"\xff",
        " " * (1024 * 1024 + 1),
    ],
)
def test_malformed_key_sets(document: Any) -> None:
    with pytest.raises(ValueError):
        JwkSet.from_json(document)


def test_unknown_kty_dropped(es256: SigningKey) -> None:
    for kty in ("EC2", "oct2", 1, None):
        _assert_dropped({**es256.public_jwk(), "kty": kty})
    _assert_dropped({**es256.public_jwk(), "kid": 7})
    _assert_dropped({**es256.public_jwk(), "alg": 7})


# -- size and garbage -------------------------------------------------------------


def test_huge_token_refused_before_parsing(es256: SigningKey, jwks: JwkSet) -> None:
    assert reason("a" * (64 * 1024 + 1), jwks) is Reason.TOO_LARGE
    assert reason(b"." * (64 * 1024 + 1), jwks) is Reason.TOO_LARGE
    padded = make_token(es256, {**CLAIMS, "blob": "x" * 70_000})
    assert reason(padded, jwks) is Reason.TOO_LARGE


@pytest.mark.parametrize(
    "garbage",
    [None, 1, 1.5, ["a.b.c"], {"a": 1}, b"\xff.\xfe.\xfd", "é.é.é", "\x00.\x00.\x00", "a.b.c"],
)
def test_garbage_inputs(garbage: Any, jwks: JwkSet) -> None:
    assert reason(garbage, jwks) is Reason.MALFORMED


_MUTATION_CHARS = "AZaz09-_=+/. \n\x00é\u2028"


def _mutate(token: str, rng: random.Random) -> str:
    pos = rng.randrange(len(token))
    choice = rng.randrange(6)
    if choice == 0:  # replace one character
        return token[:pos] + rng.choice(_MUTATION_CHARS) + token[pos + 1 :]
    if choice == 1:  # delete one
        return token[:pos] + token[pos + 1 :]
    if choice == 2:  # insert one
        return token[:pos] + rng.choice(_MUTATION_CHARS) + token[pos:]
    if choice == 3:  # truncate
        return token[:pos]
    if choice == 4:  # swap two
        other = rng.randrange(len(token))
        chars = list(token)
        chars[pos], chars[other] = chars[other], chars[pos]
        return "".join(chars)
    return token[:pos] + token[pos:][::-1]  # reverse a tail


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "PS256"])
def test_random_mutations(alg: str, keys: dict[str, SigningKey], jwks: JwkSet) -> None:
    """Thousands of seeded mutations: each is the untouched token or InvalidToken."""
    verifier = LocalVerifier(jwks, issuer="https://issuer", audience="api", algorithms=ALL_ALGS)
    claims = {
        "iss": "https://issuer",
        "sub": "alice",
        "aud": "api",
        "exp": 2_000_000_000,
        "iat": 1_700_000_000,
        "jti": "j1",
    }
    token = make_token(keys[alg], claims)
    rng = random.Random(f"tokend-{alg}")
    for _ in range(2500):
        mutated = token
        for _ in range(rng.randrange(1, 4)):
            mutated = _mutate(mutated, rng) or "x"
        as_bytes = rng.random() < 0.2
        candidate: str | bytes = mutated.encode("utf-8") if as_bytes else mutated
        try:
            result = verifier.verify(candidate, now=1_800_000_000)
        except InvalidToken:
            assert mutated != token
        else:
            assert mutated == token and result == claims


def test_random_garbage(jwks: JwkSet) -> None:
    rng = random.Random(2024)
    for _ in range(2000):
        length = rng.randrange(0, 400)
        blob = rng.randbytes(length)
        with pytest.raises(InvalidToken):
            verify_compact(blob, jwks, ALL_ALGS)
        text = "".join(rng.choice("abcXYZ019-_.=") for _ in range(length))
        with pytest.raises(InvalidToken):
            verify_compact(text, jwks, ALL_ALGS)


def test_sign_helper_is_independent_of_the_library(es256: SigningKey) -> None:
    """Guard for the tests themselves: the helper's r||s really is r||s."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    signature = sign_as(es256.private, "ES256", b"m")
    r, s = _split_rs(signature)
    es256.private.public_key().verify(encode_dss_signature(r, s), b"m", ec.ECDSA(hashes.SHA256()))
    assert decode_dss_signature(encode_dss_signature(r, s)) == (r, s)


# -- EdDSA public keys of small order (RFC 8032 §5.1.3, §5.2.3) ------------------

ED25519_P = 2**255 - 19
ED448_P = 2**448 - 2**224 - 1


def _sqrt_mod_ed25519(a: int) -> set[int]:
    """Both square roots of a modulo 2^255 - 19 (p = 5 mod 8), or none."""
    p = ED25519_P
    candidate = pow(a, (p + 3) // 8, p)
    if candidate * candidate % p != a % p:
        candidate = candidate * pow(2, (p - 1) // 4, p) % p
    return {candidate, p - candidate} if candidate * candidate % p == a % p else set()


def _ed25519_small_order_ys() -> set[int]:
    """The y of every point of order 1, 2, 4 or 8, derived from the curve equation
    -x² + y² = 1 + d·x²·y² (independently of the constants in tokend_client.jose)."""
    p = ED25519_P
    d = -121665 * pow(121666, -1, p) % p
    ys = {1, p - 1, 0}  # orders 1 and 2 (x = 0), order 4 (y = 0)
    # Order 8: doubling lands on y = 0, i.e. x² = -y², so d·y⁴ + 2·y² - 1 = 0.
    for root in _sqrt_mod_ed25519((1 + d) % p):
        ys |= _sqrt_mod_ed25519((root - 1) * pow(d, -1, p) % p)
    return ys


def _okp_jwk(crv: str, x: bytes) -> dict[str, Any]:
    return {"kty": "OKP", "crv": crv, "x": b64(x), "kid": "weak", "alg": "EdDSA"}


def test_ed25519_small_order_keys_dropped() -> None:
    """A small-order public key verifies forged signatures for every message (the
    identity key with R = identity, S = 0 verifies anything): it is dropped like RSA e = 1."""
    ys = _ed25519_small_order_ys()
    assert len(ys) == 5
    for y in ys:
        for sign in (0, 1 << 255):
            _assert_dropped(_okp_jwk("Ed25519", (y | sign).to_bytes(32, "little")))
    identity = (1).to_bytes(32, "little")
    header = b64(json_bytes({"alg": "EdDSA", "kid": "weak"}))
    forged = f"{header}.{b64(json_bytes(CLAIMS))}.{b64(identity + bytes(32))}"
    _assert_dropped(_okp_jwk("Ed25519", identity), forged)


def test_ed25519_non_canonical_keys_dropped(keys: dict[str, SigningKey]) -> None:
    for y in range(ED25519_P, 2**255):  # y >= p (RFC 8032 §5.1.3 step 1)
        _assert_dropped(_okp_jwk("Ed25519", y.to_bytes(32, "little")))
    genuine = keys["EdDSA"]
    assert len(_only_key(genuine.public_jwk())) == 1


def test_ed448_small_order_and_non_canonical_keys_dropped(keys: dict[str, SigningKey]) -> None:
    for y in (0, 1, ED448_P - 1, ED448_P, ED448_P + 1):
        for last in (0x00, 0x80):
            _assert_dropped(_okp_jwk("Ed448", y.to_bytes(56, "little") + bytes((last,))))
    genuine = keys["Ed448"].public_jwk()
    raw = b64url_decode(genuine["x"])
    assert len(_only_key(genuine)) == 1
    _assert_dropped({**genuine, "x": b64(raw[:56] + bytes((raw[56] | 0x01,)))})  # RFC 8032 §5.2.3


# -- JSON nesting: one fixed limit in every language (docs/verifier-contract.md C3) --------


def _nested(depth: int, kind: str = "array") -> str:
    """A JSON object holding arrays (or objects) so that ``depth`` are open at once."""
    if kind == "array":
        return '{"x":' + "[" * (depth - 1) + "]" * (depth - 1) + "}"
    return '{"x":' + '{"a":' * (depth - 1) + "1" + "}" * (depth - 1) + "}"


@pytest.mark.parametrize("kind", ["array", "object"])
def test_json_nesting_limit(kind: str) -> None:
    assert strict_json_loads(_nested(MAX_JSON_DEPTH, kind))
    with pytest.raises(ValueError, match="nested too deeply"):
        strict_json_loads(_nested(MAX_JSON_DEPTH + 1, kind))
    with pytest.raises(ValueError, match="nested too deeply"):
        strict_json_loads(_nested(100_000, kind))  # never a RecursionError


def test_json_brackets_inside_strings_do_not_count() -> None:
    text = '{"a":"' + "[{" * 500 + '\\"]", "b":[[{}]]}'
    assert strict_json_loads(text)["b"] == [[{}]]


def test_too_deep_claims_refused(es256: SigningKey, jwks: JwkSet) -> None:
    verifier = LocalVerifier(jwks, issuer="https://tokend.test", required_claims=())
    claims = {"iss": "https://tokend.test", "sub": "alice"}
    ok = {**claims, "x": json.loads(_nested(MAX_JSON_DEPTH - 1))}  # + the claims object
    assert verifier.verify(make_token(es256, ok))["sub"] == "alice"
    deep = {**claims, "x": json.loads(_nested(MAX_JSON_DEPTH))}
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(make_token(es256, deep))
    assert caught.value.reason is Reason.MALFORMED
