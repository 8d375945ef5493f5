"""Every Prometheus metric the sidecar exports, declared in one place (the only prometheus_client
importer). Base units, ``_total`` counters, ``_seconds`` histograms; label values come only from
rules.yaml (apps), the catalog (models), configured providers or fixed sets -- anything else is
``other``, so no request can create a new time series."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from sidecar.core.accounting import CallRecord, failure_kind
from sidecar.core.live import LiveState

OTHER = "other"
# LLM calls take from tens of milliseconds (cached, tiny) to minutes (long reasoning).
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 30, 60, 120)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1)
OUTCOMES = ("ok", "client_error", "rate_limited", "upstream_error", "stream_error",
            "sidecar_error")
INTENT_MODELS = ("auto", "economy", "standard", "premium")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "sidecar_requests", "Routed calls by app, requested and served model, provider and "
            "outcome.", ["app", "requested_model", "served_model", "provider", "outcome"],
            registry=r)
        self.duration = Histogram(
            "sidecar_request_duration_seconds", "Time from the app's request to the last byte "
            "of the answer.", ["app", "model"], buckets=DURATION_BUCKETS, registry=r)
        self.ttft = Histogram(
            "sidecar_time_to_first_token_seconds", "Streams: time from the app's request to the "
            "first chunk of the answer.", ["app", "model"], buckets=TTFT_BUCKETS, registry=r)
        self.overhead = Histogram(
            "sidecar_overhead_seconds", "Time the sidecar itself spent deciding and rewriting "
            "(x-model-router-overhead-ms).", buckets=OVERHEAD_BUCKETS, registry=r)
        self.tokens = Counter(
            "sidecar_tokens", "Tokens as the provider reported them; kind is prompt, completion "
            "or cached (cached tokens are part of prompt).", ["app", "model", "kind"], registry=r)
        self.cost = Counter(
            "sidecar_cost_usd", "What served calls cost, in USD, at catalog prices and real "
            "usage.", ["app", "model"], registry=r)
        self.savings = Counter(
            "sidecar_savings_usd", "Cost the requested model would have had minus the cost of "
            "the model that served, in USD, for calls where routing saved.",
            ["app", "requested_model", "served_model"], registry=r)
        self.extra_cost = Counter(
            "sidecar_extra_cost_usd", "For calls where the served model cost more than the "
            "requested one: the difference, in USD (net savings = savings - extra cost).",
            ["app", "requested_model", "served_model"], registry=r)
        self.shadow = Counter(
            "sidecar_shadow_decisions", "Shadow mode: calls forwarded unchanged, by the model the "
            "rules would have chosen.", ["app", "requested_model", "decided_model"], registry=r)
        self.shadow_savings = Counter(
            "sidecar_shadow_savings_usd", "Shadow mode: what the decided model would have saved "
            "on these calls, in USD.", ["app", "requested_model", "decided_model"], registry=r)
        self.fallbacks = Counter(
            "sidecar_fallbacks", "Attempts that failed before the app saw a byte, so the next "
            "model in the plan was tried.", ["app", "model"], registry=r)
        self.upstream_errors = Counter(
            "sidecar_upstream_errors", "Failed attempts by provider and reason.",
            ["provider", "reason"], registry=r)
        self.cooldowns = Counter(
            "sidecar_cooldowns", "Times a model was taken out of every plan after repeated "
            "failures.", ["model"], registry=r)
        self.in_flight = Gauge(
            "sidecar_in_flight_requests", "Calls being served now.", registry=r)
        self.unpriced = Counter(
            "sidecar_unpriced_calls", "Served calls whose model has no catalog price: their cost "
            "is unknown (not counted in sidecar_cost_usd_total), never zero.",
            ["app", "provider"], registry=r)
        self.source_up = Gauge(
            "sidecar_catalog_source_up", "1 when the last refresh of a catalog source (a price "
            "map, a model list, scores, or a provider's discovery) succeeded, else 0.",
            ["source"], registry=r)
        self.source_refreshed = Gauge(
            "sidecar_catalog_source_last_success_timestamp_seconds", "When a catalog source "
            "last refreshed successfully (Unix time).", ["source"], registry=r)
        self.source_models = Gauge(
            "sidecar_catalog_source_models", "Models a catalog source offered (or a provider "
            "listed) at its last success.", ["source"], registry=r)
        self.budget_limit = Gauge(
            "sidecar_budget_limit_usd", "An app's budget (app '*': every app together) per "
            "window.", ["app", "period"], registry=r)
        self.budget_used = Gauge(
            "sidecar_budget_spent_usd", "Spent and reserved in the budget's current window, as "
            "last seen by this replica.", ["app", "period"], registry=r)
        self.budget_remaining = Gauge(
            "sidecar_budget_remaining_usd", "What is left of the budget's current window, as "
            "last seen by this replica.", ["app", "period"], registry=r)
        self.budget_degrades = Counter(
            "sidecar_budget_degrades", "Calls routed in a budget's degrade tier/prefer.",
            ["app"], registry=r)
        self.budget_refusals = Counter(
            "sidecar_budget_refusals", "Calls refused (429) because their budget could not "
            "reserve their expected cost.", ["app"], registry=r)
        self.state_store_up = Gauge(
            "sidecar_state_store_up", "1 while the shared state store (Redis) answers, 0 while "
            "the sidecar counts locally or refuses (state.when_down).", registry=r)
        self.cache_calls = Counter(
            "sidecar_cache_calls", "Calls of apps with a response cache, by result: hit "
            "(answered from the cache), miss (sent, maybe stored), bypass (may not be cached).",
            ["app", "result"], registry=r)
        self.cache_saved = Counter(
            "sidecar_cache_saved_usd", "What cache hits would have cost on the model that "
            "would have served them, in USD (a hit costs nothing).", ["app"], registry=r)
        self.cache_bytes = Gauge(
            "sidecar_cache_stored_bytes", "Bytes held by the in-process response cache.",
            registry=r)
        self.cache_evictions = Counter(
            "sidecar_cache_evictions", "Entries the in-process response cache dropped to stay "
            "under its size.", registry=r)
        self.cache_store_errors = Counter(
            "sidecar_cache_store_errors", "Cache reads and writes that failed because the "
            "shared store (Redis) did not answer: each was a miss.", registry=r)
        self._evictions_seen = self._errors_seen = 0
        self.catalog_models = Gauge(
            "sidecar_catalog_models", "Models in the catalog the sidecar routes with now.",
            registry=r)
        self.apps: frozenset[str] = frozenset()
        self.models: frozenset[str] = frozenset()
        self.providers: frozenset[str] = frozenset()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def know(self, *, apps: Iterable[str], models: Iterable[str], providers: Iterable[str]) -> None:
        """The label values allowed from now on (rules and catalog at load and reload)."""
        self.apps = frozenset(apps) | {"default"}
        self.models = frozenset(models)
        self.providers = frozenset(providers)
        for outcome in OUTCOMES:  # pre-initialise the series dashboards divide by
            self.requests.labels("default", OTHER, OTHER, OTHER, outcome)

    def app(self, name: str) -> str:
        return name if name in self.apps else OTHER

    def model(self, name: str | None) -> str:
        if name is None:
            return OTHER
        return name if name in self.models or name in INTENT_MODELS else OTHER

    def provider(self, name: str | None) -> str:
        return name if name in self.providers else OTHER

    def source(self, name: str, *, ok: bool, models: int | None = None, at: float = 0.0
               ) -> None:
        """One refresh of a catalog source (names come from rules.yaml: bounded)."""
        self.source_up.labels(name).set(1 if ok else 0)
        if ok:
            self.source_refreshed.labels(name).set(at)
            if models is not None:
                self.source_models.labels(name).set(models)

    def cache_evictions_seen(self, total: int) -> None:
        """The store's running eviction count, as a counter."""
        if total > self._evictions_seen:
            self.cache_evictions.inc(total - self._evictions_seen)
            self._evictions_seen = total

    def cache_errors_seen(self, total: int) -> None:
        """The store's running count of calls that could not reach it, as a counter."""
        if total > self._errors_seen:
            self.cache_store_errors.inc(total - self._errors_seen)
            self._errors_seen = total

    def failed_attempt(self, provider: str, reason: str) -> None:
        """One attempt that failed at its provider (on either forwarding path)."""
        self._child(self.upstream_errors, self.provider(provider), failure_kind(reason)).inc()

    def observe(self, call: CallRecord) -> None:
        """Count one finished call."""
        app, requested = self.app(call.app), self.model(call.requested_model)
        served, provider = self.model(call.served_model), self.provider(call.provider)
        child = self._child
        child(self.requests, app, requested, served, provider, call.outcome).inc()
        child(self.duration, app, served).observe(call.duration)
        if call.ttft is not None:
            child(self.ttft, app, served).observe(call.ttft)
        self.overhead.observe(call.overhead)
        if call.usage is not None:
            child(self.tokens, app, served, "prompt").inc(call.usage.prompt)
            child(self.tokens, app, served, "completion").inc(call.usage.completion)
            child(self.tokens, app, served, "cached").inc(call.usage.cached)
        if call.cache is not None:
            child(self.cache_calls, app, call.cache).inc()
        if call.cache_saved is not None:
            child(self.cache_saved, app).inc(call.cache_saved)
        if call.cost is not None:
            child(self.cost, app, served).inc(call.cost)
        elif call.cost_unknown:
            child(self.unpriced, app, self.provider(call.provider)).inc()
        if call.savings is not None:
            # prometheus counters only go up: a negative saving is counted as a positive
            # "extra cost" under the same name with the served/requested roles swapped.
            self._add_savings(app, requested, served, call.savings)
        # Each failure that another attempt followed is a fallback (when all fail, the last
        # failure is the answer, not a fallback).
        followed = call.failures if call.served_model else call.failures[:-1]
        for model, _, _ in followed:
            child(self.fallbacks, app, self.model(model)).inc()
        if call.shadow_model is not None:
            decided = self.model(call.shadow_model)
            child(self.shadow, app, requested, decided).inc()
            if call.shadow_savings is not None and call.shadow_savings > 0:
                child(self.shadow_savings, app, requested, decided).inc(call.shadow_savings)

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: label values are bounded, and ``labels()``
        validates and locks on every call."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _add_savings(self, app: str, requested: str, served: str, amount: float) -> None:
        if amount >= 0:
            self._child(self.savings, app, requested, served).inc(amount)
        else:
            self._child(self.extra_cost, app, requested, served).inc(-amount)

    def watch(self, state: Callable[[], LiveState]) -> None:
        """Export the sidecar's live state, read at scrape time (nothing per request)."""
        self.registry.register(_LiveCollector(state, self))

    def exported_names(self) -> set[str]:
        """Every series name this registry can export (for dashboard checks)."""
        names: set[str] = set()
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                    "gauge": ("",)}
        for family in self.registry.collect():  # live gauges are present even when empty
            names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        return names


class _LiveCollector(Collector):
    def __init__(self, state: Callable[[], LiveState], metrics: Metrics) -> None:
        self.state, self.metrics = state, metrics

    def describe(self) -> Iterable[Metric]:
        return []  # checked at scrape time only

    def collect(self) -> Iterable[Metric]:
        live = self.state()
        ttft = GaugeMetricFamily(
            "sidecar_observed_ttft_seconds", "The latency tracker's current estimate of time to "
            "first token (what prefer=fast uses).", labels=["model"])
        per_token = GaugeMetricFamily(
            "sidecar_observed_seconds_per_output_token", "The latency tracker's current "
            "estimate of generation time per output token.", labels=["model"])
        for model, seen in live.latency.items():
            label = self.metrics.model(model)
            if seen.get("ttft_seconds") is not None:
                ttft.add_metric([label], float(seen["ttft_seconds"] or 0))
            if seen.get("seconds_per_token") is not None:
                per_token.add_metric([label], float(seen["seconds_per_token"] or 0))
        up = GaugeMetricFamily("sidecar_provider_available", "1 when the provider can serve "
                               "(configured, with credentials), else 0.", labels=["provider"])
        for provider, why in live.providers.items():
            up.add_metric([self.metrics.provider(provider)], 0.0 if why else 1.0)
        cooling = GaugeMetricFamily("sidecar_model_cooling_down", "1 while the model is out "
                                    "of every plan after repeated failures.", labels=["model"])
        for model in live.cooling:
            cooling.add_metric([self.metrics.model(model)], 1.0)
        return [ttft, per_token, up, cooling]


def serve_metrics(metrics: Metrics, host: str, port: int, *, ready: Callable[[], bool]
                  ) -> tuple[ThreadingHTTPServer, int]:
    """/metrics, /healthz (the process answers) and /readyz (``ready()``) on their own thread;
    returns (server, bound port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?")[0]
            if path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            elif path == "/readyz":
                up = ready()
                self._send(200 if up else 503, b"ready\n" if up else b"not ready\n",
                           "text/plain")
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # scrapes and probes are not worth a log line each

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server, server.server_port


def parse_live_state(text: str) -> LiveState:
    """A running sidecar's live state, read back from its /metrics text."""
    latency: dict[str, dict[str, float | int | None]] = {}
    providers: dict[str, str | None] = {}
    cooling: dict[str, str] = {}
    budgets: dict[str, float] = {}
    keys = {"sidecar_observed_ttft_seconds": "ttft_seconds",
            "sidecar_observed_seconds_per_output_token": "seconds_per_token"}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in keys:
                latency.setdefault(sample.labels["model"], {})[keys[sample.name]] = sample.value
            elif sample.name == "sidecar_provider_available":
                providers[sample.labels["provider"]] = None if sample.value else "down"
            elif sample.name == "sidecar_model_cooling_down" and sample.value:
                cooling[sample.labels["model"]] = "cooling down after repeated failures"
            elif sample.name == "sidecar_budget_spent_usd":
                budgets[sample.labels["app"]] = sample.value
    return LiveState(latency=latency, providers=providers, cooling=cooling, budgets=budgets)
