"""The Prometheus alerting rules: valid PromQL on metrics tokend exports, well formed."""

from __future__ import annotations

import re
from typing import Any

import promql_parser
import pytest
import yaml

from .support import ROOT
from .test_dashboard import METRIC, exported_series

ALERTS = ROOT / "deploy" / "prometheus" / "tokend-alerts.yaml"


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_rule_is_valid_promql_on_exported_metrics(rules: list[dict[str, Any]]) -> None:
    exported = exported_series()
    assert rules
    for rule in rules:
        promql_parser.parse(rule["expr"])  # raises ValueError naming the problem
        used = set(METRIC.findall(rule["expr"]))
        assert used and used <= exported, (rule["alert"], used - exported)


def test_rules_are_well_formed(rules: list[dict[str, Any]]) -> None:
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert re.fullmatch(r"Tokend[A-Za-z]+", rule["alert"])
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert re.fullmatch(r"\d+[smh]", rule["for"])


def test_tls_refusal_has_an_alert(rules: list[dict[str, Any]]) -> None:
    assert any("tokend_tls_reload_rejected" in rule["expr"] for rule in rules)


def test_signing_outage_has_an_alert(rules: list[dict[str, Any]]) -> None:
    assert any("tokend_signing_available" in rule["expr"] for rule in rules)
