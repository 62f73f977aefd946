"""Tests of the Python client, clients/python/tokend_client (see tests/README.md).

Where each module of tokend_client is tested (jose/ here mirrors tokend_client/jose/):

- client.py, aio.py, _base.py, models.py: test_results.py (requests built from arguments,
  typed results), test_retries.py (deadlines, retries, errors of both clients)
- _calls.py, rpc_errors.py: test_retries.py, test_results.py
- _batch.py (verify batching, VerifyMany) and verify()/verify_many of client.py, aio.py:
  test_batch.py (scripted servers, one without VerifyMany), test_batch_tokend.py (real tokend)
- _channel.py, _net.py: test_channel.py (plaintext only to loopback, TLS otherwise)
- binding.py: test_binding.py (the `cnf` rule, presenter helpers, resource servers)
- cookies.py: test_cookies.py
- keysource.py: test_keysource.py
- live.py: test_live_source.py (scripted server), test_live_source_tokend.py (real tokend)
- verifier.py, errors.py: test_verifier.py, test_fast_paths.py (remembered headers, claims),
  test_delegation.py (the `act` claim, RFC 8693 §4.1)
- jose/b64url.py, jose/json.py: jose/test_attacks.py (base64url strictness, header and
  payload JSON, JSON nesting), test_fast_paths.py (their shortcuts against the full rules)
- jose/jwa.py: jose/test_jwa.py (one signer and one verifier per algorithm, r||s <-> DER),
  jose/test_attacks.py (algorithm confusion, ECDSA encoding), jose/test_wycheproof.py
- jose/jwk.py: jose/test_attacks.py (key set hygiene, small-order EdDSA keys),
  jose/test_jwa.py (public_jwk round trip), jose/test_wycheproof.py
- jose/jws.py: jose/test_attacks.py (headers, serialization shape, kid, sizes),
  test_fast_paths.py (the remembered-header path)
- jose/__init__.py: jose/test_surface.py (former names; what the server may import)
- the distribution (clients/python/pyproject.toml): test_distribution.py

Helpers: client_test_support.py (keys and tokens built with `cryptography` alone),
scripted_server.py (a TokenService on loopback that fails on demand); fixtures in
conftest.py. The client against a live tokend: tests/interop/test_python_client.py.
"""
