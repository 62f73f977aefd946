"""tokend_client.jose.jwa and the signer's side of jose.jwk: the one signing and the one
verifying side of each algorithm, checked against `cryptography` used directly."""

from __future__ import annotations

import random

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tests.clients.python.client_test_support import SigningKey, public_jwk_members
from tokend_client.jose import (
    SUPPORTED_ALGORITHMS,
    PublicKey,
    create_signature,
    public_jwk,
    signature_length,
    verify_signature,
)
from tokend_client.jose.jwa import ecdsa_der_to_raw, ecdsa_raw_to_der

SIGNING_ALGS = ("ES256", "ES384", "ES512", "RS256", "RS384", "PS256", "PS512", "EdDSA", "Ed448")
DATA = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9"
_HASHES = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}


def jws_alg(name: str) -> str:
    """The JWS alg of a signing_keys entry (Ed448 keys sign as EdDSA, RFC 8037 §3.1)."""
    return "EdDSA" if name == "Ed448" else name


def independent_verify(alg: str, public: object, signature: bytes, data: bytes) -> None:
    """Verify with `cryptography` alone (raises InvalidSignature), not with jose."""
    if isinstance(public, ec.EllipticCurvePublicKey):
        half = len(signature) // 2
        der = encode_dss_signature(int.from_bytes(signature[:half], "big"),
                                   int.from_bytes(signature[half:], "big"))
        public.verify(der, data, ec.ECDSA(_HASHES[alg[2:]]))
    elif isinstance(public, rsa.RSAPublicKey):
        digest = _HASHES[alg[2:]]
        pad = (padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
               if alg.startswith("PS") else padding.PKCS1v15())
        public.verify(signature, data, pad, digest)
    else:
        assert isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
        public.verify(signature, data)


def test_every_supported_algorithm_has_a_signer() -> None:
    assert {jws_alg(name) for name in SIGNING_ALGS} | {"RS512", "PS384"} == SUPPORTED_ALGORITHMS


@pytest.mark.parametrize("name", SIGNING_ALGS)
def test_signatures_verify_both_here_and_with_cryptography(
        name: str, signing_keys: dict[str, SigningKey]) -> None:
    key, alg = signing_keys[name], jws_alg(name)
    public = key.private.public_key()
    signature = create_signature(alg, key.private, DATA)
    assert len(signature) == signature_length(public)
    independent_verify(key.alg, public, signature, DATA)
    verify_signature(alg, public, signature, DATA)
    assert PublicKey(kid="k", alg=alg, key=public).verify(DATA, signature)
    # And the other way: what the tests' own signer makes, jose verifies.
    verify_signature(alg, public, key.sign(DATA), DATA)


@pytest.mark.parametrize("name", SIGNING_ALGS)
def test_a_changed_signature_or_input_does_not_verify(
        name: str, signing_keys: dict[str, SigningKey]) -> None:
    key, alg = signing_keys[name], jws_alg(name)
    public = key.private.public_key()
    signature = bytearray(create_signature(alg, key.private, DATA))
    with pytest.raises(InvalidSignature):
        verify_signature(alg, public, bytes(signature), DATA + b"x")
    signature[len(signature) // 2] ^= 1
    with pytest.raises(InvalidSignature):
        verify_signature(alg, public, bytes(signature), DATA)
    with pytest.raises(InvalidSignature):
        verify_signature(alg, public, bytes(signature[:-1]), DATA)


@pytest.mark.parametrize(("alg", "name"), [
    ("ES256", "RS256"), ("ES384", "ES256"), ("RS256", "ES256"), ("PS256", "EdDSA"),
    ("EdDSA", "ES256"), ("HS256", "ES256"), ("none", "EdDSA"),
])
def test_a_key_that_does_not_fit_the_algorithm_is_refused(
        alg: str, name: str, signing_keys: dict[str, SigningKey]) -> None:
    private = signing_keys[name].private
    with pytest.raises(ValueError, match="does not fit"):
        create_signature(alg, private, DATA)
    with pytest.raises(ValueError):
        verify_signature(alg, private.public_key(), b"\x01" * 64, DATA)


@pytest.mark.parametrize(("curve", "size"),
                         [(ec.SECP256R1(), 32), (ec.SECP384R1(), 48), (ec.SECP521R1(), 66)])
def test_ecdsa_encodings_convert_both_ways(curve: ec.EllipticCurve, size: int) -> None:
    """r || s <-> DER for values with leading zero octets, sign bits set, and neither."""
    rng = random.Random(size)
    top = 1 << (8 * size - 1) if size != 66 else 1 << 520
    values = [1, 0x7F, 0x80, top - 1, top, *(rng.randrange(1, top) for _ in range(50))]
    for r in values:
        s = values[rng.randrange(len(values))]
        der = encode_dss_signature(r, s)
        raw = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        assert ecdsa_der_to_raw(der, size) == raw
        assert ecdsa_raw_to_der(raw) == der


@pytest.mark.parametrize("name", SIGNING_ALGS)
def test_published_jwks_read_back_as_the_same_key(
        name: str, signing_keys: dict[str, SigningKey]) -> None:
    key, alg = signing_keys[name], jws_alg(name)
    public = key.private.public_key()
    jwk = public_jwk(public, kid="sig-v1", alg=alg)
    assert jwk == {**public_jwk_members(public), "kid": "sig-v1", "alg": alg, "use": "sig"}
    assert PublicKey.from_jwk(jwk) == PublicKey(kid="sig-v1", alg=alg, key=public)
    assert PublicKey.from_jwk(jwk).to_jwk() == jwk


def test_public_jwk_refuses_keys_jose_has_no_jwk_for() -> None:
    with pytest.raises(ValueError, match="unsupported EC curve"):
        public_jwk(ec.generate_private_key(ec.SECP256K1()).public_key(), kid="k", alg="ES256K")
    with pytest.raises(TypeError, match="unsupported public key type"):
        public_jwk(object(), kid="k", alg="ES256")  # type: ignore[arg-type]
