"""The Grafana dashboard only queries metrics the sidecar really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sidecar.proxy.addon import Sidecar

DASHBOARD = Path(__file__).parent.parent / "deploy" / "grafana" / "model-router-dashboard.json"
METRIC = re.compile(r"\b(sidecar_[a-z_]+)\b")


def queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in board["templating"]["list"] if v.get("type") == "query"]
    return exprs


def test_every_query_names_an_exported_metric() -> None:
    exported = Sidecar().metrics.exported_names()
    used = {name for expr in queries() for name in METRIC.findall(expr)}
    assert used, "the dashboard queries no sidecar metric"
    assert used <= exported, f"not exported: {sorted(used - exported)}"


def test_every_query_uses_at_least_one_sidecar_metric_and_the_dashboard_covers_the_brief() -> None:
    exprs = queries()
    assert all(METRIC.search(e) for e in exprs)
    titles = " ".join(p["title"].lower() for p in json.loads(DASHBOARD.read_text())["panels"])
    for topic in ("spend", "savings", "share", "duration", "first token", "errors", "fallbacks",
                  "budget", "catalog sources"):
        assert topic in titles, topic


AGGREGATION = re.compile(r"by \(([^)]*)\) \((?:rate|increase)?\(?(sidecar_[a-z_]+)")


def test_labels_used_in_queries_exist_on_the_metrics() -> None:
    """`sum by (app) (rate(m[...]))` on a metric without an app label would draw nothing."""
    metrics = Sidecar().metrics
    declared = {m._name: set(m._labelnames) | {"le"} for m in vars(metrics).values()
                if hasattr(m, "_labelnames")}
    declared.update({"sidecar_observed_ttft_seconds": {"model"},
                     "sidecar_observed_seconds_per_output_token": {"model"},
                     "sidecar_model_cooling_down": {"model"},
                     "sidecar_provider_available": {"provider"}})
    checked = 0
    for expr in queries():
        for labels, metric in AGGREGATION.findall(expr):
            base = re.sub(r"_(total|bucket|sum|count)$", "", metric)
            wanted = {name.strip() for name in labels.split(",")}
            assert wanted <= declared[base], f"{metric} lacks {wanted - declared[base]}: {expr}"
            checked += 1
    assert checked >= 10
