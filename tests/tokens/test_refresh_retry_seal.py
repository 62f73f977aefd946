"""The sealed Refresh answer kept for retries (tokend.tokens.retry): what the store holds
opens only with the spent refresh token, and the key hash names one caller's request."""

from __future__ import annotations

import pytest

from tokend.tokens import retry
from tokend.tokens.errors import BadRequest
from tokend.tokens.refresh import new_refresh_token

ANSWER = {"access_token": "eyJ.a.b", "refresh_token": "tkd_rt_next", "exp": 1}


def test_the_answer_opens_with_the_spent_token_only() -> None:
    token, token_hash = new_refresh_token()
    other, _ = new_refresh_token()
    key = retry.retry_key("caller", "k" * 22, token_hash, ("a",))
    sealed = retry.seal(token, key, ANSWER)
    assert b"tkd_rt_next" not in sealed and b"eyJ" not in sealed
    assert retry.unseal(token, key, sealed) == ANSWER
    # What a database reader has: the token's SHA-256, the key hash, the sealed bytes.
    with pytest.raises(retry.SealBroken):
        retry.unseal(token_hash.hex(), key, sealed)
    with pytest.raises(retry.SealBroken):
        retry.unseal(other, key, sealed)
    with pytest.raises(retry.SealBroken):
        retry.unseal(token, retry.retry_key("caller", "k" * 22, token_hash, ()), sealed)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(retry.SealBroken):
        retry.unseal(token, key, tampered)


def test_the_key_hash_names_caller_key_token_and_scopes() -> None:
    _, token_hash = new_refresh_token()
    _, other_hash = new_refresh_token()
    base = ("caller", "k" * 22, token_hash, ("a", "b"))
    variants = [("other", *base[1:]), (base[0], "j" * 22, *base[2:]),
                (*base[:2], other_hash, base[3]), (*base[:3], ("a",)),
                (*base[:3], ("a b",))]
    keys = {retry.retry_key(*base)} | {retry.retry_key(*v) for v in variants}
    assert len(keys) == 1 + len(variants)


@pytest.mark.parametrize("key", ["short", "x" * 129, "spaces are not allowed", "ü" * 20,
                                 "nul\x00" * 5, "k" * 22 + "\n"])
def test_malformed_keys_are_bad_requests(key: str) -> None:
    with pytest.raises(BadRequest):
        retry.check_idempotency_key(key)


def test_no_key_means_not_retryable() -> None:
    assert retry.check_idempotency_key("") is None
    assert retry.check_idempotency_key("A-z_0" * 4) == "A-z_0" * 4
