"""A running sidecar's live state: observed latency, providers down, models cooling down.

The addon produces it (``live_state``); ``/metrics`` exports it; ``model-router explain`` and
``models`` read it back (``view_of``), so they decide as the running sidecar would.

The sidecar keeps health and latency per deployment (provider + upstream model id), but what it
exports is keyed by catalog model *name* (metrics labels are catalog names): ``live_state`` gives
each catalog model its deployment's figures (a deployment no catalog model uses -- a passthrough's
-- is left out), and ``view_of`` maps the names back to deployments through the catalog.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sidecar.core.config.catalog import Catalog
from sidecar.core.routing.latency import LatencyTracker
from sidecar.core.vocabulary import Deployment


@dataclass(frozen=True, slots=True)
class LiveState:
    """What ``prefer: fast`` and the plans see right now, by catalog model name."""

    latency: Mapping[str, Mapping[str, float | int | None]]  # model -> its deployment's snapshot
    providers: Mapping[str, str | None]  # provider -> why it is down (None: available)
    cooling: Mapping[str, str]  # model -> why its deployment is cooling down
    budgets: Mapping[str, float] = field(default_factory=dict)  # app -> USD spent or reserved
    #                                 in its budget's current window (as the sidecar last saw)


@dataclass(frozen=True, slots=True)
class View:
    """What ``explain``/``models`` use: local checks, overridden by a running sidecar's state."""

    providers_down: Mapping[str, str]
    deployments_down: Mapping[Deployment, str]
    latency: LatencyTracker
    source: str  # where the live part came from, for the report
    budgets: Mapping[str, float] = field(default_factory=dict)  # app -> USD used, live


def live_state(
    *, catalog: Catalog, latency: LatencyTracker, cooling: Mapping[Deployment, str],
    providers_down: Mapping[str, str], providers: Iterable[str],
) -> LiveState:
    """The live state by catalog name: every catalog model whose deployment has observations
    or is cooling down (models sharing a deployment share its figures)."""
    observed = latency.snapshot()
    seen: dict[str, Mapping[str, float | int | None]] = {}
    down: dict[str, str] = {}
    if observed or cooling:
        for spec in catalog:
            figures = observed.get(spec.deployment)
            if figures is not None:
                seen[spec.name] = figures
            why = cooling.get(spec.deployment)
            if why is not None:
                down[spec.name] = why
    return LiveState(latency=seen, providers={p: providers_down.get(p) for p in providers},
                     cooling=down)


def view_of(
    local_down: Mapping[str, str], live: LiveState | None, *, source: str, catalog: Catalog
) -> View:
    """The view of ``local_down`` (providers this shell cannot serve), overridden by ``live``
    (a running sidecar's state, names mapped to deployments through ``catalog``; a name the
    catalog lacks is ignored)."""
    tracker = LatencyTracker()
    if live is None:
        return View(dict(local_down), {}, tracker, "no running sidecar reached: catalog priors")
    down = {**local_down, **{p: "unavailable in the running sidecar" for p, why in
                             live.providers.items() if why}}
    for provider, why in live.providers.items():
        if not why:
            down.pop(provider, None)  # the sidecar has what this shell lacks (keys, AWS)
    for name, seen in live.latency.items():
        spec = catalog.models.get(name)
        if spec is not None:
            tracker.seed(spec.deployment, ttft=_num(seen.get("ttft_seconds")),
                         per_token=_num(seen.get("seconds_per_token")))
    cooling = {spec.deployment: why for name, why in live.cooling.items()
               if (spec := catalog.models.get(name)) is not None}
    return View(down, cooling, tracker, f"live state from {source}", dict(live.budgets))


def _num(value: float | int | None) -> float | None:
    return None if value is None else float(value)
