"""Tests of tokend_client's verifying side: the jose package and LocalVerifier.

Where each module is tested (tests/client_lib tests the gRPC client, key sources and
helpers):

- jose/b64url.py, jose/json.py: test_jose_attacks.py (base64url strictness, header and
  payload JSON, JSON nesting), test_fast_paths.py (their shortcuts against the full rules)
- jose/jwa.py: test_jose_jwa.py (one signer and one verifier per algorithm, r||s <-> DER),
  test_jose_attacks.py (algorithm confusion, ECDSA encoding), test_wycheproof.py
- jose/jwk.py: test_jose_attacks.py (key set hygiene, small-order EdDSA keys),
  test_jose_jwa.py (public_jwk round trip), test_wycheproof.py
- jose/jws.py: test_jose_attacks.py (headers, serialization shape, kid, sizes),
  test_fast_paths.py (the remembered-header path)
- jose/__init__.py: test_jose_surface.py (former names; what the server may import)
- verifier.py: test_local_verifier.py, test_fast_paths.py (remembered headers, claims)
"""
