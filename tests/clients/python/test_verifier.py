"""LocalVerifier claim rules (RFC 9068, RFC 7519, RFC 8725), for every default algorithm.

The ``signing_key`` fixture runs each test with ES256, RS256, PS256 and EdDSA keys.
"""

from __future__ import annotations

import json
import pickle
import time
from typing import Any

import pytest

from tests.clients.python.client_test_support import (
    SigningKey,
    compact,
    generate_key,
    json_bytes,
    make_token,
)
from tokend_client import InvalidToken, JwkSet, LocalVerifier, Reason

ISSUER = "https://tokend.example"
AUDIENCE = "orders-api"
NOW = 1_750_000_000
LEEWAY = 30


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "svc:billing",
        "aud": AUDIENCE,
        "exp": NOW + 300,
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "jti": "0b6f0c9e-1",
        "scope": "orders:read orders:write",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


@pytest.fixture(params=["fresh", "warm"])
def verifier(request: pytest.FixtureRequest, signing_key: SigningKey) -> LocalVerifier:
    """Fresh, or warm: it has accepted the tests' usual header before, so their tokens
    take the remembered-header path (the header is not decoded again)."""
    verifier = LocalVerifier(signing_key.jwks(), issuer=ISSUER, audience=AUDIENCE, leeway=LEEWAY)
    if request.param == "warm":
        verifier.verify(make_token(signing_key, claims()), now=NOW)
    return verifier


def rejected(verifier: LocalVerifier, token: str | bytes, **kwargs: Any) -> Reason:
    kwargs.setdefault("now", NOW)
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token, **kwargs)
    message = str(caught.value)
    assert message and (not isinstance(token, str) or token not in message)
    return caught.value.reason


def accepted(verifier: LocalVerifier, token: str | bytes, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("now", NOW)
    return verifier.verify(token, **kwargs)


# -- the happy path -------------------------------------------------------------


def test_valid_token_returns_claims(verifier: LocalVerifier, signing_key: SigningKey) -> None:
    token = make_token(signing_key, claims())
    assert accepted(verifier, token) == claims()
    assert accepted(verifier, token.encode("ascii")) == claims()


def test_jwks_forms(signing_key: SigningKey) -> None:
    token = make_token(signing_key, claims())
    jwks = signing_key.jwks()
    for source in (jwks, json.dumps(jwks), json.dumps(jwks).encode(), JwkSet.from_json(jwks)):
        verifier = LocalVerifier(source, issuer=ISSUER, audience=AUDIENCE)
        assert verifier.verify(token, now=NOW)["sub"] == "svc:billing"
        assert isinstance(verifier.jwks, JwkSet)


def test_now_defaults_to_the_clock(signing_key: SigningKey) -> None:
    verifier = LocalVerifier(signing_key.jwks(), issuer=ISSUER, audience=AUDIENCE)
    now = int(time.time())
    assert verifier.verify(make_token(signing_key, claims(exp=now + 60, iat=now, nbf=now)))
    expired = make_token(signing_key, claims(exp=now - 120, iat=now - 600, nbf=now - 600))
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(expired)
    assert caught.value.reason is Reason.EXPIRED


# -- size (checked before any parsing) ----------------------------------------------


def test_size_limit_first(signing_key: SigningKey) -> None:
    verifier = LocalVerifier(
        signing_key.jwks(), issuer=ISSUER, audience=AUDIENCE, max_token_bytes=1024
    )
    assert rejected(verifier, "!" * 1025) is Reason.TOO_LARGE  # garbage, but too big first
    big = make_token(signing_key, claims(blob="x" * 2000))
    assert rejected(verifier, big) is Reason.TOO_LARGE
    assert rejected(verifier, big.encode()) is Reason.TOO_LARGE
    small = make_token(signing_key, claims())
    assert len(small) <= 1024 and accepted(verifier, small)


def test_default_size_limit(verifier: LocalVerifier, signing_key: SigningKey) -> None:
    assert rejected(verifier, make_token(signing_key, claims(blob="x" * 9000))) is Reason.TOO_LARGE


# -- typ (RFC 9068 §4, RFC 8725 §3.11) ------------------------------------------------


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT", "Application/At+JWT"])
def test_typ_accepted(typ: str, verifier: LocalVerifier, signing_key: SigningKey) -> None:
    assert accepted(verifier, make_token(signing_key, claims(), header={"typ": typ}))


@pytest.mark.parametrize(
    "typ", ["JWT", "jwt", "at+jwt ", "text/at+jwt", "application/jwt", "at+jwt/x", "", 1, None]
)
def test_typ_refused(typ: Any, verifier: LocalVerifier, signing_key: SigningKey) -> None:
    token = make_token(signing_key, claims(), header={"typ": typ})
    assert rejected(verifier, token) is Reason.WRONG_TYPE


def test_typ_missing(verifier: LocalVerifier, signing_key: SigningKey) -> None:
    token = make_token(signing_key, claims(), drop=("typ",))
    assert rejected(verifier, token) is Reason.WRONG_TYPE


def test_required_typ_configurable(signing_key: SigningKey) -> None:
    verifier = LocalVerifier(
        signing_key.jwks(), issuer=ISSUER, audience=AUDIENCE, required_typ="application/AT+JWT"
    )
    assert accepted(verifier, make_token(signing_key, claims()))
    token = make_token(signing_key, claims(), header={"typ": "JWT"})
    assert rejected(verifier, token) is Reason.WRONG_TYPE


# -- claims object ------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload", [b"", b"[]", b'"claims"', b"null", b"1", b"{", b'{"a":1}{}', b"\xff\xfe"]
)
def test_payload_must_be_a_json_object(
    payload: bytes, verifier: LocalVerifier, signing_key: SigningKey
) -> None:
    header = json_bytes({"alg": signing_key.alg, "kid": signing_key.kid, "typ": "at+jwt"})
    assert rejected(verifier, compact(header, payload, signing_key)) is Reason.MALFORMED


@pytest.mark.parametrize("text", ['"exp":NaN', '"exp":1e999', '"exp":Infinity', '"x":"\\udc00"'])
def test_payload_strict_json(text: str, verifier: LocalVerifier, signing_key: SigningKey) -> None:
    header = json_bytes({"alg": signing_key.alg, "kid": signing_key.kid, "typ": "at+jwt"})
    body = json_bytes(claims())[:-1] + b"," + text.encode() + b"}"
    assert rejected(verifier, compact(header, body, signing_key)) is Reason.MALFORMED


def test_duplicate_claim_refused(verifier: LocalVerifier, signing_key: SigningKey) -> None:
    header = json_bytes({"alg": signing_key.alg, "kid": signing_key.kid, "typ": "at+jwt"})
    body = json_bytes(claims())[:-1] + b',"sub":"admin"}'
    assert rejected(verifier, compact(header, body, signing_key)) is Reason.MALFORMED


# -- required claims (RFC 9068 §2.2) ---------------------------------------------------


@pytest.mark.parametrize("name", ["exp", "iat", "iss", "sub", "aud", "jti"])
def test_each_required_claim(name: str, verifier: LocalVerifier, signing_key: SigningKey) -> None:
    token = make_token(signing_key, claims(**{name: _DROP}))
    assert rejected(verifier, token) is Reason.MISSING_CLAIM


def test_required_claims_configurable(signing_key: SigningKey) -> None:
    verifier = LocalVerifier(
        signing_key.jwks(),
        issuer=ISSUER,
        audience=AUDIENCE,
        required_claims=("exp", "iss", "client_id"),
    )
    lean = claims(sub=_DROP, jti=_DROP, iat=_DROP, nbf=_DROP, client_id="c1")
    assert accepted(verifier, make_token(signing_key, lean)) == lean
    without_client = make_token(signing_key, claims())
    assert rejected(verifier, without_client) is Reason.MISSING_CLAIM


# -- NumericDate types (RFC 7519 §2) ---------------------------------------------------


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", [str(NOW + 60), True, False, None, [NOW], {"t": NOW}])
def test_numeric_dates_must_be_numbers(
    name: str, value: Any, verifier: LocalVerifier, signing_key: SigningKey
) -> None:
    token = make_token(signing_key, claims(**{name: value}))
    assert rejected(verifier, token) is Reason.MALFORMED


def test_numeric_dates_may_be_floats(verifier: LocalVerifier, signing_key: SigningKey) -> None:
    token = make_token(signing_key, claims(exp=NOW + 0.5, iat=NOW - 0.25, nbf=NOW + 29.75))
    assert accepted(verifier, token)["exp"] == NOW + 0.5


# -- issuer (RFC 9068 §4 step 3) --------------------------------------------------------


@pytest.mark.parametrize(
    "iss", ["https://evil.example", ISSUER + "/", ISSUER.upper(), " " + ISSUER, ""]
)
def test_issuer_must_match_exactly(
    iss: str, verifier: LocalVerifier, signing_key: SigningKey
) -> None:
    assert rejected(verifier, make_token(signing_key, claims(iss=iss))) is Reason.WRONG_ISSUER


@pytest.mark.parametrize("iss", [1, [ISSUER], {"iss": ISSUER}, True, None])
def test_issuer_type(iss: Any, verifier: LocalVerifier, signing_key: SigningKey) -> None:
    assert rejected(verifier, make_token(signing_key, claims(iss=iss))) is Reason.MALFORMED


def test_issuer_mismatch_message_does_not_echo_the_value(
    verifier: LocalVerifier, signing_key: SigningKey
) -> None:
    token = make_token(signing_key, claims(iss="https://evil.example/\n<script>"))
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token, now=NOW)
    assert "evil" not in str(caught.value) and "evil" not in repr(caught.value)


# -- time claims and leeway (RFC 7519 §4.1.4-4.1.6) ------------------------------------


def test_exp_boundary(verifier: LocalVerifier, signing_key: SigningKey) -> None:
    token = make_token(signing_key, claims(exp=NOW))
    assert accepted(verifier, token, now=NOW + LEEWAY - 1)
    assert accepted(verifier, token, now=NOW + LEEWAY - 0.001)
    assert rejected(verifier, token, now=NOW + LEEWAY) is Reason.EXPIRED
    assert rejected(verifier, token, now=NOW + 10_000) is Reason.EXPIRED


def test_exp_without_leeway(signing_key: SigningKey) -> None:
    verifier = LocalVerifier(signing_key.jwks(), issuer=ISSUER, audience=AUDIENCE, leeway=0)
    token = make_token(signing_key, claims(exp=NOW + 1, iat=NOW - 1, nbf=NOW - 1))
    assert accepted(verifier, token, now=NOW)
    assert rejected(verifier, token, now=NOW + 1) is Reason.EXPIRED


def test_nbf_boundary(verifier: LocalVerifier, signing_key: SigningKey) -> None:
    token = make_token(signing_key, claims(nbf=NOW + 100, iat=NOW - 10))
    assert accepted(verifier, token, now=NOW + 100 - LEEWAY)
    assert rejected(verifier, token, now=NOW + 100 - LEEWAY - 1) is Reason.NOT_YET_VALID
    assert rejected(verifier, token, now=NOW + 100 - LEEWAY - 0.001) is Reason.NOT_YET_VALID


def test_iat_in_the_future(verifier: LocalVerifier, signing_key: SigningKey) -> None:
    token = make_token(signing_key, claims(iat=NOW + LEEWAY, nbf=_DROP))
    assert accepted(verifier, token)
    token = make_token(signing_key, claims(iat=NOW + LEEWAY + 1, nbf=_DROP))
    assert rejected(verifier, token) is Reason.ISSUED_IN_FUTURE


def test_optional_nbf(verifier: LocalVerifier, signing_key: SigningKey) -> None:
    assert accepted(verifier, make_token(signing_key, claims(nbf=_DROP)))


def test_max_lifetime(signing_key: SigningKey) -> None:
    verifier = LocalVerifier(signing_key.jwks(), issuer=ISSUER, audience=AUDIENCE, max_lifetime=600)
    assert accepted(verifier, make_token(signing_key, claims(iat=NOW - 100, exp=NOW + 500)))
    too_long = make_token(signing_key, claims(iat=NOW - 100, exp=NOW + 501))
    assert rejected(verifier, too_long) is Reason.LIFETIME_TOO_LONG


def test_max_lifetime_needs_iat(signing_key: SigningKey) -> None:
    verifier = LocalVerifier(
        signing_key.jwks(),
        issuer=ISSUER,
        audience=AUDIENCE,
        max_lifetime=600,
        required_claims=("exp", "iss"),
    )
    token = make_token(signing_key, claims(iat=_DROP))
    assert rejected(verifier, token) is Reason.MISSING_CLAIM


def test_huge_numeric_dates(verifier: LocalVerifier, signing_key: SigningKey) -> None:
    far = make_token(signing_key, claims(exp=10**40))
    assert accepted(verifier, far)["exp"] == 10**40
    negative = make_token(signing_key, claims(exp=-(10**40)))
    assert rejected(verifier, negative) is Reason.EXPIRED
    header = json_bytes({"alg": signing_key.alg, "kid": signing_key.kid, "typ": "at+jwt"})
    body = json_bytes(claims())[:-1] + b',"exp":' + b"9" * 5000 + b"}"
    assert rejected(verifier, compact(header, body, signing_key)) is Reason.MALFORMED


# -- audience (RFC 7519 §4.1.3, RFC 9068 §4) --------------------------------------------


@pytest.mark.parametrize("aud", [AUDIENCE, [AUDIENCE], ["other", AUDIENCE]])
def test_audience_accepted(aud: Any, verifier: LocalVerifier, signing_key: SigningKey) -> None:
    assert accepted(verifier, make_token(signing_key, claims(aud=aud)))["aud"] == aud


@pytest.mark.parametrize("aud", ["other", ["other"], [AUDIENCE.upper()], [" " + AUDIENCE]])
def test_audience_wrong(aud: Any, verifier: LocalVerifier, signing_key: SigningKey) -> None:
    assert rejected(verifier, make_token(signing_key, claims(aud=aud))) is Reason.WRONG_AUDIENCE


@pytest.mark.parametrize("aud", [[], [1], [AUDIENCE, None], 7, {"aud": AUDIENCE}, None, True])
def test_audience_malformed(aud: Any, verifier: LocalVerifier, signing_key: SigningKey) -> None:
    assert rejected(verifier, make_token(signing_key, claims(aud=aud))) is Reason.MALFORMED


def test_unexpected_audience_refused(signing_key: SigningKey) -> None:
    """No audience configured, token carries aud: RFC 7519 §4.1.3 says reject."""
    verifier = LocalVerifier(
        signing_key.jwks(), issuer=ISSUER, required_claims=("exp", "iss", "sub", "jti")
    )
    assert rejected(verifier, make_token(signing_key, claims())) is Reason.WRONG_AUDIENCE
    assert accepted(verifier, make_token(signing_key, claims(aud=_DROP)))


def test_default_requires_an_audience(signing_key: SigningKey) -> None:
    verifier = LocalVerifier(signing_key.jwks(), issuer=ISSUER)
    assert rejected(verifier, make_token(signing_key, claims())) is Reason.WRONG_AUDIENCE
    assert accepted(verifier, make_token(signing_key, claims()), audience=AUDIENCE)


def test_audience_override_per_call(verifier: LocalVerifier, signing_key: SigningKey) -> None:
    token = make_token(signing_key, claims(aud=["a", "b"]))
    assert rejected(verifier, token) is Reason.WRONG_AUDIENCE
    assert accepted(verifier, token, audience="b")
    assert accepted(verifier, token, audience=("x", "a"))
    assert rejected(verifier, token, audience={"x", "y"}) is Reason.WRONG_AUDIENCE


def test_audience_collection_in_constructor(signing_key: SigningKey) -> None:
    verifier = LocalVerifier(signing_key.jwks(), issuer=ISSUER, audience=["a", AUDIENCE])
    assert accepted(verifier, make_token(signing_key, claims()))


# -- sub and jti (RFC 7519 §4.1.2, §4.1.7) ----------------------------------------------


@pytest.mark.parametrize("name", ["sub", "jti"])
@pytest.mark.parametrize("value", ["", 1, None, ["x"], {"x": 1}, True])
def test_identifiers_are_non_empty_strings(
    name: str, value: Any, verifier: LocalVerifier, signing_key: SigningKey
) -> None:
    token = make_token(signing_key, claims(**{name: value}))
    assert rejected(verifier, token) is Reason.MALFORMED


# -- scopes (RFC 9068 §2.2.3, RFC 8693 §4.2) ---------------------------------------------


def test_required_scopes(verifier: LocalVerifier, signing_key: SigningKey) -> None:
    token = make_token(signing_key, claims(scope="orders:read  orders:write"))
    assert accepted(verifier, token, required_scopes=["orders:read"])
    assert accepted(verifier, token, required_scopes=("orders:read", "orders:write"))
    assert accepted(verifier, token, required_scopes="orders:write orders:read")
    assert rejected(verifier, token, required_scopes=["orders:delete"]) is Reason.MISSING_SCOPE
    assert rejected(verifier, token, required_scopes=["orders"]) is Reason.MISSING_SCOPE
    assert rejected(verifier, token, required_scopes=["ORDERS:READ"]) is Reason.MISSING_SCOPE


def test_scope_claim_absent(verifier: LocalVerifier, signing_key: SigningKey) -> None:
    token = make_token(signing_key, claims(scope=_DROP))
    assert accepted(verifier, token)
    assert rejected(verifier, token, required_scopes=["orders:read"]) is Reason.MISSING_SCOPE
    empty = make_token(signing_key, claims(scope=""))
    assert rejected(verifier, empty, required_scopes=["orders:read"]) is Reason.MISSING_SCOPE


@pytest.mark.parametrize("scope", [["orders:read"], 1, None, {"orders:read": True}])
def test_scope_must_be_a_string(
    scope: Any, verifier: LocalVerifier, signing_key: SigningKey
) -> None:
    token = make_token(signing_key, claims(scope=scope))
    assert rejected(verifier, token) is Reason.MALFORMED
    assert rejected(verifier, token, required_scopes=["orders:read"]) is Reason.MALFORMED


# -- algorithms and keys -----------------------------------------------------------------


def test_algorithm_allowlist(signing_key: SigningKey) -> None:
    others = tuple(a for a in ("ES256", "RS256", "PS256", "EdDSA") if a != signing_key.alg)
    verifier = LocalVerifier(
        signing_key.jwks(), issuer=ISSUER, audience=AUDIENCE, algorithms=others
    )
    assert rejected(verifier, make_token(signing_key, claims())) is Reason.DISALLOWED_ALGORITHM


def test_default_algorithms_exclude_es384(signing_keys: dict[str, SigningKey]) -> None:
    key = signing_keys["ES384"]
    verifier = LocalVerifier(key.jwks(), issuer=ISSUER, audience=AUDIENCE)
    assert rejected(verifier, make_token(key, claims())) is Reason.DISALLOWED_ALGORITHM
    wider = LocalVerifier(key.jwks(), issuer=ISSUER, audience=AUDIENCE, algorithms=["ES384"])
    assert accepted(wider, make_token(key, claims()))


def test_unknown_and_tampered(verifier: LocalVerifier, signing_key: SigningKey) -> None:
    stranger = generate_key(signing_key.alg, kid="someone-else")
    assert rejected(verifier, make_token(stranger, claims())) is Reason.UNKNOWN_KEY
    impostor = generate_key(signing_key.alg, kid=signing_key.kid)
    assert rejected(verifier, make_token(impostor, claims())) is Reason.BAD_SIGNATURE


def test_update_jwks(signing_key: SigningKey) -> None:
    verifier = LocalVerifier(signing_key.jwks(), issuer=ISSUER, audience=AUDIENCE)
    old_set = verifier.jwks
    rotated = generate_key(signing_key.alg, kid=signing_key.kid + "-v2")
    new_token, old_token = make_token(rotated, claims()), make_token(signing_key, claims())
    assert rejected(verifier, new_token) is Reason.UNKNOWN_KEY
    both = {"keys": [signing_key.public_jwk(), rotated.public_jwk()]}
    verifier.update_jwks(both)
    assert accepted(verifier, new_token) and accepted(verifier, old_token)
    assert verifier.jwks is not old_set and len(verifier.jwks) == 2
    verifier.update_jwks(json.dumps(rotated.jwks()))
    assert rejected(verifier, old_token) is Reason.UNKNOWN_KEY
    current = verifier.jwks
    with pytest.raises(ValueError):
        verifier.update_jwks({"keys": [rotated.public_jwk(), rotated.public_jwk()]})
    assert verifier.jwks is current  # a failed update keeps the working set
    with pytest.raises(AttributeError):
        verifier.jwks = old_set  # type: ignore[misc]


# -- constructor and argument checks -------------------------------------------------------


@pytest.mark.parametrize("leeway", [0, 0.5, 30, 300])
def test_leeway_bounds_accepted(leeway: float, signing_key: SigningKey) -> None:
    LocalVerifier(signing_key.jwks(), issuer=ISSUER, leeway=leeway)


@pytest.mark.parametrize("leeway", [-1, -0.001, 300.5, 301, 86400, float("inf"), float("nan")])
def test_leeway_bounds_refused(leeway: float, signing_key: SigningKey) -> None:
    with pytest.raises(ValueError):
        LocalVerifier(signing_key.jwks(), issuer=ISSUER, leeway=leeway)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"issuer": ""},
        {"algorithms": ["HS256"]},
        {"algorithms": ["none"]},
        {"algorithms": []},
        {"audience": ""},
        {"audience": []},
        {"max_lifetime": 0},
        {"max_lifetime": -5},
        {"max_token_bytes": 0},
        {"max_token_bytes": 64 * 1024 + 1},
        {"required_typ": ""},
        {"required_claims": ["exp", ""]},
    ],
)
def test_bad_configuration_value(kwargs: dict[str, Any], signing_key: SigningKey) -> None:
    kwargs.setdefault("issuer", ISSUER)
    with pytest.raises(ValueError):
        LocalVerifier(signing_key.jwks(), **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"algorithms": "ES256"},
        {"leeway": True},
        {"leeway": "30"},
        {"max_token_bytes": 1.5},
        {"required_claims": "exp"},
        {"audience": 5},
    ],
)
def test_bad_configuration_type(kwargs: dict[str, Any], signing_key: SigningKey) -> None:
    with pytest.raises(TypeError):
        LocalVerifier(signing_key.jwks(), issuer=ISSUER, **kwargs)


def test_bad_jwks_refused_at_construction(signing_key: SigningKey) -> None:
    with pytest.raises(ValueError):
        LocalVerifier({"keys": "nope"}, issuer=ISSUER)
    with pytest.raises(TypeError):
        LocalVerifier(42, issuer=ISSUER)  # type: ignore[arg-type]


def test_only_invalid_token_for_bad_tokens(verifier: LocalVerifier) -> None:
    for token in (None, 1, b"\xff", "é", "", "a.b.c", ["a"], "a" * 9000):
        with pytest.raises(InvalidToken):
            verifier.verify(token, now=NOW)  # type: ignore[arg-type]


# -- errors ------------------------------------------------------------------------------------


def test_reason_values_equal_names() -> None:
    assert len(Reason) == 17  # with CERTIFICATE_MISMATCH and DELEGATION (issue 18)
    for reason in Reason:
        assert reason.value == reason.name
        assert reason == reason.name  # a str subclass: usable directly in protos and logs


def test_invalid_token_carries_reason_and_pickles() -> None:
    exc = InvalidToken(Reason.EXPIRED)
    assert exc.reason is Reason.EXPIRED and str(exc) == "token has expired"
    assert exc.claims is None
    original = InvalidToken("MISSING_CLAIM", "token lacks claim exp")
    copy = pickle.loads(pickle.dumps(original))  # noqa: S301 - our own object, in-process
    assert copy.reason is Reason.MISSING_CLAIM and str(copy) == "token lacks claim exp"
    assert "MISSING_CLAIM" in repr(copy) and copy.claims is None
    original.claims = {"sub": "svc:billing", "jti": "j-1"}
    copy = pickle.loads(pickle.dumps(original))  # noqa: S301 - our own object, in-process
    assert copy.claims == original.claims and str(copy) == "token lacks claim exp"
    assert "svc:billing" not in repr(copy)


def refusal(verifier: LocalVerifier, token: str, **kwargs: Any) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token, **{"now": NOW, **kwargs})
    return caught.value


@pytest.mark.parametrize(("token_claims", "header", "kwargs", "reason"), [
    (claims(exp=NOW - 60), {}, {}, Reason.EXPIRED),
    (claims(), {}, {"audience": "billing-api"}, Reason.WRONG_AUDIENCE),
    (claims(), {}, {"required_scopes": ["orders:admin"]}, Reason.MISSING_SCOPE),
    (claims(iss="https://elsewhere.example"), {}, {}, Reason.WRONG_ISSUER),
    (claims(jti=_DROP), {}, {}, Reason.MISSING_CLAIM),
    (claims(), {}, {"delegation": "required"}, Reason.DELEGATION),
    (claims(cnf={"x5t#S256": "A" * 43}), {}, {}, Reason.CERTIFICATE_MISMATCH),
    (claims(), {"typ": "JWT"}, {}, Reason.WRONG_TYPE),
    (claims(aud=7), {}, {}, Reason.MALFORMED),  # a claim rule: the signature verified
])
def test_a_refusal_after_the_signature_carries_the_authentic_claims(
        verifier: LocalVerifier, signing_key: SigningKey, token_claims: dict[str, Any],
        header: dict[str, Any], kwargs: dict[str, Any], reason: Reason) -> None:
    """Whoever audits refusals learns whose token it was without checking it again."""
    exc = refusal(verifier, make_token(signing_key, token_claims, header=header), **kwargs)
    assert exc.reason is reason and exc.claims == token_claims
    assert token_claims.get("sub", "-") not in str(exc) and "svc:billing" not in repr(exc)


def test_a_signed_payload_that_is_no_json_object_carries_no_claims(
        verifier: LocalVerifier, signing_key: SigningKey) -> None:
    for header in (b'{"alg":"%s","kid":"%s","typ":"JWT"}', b'{"alg":"%s","kid":"%s"}'):
        token = compact(header % (signing_key.alg.encode(), signing_key.kid.encode()),
                        b"[1]", signing_key)
        exc = refusal(verifier, token)
        assert exc.reason is Reason.WRONG_TYPE and exc.claims is None
    exc = refusal(verifier, make_token(signing_key, [1]))  # type: ignore[arg-type]
    assert exc.reason is Reason.MALFORMED and exc.claims is None


def test_claims_whose_signature_failed_are_never_handed_over(
        verifier: LocalVerifier, signing_key: SigningKey) -> None:
    """Fail closed: a forged token's claims (here: an expired token of this issuer) are
    not on its refusal, however plausible."""
    forged_claims = claims(sub="mallory", jti="forged", exp=NOW - 60)
    genuine = make_token(signing_key, claims())
    header, _, signature = genuine.split(".")
    swapped = f"{header}.{make_token(signing_key, forged_claims).split('.')[1]}.{signature}"
    impostor = make_token(generate_key(signing_key.alg, kid=signing_key.kid), forged_claims)
    stranger = make_token(generate_key(signing_key.alg, kid="someone-else"), forged_claims)
    for token, reason in ((swapped, Reason.BAD_SIGNATURE), (impostor, Reason.BAD_SIGNATURE),
                          (stranger, Reason.UNKNOWN_KEY)):
        exc = refusal(verifier, token)
        assert exc.reason is reason and exc.claims is None
