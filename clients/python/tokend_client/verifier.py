"""LocalVerifier: verify tokend access tokens in-process with the published JWKS.

The checks follow RFC 9068 (JWT access tokens), RFC 7519 (JWT) and RFC 8725 (JWT
best current practices). The signature layer is :mod:`tokend_client.jose`. Every
rejection raises :class:`~tokend_client.errors.InvalidToken` with a
:class:`~tokend_client.errors.Reason` (and, for a rejection after the signature verified,
the authenticated claims as ``claims``); invalid arguments (programming errors) raise
``TypeError``/``ValueError``.

Revocation is checked only when the key source is a
:class:`~tokend_client.live.LiveSource`, which follows tokend's revocation feed: a
revoked ``jti``, or a token of a revoked subject issued at or before the revocation,
is then refused with ``Reason.REVOKED``. Otherwise ask tokend (``TokenClient.verify``).

To follow tokend's key rotations, pass a :class:`~tokend_client.keysource.KeySource`
instead of a fixed key set: a token naming an unknown ``kid`` then makes the source
refetch (rate-limited by the source) and the token is checked once more.
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from .binding import Certificate, check_confirmation, presenter_thumbprint
from .delegation import check_delegation, delegation_option
from .errors import InvalidToken, Reason
from .jose import (
    MAX_COMPACT_BYTES,
    SUPPORTED_ALGORITHMS,
    JwkSet,
    PublicKey,
    VerifiedJws,
    as_key_set,
    strict_json_loads,
    verify_jws,
)
from .jose.jws import _verify_remembered
from .keysource import KeySource
from .live import LiveSource

__all__ = ["LocalVerifier"]

MAX_LEEWAY_SECONDS = 300
# Header segments remembered per key set (LocalVerifier._remember).
_MAX_REMEMBERED_HEADERS = 32
_NUMERIC_DATE_CLAIMS = ("exp", "nbf", "iat")

JwksSource = JwkSet | Mapping[str, Any] | str | bytes | KeySource
Audience = str | Collection[str]
_TEXT_TYPES = (str, bytes, bytearray)


class LocalVerifier:
    """Verify access tokens against a key set, an issuer and an audience.

    ``jwks`` is a :class:`JwkSet`, a JWK Set dict or its JSON text, or a
    :class:`~tokend_client.keysource.KeySource` to follow (its first fetch happens
    here and raises KeySourceError on failure). ``audience`` (here
    or per call) is one audience or a collection of acceptable ones; when none is
    expected, a token that carries ``aud`` is refused (RFC 7519 §4.1.3). ``leeway``
    (0-300 s) absorbs clock skew for ``exp``/``nbf``/``iat``. ``max_lifetime`` bounds
    ``exp - iat`` and then requires both claims. ``delegation`` (here or per call):
    ``"any"`` accepts direct and delegated tokens (with an ``act`` claim, RFC 8693
    §4.1), ``"required"`` only delegated ones, ``"refused"`` only direct ones (else
    ``Reason.DELEGATION``); ``act`` itself is always checked (``tokend_client.actors``).
    """

    def __init__(
        self,
        jwks: JwksSource,
        *,
        issuer: str,
        audience: Audience | None = None,
        algorithms: Collection[str] = ("ES256", "RS256", "PS256", "EdDSA"),
        leeway: float = 30,
        max_lifetime: float | None = None,
        required_typ: str = "at+jwt",
        max_token_bytes: int = 8192,
        required_claims: Collection[str] = ("exp", "iat", "iss", "sub", "aud", "jti"),
        delegation: str = "any",
    ) -> None:
        self._delegation = delegation_option(delegation)
        self._issuer = _non_empty_str(issuer, "issuer")
        self._audience = _audience_set(audience)
        self._algorithms = _algorithm_set(algorithms)
        self._leeway = _leeway(leeway)
        self._max_lifetime = _max_lifetime(max_lifetime)
        self._typ = _normalize_typ(_non_empty_str(required_typ, "required_typ"))
        self._max_token_bytes = _max_token_bytes(max_token_bytes)
        self._required_claims = _names(required_claims, "required_claims")
        self._required_beyond_plain = frozenset(self._required_claims).difference(_PLAIN_NAMES)
        # Last, because following a source fetches: bad arguments fail before any I/O.
        # When following, _jwks is only the first set; verify() asks the source.
        self._source = jwks if isinstance(jwks, KeySource) else None
        self._revocations = jwks if isinstance(jwks, LiveSource) else None
        self._jwks = as_key_set(jwks) if self._source is None else self._source.keys()
        # Header segments this verifier accepted (header rules and typ) with one key set.
        self._remembered: tuple[JwkSet | None, dict[str, PublicKey]] = (None, {})

    @property
    def jwks(self) -> JwkSet:
        """The key set in use."""
        return self._jwks if self._source is None else self._source.keys()

    def update_jwks(self, jwks: JwksSource) -> None:
        """Replace the key set (key rotation). A set that fails to parse raises
        ValueError and leaves the current one in place; the swap itself is a single
        attribute assignment, so concurrent verify() calls see the old or new set.
        A verifier that follows a key source refuses (TypeError): refresh the source."""
        if self._source is not None:
            raise TypeError("this verifier follows a key source; call its refresh() instead")
        self._jwks = as_key_set(jwks)

    def verify(
        self,
        token: str | bytes,
        *,
        now: float | None = None,
        audience: Audience | None = None,
        required_scopes: str | Iterable[str] = (),
        delegation: str | None = None,
        presenter_certificate: Certificate | None = None,
        presenter_x5t_s256: str | None = None,
    ) -> dict[str, Any]:
        """Return the claims of a valid token; raise InvalidToken otherwise (with the
        token's claims in ``exc.claims`` when its signature verified, else None).

        ``audience`` and ``delegation`` override the constructor's for this call.
        ``required_scopes`` is a collection of scope names (a string is read as
        space-separated names).
        ``presenter_certificate`` (DER bytes or a cryptography ``x509.Certificate``) or
        ``presenter_x5t_s256`` (its thumbprint) names the client certificate of the
        connection the token came on: a certificate-bound token (``cnf``, RFC 8705 §3)
        verifies only when it names that certificate, and never without a presenter
        (``Reason.CERTIFICATE_MISMATCH``). :mod:`tokend_client.binding` has helpers
        that take it from a TLS socket, a gRPC context or an Envoy sidecar's header.
        """
        presenter = (None if presenter_certificate is None and presenter_x5t_s256 is None
                     else presenter_thumbprint(presenter_certificate, presenter_x5t_s256))
        moment = time.time() if now is None else _timestamp(now)
        expected_audience = self._audience if audience is None else _audience_set(audience)
        scopes = _required_scopes(required_scopes)
        chosen = self._delegation_for(delegation)
        # Size first, before any decoding: bounds the work a hostile token can cause.
        if isinstance(token, _TEXT_TYPES) and len(token) > self._max_token_bytes:
            raise InvalidToken(Reason.TOO_LARGE)
        keys = self._jwks if self._source is None else self._source.keys()
        # A header accepted before with these keys (the usual case: one per key version)
        # is not decoded again; payload and signature are checked as always.
        remembered_keys, remembered = self._remembered
        payload = _verify_remembered(token, remembered) if remembered_keys is keys else None
        if payload is None:
            payload = self._verified_payload(token, keys)
        claims = _claims_object(payload)
        try:
            self._check_claims(claims, moment, expected_audience, scopes, chosen)
            if "cnf" in claims:  # RFC 8705 §3: after the claim rules (unbound: nothing to do)
                check_confirmation(claims, presenter)
            # Last: only a token that is otherwise valid is worth looking up.
            if self._revocations is not None and self._revocations.is_revoked(claims, moment):
                raise InvalidToken(Reason.REVOKED)
        except InvalidToken as exc:
            # The signature verified: who the token was about is known without a second
            # check (tokend's audit of refused tokens reads it, tokens/authority.py).
            exc.claims = claims
            raise
        return claims

    def check_claims(
        self,
        claims: dict[str, Any],
        *,
        now: float | None = None,
        audience: Audience | None = None,
        required_scopes: str | Iterable[str] = (),
        delegation: str | None = None,
        presenter_certificate: Certificate | None = None,
        presenter_x5t_s256: str | None = None,
    ) -> None:
        """Apply the claim rules again to claims :meth:`verify` returned earlier.

        For caches of verified tokens: signature, header and JSON need no second look,
        but lifetime, audience and scopes depend on the moment and on the caller.
        Revocation is not looked up here. Arguments as for :meth:`verify`; raises
        InvalidToken. The certificate binding is checked again too: a cache must never
        let a token bound to one certificate pass for another presenter.
        """
        presenter = (None if presenter_certificate is None and presenter_x5t_s256 is None
                     else presenter_thumbprint(presenter_certificate, presenter_x5t_s256))
        moment = time.time() if now is None else _timestamp(now)
        expected_audience = self._audience if audience is None else _audience_set(audience)
        self._check_claims(claims, moment, expected_audience, _required_scopes(required_scopes),
                           self._delegation_for(delegation))
        check_confirmation(claims, presenter)

    def _delegation_for(self, delegation: str | None) -> str:
        return self._delegation if delegation is None else delegation_option(delegation)

    def _verified_payload(self, token: str | bytes, keys: JwkSet) -> bytes:
        """The payload, once signature, header and ``typ`` are checked."""
        keys, verified = self._verify_signature(token, keys)
        try:
            self._check_typ(verified.header)
        except InvalidToken as exc:
            exc.claims = _claims_or_none(verified.payload)  # signed: as verify() does
            raise
        self._remember(token, keys, verified.key)
        return verified.payload

    def _remember(self, token: str | bytes, keys: JwkSet, key: PublicKey) -> None:
        """Let tokens with this token's header skip the header checks (_verify_remembered)."""
        if type(token) is not str:
            return
        remembered_keys, remembered = self._remembered
        if remembered_keys is not keys:
            # Entries are only good for the key set they were checked with. Threads
            # racing here at a key change may swap in a few sets; each stays consistent.
            remembered = {}
            self._remembered = (keys, remembered)
        # A signer uses one header per key version: a few entries cover every kid.
        if len(remembered) < _MAX_REMEMBERED_HEADERS:
            remembered[token.partition(".")[0]] = key

    def _verify_signature(self, token: str | bytes, keys: JwkSet) -> tuple[JwkSet, VerifiedJws]:
        """verify_jws, and the key set it succeeded with."""
        if self._source is None:
            return keys, verify_jws(token, keys, self._algorithms)
        try:
            return keys, verify_jws(token, keys, self._algorithms)
        except InvalidToken as exc:
            # Only an unknown kid can be cured by newer keys; the source rate-limits
            # the refetch, so made-up kids cannot make us hammer the publisher.
            if exc.reason is not Reason.UNKNOWN_KEY:
                raise
            newer = self._source.refetch_for_unknown_key(keys)
            if newer is None:
                raise
        return newer, verify_jws(token, newer, self._algorithms)

    def _check_typ(self, header: Mapping[str, Any]) -> None:
        typ = header.get("typ")
        # RFC 9068 §4 / RFC 8725 §3.11: explicit typing keeps other JWTs out.
        if not isinstance(typ, str) or _normalize_typ(typ) != self._typ:
            raise InvalidToken(Reason.WRONG_TYPE)

    def _check_claims(
        self,
        claims: dict[str, Any],
        now: float,
        audience: frozenset[str] | None,
        scopes: tuple[str, ...],
        delegation: str = "any",
    ) -> None:
        # A delegated token (act) takes the rules one by one: act needs its own checks.
        if (delegation != "required" and "act" not in claims
                and self._claims_plainly_valid(claims, now, audience, scopes)):
            return
        # Something is unusual or wrong: each rule in turn, the first failure raises.
        _check_present(claims, self._required_claims)
        _check_numeric_dates(claims)
        _check_issuer(claims, self._issuer)
        _check_times(claims, now, self._leeway, self._max_lifetime)
        _check_audience(claims, audience)
        _check_identifiers(claims)
        _check_scopes(claims, scopes)
        check_delegation(claims, delegation)  # rules A1 and A2 (delegation.py)

    def _claims_plainly_valid(
        self,
        claims: dict[str, Any],
        now: float,
        audience: frozenset[str] | None,
        scopes: tuple[str, ...],
    ) -> bool:
        """True only if every claim rule below passes, judged in one expression
        for the shape tokend's tokens have (all of _PLAIN_NAMES, integer dates, one aud).
        False means "not sure": the rules then run one by one and raise the precise
        error."""
        try:
            iss, sub, aud, exp, iat, nbf, jti = _PLAIN_CLAIMS(claims)
        except KeyError:
            return False
        scope, leeway, max_lifetime = claims.get("scope", _ABSENT), self._leeway, self._max_lifetime
        beyond = self._required_beyond_plain
        return (
            # Exact types: a bool is no NumericDate; iss == issuer makes iss a str.
            type(sub) is type(aud) is type(jti) is str
            and type(exp) is type(iat) is type(nbf) is int
            and (not beyond or claims.keys() >= beyond)
            and iss == self._issuer
            and now < exp + leeway
            and now + leeway >= nbf
            and iat <= now + leeway
            and (max_lifetime is None or exp - iat <= max_lifetime)
            and audience is not None
            and aud in audience
            and sub != ""
            and jti != ""
            and (scope is _ABSENT or type(scope) is str)
            and (not scopes or (type(scope) is str and set(scope.split(" ")).issuperset(scopes)))
        )


# A claim that is not there, as opposed to one whose value is JSON null.
_ABSENT: Any = object()
# The claims every tokend token carries (RFC 9068 §2.2, and nbf).
_PLAIN_NAMES = ("iss", "sub", "aud", "exp", "iat", "nbf", "jti")
_PLAIN_CLAIMS = operator.itemgetter(*_PLAIN_NAMES)

# ---------------------------------------------------------------------------
# Claim rules, in the order LocalVerifier applies them
# ---------------------------------------------------------------------------


def _claims_object(payload: bytes) -> dict[str, Any]:
    try:
        claims = strict_json_loads(payload)
    except ValueError:
        raise InvalidToken(Reason.MALFORMED, "claims are not strict JSON") from None
    # RFC 7519 §7.2 step 10: the payload of a JWT is a JSON object.
    if not isinstance(claims, dict):
        raise InvalidToken(Reason.MALFORMED, "claims are not a JSON object")
    return claims


def _claims_or_none(payload: bytes) -> dict[str, Any] | None:
    """The claims of a signed token refused before they were read, if they are a JSON object."""
    try:
        return _claims_object(payload)
    except InvalidToken:
        return None


def _check_present(claims: Mapping[str, Any], required: Iterable[str]) -> None:
    for name in required:
        if name not in claims:
            raise InvalidToken(Reason.MISSING_CLAIM, f"token lacks required claim {name}")


def _check_numeric_dates(claims: Mapping[str, Any]) -> None:
    for name in _NUMERIC_DATE_CLAIMS:
        if name in claims and not _is_numeric_date(claims[name]):
            # RFC 7519 §2: NumericDate is a JSON number (not a string, not a boolean).
            raise InvalidToken(Reason.MALFORMED, f"claim {name} is not a NumericDate")


def _is_numeric_date(value: object) -> bool:
    if type(value) is int:  # what tokens carry; bool is a subclass, so not this branch
        return True
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def _check_issuer(claims: Mapping[str, Any], issuer: str) -> None:
    iss = claims.get("iss")
    if "iss" in claims and not isinstance(iss, str):
        raise InvalidToken(Reason.MALFORMED, "claim iss is not a string")  # RFC 7519 §4.1.1
    # RFC 9068 §4 step 3: iss must exactly match the expected issuer.
    if iss != issuer:
        raise InvalidToken(Reason.WRONG_ISSUER)


def _check_times(
    claims: Mapping[str, Any], now: float, leeway: float, max_lifetime: float | None
) -> None:
    exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
    # RFC 7519 §4.1.4: the current time MUST be before exp (plus a small leeway).
    if exp is not None and now >= exp + leeway:
        raise InvalidToken(Reason.EXPIRED)
    # RFC 7519 §4.1.5: the current time MUST be at or after nbf (minus leeway).
    if nbf is not None and now + leeway < nbf:
        raise InvalidToken(Reason.NOT_YET_VALID)
    # RFC 7519 §4.1.6: iat is when the token was made; later than now means a bad clock
    # or a forged token.
    if iat is not None and iat > now + leeway:
        raise InvalidToken(Reason.ISSUED_IN_FUTURE)
    if max_lifetime is not None:
        _check_lifetime(exp, iat, max_lifetime)


def _check_lifetime(exp: float | None, iat: float | None, max_lifetime: float) -> None:
    # Without both ends the lifetime is unbounded, which the limit exists to refuse.
    if exp is None or iat is None:
        name = "exp" if exp is None else "iat"
        raise InvalidToken(Reason.MISSING_CLAIM, f"max_lifetime needs claim {name}")
    if exp - iat > max_lifetime:
        raise InvalidToken(Reason.LIFETIME_TOO_LONG)


def _check_audience(claims: Mapping[str, Any], expected: frozenset[str] | None) -> None:
    if "aud" not in claims:
        return
    aud = claims["aud"]
    if type(aud) is str and expected is not None:  # the common case, decided at once
        if aud not in expected:
            raise InvalidToken(Reason.WRONG_AUDIENCE)
        return
    # RFC 7519 §4.1.3: a string or an array of strings (we require a non-empty array).
    values = [aud] if isinstance(aud, str) else aud
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise InvalidToken(Reason.MALFORMED, "claim aud is not a string or array of strings")
    # RFC 7519 §4.1.3: a recipient that does not identify itself with aud MUST reject.
    if expected is None or expected.isdisjoint(values):
        raise InvalidToken(Reason.WRONG_AUDIENCE)


def _check_identifiers(claims: Mapping[str, Any]) -> None:
    # RFC 7519 §4.1.2 (sub: StringOrURI) and §4.1.7 (jti: case-sensitive string).
    for name in ("sub", "jti"):
        if name in claims and (not isinstance(claims[name], str) or not claims[name]):
            raise InvalidToken(Reason.MALFORMED, f"claim {name} is not a non-empty string")


def _check_scopes(claims: Mapping[str, Any], required: tuple[str, ...]) -> None:
    scope = claims.get("scope")
    # RFC 9068 §2.2.3 / RFC 8693 §4.2: scope is one space-separated string.
    if "scope" in claims and not isinstance(scope, str):
        raise InvalidToken(Reason.MALFORMED, "claim scope is not a string")
    if not required:
        return
    granted = frozenset(scope.split(" ")) if scope else frozenset()
    for name in required:
        if name not in granted:
            raise InvalidToken(Reason.MISSING_SCOPE, f"token lacks scope {name}")


# ---------------------------------------------------------------------------
# Argument checks (configuration errors are ValueError/TypeError, not InvalidToken)
# ---------------------------------------------------------------------------


def _non_empty_str(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _names(values: object, name: str) -> tuple[str, ...]:
    # A bare string is a collection of characters: refuse it instead of misreading it.
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a collection of strings")
    items = tuple(values)
    for item in items:
        if not isinstance(item, str) or not item:
            raise ValueError(f"{name} must contain only non-empty strings")
    return items


def _audience_set(audience: Audience | None) -> frozenset[str] | None:
    if audience is None:
        return None
    if isinstance(audience, str):
        return frozenset((_non_empty_str(audience, "audience"),))
    values = _names(audience, "audience")
    if not values:
        raise ValueError("audience must name at least one audience")
    return frozenset(values)


def _algorithm_set(algorithms: Collection[str]) -> frozenset[str]:
    names = frozenset(_names(algorithms, "algorithms"))
    unsupported = names - SUPPORTED_ALGORITHMS
    if not names or unsupported:
        raise ValueError(f"algorithms must be a non-empty subset of {sorted(SUPPORTED_ALGORITHMS)}")
    return names


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite")
    return value


def _leeway(leeway: object) -> float:
    value = _number(leeway, "leeway")
    # Leeway is for clock skew; minutes of it would quietly extend every token's life.
    if not 0 <= value <= MAX_LEEWAY_SECONDS:
        raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY_SECONDS} seconds")
    return value


def _max_lifetime(max_lifetime: object) -> float | None:
    if max_lifetime is None:
        return None
    value = _number(max_lifetime, "max_lifetime")
    if value <= 0:
        raise ValueError("max_lifetime must be positive")
    return value


def _max_token_bytes(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError("max_token_bytes must be an int")
    if not 0 < limit <= MAX_COMPACT_BYTES:
        raise ValueError(f"max_token_bytes must be between 1 and {MAX_COMPACT_BYTES}")
    return limit


def _timestamp(now: object) -> float:
    if type(now) is float and math.isfinite(now):  # time.time(), without _number's checks
        return now
    return _number(now, "now")


def _required_scopes(required: str | Iterable[str]) -> tuple[str, ...]:
    if required == ():  # the common case, without the generic collection checks
        return ()
    if isinstance(required, str):
        return tuple(name for name in required.split(" ") if name)
    return _names(required, "required_scopes")


def _normalize_typ(typ: str) -> str:
    # RFC 7515 §4.1.9: media types are case-insensitive and "application/" is implied
    # when the value has no "/", so "at+jwt" and "application/at+jwt" are the same.
    typ = typ.lower()
    return typ if "/" in typ else "application/" + typ
