"""The Prometheus alerting rules: valid PromQL on metrics tokend exports, well formed,
each one evaluated by `promtool test rules` (Prometheus's own engine, offline) on series
that must fire it and series that must not, and shipped unchanged in the chart and the
kustomize PrometheusRule."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from .support import ALERTS, CHART, KUBERNETES_DIR, ensure_promtool
from .test_dashboard import METRIC, exported_series

# The first use builds promtool from the Go module proxy (many minutes with no Go cache).
pytestmark = pytest.mark.timeout(2700)


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


# -- every alert evaluated -----------------------------------------------------------

DAY = 86400


@dataclass
class Scenario:
    """Series sampled every minute from t=0 (promtool's time() starts at 0 too); at
    `quiet` the alert must not fire, at `firing` exactly for `fires` (its by-labels)."""

    series: dict[str, str]
    quiet: str
    firing: str
    fires: list[dict[str, str]] = field(default_factory=list)


def _s(metric: str, values: str, pod: str = "a", namespace: str = "tokend", **labels: str
       ) -> tuple[str, str]:
    every = {"namespace": namespace, "pod": pod, **labels}
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in every.items()) + "}", values


SCENARIOS = {
    "TokendTlsFilesRefused": Scenario(
        dict([_s("tokend_tls_reload_rejected", "0 1x10"),
              _s("tokend_tls_reload_rejected", "0 1 1 0x8", pod="b")]),  # a rotation
        quiet="4m", firing="7m", fires=[{"pod": "a"}]),
    "TokendCannotSign": Scenario(
        dict([_s("tokend_signing_available", "1 0x9"),
              _s("tokend_signing_available", "1 0 1x8", pod="b")]),  # one failed call
        quiet="1m", firing="3m", fires=[{"pod": "a"}]),
    "TokendHttpConnectionsShed": Scenario(
        dict([_s("tokend_http_connections_shed_total", "0+120x20", listener="http"),
              _s("tokend_http_connections_shed_total", "0+30x20", pod="b", listener="http")]),
        quiet="8m", firing="16m", fires=[{"pod": "a"}]),
    "TokendRevocationsStale": Scenario(
        dict([_s("tokend_denylist_staleness_seconds", "0.5 0.5 60+60x8"),
              _s("tokend_denylist_staleness_seconds", "0.5x10", pod="b")]),
        quiet="3m", firing="5m", fires=[{"pod": "a"}]),
    "TokendStoreDown": Scenario(
        dict([_s("tokend_store_up", "1 0x9"), _s("tokend_store_up", "1x10", pod="b")]),
        quiet="2m", firing="4m", fires=[{"pod": "a"}]),
    "TokendRefreshTokenReuse": Scenario(
        dict([_s("tokend_refresh_reuse_detected_total", "0 0 0 1 1 1"),
              _s("tokend_refresh_reuse_detected_total", "0x5", namespace="quiet")]),
        quiet="2m", firing="4m", fires=[{"namespace": "tokend"}]),
    "TokendRejectionBurst": Scenario(
        dict([_s("tokend_security_events_total", "0 0 0 1 1 1", kind="rejected_burst"),
              # Another signal in another namespace is not a rejection burst.
              _s("tokend_security_events_total", "0 0 0 5 5 5", namespace="quiet",
                 kind="refresh_token_reuse")]),
        quiet="2m", firing="4m", fires=[{"namespace": "tokend"}]),
    "TokendCertificateExpiresSoon": Scenario(
        dict([_s("tokend_tls_certificate_expiry_timestamp_seconds", f"{6 * DAY}x20"),
              _s("tokend_tls_certificate_expiry_timestamp_seconds", f"{20 * DAY}x20",
                 pod="b")]),
        quiet="5m", firing="12m", fires=[{"pod": "a"}]),
    "TokendCertificateExpiresVerySoon": Scenario(
        dict([_s("tokend_tls_certificate_expiry_timestamp_seconds", f"{DAY // 2}x20"),
              _s("tokend_tls_certificate_expiry_timestamp_seconds", f"{6 * DAY}x20",
                 pod="b")]),
        quiet="3m", firing="7m", fires=[{"pod": "a"}]),
}
_LABEL = re.compile(r"\{\{\s*\$labels\.(\w+)\s*\}\}")


def _expected(rule: dict[str, Any], by: dict[str, str]) -> dict[str, Any]:
    """What promtool must report for one firing alert: every label, annotations expanded."""
    labels = {"namespace": "tokend", **by}
    return {"exp_labels": {**labels, **rule["labels"]},
            "exp_annotations": {k: _LABEL.sub(lambda m: labels[m.group(1)], v)
                                for k, v in rule["annotations"].items()}}


def promtool_tests(rules: list[dict[str, Any]]) -> dict[str, Any]:
    """A promtool unit-test file: per alert, its series, a quiet and a firing check."""
    tests = []
    for rule in rules:
        scenario = SCENARIOS[rule["alert"]]
        tests.append({
            "interval": "1m",
            "input_series": [{"series": k, "values": v} for k, v in scenario.series.items()],
            "alert_rule_test": [
                {"eval_time": scenario.quiet, "alertname": rule["alert"], "exp_alerts": []},
                {"eval_time": scenario.firing, "alertname": rule["alert"],
                 "exp_alerts": [_expected(rule, by) for by in scenario.fires]},
            ],
        })
    return {"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": tests}


def test_every_alert_has_a_scenario(rules: list[dict[str, Any]]) -> None:
    assert {rule["alert"] for rule in rules} == set(SCENARIOS)


def test_promtool_fires_each_alert_exactly_when_it_should(rules: list[dict[str, Any]],
                                                          tmp_path: Path) -> None:
    promtool = ensure_promtool()
    check = subprocess.run([str(promtool), "check", "rules", str(ALERTS)],
                           capture_output=True, text=True, check=False, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = tmp_path / "tokend-alerts.test.yaml"
    tests.write_text(yaml.safe_dump(promtool_tests(rules), sort_keys=False))
    result = subprocess.run([str(promtool), "test", "rules", str(tests)],
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_operations_doc_alerts_are_all_there(rules: list[dict[str, Any]]) -> None:
    # docs/operations.md, "Alerts": signing failing, store stale, refresh-token reuse,
    # rejection bursts, certificate expiry near.
    expressions = " ".join(rule["expr"] for rule in rules)
    for metric in ("tokend_signing_available", "tokend_denylist_staleness_seconds",
                   "tokend_store_up", "tokend_refresh_reuse_detected_total",
                   'kind="rejected_burst"', "tokend_tls_certificate_expiry_timestamp_seconds"):
        assert metric in expressions


def test_chart_and_kustomize_ship_the_same_rules() -> None:
    source = ALERTS.read_text(encoding="utf-8")
    chart_copy = CHART / "files" / "tokend-alerts.yaml"
    assert chart_copy.read_text(encoding="utf-8") == source, "run scripts/sync-alerts"
    rule = yaml.safe_load((KUBERNETES_DIR / "monitoring" / "prometheusrule.yaml").read_text())
    assert rule["spec"] == yaml.safe_load(source), "run scripts/sync-alerts"
