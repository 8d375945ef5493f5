"""What a catalog change does to routing, in words: "economy/cheap now picks X instead of Y".

A refresh logs one line per (tier, prefer) whose first choice changed, decided for a plain
``{"model": "auto", "tier": T, "prefer": P}`` call of the default app, with no latency
observed (``prefer: fast`` by the catalog's priors).
"""

from __future__ import annotations

from sidecar.core.config.apps import DEFAULT_APP
from sidecar.core.config.rules import RuleSet
from sidecar.core.errors import SidecarError
from sidecar.core.facts import RequestFacts
from sidecar.core.routing.latency import LatencyTracker
from sidecar.core.routing.policy import choose_route
from sidecar.core.vocabulary import PREFERS, TIERS

NONE = "nothing"


def first_choices(rules: RuleSet) -> dict[tuple[str, str], str]:
    """(tier, prefer) -> the model a plain auto call would be served by first."""
    latency = LatencyTracker()
    out: dict[tuple[str, str], str] = {}
    for tier in TIERS:  # not "auto": decided per conversation
        for prefer in PREFERS:
            facts = RequestFacts(model="auto", tier=tier, prefer=prefer)
            try:
                plan = choose_route(facts, rules, latency, app=DEFAULT_APP).plan
            except SidecarError:  # no eligible model
                out[(tier, prefer)] = NONE
                continue
            out[(tier, prefer)] = plan[0].name if plan else NONE
    return out


def decision_changes(old: RuleSet, new: RuleSet) -> list[str]:
    before, after = first_choices(old), first_choices(new)
    return [f"{tier}/{prefer} now picks {now} instead of {before.get((tier, prefer), NONE)}"
            for (tier, prefer), now in after.items() if before.get((tier, prefer)) != now]
