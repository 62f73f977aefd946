"""The Grafana dashboard: valid PromQL, only metrics tokend exports, and all of them."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from typing import Any

import promql_parser
import pytest
from prometheus_client import REGISTRY

import tokend
from tokend import metrics_standard

from .support import DASHBOARD

# Grafana's variables, replaced by values PromQL accepts before parsing.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m"}
METRIC = re.compile(r"\b((?:tokend|grpc_server|rpc_server)_[a-z0-9_]+)")
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum"),
            "summary": ("_count", "_sum")}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def graph_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def expressions(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in graph_panels(dashboard) for t in p["targets"]]


def exported_series() -> set[str]:
    """Every tokend_* series name the server's code registers (imports every module),
    but the hidden sources, and the standard gRPC series /metrics derives from them."""
    for module in pkgutil.walk_packages(tokend.__path__, "tokend."):
        importlib.import_module(module.name)
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("tokend_") and family.name not in metrics_standard.SOURCES:
            names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    for name, kind in metrics_standard.STANDARD.items():
        base = name.removesuffix("_total") if kind == "counter" else name
        names |= {base + suffix for suffix in SUFFIXES[kind]}
    return names


def test_every_expression_is_valid_promql(dashboard: dict[str, Any]) -> None:
    for expr in expressions(dashboard):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        promql_parser.parse(expr)  # raises ValueError naming the problem


def test_dashboard_uses_only_exported_metrics_and_shows_them_all(
        dashboard: dict[str, Any]) -> None:
    used = {m for expr in expressions(dashboard) for m in METRIC.findall(expr)}
    exported = exported_series()
    assert used - exported == set(), "the dashboard queries metrics tokend does not export"
    # A histogram counts as shown when any of its series is.
    shown = {re.sub(r"_(bucket|count|sum)$", "", m) for m in used} | used
    missing = {m for m in exported if m not in shown
               and re.sub(r"_(bucket|count|sum)$", "", m) not in shown}
    assert missing == set(), "exported metrics without a panel"


def test_latency_quantiles_come_from_histogram_buckets(dashboard: dict[str, Any]) -> None:
    for expr in expressions(dashboard):
        if "histogram_quantile" in expr:
            assert "_bucket{" in expr and re.search(r"by \(le\b", expr), expr


def test_panels_are_well_formed(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"] == "tokend"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "pod"} <= variables
    panels = graph_panels(dashboard)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    occupied: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(grid["x"] + dx, grid["y"] + dy)
                 for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"] and panel["title"] and panel["fieldConfig"]["defaults"]["unit"]
        for target in panel["targets"]:
            assert 'namespace=~"$namespace"' in target["expr"], panel["title"]
