"""Strict JOSE on ``cryptography``: the one home of JWK, JWA and compact JWS for both
sides of tokend, the signer (server/tokend) and the verifiers (:class:`LocalVerifier`).

Deliberately narrower than general JOSE libraries (RFC 8725, JWT Best Current
Practices):

* Compact serialization only, exactly three segments of canonical unpadded base64url.
* Headers are strict JSON objects: UTF-8, no duplicate names, no NaN/Infinity.
* The key is chosen by ``kid`` from a configured :class:`JwkSet` only. Headers that
  point at other keys (``jku``, ``x5u``, ``jwk``, ``x5c``) make the token MALFORMED.
* The algorithm is bound to the key: the header ``alg`` must equal the key's ``alg``
  and be in the caller's allowlist. ``none``, HMAC and unknown algorithms are
  DISALLOWED_ALGORITHM; symmetric (``oct``) keys are never accepted.
* Any ``crit`` header and ``b64: false`` (RFC 7797) make the token MALFORMED.
* ECDSA signatures are fixed-width ``r || s`` only, with ``0 < r, s < n``; RSA
  signatures are exactly the modulus length; PSS uses salt length = hash length.

Every problem with a token raises :class:`~tokend_client.errors.InvalidToken`;
problems with the key set or the arguments (configuration errors) raise
``ValueError``/``TypeError``.

Modules, one concern (and RFC) each:

* :mod:`.b64url`  strict base64url (RFC 7515 §2, RFC 4648 §5), Base64urlUInt
* :mod:`.json`    strict JSON (RFC 8259, RFC 7515 §4, RFC 7519 §4, RFC 8725 §3.2)
* :mod:`.jwa`     the algorithms (RFC 7518 §3, RFC 8037): one signing and one verifying
  side of each, ECDSA ``r || s`` ↔ DER
* :mod:`.jwk`     JWK ↔ key (RFC 7517, RFC 7518 §6, RFC 8037 §2), a key bound to one
  algorithm (:class:`PublicKey`), key policy, :class:`JwkSet`
* :mod:`.jws`     compact JWS (RFC 7515): verify, and the signing side's segments

What the server uses (``server/tokend`` imports nothing else from this package, and
no name with a leading underscore; tests/clients/python/jose/test_surface.py checks it):

* ``b64url_encode``, ``b64url_decode``, ``b64url_uint``: identifiers, private JWK members
* ``strict_json_loads``: claims of tokens the server reads back
* ``json_segment``, ``compact_jws``: the segments and the serialized token it mints
* ``VerifyingKey``, ``public_jwk``: the published key of each version and its JWK
* ``create_signature``: signing with a private key in memory (custody kv)
* ``verify_signature``, ``signature_length``: checking what custody signed
"""

from .b64url import b64url_decode, b64url_encode, b64url_uint
from .json import MAX_JSON_DEPTH, strict_json_loads
from .jwa import (
    SUPPORTED_ALGORITHMS,
    SigningPrivateKey,
    VerifyingKey,
    create_signature,
    signature_length,
    verify_signature,
)
from .jwk import MAX_JWKS_BYTES, JwkSet, PublicKey, as_key_set, public_jwk
from .jws import (
    MAX_COMPACT_BYTES,
    VerifiedJws,
    compact_jws,
    json_segment,
    verify_compact,
    verify_jws,
)

__all__ = [
    "MAX_COMPACT_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_JWKS_BYTES",
    "SUPPORTED_ALGORITHMS",
    "JwkSet",
    "PublicKey",
    "SigningPrivateKey",
    "VerifiedJws",
    "VerifyingKey",
    "as_key_set",
    "b64url_decode",
    "b64url_encode",
    "b64url_uint",
    "compact_jws",
    "create_signature",
    "json_segment",
    "public_jwk",
    "signature_length",
    "strict_json_loads",
    "verify_compact",
    "verify_jws",
    "verify_signature",
]
