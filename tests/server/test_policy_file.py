"""The caller policy file: validation that names the line, and matching rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokend.api.policy import CallerPolicy, PolicyDenied, PolicyError, check_issue, load_policy


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "line", "needle"), [
    ("callers:\n  - identity: a\n    rpcs: [Issue, Destroy]\n", 3, "rpcs.1"),
    ("callers:\n  - identity: a\n    rpcs: [Issue]\n", 2, "needs an `issue:` section"),
    ("callers:\n  - identity: a\n    rpcz: []\n", 3, "rpcz"),
    ("callers:\n  - identity: a\n    rpcs: [Issue]\n    issue:\n      audiences: [x]\n"
     "      max_ttl: soon\n", 6, "not a duration"),
    ("callers:\n  - identity: a\n    identity: b\n", 3, "duplicate key"),
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
    assert policy.allows("spiffe://c/ns/pay/sa/api", "Issue")
    assert not policy.allows("spiffe://c/ns/pay/sa/api", "Revoke")
    assert policy.allows("spiffe://c/ns/pay/sa/other", "Revoke")  # first glob in file
    assert not policy.allows("spiffe://c/ns/pay/sa/other", "Refresh")
    assert policy.allows("anyone", "Verify") and policy.allows("anyone", "GetJwks")
    assert not policy.allows("anyone", "Issue")


def test_no_policy_means_read_only_unless_development() -> None:
    assert not CallerPolicy().allows("x", "Issue")
    assert CallerPolicy(allow_all=True).allows("x", "Revoke")


def test_issue_rules(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, """
callers:
  - identity: svc
    rpcs: [Issue]
    issue: {audiences: ["api-*"], scopes: ["read"], max_ttl: 10m, claims: ["tenant"]}
"""))
    rule = policy.rule_for("svc")
    ok = {"audience": ("api-1",), "scopes": ("read",), "ttl": 600, "claims": ["tenant"]}
    check_issue(rule, "svc", **ok)  # type: ignore[arg-type]
    for change in ({"audience": ("web",)}, {"scopes": ("write",)}, {"ttl": 601},
                   {"claims": ["role"]}):
        with pytest.raises(PolicyDenied):
            check_issue(rule, "svc", **{**ok, **change})  # type: ignore[arg-type]
    check_issue(None, "dev", **{**ok, "audience": ("anything",)})  # type: ignore[arg-type]
