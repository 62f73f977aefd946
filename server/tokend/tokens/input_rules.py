"""Input rules: the limits every request field meets (length, characters, no secrets in
name fields, no registered claims), and the validated AccessTokenSpec. The API layer
applies them once per request (api/requests.py) before the token layer acts."""

from __future__ import annotations

import binascii
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokend.config import TokenConfig
from tokend.tokens.errors import BadRequest
from tokend.tokens.refresh import PREFIX as REFRESH_TOKEN_PREFIX

# Claims tokend sets itself; a caller can never set or override them.
# RFC 7519 §4.1 (registered), RFC 9068 §2.2 (client_id, scope), RFC 8693 §4 (act, may_act),
# RFC 7800 §3 (cnf), OpenID Connect Core §2 (auth_time, acr, amr, azp, nonce, sid...).
RESERVED_CLAIMS = frozenset({
    "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "scope", "client_id", "cnf", "typ",
    "act", "may_act", "azp", "auth_time", "acr", "amr", "nonce", "sid", "at_hash", "c_hash",
    "kid", "alg", "crit", "scp",
})

MAX_SUBJECT = 256
MAX_AUDIENCES = 16
MAX_AUDIENCE = 256
MAX_SCOPES = 64
MAX_SCOPE = 128
MAX_CLAIM_NAME = 128
MAX_JTI = 128
MAX_REASON = 256
MAX_REQUIRED_SCOPES = 64

# Every pattern is matched with fullmatch: `$` would also accept a trailing newline.
# Control characters: C0, DEL, C1 (U+0085 is a line break to some readers) and the
# Unicode line and paragraph separators. None may appear in any input string.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[\x21-\x7e]+")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]*")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_CLAIM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]*")
_JTI = re.compile(r"[\x21-\x7e]+")
# Secrets a caller might paste into a name field by mistake: a refresh token (its
# prefix, see tokens/refresh.py) or a JWS/JWE compact serialisation (RFC 7515 §7.1,
# RFC 7516 §7.1), whose first segment is a base64url JSON object: `{"` encodes as "eyJ".
_JOSE_COMPACT = re.compile(r"([A-Za-z0-9_-]{4,})(?:\.[A-Za-z0-9_-]*){2,4}")
_JSON_HEAD = re.compile(r"eyJ[A-Za-z0-9_-]{8,}")


@dataclass(frozen=True)
class AccessTokenSpec:
    """Everything that goes into one access token, already validated."""

    subject: str
    audience: tuple[str, ...]
    scopes: tuple[str, ...]
    claims: Mapping[str, Any]
    ttl: int
    client_id: str
    # The `cnf` claim (RFC 8705 §3.1: {"x5t#S256": ...}) of a certificate-bound token.
    confirmation: Mapping[str, str] | None = None


def has_control(value: str) -> bool:
    return _CONTROL.search(value) is not None


def looks_like_secret(value: str) -> bool:
    """Whether `value` holds something shaped like a refresh token or a JWT."""
    if REFRESH_TOKEN_PREFIX in value or _JSON_HEAD.search(value):
        return True
    return "." in value and any(
        _json_segment(found.group(1)) for found in _JOSE_COMPACT.finditer(value))


def _json_segment(segment: str) -> bool:
    """Whether a base64url segment decodes to text starting with `{"` (a JOSE header)."""
    try:
        head = binascii.a2b_base64(segment[:16].replace("-", "+").replace("_", "/") + "==",
                                   strict_mode=False)
    except binascii.Error:
        return False
    head = head.lstrip(b" \t\r\n")
    return head.startswith(b"{") and head[1:].lstrip(b" \t\r\n").startswith(b'"')


def check_text(field: str, value: str, max_length: int, *, required: bool = True) -> str:
    """The rule for free-text fields: a length limit, no control characters, no secrets.
    Messages never repeat the value: it may be the very secret being refused."""
    if not value:
        if required:
            raise BadRequest(f"{field} is required", field=field)
        return value
    if len(value) > max_length or has_control(value):
        raise BadRequest(f"{field} must be 1-{max_length} printable characters "
                         "(no control characters or line breaks)", field=field)
    refuse_secret(field, value)
    return value


def refuse_secret(field: str, value: str) -> None:
    if looks_like_secret(value):
        raise BadRequest(
            f"{field} looks like a refresh token or a JWT: a secret must never be sent "
            "as a name. Revoke a token with the token or refresh_token field", field=field)


def check_subject(subject: str) -> str:
    if not subject:
        raise BadRequest("subject is required: the user or service the token is about",
                         field="subject")
    return check_text("subject", subject, MAX_SUBJECT)


def check_jti(jti: str) -> str:
    if not jti:
        raise BadRequest("jti is required", field="jti")
    if len(jti) > MAX_JTI or not _JTI.fullmatch(jti):
        raise BadRequest(f"jti must be 1-{MAX_JTI} printable ASCII characters", field="jti")
    refuse_secret("jti", jti)
    return jti


def check_token(token: str, max_bytes: int) -> str:
    """An access token given to Verify or Revoke: present and within tokens.max_token_bytes
    (a malformed one is judged by the verifier: for Verify that is an answer, not an error)."""
    if not token:
        raise BadRequest("token is required", field="token")
    # An ASCII string is as long as its encoding (every real token): no copy made.
    if (len(token) if token.isascii() else len(token.encode())) > max_bytes:
        raise BadRequest(f"token is larger than {max_bytes} bytes (tokens.max_token_bytes)",
                         field="token")
    return token


def check_verify_audience(audience: str) -> str:
    """The one audience a Verify caller expects (its own name); control characters are
    refused first, with the names (check_verify_names)."""
    if not audience:
        # RFC 7519 §4.1.3: a recipient must identify itself with a value in aud.
        raise BadRequest("audience is required: the audience your service expects",
                         field="audience")
    if len(audience) > MAX_AUDIENCE:
        raise BadRequest(f"audience is longer than {MAX_AUDIENCE} characters", field="audience")
    return audience


def check_verify_names(audience: str, scopes: Sequence[str]) -> None:
    """What a Verify caller names: no control characters, and scopes by the scope rules."""
    if has_control(audience):
        raise BadRequest("audience cannot hold control characters", field="audience")
    if scopes:  # most Verify calls name none
        check_scopes(scopes, "required_scopes")


def check_required_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    if len(scopes) > MAX_REQUIRED_SCOPES:
        raise BadRequest(f"at most {MAX_REQUIRED_SCOPES} required_scopes", field="required_scopes")
    return tuple(scopes)


def check_reason(reason: str) -> str:
    return check_text("reason", reason, MAX_REASON, required=False)


def check_audience(audience: Iterable[str], allowed: tuple[str, ...]) -> tuple[str, ...]:
    values = tuple(dict.fromkeys(audience))
    if not values:
        raise BadRequest("audience is required: name at least one service the token is for",
                         field="audience")
    if len(values) > MAX_AUDIENCES:
        raise BadRequest(f"at most {MAX_AUDIENCES} audiences per token", field="audience")
    for value in values:
        if len(value) > MAX_AUDIENCE or not (_URI.fullmatch(value) or _NAME.fullmatch(value)):
            raise BadRequest(
                f"audience {_shown(value)} has an unknown format: use an absolute URI "
                f"(https://api.example.com) or a name of letters, digits and .-_:/ "
                f"(at most {MAX_AUDIENCE} characters)", field="audience")
        refuse_secret("audience", value)
        if allowed and value not in allowed:
            raise BadRequest(f"audience {value!r} is not in tokens.allowed_audiences",
                             field="audience")
    return values


def check_scopes(scopes: Iterable[str], field: str = "scopes") -> tuple[str, ...]:
    values = tuple(dict.fromkeys(scopes))
    if len(values) > MAX_SCOPES:
        raise BadRequest(f"at most {MAX_SCOPES} scopes per token", field=field)
    for value in values:
        if len(value) > MAX_SCOPE or not _SCOPE.fullmatch(value):
            raise BadRequest(
                f"scope {_shown(value)} is invalid: 1-{MAX_SCOPE} characters, "
                "no spaces, quotes or backslashes (RFC 6749 section 3.3)", field=field)
        refuse_secret("scope", value)
    return values


def _shown(value: str) -> str:
    """A refused value for an error message: short, and never a secret."""
    return "(redacted: looks like a secret)" if looks_like_secret(value) else repr(value[:64])


def check_ttl(ttl_seconds: float | None, config: TokenConfig) -> int:
    if ttl_seconds is None:
        return int(config.default_ttl)
    if ttl_seconds < 1:
        raise BadRequest("ttl must be at least 1 second (leave it unset for the default)",
                         field="ttl")
    if ttl_seconds > config.max_ttl:
        raise BadRequest(
            f"ttl {ttl_seconds:g}s is above the maximum of {config.max_ttl:g}s "
            "(tokens.max_ttl); ask for a shorter ttl or use a refresh token", field="ttl")
    return int(ttl_seconds)


def check_claims(claims: Mapping[str, Any], config: TokenConfig) -> dict[str, Any]:
    if not claims:  # most Issue calls: nothing to check or measure
        return {}
    for name in claims:
        if name in RESERVED_CLAIMS:
            raise BadRequest(
                f"custom claim {name!r} is a registered claim that tokend sets itself; "
                "rename it", field="claims")
        if len(name) > MAX_CLAIM_NAME or not _CLAIM_NAME.fullmatch(name):
            raise BadRequest(
                f"custom claim name {_shown(name)} is invalid: letters, digits and _.:/- "
                f"starting with a letter or _, at most {MAX_CLAIM_NAME} characters", field="claims")
    depth = _depth(claims)
    if depth > config.max_claims_depth:
        raise BadRequest(
            f"custom claims are nested {depth} levels deep; the limit is "
            f"{config.max_claims_depth} (tokens.max_claims_depth)", field="claims")
    normalised = _integral_floats_to_int(dict(claims))
    size = len(json.dumps(normalised, separators=(",", ":"), ensure_ascii=False).encode())
    if size > config.max_claims_bytes:
        raise BadRequest(
            f"custom claims take {size} bytes as JSON; the limit is {config.max_claims_bytes} "
            "(tokens.max_claims_bytes). Keep tokens lean: put large data behind an API",
            field="claims")
    return normalised


def check_narrowing(requested: tuple[str, ...], granted: tuple[str, ...]) -> tuple[str, ...]:
    if not requested:
        return granted
    extra = [scope for scope in requested if scope not in granted]
    if extra:
        raise BadRequest(
            f"refresh cannot widen scopes: {', '.join(extra)} not in the original grant",
            field="scopes")
    return requested


def _depth(value: Any) -> int:
    if isinstance(value, Mapping):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _integral_floats_to_int(value: Any) -> Any:
    """protobuf Struct carries every number as a double; 3.0 was meant as 3.
    Also refuses what no token may hold: NaN, infinity and control characters."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadRequest("custom claims cannot hold NaN or infinity", field="claims")
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, str):
        if has_control(value):
            raise BadRequest("custom claim values cannot hold control characters", field="claims")
        return value
    if isinstance(value, dict):
        if any(has_control(k) for k in value):
            raise BadRequest("custom claim names cannot hold control characters", field="claims")
        return {k: _integral_floats_to_int(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_floats_to_int(v) for v in value]
    return value
