"""The caller policy file: who may call which RPC, and what they may put in a token."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tokend.api.identity import RESERVED_PREFIXES, Identity, Kind
from tokend.config import RateLimitConfig, Seconds
from tokend.tokens.input_rules import AccessTokenSpec

Rpc = Literal["Issue", "Verify", "VerifyMany", "Refresh", "Revoke", "GetJwks", "Exchange"]
# Reading is open to every authenticated caller; changing state needs the policy.
# VerifyMany is Verify's batch: open exactly as Verify is.
OPEN_RPCS: frozenset[str] = frozenset({"Verify", "VerifyMany", "GetJwks", "WatchRevocations",
                                       "WatchJwks"})
MAX_REMEMBERED_IDENTITIES = 4096
MAX_PATTERN_CHARS = 2048  # a SPIFFE ID's own limit
# The deepest `act` nesting any verifier accepts (docs/verifier-contract.md, rule A1).
MAX_CHAIN_DEPTH = 8


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IssueRules(_Strict):
    """What a caller may put in the tokens it obtains. Patterns are shell globs."""

    audiences: tuple[str, ...] = Field(min_length=1)
    scopes: tuple[str, ...] = ()
    max_ttl: Seconds | None = None
    claims: tuple[str, ...] = ()
    # The `sub` values it may mint (a batch job: only its own; a login service: any).
    # Absent: any subject.
    subjects: tuple[str, ...] | None = Field(None, min_length=1)
    # Whether it may ask for tokens bound to a certificate other than its own (a
    # gateway obtaining tokens bound to its callers; RFC 8705 §3, docs/binding.md).
    bind_other_certificates: bool = False


class ExchangeRules(_Strict):
    """What a caller may obtain by Exchange (RFC 8693; docs/policy.md). Patterns are globs.

    ``from_audiences`` are the audiences that name this caller: a subject token must
    carry one of them, so a service only exchanges tokens that were meant for it.
    """

    from_audiences: tuple[str, ...] = Field(min_length=1)
    audiences: tuple[str, ...] = Field(min_length=1)
    scopes: tuple[str, ...] = ()
    # How many actors the new token's `act` chain may hold (1: a direct hop only).
    max_chain_depth: int = Field(1, ge=1, le=MAX_CHAIN_DEPTH)


class CallerRule(_Strict):
    """One caller: it names exactly one kind of certificate name (docs/policy.md), so a
    string of one kind never matches an entry of another."""

    identity: str | None = Field(None, min_length=1, max_length=MAX_PATTERN_CHARS)
    spiffe: str | None = Field(None, min_length=1, max_length=MAX_PATTERN_CHARS)
    dns: str | None = Field(None, min_length=1, max_length=MAX_PATTERN_CHARS)
    cn: str | None = Field(None, min_length=1, max_length=MAX_PATTERN_CHARS)
    local: str | None = Field(None, min_length=1, max_length=MAX_PATTERN_CHARS)
    rpcs: tuple[Rpc, ...] = ()
    issue: IssueRules | None = None
    exchange: ExchangeRules | None = None
    rate_limit: RateLimitConfig | None = None

    @model_validator(mode="after")
    def _one_kind_of_name(self) -> CallerRule:
        named = [k for k in ("identity", "spiffe", "dns", "cn", "local") if getattr(self, k)]
        if len(named) != 1:
            raise ValueError("an entry names its caller with exactly one of spiffe:, dns:, cn:, "
                             f"local: (or identity: spiffe://…); this one has {named or 'none'}")
        if self.identity is not None and not self.identity.startswith("spiffe://"):
            raise ValueError(
                f"identity {self.identity!r} does not say which kind of certificate name it "
                f'matches: write `dns: "{self.identity}"` for a DNS SAN or '
                f'`cn: "{self.identity}"` for the subject common name (identity: is kept '
                "for SPIFFE IDs, spiffe://…)")
        pattern = self.pattern
        if not pattern.isprintable() or (self.kind is not Kind.CN and " " in pattern):
            raise ValueError("an identity pattern has no control characters, and no spaces "
                             "except in a cn:")
        if self.kind is Kind.SPIFFE and not pattern.startswith("spiffe://"):
            raise ValueError(f"spiffe: {pattern!r} must start with spiffe://")
        if self.kind is not Kind.SPIFFE and pattern.startswith(RESERVED_PREFIXES):
            raise ValueError(f"{self.kind.value}: {pattern!r} starts with a kind prefix: "
                             "name the kind with the key alone (e.g. `spiffe: spiffe://…`)")
        return self

    @model_validator(mode="after")
    def _issue_needs_rules(self) -> CallerRule:
        if "Issue" in self.rpcs and self.issue is None:
            raise ValueError("a caller allowed Issue needs an `issue:` section "
                             "(audiences it may use, at least)")
        if "Exchange" in self.rpcs and self.exchange is None:
            raise ValueError("a caller allowed Exchange needs an `exchange:` section "
                             "(from_audiences and audiences, at least)")
        return self

    @property
    def kind(self) -> Kind:
        if self.identity is not None or self.spiffe is not None:
            return Kind.SPIFFE
        return Kind.DNS if self.dns is not None else Kind.CN if self.cn is not None \
            else Kind.LOCAL

    @property
    def pattern(self) -> str:
        value = self.identity or self.spiffe or self.dns or self.cn or self.local
        assert value is not None  # one is set (validated)
        return value.lower() if self.kind is Kind.DNS else value  # RFC 4343: caseless

    @property
    def label(self) -> str:
        """How logs, metrics and messages name the entry: the label form of its kind."""
        return str(Identity(self.kind, self.pattern))

    def matches(self, identity: Identity) -> bool:
        return identity.kind is self.kind and fnmatch.fnmatchcase(identity.name, self.pattern)

    @property
    def is_glob(self) -> bool:
        return any(c in self.pattern for c in "*?[")


class PolicyFile(_Strict):
    callers: tuple[CallerRule, ...] = ()


@dataclass(frozen=True)
class CallerPolicy:
    """`allow_all` is the development policy: plaintext on loopback, no policy file."""

    rules: tuple[CallerRule, ...] = ()
    allow_all: bool = False
    # Identities are few and calls many: each is matched against the rules once.
    _rules_by_identity: dict[Identity, CallerRule | None] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def rule_for(self, identity: Identity) -> CallerRule | None:
        """An exact identity wins over globs; among globs, the first in the file."""
        known = self._rules_by_identity
        if identity not in known:
            if len(known) >= MAX_REMEMBERED_IDENTITIES:
                known.clear()
            known[identity] = self._match(identity)
        return known[identity]

    def _match(self, identity: Identity) -> CallerRule | None:
        exact = [r for r in self.rules if not r.is_glob and r.matches(identity)]
        if exact:
            return exact[0]
        return next((r for r in self.rules if r.is_glob and r.matches(identity)), None)

    def allows(self, identity: Identity, rpc: str) -> bool:
        if self.allow_all or rpc in OPEN_RPCS:
            return True
        rule = self.rule_for(identity)
        return rule is not None and rpc in rule.rpcs


class PolicyError(ValueError):
    """Names the file and line of every problem."""


def load_policy(path: Path) -> CallerPolicy:
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: {exc}") from None
    lines: dict[tuple[Any, ...], int] = {}
    data = _to_python(node, (), lines) if node is not None else {}
    try:
        parsed = PolicyFile.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_explain(path, exc, lines)) from None
    return CallerPolicy(parsed.callers)


def _to_python(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int],
               loader: yaml.SafeLoader | None = None) -> Any:
    """Builds plain data from the YAML node tree, noting the line of every path."""
    loader = loader or yaml.SafeLoader("")
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node)
            if key in result:
                raise PolicyError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            result[key] = _to_python(value_node, (*path, key), lines, loader)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), lines, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node)


def _explain(path: Path, exc: ValidationError, lines: dict[tuple[Any, ...], int]) -> str:
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        while loc not in lines and loc:
            loc = loc[:-1]
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        problems.append(f"{path}:{lines.get(loc, 1)}: {where}: {error['msg']}")
    return "invalid policy file:\n  " + "\n  ".join(problems)


class PolicyDenied(Exception):
    """The caller is known but asked for more than its policy entry grants."""


def check_issue(rule: CallerRule | None, identity: str, *, subject: str,
                audience: tuple[str, ...], scopes: tuple[str, ...], ttl: int,
                claims: Iterable[str]) -> None:
    """No rule means the development allow-all policy."""
    if rule is None:
        return
    rules = rule.issue
    assert rules is not None  # a rule allowing Issue always has one (validated)
    if rules.subjects is not None:
        _within(identity, "subject", (subject,), rules.subjects)
    _within(identity, "audience", audience, rules.audiences)
    _within(identity, "scope", scopes, rules.scopes)
    _within(identity, "custom claim", tuple(claims), rules.claims)
    if rules.max_ttl is not None and ttl > rules.max_ttl:
        raise PolicyDenied(f"caller {identity!r} may issue tokens of at most "
                           f"{rules.max_ttl:g}s; asked for {ttl}s")


def check_spec(rule: CallerRule | None, identity: str, spec: AccessTokenSpec) -> None:
    """The token an Issue or a Refresh would mint, within the caller's entry."""
    check_issue(rule, identity, subject=spec.subject, audience=spec.audience,
                scopes=spec.scopes, ttl=spec.ttl, claims=spec.claims.keys())


def refresh_permit(rule: CallerRule | None, identity: str, spec: AccessTokenSpec
                   ) -> AccessTokenSpec:
    """A Refresh obeys the caller's policy entry as it is now, not as it was at Issue
    (docs/policy.md): the ttl is narrowed to the entry's max_ttl; a subject, audience,
    scope or custom claim the entry no longer grants is refused (the caller may narrow
    scopes)."""
    if rule is None:  # the development allow-all policy
        return spec
    if rule.issue is None:
        raise PolicyDenied(f"caller {identity!r} may not mint tokens any more "
                           "(its policy entry has no issue: section)")
    if rule.issue.max_ttl is not None and spec.ttl > rule.issue.max_ttl:
        spec = dataclasses.replace(spec, ttl=int(rule.issue.max_ttl))
    check_spec(rule, identity, spec)
    return spec


def _within(identity: str, what: str, values: tuple[str, ...], patterns: tuple[str, ...]) -> None:
    for value in values:
        if not any(fnmatch.fnmatchcase(value, p) for p in patterns):
            raise PolicyDenied(f"caller {identity!r} may not use {what} {value!r} "
                               "(not in its policy entry)")


def check_exchange(rule: CallerRule | None, identity: str, *, source: tuple[str, ...],
                   audience: tuple[str, ...], scopes: tuple[str, ...], depth: int) -> None:
    """An Exchange within the caller's entry: the subject token names the caller (one of
    its audiences ``source`` is in from_audiences), the new token's audiences and scopes
    are granted, its `act` chain is no deeper than max_chain_depth. No rule: the
    development allow-all policy (only the hard depth limit)."""
    if rule is None:
        if depth > MAX_CHAIN_DEPTH:
            raise PolicyDenied(f"an actor chain may hold at most {MAX_CHAIN_DEPTH} actors")
        return
    rules = rule.exchange
    if rules is None:  # cannot happen for an admitted Exchange (validated): fail closed
        raise PolicyDenied(f"caller {identity!r} has no exchange: section")
    # RFC 8693 §2.1 leaves to policy whose subject tokens a caller may exchange: here,
    # only those issued for it, so a service cannot trade a token it merely saw.
    if not any(fnmatch.fnmatchcase(a, p) for a in source for p in rules.from_audiences):
        raise PolicyDenied(
            f"caller {identity!r} may only exchange tokens issued for it: the subject "
            "token's audience is none of the entry's exchange.from_audiences")
    _within(identity, "exchange audience", audience, rules.audiences)
    _within(identity, "exchange scope", scopes, rules.scopes)
    if depth > rules.max_chain_depth:
        raise PolicyDenied(
            f"caller {identity!r} may make actor chains of at most {rules.max_chain_depth} "
            f"(exchange.max_chain_depth); this one would hold {depth}")
