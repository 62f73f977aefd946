"""Each TokenService request turned into validated values, in one function per kind.

Every rule comes from tokens/input_rules.py; this module knows the protobuf fields, the
order the checks run in, and what the audit may record as soon as it has been checked
(never before: a refused value may be a secret pasted into the wrong field). A failure
is BadRequest (INVALID_ARGUMENT) with a message that says what to change.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from google.protobuf import json_format

from tokend.api import binding
from tokend.api.calls import CallContext
from tokend.config import TokenConfig
from tokend.tokens import input_rules as rules
from tokend.tokens import retry
from tokend.tokens.errors import BadRequest
from tokend.tokens.exchange import ExchangeAsk
from tokend.tokens.input_rules import AccessTokenSpec
from tokend.tokens.refresh import parse_refresh_token
from tokend_client.v1 import tokend_pb2 as pb

# google/protobuf/duration.proto: seconds within ±10,000 years, nanos with the same sign.
_MAX_DURATION_SECONDS = 315_576_000_000


def issue_spec(request: pb.IssueRequest, call: CallContext, tokens: TokenConfig
               ) -> AccessTokenSpec:
    """The access token an Issue asks for; the caller's policy entry is applied apart
    (caller_policy.check_issue), after this."""
    call.audit["subject"] = subject = rules.check_subject(request.subject)
    audience = rules.check_audience(request.audience, tokens.allowed_audiences)
    call.audit["audience"] = list(audience)
    ttl = _ttl_of(request)
    spec = AccessTokenSpec(
        subject=subject,
        audience=audience,
        scopes=rules.check_scopes(request.scopes),
        claims=rules.check_claims(_claims_of(request), tokens),
        ttl=_caller_default_ttl(rules.check_ttl(ttl, tokens), ttl, call),
        client_id=call.client_id,
        confirmation=_confirmation(request, call),
    )
    if spec.confirmation is not None:
        call.audit["cnf_x5t_s256"] = spec.confirmation["x5t#S256"]  # public, not a secret
    return spec


def _confirmation(request: pb.IssueRequest, call: CallContext) -> dict[str, str] | None:
    if not request.HasField("binding"):
        return None
    if request.include_refresh_token:
        # A refresh family does not record the binding: its tokens would come out
        # unbound. Refused rather than silently downgraded (docs/binding.md).
        raise BadRequest("a certificate-bound token cannot come with a refresh token: "
                         "Issue again (with the binding) instead of refreshing",
                         field="include_refresh_token")
    return binding.confirmation_for(request.binding, call)


# token, audience, required scopes, delegation ("any", "required", "refused"), the
# presenter's x5t#S256 (or None): a plain tuple, as this runs on every Verify.
VerifyQuery = tuple[str, str, tuple[str, ...], str, str | None]


def exchange_ask(request: pb.ExchangeRequest, call: CallContext, tokens: TokenConfig
                 ) -> ExchangeAsk:
    """An Exchange (RFC 8693); the tokens themselves are judged by the token layer, the
    caller's policy entry after that (caller_policy.check_exchange)."""
    subject_token = _token_field("subject_token", request.subject_token, tokens)
    actor_token = (_token_field("actor_token", request.actor_token, tokens)
                   if request.actor_token else None)
    audience = rules.check_audience(request.audience, tokens.allowed_audiences)
    call.audit["audience"] = list(audience)
    ttl = _ttl_of(request)
    if ttl is not None and ttl < 1:
        raise BadRequest("ttl must be at least 1 second (leave it unset for the subject "
                         "token's remaining life)", field="ttl")
    scopes = rules.check_scopes(request.scopes)
    # A bound subject or actor token (RFC 8705 §3) is presented by the caller: its own
    # certificate must be the one the token names.
    presenter = (binding.caller_thumbprint(call)
                 if call.client_certificate_pem is not None else None)
    confirmation = binding.confirmation_for(
        request.binding if request.HasField("binding") else None, call)
    return ExchangeAsk(subject_token=subject_token, actor_token=actor_token,
                       audience=audience, scopes=scopes, ttl=ttl, client_id=call.client_id,
                       presenter=presenter, confirmation=confirmation)


def _token_field(name: str, value: str, tokens: TokenConfig) -> str:
    try:
        return rules.check_token(value, tokens.max_token_bytes)
    except BadRequest as exc:
        raise BadRequest(f"{name}: {exc}", field=name) from None


_DELEGATION = {pb.DELEGATION_UNSPECIFIED: "any", pb.DELEGATION_REQUIRED: "required",
               pb.DELEGATION_REFUSED: "refused"}


def verify_query(request: pb.VerifyRequest, tokens: TokenConfig) -> VerifyQuery:
    """The token itself is judged by Verify (a malformed one is an answer, not an error)."""
    audience, scopes = request.audience, request.required_scopes
    rules.check_verify_names(audience, scopes)
    token = rules.check_token(request.token, tokens.max_token_bytes)
    rules.check_verify_audience(audience)
    delegation = _DELEGATION.get(request.delegation)
    if delegation is None:
        raise BadRequest("delegation is not a known Delegation value", field="delegation")
    return (token, audience, rules.check_required_scopes(scopes), delegation,
            _presenter(request))


# VerifyMany's batch: 256 tokens of tokens.max_token_bytes fit the gRPC message limit
# (app.max_request_bytes); a caller holding more sends several calls.
MAX_VERIFY_BATCH = 256


def check_batch_size(count: int) -> None:
    if not 1 <= count <= MAX_VERIFY_BATCH:
        raise BadRequest(f"VerifyMany takes 1 to {MAX_VERIFY_BATCH} requests; this call has "
                         f"{count} (send more in several calls)", field="requests")


def _presenter(request: pb.VerifyRequest) -> str | None:
    which = request.WhichOneof("presenter")
    if which is None:
        return None
    if which == "presenter_x5t_s256":
        return binding.checked_thumbprint(request.presenter_x5t_s256, "presenter_x5t_s256")
    return binding.named_thumbprint(request.presenter_certificate_der,
                                    "presenter_certificate_der")


class RefreshQuery(NamedTuple):
    refresh_token: str
    scopes: tuple[str, ...]  # to narrow to; none: the family's grant
    idempotency_key: str | None  # None: not retryable


def refresh_query(request: pb.RefreshRequest) -> RefreshQuery:
    parse_refresh_token(request.refresh_token)
    scopes = rules.check_scopes(request.scopes)
    key = retry.check_idempotency_key(request.idempotency_key)
    return RefreshQuery(request.refresh_token, scopes, key)


class RevokeSpec(NamedTuple):
    target: str  # the oneof's field: token, jti, refresh_token or subject
    value: str
    reason: str


def revoke_spec(request: pb.RevokeRequest, call: CallContext, tokens: TokenConfig
                ) -> RevokeSpec:
    target = request.WhichOneof("target")
    if target is None:
        raise BadRequest("name what to revoke: one of token, jti, refresh_token, subject",
                         field="target")
    call.audit["target"] = target
    value: str = getattr(request, target)
    rules.check_reason(request.reason)
    if target == "jti":
        rules.check_jti(value)
    elif target == "subject":
        rules.check_subject(value)  # the rules Issue applied to it
    call.audit["reason"] = request.reason or None
    if target in ("jti", "subject"):
        call.audit[target] = value
    elif target == "token":
        rules.check_token(value, tokens.max_token_bytes)
    else:
        parse_refresh_token(value)
    return RevokeSpec(target, value, request.reason or "unspecified")


def _caller_default_ttl(ttl: int, requested: float | None, call: CallContext) -> int:
    """An unset ttl means the default, capped by the caller's own maximum."""
    issue_rules = call.rule.issue if call.rule is not None else None
    if requested is None and issue_rules is not None and issue_rules.max_ttl is not None:
        return min(ttl, int(issue_rules.max_ttl))
    return ttl


def _claims_of(request: pb.IssueRequest) -> dict[str, Any]:
    if not request.HasField("claims"):
        return {}
    try:
        return json_format.MessageToDict(request.claims)
    except ValueError:  # "Fail to serialize NaN/Infinity for Value.number_value"
        raise BadRequest("custom claims cannot hold NaN or infinity", field="claims") from None


def _ttl_of(request: pb.IssueRequest | pb.ExchangeRequest) -> float | None:
    """The requested ttl in seconds; Duration.ToTimedelta overflows on large values."""
    if not request.HasField("ttl"):
        return None
    seconds, nanos = request.ttl.seconds, request.ttl.nanos
    if (abs(seconds) > _MAX_DURATION_SECONDS or abs(nanos) > 999_999_999
            or (seconds and nanos and (seconds < 0) != (nanos < 0))):
        raise BadRequest("ttl is not a valid google.protobuf.Duration", field="ttl")
    return seconds + nanos / 1e9
