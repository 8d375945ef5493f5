"""A running sidecar's live state: observed latency, providers down, models cooling down.

The addon produces it; ``/metrics`` exports it; ``model-router explain`` and ``models`` read it
back, so they decide as the running sidecar would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sidecar.core.routing.latency import LatencyTracker


@dataclass(frozen=True, slots=True)
class LiveState:
    """What ``prefer: fast`` and the plans see right now."""

    latency: Mapping[str, Mapping[str, float | int | None]]  # LatencyTracker.snapshot()
    providers: Mapping[str, str | None]  # provider -> why it is down (None: available)
    cooling: Mapping[str, str]  # model -> reason


@dataclass(frozen=True, slots=True)
class View:
    """What ``explain``/``models`` use: local checks, overridden by a running sidecar's state."""

    providers_down: Mapping[str, str]
    models_down: Mapping[str, str]
    latency: LatencyTracker
    source: str  # where the live part came from, for the report


def view_of(local_down: Mapping[str, str], live: LiveState | None, *, source: str) -> View:
    tracker = LatencyTracker()
    if live is None:
        return View(dict(local_down), {}, tracker, "no running sidecar reached: catalog priors")
    down = {**local_down, **{p: "unavailable in the running sidecar" for p, why in
                             live.providers.items() if why}}
    for provider, why in live.providers.items():
        if not why:
            down.pop(provider, None)  # the sidecar has what this shell lacks (keys, AWS)
    for model, seen in live.latency.items():
        tracker.seed(model, ttft=_num(seen.get("ttft_seconds")),
                     per_token=_num(seen.get("seconds_per_token")))
    return View(down, dict(live.cooling), tracker, f"live state from {source}")


def _num(value: float | int | None) -> float | None:
    return None if value is None else float(value)
