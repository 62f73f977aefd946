"""The caller policy file: validation that names the line, and matching rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokend.api.caller_policy import (
    CallerPolicy,
    PolicyDenied,
    PolicyError,
    check_exchange,
    check_issue,
    load_policy,
)
from tokend.api.identity import Identity, Kind

SPIFFE, DNS, CN, LOCAL = Kind.SPIFFE, Kind.DNS, Kind.CN, Kind.LOCAL


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "line", "needle"), [
    ("callers:\n  - cn: a\n    rpcs: [Issue, Destroy]\n", 3, "rpcs.1"),
    ("callers:\n  - cn: a\n    rpcs: [Issue]\n", 2, "needs an `issue:` section"),
    ("callers:\n  - cn: a\n    rpcz: []\n", 3, "rpcz"),
    ("callers:\n  - cn: a\n    rpcs: [Issue]\n    issue:\n      audiences: [x]\n"
     "      max_ttl: soon\n", 6, "not a duration"),
    ("callers:\n  - cn: a\n    cn: b\n", 3, "duplicate key"),
    ("callers:\n  - cn: a\n    rpcs: [Exchange]\n", 2, "needs an `exchange:` section"),
    ("callers:\n  - cn: a\n    rpcs: [Exchange]\n    exchange:\n      audiences: [x]\n",
     5, "from_audiences"),
    ("callers:\n  - cn: a\n    rpcs: [Exchange]\n    exchange:\n      from_audiences: [a]\n"
     "      audiences: [x]\n      max_chain_depth: 9\n", 7, "max_chain_depth"),
    ("callers:\n  - identity: [unclosed\n", 3, "flow sequence"),
])
def test_errors_name_the_line(tmp_path: Path, text: str, line: int, needle: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(write(tmp_path, text))
    message = str(info.value)
    assert needle in message
    assert f":{line}:" in message or f"line {line}" in message, message


def test_exact_identity_beats_glob_and_order_among_globs(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, """
callers:
  - identity: "spiffe://c/ns/*"
    rpcs: [Revoke]
  - identity: "spiffe://c/ns/pay/*"
    rpcs: [Refresh]
  - identity: "spiffe://c/ns/pay/sa/api"
    rpcs: [Issue]
    issue: {audiences: [a]}
"""))
    api, other = Identity(SPIFFE, "spiffe://c/ns/pay/sa/api"), \
        Identity(SPIFFE, "spiffe://c/ns/pay/sa/other")
    anyone = Identity(CN, "anyone")
    assert policy.allows(api, "Issue")
    assert not policy.allows(api, "Revoke")
    assert policy.allows(other, "Revoke")  # first glob in file
    assert not policy.allows(other, "Refresh")
    assert policy.allows(anyone, "Verify") and policy.allows(anyone, "GetJwks")
    assert not policy.allows(anyone, "Issue")


def test_no_policy_means_read_only_unless_development() -> None:
    assert not CallerPolicy().allows(Identity(LOCAL, "x"), "Issue")
    assert CallerPolicy(allow_all=True).allows(Identity(LOCAL, "x"), "Revoke")


def test_no_name_of_one_kind_matches_an_entry_of_another(tmp_path: Path) -> None:
    spelled = "spiffe://cluster.local/ns/checkout/sa/checkout"
    policy = load_policy(write(tmp_path, f"""
callers:
  - identity: "{spelled}"
    rpcs: [Revoke]
  - spiffe: "spiffe://cluster.local/*"
    rpcs: [Refresh]
  - dns: "Reader.Example"
    rpcs: [Revoke]
  - cn: "*"
    rpcs: []
  - local: tokend-local
    rpcs: [Refresh]
  - cn: "Billing Service"
    rpcs: [Issue]
    issue: {{audiences: [a]}}
"""))
    assert policy.allows(Identity(CN, "Billing Service"), "Issue")
    assert policy.allows(Identity(SPIFFE, spelled), "Revoke")
    for kind in (DNS, CN, LOCAL):
        assert not policy.allows(Identity(kind, spelled), "Revoke"), kind
        assert not policy.allows(Identity(kind, spelled), "Refresh"), kind
    assert policy.allows(Identity(DNS, "reader.example"), "Revoke")  # DNS is caseless
    assert not policy.allows(Identity(CN, "reader.example"), "Revoke")
    assert not policy.allows(Identity(SPIFFE, "reader.example"), "Revoke")
    assert policy.allows(Identity(LOCAL, "tokend-local"), "Refresh")
    assert not policy.allows(Identity(CN, "tokend-local"), "Refresh")
    rule = policy.rule_for(Identity(CN, spelled))
    assert rule is not None and rule.label == "cn:*"


@pytest.mark.parametrize(("entry", "needle"), [
    ("identity: reader.test", 'write `dns: "reader.test"`'),
    ("identity: '*'", '`cn: "*"`'),
    ("spiffe: reader.test", "must start with spiffe://"),
    ("cn: 'spiffe://c/x'", "starts with a kind prefix"),
    ("dns: 'cn:x'", "starts with a kind prefix"),
    ("rpcs: [Revoke]", "exactly one of"),
    ("{dns: a, cn: a}", "exactly one of"),
    ("dns: 'a b'", "no spaces except in a cn:"),
    ('cn: "a\\tb"', "no control characters"),
])
def test_an_entry_must_say_which_kind_it_matches(tmp_path: Path, entry: str,
                                                 needle: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(write(tmp_path, f"callers:\n  - {entry}\n"))
    assert needle in str(info.value) and ":2:" in str(info.value)


def test_issue_rules(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, """
callers:
  - cn: svc
    rpcs: [Issue]
    issue: {audiences: ["api-*"], scopes: ["read"], max_ttl: 10m, claims: ["tenant"],
            subjects: ["batch-*", "svc"]}
"""))
    rule = policy.rule_for(Identity(CN, "svc"))
    ok = {"audience": ("api-1",), "scopes": ("read",), "ttl": 600, "claims": ["tenant"],
          "subject": "batch-7"}
    check_issue(rule, "svc", **ok)  # type: ignore[arg-type]
    check_issue(rule, "svc", **{**ok, "subject": "svc"})  # type: ignore[arg-type]
    for change in ({"audience": ("web",)}, {"scopes": ("write",)}, {"ttl": 601},
                   {"claims": ["role"]}, {"subject": "alice"}):
        with pytest.raises(PolicyDenied):
            check_issue(rule, "svc", **{**ok, **change})  # type: ignore[arg-type]
    check_issue(None, "dev", **{**ok, "audience": ("anything",)})  # type: ignore[arg-type]


def test_the_documented_example_loads_with_its_exchange_rules(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "policy.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    policy = load_policy(write(tmp_path, example))
    rule = policy.rule_for(Identity(SPIFFE, "spiffe://cluster.local/ns/orders/sa/orders"))
    assert rule is not None and rule.exchange is not None
    assert policy.allows(Identity(SPIFFE, "spiffe://cluster.local/ns/orders/sa/orders"),
                         "Exchange")
    who = "spiffe://cluster.local/ns/orders/sa/orders"
    check_exchange(rule, who, source=("orders",), audience=("payments-api",),
                   scopes=("payments:charge",), depth=1)
    for source, audience, scopes, depth, needle in (
        (("billing",), ("payments-api",), (), 1, "issued for it"),
        (("orders",), ("ledger",), (), 1, "exchange audience 'ledger'"),
        (("orders",), ("payments-api",), ("payments:refund",), 1, "payments:refund"),
        (("orders",), ("payments-api",), (), 2, "max_chain_depth"),
    ):
        with pytest.raises(PolicyDenied, match=needle):
            check_exchange(rule, who, source=source, audience=audience, scopes=scopes,
                           depth=depth)
    # Development (no rule): only the hard limit of 8 actors.
    check_exchange(None, "local", source=("x",), audience=("y",), scopes=(), depth=8)
    with pytest.raises(PolicyDenied, match="at most 8"):
        check_exchange(None, "local", source=("x",), audience=("y",), scopes=(), depth=9)
