"""bench/crypto.py: every token of the in-process pool is distinct down to its `iat`, and
every implementation accepts it (no timing asserted)."""

from __future__ import annotations

import json
import time

from bench import crypto
from tokend_client.jose import b64url_decode


def test_pool_tokens_have_distinct_iat_jti_and_sub() -> None:
    signer = crypto.Signer("ES256")
    now = int(time.time())
    tokens = crypto.pool(signer, now, count=32)
    claims = [json.loads(b64url_decode(t.token.split(".")[1])) for t in tokens]
    for name in ("iat", "jti", "sub"):
        assert len({c[name] for c in claims}) == 32, name
    verify = crypto.local_verifier(signer)
    assert all(verify(t)["iat"] <= now for t in tokens)
