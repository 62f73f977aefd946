"""The `act` claim (RFC 8693 §4.1) and the delegation option of LocalVerifier:
docs/verifier-contract.md section "A. Delegation (act)"."""

from __future__ import annotations

from typing import Any

import pytest

from tests.clients.python.client_test_support import SigningKey, make_token
from tests.clients.python.test_verifier import (
    AUDIENCE,
    ISSUER,
    LEEWAY,
    NOW,
    accepted,
    claims,
    rejected,
)
from tokend_client import MAX_ACT_DEPTH, InvalidToken, LocalVerifier, Reason, actors


def chain(*subs: str) -> dict[str, Any]:
    """{"sub": subs[0], "act": {"sub": subs[1], ...}}: the outermost actor first."""
    act: dict[str, Any] | None = None
    for sub in reversed(subs):
        act = {"sub": sub} if act is None else {"sub": sub, "act": act}
    assert act is not None
    return act


@pytest.fixture
def verifier(signing_key: SigningKey) -> LocalVerifier:
    return LocalVerifier(signing_key.jwks(), issuer=ISSUER, audience=AUDIENCE, leeway=LEEWAY)


def test_actors_outermost_first(verifier: LocalVerifier, signing_key: SigningKey) -> None:
    token = make_token(signing_key, claims(act=chain("payments-caller", "orders")))
    verified = accepted(verifier, token)
    assert actors(verified) == ["payments-caller", "orders"]
    assert actors(accepted(verifier, make_token(signing_key, claims()))) == []


def test_members_beside_sub_are_ignored(verifier: LocalVerifier,
                                        signing_key: SigningKey) -> None:
    # RFC 8693 §4.1: other claims in act are informational (e.g. iss of the actor).
    act = {"sub": "orders", "iss": "https://elsewhere", "client_id": 7}
    assert actors(accepted(verifier, make_token(signing_key, claims(act=act)))) == ["orders"]


@pytest.mark.parametrize("act", [
    "orders", ["orders"], None, 1, True, {}, {"sub": ""}, {"sub": 5}, {"sub": None},
    {"sub": ["orders"]}, {"sub": "orders", "act": "billing"},
    {"sub": "orders", "act": None}, {"sub": "orders", "act": {}},
    {"sub": "orders", "act": {"sub": "billing", "act": []}},
], ids=repr)
def test_a_malformed_act_is_malformed(verifier: LocalVerifier, signing_key: SigningKey,
                                      act: Any) -> None:
    token = make_token(signing_key, claims(act=act))
    assert rejected(verifier, token) is Reason.MALFORMED
    # Whatever the delegation option: the shape is judged first.
    for delegation in ("any", "required", "refused"):
        assert rejected(verifier, token, delegation=delegation) is Reason.MALFORMED


def test_depth_limit(verifier: LocalVerifier, signing_key: SigningKey) -> None:
    deepest = [f"svc-{i}" for i in range(MAX_ACT_DEPTH)]
    assert actors(accepted(verifier, make_token(signing_key, claims(act=chain(*deepest))))
                  ) == deepest
    too_deep = make_token(signing_key, claims(act=chain(*deepest, "one-more")))
    assert rejected(verifier, too_deep) is Reason.MALFORMED


def test_delegation_option(signing_key: SigningKey) -> None:
    direct = make_token(signing_key, claims())
    delegated = make_token(signing_key, claims(act=chain("orders")))
    for option, ok_direct, ok_delegated in (("any", True, True), ("required", False, True),
                                            ("refused", True, False)):
        fixed = LocalVerifier(signing_key.jwks(), issuer=ISSUER, audience=AUDIENCE,
                              delegation=option)
        default = LocalVerifier(signing_key.jwks(), issuer=ISSUER, audience=AUDIENCE)
        for verifier, kwargs in ((fixed, {}), (default, {"delegation": option})):
            for token, ok in ((direct, ok_direct), (delegated, ok_delegated)):
                if ok:
                    accepted(verifier, token, **kwargs)
                else:
                    assert rejected(verifier, token, **kwargs) is Reason.DELEGATION
                    with pytest.raises(InvalidToken):
                        verifier.check_claims(verifier.verify(token, now=NOW, delegation="any"),
                                              now=NOW, **kwargs)


def test_delegation_comes_after_the_other_claim_rules(signing_key: SigningKey) -> None:
    verifier = LocalVerifier(signing_key.jwks(), issuer=ISSUER, audience=AUDIENCE,
                             delegation="required")
    assert rejected(verifier, make_token(signing_key, claims(exp=NOW - 100))) is Reason.EXPIRED
    assert rejected(verifier, make_token(signing_key, claims()),
                    required_scopes=["admin"]) is Reason.MISSING_SCOPE


@pytest.mark.parametrize("bad", ["maybe", "", None, 1, "ANY"])
def test_delegation_option_is_checked(signing_key: SigningKey, bad: Any) -> None:
    with pytest.raises(ValueError, match="delegation"):
        LocalVerifier(signing_key.jwks(), issuer=ISSUER, audience=AUDIENCE, delegation=bad)
    if bad is None:
        return  # per call, None means the verifier's own option
    verifier = LocalVerifier(signing_key.jwks(), issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(ValueError, match="delegation"):
        verifier.verify(make_token(signing_key, claims()), now=NOW, delegation=bad)
