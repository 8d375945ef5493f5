"""sidecar/core/live.py: the live state by catalog name from per-deployment health and latency,
and back (``view_of``), as ``explain``/``models`` read a running sidecar."""

from __future__ import annotations

import pytest

from sidecar.core.config.catalog import Catalog, ModelSpec
from sidecar.core.live import LiveState, live_state, view_of
from sidecar.core.routing.latency import LatencyTracker
from sidecar.core.vocabulary import Deployment


def spec(name: str, provider: str, upstream_id: str) -> ModelSpec:
    return ModelSpec(name=name, provider=provider, upstream_id=upstream_id, tier="standard",
                     input_price=1.0, output_price=1.0, context=1000, ttft_prior=0.5)


CATALOG = Catalog.of([
    spec("gpt-4o", "openai", "gpt-4o"),
    spec("gpt-4o-eu", "azure", "gpt-4o"),  # the same model id on another provider
    spec("fast", "openai", "gpt-4o-mini"),
    spec("fast-alias", "openai", "gpt-4o-mini"),  # one deployment, two catalog names
])
PASSTHROUGH = Deployment("api.openai.com (direct)", "gpt-4o")  # no catalog model uses it


def test_live_state_names_catalog_models_by_their_deployment() -> None:
    tracker = LatencyTracker(clock=lambda: 0.0)
    tracker.record(Deployment("openai", "gpt-4o-mini"), duration=2.0, ttft=0.5, output_tokens=10)
    tracker.record(PASSTHROUGH, duration=9.0, ttft=9.0)
    cooling = {Deployment("azure", "gpt-4o"): "cooling down after 3 failures in a row",
               PASSTHROUGH: "cooling down after 3 failures in a row"}
    state = live_state(catalog=CATALOG, latency=tracker, cooling=cooling,
                       providers_down={"azure": "no key"}, providers=["openai", "azure"])
    figures = {"ttft_seconds": 0.5, "seconds_per_token": pytest.approx(0.15), "samples": 1}
    assert state.latency == {"fast": figures, "fast-alias": figures}  # the passthrough's: left out
    assert state.cooling == {"gpt-4o-eu": "cooling down after 3 failures in a row"}
    assert state.providers == {"openai": None, "azure": "no key"}


def test_nothing_observed_is_an_empty_state() -> None:
    state = live_state(catalog=CATALOG, latency=LatencyTracker(), cooling={}, providers_down={},
                       providers=["openai"])
    assert state == LiveState(latency={}, providers={"openai": None}, cooling={})


def test_view_of_maps_names_back_to_deployments() -> None:
    live = LiveState(latency={"fast": {"ttft_seconds": 0.25, "seconds_per_token": 0.01,
                                       "samples": 4},
                              "not-in-this-catalog": {"ttft_seconds": 1.0}},
                     providers={"openai": None, "azure": "down"},
                     cooling={"gpt-4o-eu": "cooling", "gone": "cooling"})
    view = view_of({"openai": "no OPENAI_API_KEY here"}, live, source="http://x/metrics",
                   catalog=CATALOG)
    assert view.providers_down == {"azure": "unavailable in the running sidecar"}
    assert view.deployments_down == {Deployment("azure", "gpt-4o"): "cooling"}
    assert set(view.latency.snapshot()) == {Deployment("openai", "gpt-4o-mini")}
    for name in ("fast", "fast-alias"):  # both names read the one deployment
        estimate = view.latency.estimate(CATALOG.models[name], stream=True, output_tokens=1)
        assert (estimate.seconds, estimate.observed) == (0.25, True)
    assert not view.latency.estimate(CATALOG.models["gpt-4o"], stream=True,
                                     output_tokens=1).observed
    assert view.source == "live state from http://x/metrics"


def test_a_round_trip_keeps_what_the_catalog_can_name() -> None:
    tracker = LatencyTracker(clock=lambda: 0.0)
    tracker.record(Deployment("openai", "gpt-4o"), duration=1.0, ttft=0.3, output_tokens=100)
    cooling = {Deployment("openai", "gpt-4o-mini"): "cooling"}
    state = live_state(catalog=CATALOG, latency=tracker, cooling=cooling, providers_down={},
                       providers=["openai"])
    view = view_of({}, state, source="s", catalog=CATALOG)
    assert view.deployments_down == cooling
    assert view.latency.snapshot()[Deployment("openai", "gpt-4o")]["ttft_seconds"] == 0.3


def test_without_a_running_sidecar_the_local_checks_only() -> None:
    view = view_of({"azure": "no key"}, None, source="http://x/metrics", catalog=CATALOG)
    assert (view.providers_down, view.deployments_down) == ({"azure": "no key"}, {})
    assert view.latency.snapshot() == {}
