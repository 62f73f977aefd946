"""The shortcuts of tokend_client.jose and LocalVerifier against the full checks.

Each fast path must decide exactly as the strict path it stands in for, on genuine and
on malformed input alike: the base64url decoder, the one-scan JSON decoder, the DER
frames for ECDSA, the remembered-header path (``_verify_remembered``, LocalVerifier's
header memory) and the one-expression claim check. References here are written from
the specifications, with only the standard library and ``cryptography``.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import random
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tests.clients.python.client_test_support import (
    EC_ORDERS,
    SigningKey,
    b64,
    compact,
    generate_key,
    json_bytes,
    make_token,
)
from tokend_client import (
    InvalidToken,
    JwkSet,
    LocalVerifier,
    Reason,
    ServerKeySource,
    jose,
    verifier,
)
from tokend_client.jose import (
    SUPPORTED_ALGORITHMS,
    b64url_decode,
    jwa,
    jws,
    strict_json_loads,
    verify_jws,
)
from tokend_client.jose import json as strict_json

ALL_ALGS = tuple(sorted(SUPPORTED_ALGORITHMS))
ISSUER = "https://tokend.example"
AUDIENCE = "orders-api"
NOW = 1_750_000_000
LEEWAY = 30
FUZZ_ALGS = ("ES256", "RS256", "PS256", "EdDSA", "ES512", "Ed448")


def outcome(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, Any]:
    """What a call decided: its result, or the reason and message it refused with."""
    try:
        return ("accepted", call(*args, **kwargs))
    except InvalidToken as exc:
        return (exc.reason.value, str(exc))


def jws_payload(token: Any, jwks: JwkSet) -> bytes:
    return verify_jws(token, jwks, ALL_ALGS).payload


def tokend_claims(**changes: Any) -> dict[str, Any]:
    base = {"iss": ISSUER, "sub": "svc:billing", "aud": AUDIENCE, "exp": NOW + 300,
            "iat": NOW - 10, "nbf": NOW - 10, "jti": "0b6f0c9e-1", "client_id": "billing",
            "scope": "orders:read orders:write"}
    base.update(changes)
    return base


# -- base64url --------------------------------------------------------------------------


def reference_b64url(text: str) -> bytes | None:
    """RFC 7515 §2 / RFC 4648 §5: the decoded bytes, or None when ``text`` is not the
    canonical unpadded base64url encoding of anything (it must re-encode to itself)."""
    if re.fullmatch(r"[A-Za-z0-9_-]*", text) is None or len(text) % 4 == 1:
        return None
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return data if b64(data) == text else None


def _b64url_candidates() -> Iterator[str]:
    # Every string up to three characters over letters that hit each class: canonical
    # and non-canonical last characters, the standard alphabet, padding, outsiders.
    alphabet = "AQgwBEhz09-_+/=. \x00é"
    for length in range(4):
        yield from map("".join, itertools.product(alphabet, repeat=length))
    rng = random.Random("b64url")
    for _ in range(20000):
        text = b64(rng.randbytes(rng.randrange(0, 40)))
        if rng.random() < 0.6:  # one defect at a random place
            pos = rng.randrange(len(text) + 1)
            text = text[:pos] + rng.choice(alphabet) + text[pos + rng.randrange(2):]
        yield text


def test_b64url_decode_matches_the_reference() -> None:
    for text in _b64url_candidates():
        expected = reference_b64url(text)
        for data in (text, text.encode("utf-8")):
            if expected is None:
                with pytest.raises(ValueError):
                    b64url_decode(data)
            else:
                assert b64url_decode(data) == expected, text


@pytest.mark.parametrize(
    ("text", "message"),
    [("AB=", "not unpadded base64url"), ("A+", "not unpadded base64url"),
     ("é", "not unpadded base64url"), ("ABCDE", "impossible base64url length"),
     ("AB", "non-canonical base64url (unused bits set)"),
     ("ABC", "non-canonical base64url (unused bits set)")],
)
def test_b64url_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        b64url_decode(text)


# -- strict JSON ------------------------------------------------------------------------


def _reference_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({name for name, _ in pairs}) != len(pairs):  # RFC 7515 §4, RFC 7519 §4
        raise ValueError("duplicate")
    return dict(pairs)


def _reference_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("overflow")
    return value


def _reference_int(text: str) -> int:
    if len(text) > 64:
        raise ValueError("too long")
    return int(text)


def _reference_constant(name: str) -> Any:
    raise ValueError(name)


_REFERENCE = json.JSONDecoder(object_pairs_hook=_reference_pairs, parse_float=_reference_float,
                              parse_int=_reference_int, parse_constant=_reference_constant)


def reference_json(text: str) -> str:
    """The repr of what strict JSON yields for ``text`` (repr tells 1, 1.0 and True
    apart and shows member order), or "refused"."""
    try:
        value = _REFERENCE.decode(text)
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # lone surrogates fail here
    except (ValueError, RecursionError):
        return "refused"
    return repr(value)


def decided(text: str | bytes) -> str:
    try:
        return repr(strict_json_loads(text))
    except ValueError:
        return "refused"


JSON_CASES = [
    '{"a":1}', "{}", "[]", '"s"', "1", "null", '{"a":1} ', ' {"a":1}', '{"a":1}\n',
    '{"a":1,"a":2}', '{"a":1, "a":2}', '{"a" :1,"a":2}', '{"a":1,"b":2,"a":3}',
    '{"a":"x,y","a":2}', '{"a":"x,y","b":2}', '{"a":1,"\\u0061":2}', '{"a":{"b":1,"b":2}}',
    '{"a":[{"b":1,"b":2}]}', '{"a":[{"b":1}]}', '{"a":{},"a":{}}', '{"a":[],"a":[]}',
    '{"a":[1,2],"b":1}', '{"a":[1],"a":[2]}', '{"a":{"a":1},"b":2}', '{"a":{"b":{"c":1,"c":1}}}',
    '{"":1,"":2}', '{"a":1,}', '{"a":1}{"b":2}', '{"a":NaN}', '{"a":-Infinity}',
    '{"a":1e999}', '{"a":-1e999}', '{"a":1.5e3}', '{"a":true,"b":false,"c":null}',
    '{"a":' + "9" * 64 + "}", '{"a":' + "9" * 65 + "}", '{"a":-' + "9" * 63 + "}",
    '{"a":-' + "9" * 64 + "}", '{"a":"' + "9" * 80 + '"}', '{"a":"\\ud800"}',
    '{"a":"\\ud83d\\ude00"}', '{"\\udc00":1}', '{"a":"\\\\ud800"}', '{"a":"é,ü"}',
    '{"a":"\t"}', '{"a":1,"b":[2,{"c":3,"c":4}]}', "[" * 100000 + "]" * 100000,
    '{"a":' * 100000 + "1" + "}" * 100000,
]


@pytest.mark.parametrize("text", JSON_CASES, ids=range(len(JSON_CASES)))
def test_strict_json_cases(text: str) -> None:
    assert decided(text) == reference_json(text)
    assert decided(text.encode("utf-8", "surrogatepass")) == reference_json(text)


_KEYS = ("a", "b", "\\u0061", "c,d", "e:f", "")
_SCALARS = ("1", "-0", "1.5", "1e999", "NaN", "true", "null", '"x,y"', '"s t"', '"\\ud800"',
            '"\\n"', "9" * 65, "-" + "9" * 64, "9" * 64, '""', "[]", "{}")


def _random_json(rng: random.Random, depth: int = 0) -> str:
    """Random JSON-like text: objects that often repeat names, stray whitespace, values
    that are refused, occasionally a syntax error."""
    kind = rng.random()
    if depth > 3 or kind < 0.45:
        return rng.choice(_SCALARS)
    space = rng.choice(["", "", "", " ", "\n"])
    if kind < 0.6:
        items = [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
        return "[" + f",{space}".join(items) + "]"
    members = [f'"{rng.choice(_KEYS)}"{space}:{_random_json(rng, depth + 1)}'
               for _ in range(rng.randrange(5))]
    text = "{" + f",{space}".join(members) + "}"
    if rng.random() < 0.03:  # a syntax error somewhere
        pos = rng.randrange(len(text))
        text = text[:pos] + rng.choice(',:{}[]"') + text[pos:]
    return text


def test_strict_json_random_documents() -> None:
    rng = random.Random("strict-json")
    accepted = refused = 0
    for _ in range(6000):
        text = _random_json(rng)
        expected = reference_json(text)
        assert decided(text) == expected, text
        accepted += expected != "refused"
        refused += expected == "refused"
    assert accepted > 1000 and refused > 1000  # both outcomes really exercised


def test_strict_json_fast_path_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """Token payloads must not fall back to the full decoder (it would still be right,
    only slow): a guard against the shortcut silently never applying."""
    def full_decoder(text: str) -> Any:
        raise AssertionError("fell back to the full decoder")

    monkeypatch.setattr(strict_json._STRICT_DECODER, "decode", full_decoder)
    assert strict_json_loads(json_bytes(tokend_claims())) == tokend_claims()
    assert strict_json_loads(json.dumps(tokend_claims(aud=[AUDIENCE]))) == tokend_claims(
        aud=[AUDIENCE])


# -- ECDSA DER frames -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 48, 66])
def test_der_frames_match_encode_dss_signature(size: int) -> None:
    rng = random.Random(size)
    firsts = (0x00, 0x01, 0x7F, 0x80, 0xFF)
    frames = jwa._der_frames(size)
    for r_first, s_first, second in itertools.product(firsts, firsts, (0x00, 0x80, 0x01)):
        r = bytes((r_first, second)) + rng.randbytes(size - 2)
        s = bytes((s_first, second)) + rng.randbytes(size - 2)
        if not any(r) or not any(s):
            continue
        expected = encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
        assert jwa._der_signature(r, s) == expected
        if r_first and s_first:
            head, middle = frames[r_first >> 7][s_first >> 7]
            assert head + r + middle + s == expected


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_ecdsa_signatures_of_every_shape_verify(alg: str, signing_keys: dict[str, SigningKey]
                                                ) -> None:
    """Real signatures until r and s have each first-octet class (zero octet to strip,
    sign octet needed, neither); each verifies, and with s off by one it does not."""
    key = signing_keys[alg]
    public = jose.PublicKey.from_jwk(key.public_jwk())
    size = len(key.sign(b"probe")) // 2
    # P-521 values fit in 521 bits: the first of their 66 octets is 0 or 1.
    classes = {0, 1} if alg == "ES512" else {0, 1, 2}
    seen_r: set[int] = set()
    seen_s: set[int] = set()
    for index in range(5000):
        message = b"message %d" % index
        signature = key.sign(message)
        r_class, s_class = _first_octet_class(signature[0]), _first_octet_class(signature[size])
        if r_class in seen_r and s_class in seen_s:
            continue
        seen_r.add(r_class)
        seen_s.add(s_class)
        assert public.verify(message, signature)
        s = int.from_bytes(signature[size:], "big")
        altered = signature[:size] + ((s + 1) % EC_ORDERS[alg] or 1).to_bytes(size, "big")
        assert not public.verify(message, altered)
        if seen_r == seen_s == classes:
            break
    assert seen_r == seen_s == classes


def _first_octet_class(octet: int) -> int:
    return 0 if octet == 0 else 1 if octet < 0x80 else 2


# -- the remembered-header path -----------------------------------------------------------


_MUTATION_CHARS = "AQgw09-_=+/. \x00é"


def _mutate_after_header(token: str, rng: random.Random) -> str:
    """Change payload or signature text (sometimes the header), keeping most headers."""
    start = 0 if rng.random() < 0.1 else max(token.find("."), 0)
    pos = rng.randrange(start, len(token) + 1)
    choice = rng.randrange(5)
    if choice == 0:
        return token[:pos] + rng.choice(_MUTATION_CHARS) + token[pos + 1:]
    if choice == 1:
        return token[:pos] + token[pos + 1:]
    if choice == 2:
        return token[:pos] + rng.choice(_MUTATION_CHARS) + token[pos:]
    if choice == 3:
        return token[:pos]
    return token + rng.choice([".", ".x", "A", "é"])


@pytest.fixture(scope="module")
def fuzz_keys(signing_keys: dict[str, SigningKey]) -> dict[str, SigningKey]:
    return {alg: signing_keys[alg] for alg in FUZZ_ALGS}


@pytest.fixture(scope="module")
def fuzz_jwks(fuzz_keys: dict[str, SigningKey]) -> JwkSet:
    return JwkSet.from_json({"keys": [key.public_jwk() for key in fuzz_keys.values()]})


@pytest.mark.parametrize("alg", FUZZ_ALGS)
def test_remembered_path_decides_like_verify_jws(
    alg: str, fuzz_keys: dict[str, SigningKey], fuzz_jwks: JwkSet
) -> None:
    key = fuzz_keys[alg]
    token = make_token(key, tokend_claims())
    header = token.split(".")[0]
    remembered = {header: verify_jws(token, fuzz_jwks, ALL_ALGS).key}
    rng = random.Random(f"remembered-{alg}")
    taken = 0
    for _ in range(1500):
        mutated = token
        for _ in range(rng.randrange(1, 3)):
            mutated = _mutate_after_header(mutated, rng)
        fast = outcome(jws._verify_remembered, mutated, remembered)
        if fast == ("accepted", None):
            continue  # not for the shortcut: verify_jws decides alone
        taken += 1
        strict = outcome(jws_payload, mutated, JwkSet(fuzz_jwks.keys))
        assert fast == strict, mutated
    assert taken > 500
    assert jws._verify_remembered(token, remembered) == json_bytes(tokend_claims())


@pytest.mark.parametrize(
    "token",
    [None, 1, b"a.b.c", bytearray(b"a.b.c"), "a.b", "a.b.c.d", "....", "", "é.a.b", "a.é.b",
     "a.b.é", "b.a.c", "a" * (jose.MAX_COMPACT_BYTES + 1) + ".b.c"],
    ids=repr,
)
def test_remembered_path_leaves_the_unusual_to_verify_jws(
    token: Any, signing_keys: dict[str, SigningKey]
) -> None:
    key = jose.PublicKey.from_jwk(signing_keys["ES256"].public_jwk())
    remembered = {"a": key, "é": key, "": key, "a" * (jose.MAX_COMPACT_BYTES + 1): key}
    assert jws._verify_remembered(token, remembered) is None
    with pytest.raises(InvalidToken) as caught:  # a remembered header: it decides
        jws._verify_remembered("a.b.c", remembered)
    assert caught.value.reason is Reason.MALFORMED


# -- LocalVerifier: remembered headers ---------------------------------------------------------


def new_verifier(jwks: Any, **settings: Any) -> LocalVerifier:
    settings.setdefault("leeway", LEEWAY)
    settings.setdefault("algorithms", ALL_ALGS)
    return LocalVerifier(jwks, issuer=ISSUER, audience=AUDIENCE, **settings)


class Spy:
    """Counts the calls to _verify_remembered that decided (did not return None)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.decided = 0
        real = verifier._verify_remembered

        def spy(token: object, remembered: Any) -> bytes | None:
            try:
                payload = real(token, remembered)
            except InvalidToken:
                self.decided += 1
                raise
            self.decided += payload is not None
            return payload

        monkeypatch.setattr(verifier, "_verify_remembered", spy)


_CLAIM_VARIANTS: dict[str, tuple[Any, ...]] = {
    "iss": (ISSUER + "/", 1, None),
    "sub": ("", 1, True),
    "aud": ("other", [AUDIENCE], [], 7),
    "exp": (NOW - LEEWAY, NOW - LEEWAY + 1, True, 1.5e9, "soon", 10**70),
    "iat": (NOW + LEEWAY, NOW + LEEWAY + 1, NOW - 10.5, False),
    "nbf": (NOW + LEEWAY, NOW + LEEWAY + 1, None),
    "jti": ("", ["j"]),
    "scope": ("", "orders:read", 5),
    "client_id": ("", 7),
}
_DROP: Any = object()


def _random_claims(rng: random.Random) -> dict[str, Any]:
    claims = tokend_claims()
    for name, variants in _CLAIM_VARIANTS.items():
        if rng.random() < 0.12:
            claims[name] = rng.choice((*variants, _DROP))
    return {name: value for name, value in claims.items() if value is not _DROP}


@pytest.mark.parametrize("alg", FUZZ_ALGS)
def test_warm_verifier_decides_like_a_fresh_one(
    alg: str, fuzz_keys: dict[str, SigningKey], fuzz_jwks: JwkSet,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signed tokens with random claims, and random damage to them: a verifier that has
    seen the header before gives the result a fresh one gives, reason and message."""
    key = fuzz_keys[alg]
    warm = new_verifier(fuzz_jwks, max_lifetime=3600)
    warm.verify(make_token(key, tokend_claims()), now=NOW)
    spy = Spy(monkeypatch)
    rng = random.Random(f"warm-{alg}")
    for index in range(600):
        token = make_token(key, _random_claims(rng))
        if index % 3 == 0:
            token = _mutate_after_header(token, rng)
        scopes = rng.choice([(), ("orders:read",), "orders:write orders:read", ["nope"]])
        fresh = new_verifier(JwkSet(fuzz_jwks.keys), max_lifetime=3600)
        expected = outcome(fresh.verify, token, now=NOW, required_scopes=scopes)
        assert outcome(warm.verify, token, now=NOW, required_scopes=scopes) == expected, token
    assert spy.decided > 500


def test_only_accepted_headers_are_remembered(signing_keys: dict[str, SigningKey]) -> None:
    key = signing_keys["ES256"]
    verifier_ = new_verifier(key.jwks(), algorithms=["ES256"])
    refused = [
        make_token(key, tokend_claims(), header={"typ": "JWT"}),
        make_token(key, tokend_claims(), header={"kid": "unknown"}),
        make_token(key, tokend_claims(), header={"alg": "ES384"}),
        make_token(generate_key("ES256", kid=key.kid), tokend_claims()),  # bad signature
        compact(json_bytes({"alg": "ES256", "kid": key.kid, "typ": "at+jwt"}), b"[]", key),
    ]
    for token in refused * 2:
        with pytest.raises(InvalidToken):
            verifier_.verify(token, now=NOW)
    assert verifier_._remembered[1] == {
        compact(json_bytes({"alg": "ES256", "kid": key.kid, "typ": "at+jwt"}), b"[]", key)
        .split(".")[0]: verifier_.jwks.get(key.kid)
    }  # only the header of the last one, whose signature and header were fine
    with pytest.raises(InvalidToken) as caught:
        verifier_.verify(refused[0], now=NOW)
    assert caught.value.reason is Reason.WRONG_TYPE


def test_remembered_headers_are_bounded(signing_keys: dict[str, SigningKey]) -> None:
    key = signing_keys["EdDSA"]
    verifier_ = new_verifier(key.jwks())
    tokens = [make_token(key, tokend_claims(), header={"n": n}) for n in range(50)]
    for token in tokens * 2:
        assert verifier_.verify(token, now=NOW)["sub"] == "svc:billing"
    assert len(verifier_._remembered[1]) == verifier._MAX_REMEMBERED_HEADERS


def test_remembered_headers_follow_the_key_set(signing_keys: dict[str, SigningKey]) -> None:
    key = signing_keys["ES256"]
    verifier_ = new_verifier(key.jwks())
    token = make_token(key, tokend_claims())
    assert verifier_.verify(token, now=NOW)
    assert verifier_.verify(token, now=NOW)  # through the remembered header
    stranger = generate_key("ES256", kid="another")
    verifier_.update_jwks(stranger.jwks())
    with pytest.raises(InvalidToken) as caught:
        verifier_.verify(token, now=NOW)
    assert caught.value.reason is Reason.UNKNOWN_KEY
    impostor = generate_key("ES256", kid=key.kid)  # same kid, same header text, new key
    verifier_.update_jwks(impostor.jwks())
    with pytest.raises(InvalidToken) as caught:
        verifier_.verify(token, now=NOW)
    assert caught.value.reason is Reason.BAD_SIGNATURE
    assert verifier_.verify(make_token(impostor, tokend_claims()), now=NOW)


def test_remembered_headers_follow_a_key_source(signing_keys: dict[str, SigningKey]) -> None:
    """A header accepted after a refetch is remembered with the newer key set."""
    old, new = signing_keys["ES256"], signing_keys["EdDSA"]
    published = [old]
    with ServerKeySource(lambda: {"keys": [k.public_jwk() for k in published]},
                         refresh_interval=None, min_refetch_interval=0) as source:
        verifier_ = new_verifier(source)
        published.append(new)  # tokend rotates
        token = make_token(new, tokend_claims())
        assert verifier_.verify(token, now=NOW)
        assert verifier_._remembered[0] is source.keys() is verifier_.jwks
        assert verifier_.verify(token, now=NOW)
        assert source.fetch_count == 2  # the first fetch, then one for the new kid


def test_bytes_tokens_take_the_full_path(signing_keys: dict[str, SigningKey]) -> None:
    key = signing_keys["RS256"]
    verifier_ = new_verifier(key.jwks())
    token = make_token(key, tokend_claims())
    assert verifier_.verify(token.encode(), now=NOW) == tokend_claims()
    assert verifier_._remembered[1] == {}
    assert verifier_.verify(token, now=NOW) == verifier_.verify(bytearray(token.encode()),
                                                                now=NOW)


# -- the one-expression claim check --------------------------------------------------------------


def _rules_only(verifier_: LocalVerifier, monkeypatch: pytest.MonkeyPatch) -> LocalVerifier:
    monkeypatch.setattr(verifier_, "_claims_plainly_valid", lambda *args: False)
    return verifier_


@pytest.mark.parametrize(
    "settings",
    [{}, {"max_lifetime": 600}, {"required_claims": ("exp", "client_id")},
     {"required_claims": ()}, {"audience": None}, {"audience": ["a", AUDIENCE]}, {"leeway": 0}],
    ids=repr,
)
def test_claim_shortcut_agrees_with_the_rules(
    settings: dict[str, Any], signing_keys: dict[str, SigningKey],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    jwks = signing_keys["EdDSA"].jwks()
    audience = settings.pop("audience", AUDIENCE)
    fast = LocalVerifier(jwks, issuer=ISSUER, audience=audience, **settings)
    rules = _rules_only(LocalVerifier(jwks, issuer=ISSUER, audience=audience, **settings),
                        monkeypatch)
    rng = random.Random(repr(settings))
    shortcut_taken = 0
    for _ in range(3000):
        claims = _random_claims(rng)
        now = rng.choice([NOW, NOW + 0.25, NOW - LEEWAY - 10.5])
        scopes = rng.choice([(), ("orders:read",), "orders:read orders:write", ("x",)])
        per_call = rng.choice([None, AUDIENCE, "other", [AUDIENCE, "b"]])
        call = {"now": now, "audience": per_call, "required_scopes": scopes}
        expected = outcome(rules.check_claims, claims, **call)
        assert outcome(fast.check_claims, claims, **call) == expected, claims
        expected_audience = (fast._audience if per_call is None
                             else verifier._audience_set(per_call))
        shortcut_taken += fast._claims_plainly_valid(claims, now, expected_audience,
                                                     verifier._required_scopes(scopes))
    assert shortcut_taken > 300 or audience is None


def test_claim_shortcut_covers_tokend_tokens(signing_keys: dict[str, SigningKey]) -> None:
    verifier_ = LocalVerifier(signing_keys["EdDSA"].jwks(), issuer=ISSUER, audience=AUDIENCE,
                              max_lifetime=3600)
    assert verifier_._claims_plainly_valid(tokend_claims(), NOW, frozenset([AUDIENCE]), ())
    assert verifier_._claims_plainly_valid(tokend_claims(), NOW + 0.5, frozenset([AUDIENCE]),
                                           ("orders:read",))
