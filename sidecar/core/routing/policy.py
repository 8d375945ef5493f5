"""The routing decision: one pure function from a call's facts and the rules to an ordered plan.

    choose_route(facts, rules, latency) -> RouteDecision

1. The app is the first in rules.yaml whose ``match`` holds (else ``default``).
2. The app's first route whose model glob matches the requested model says what to do:
   a pin (a catalog model, plus fallbacks), ``passthrough`` (unchanged, to the intercepted
   host's provider), or ``auto`` (choose by ``prefer`` within ``tier``).
3. With no route: ``auto`` and tier names are chosen automatically, catalog models are served by
   their catalog provider (when it is configured), anything else passes through unchanged --
   unless the call carries ``prefer``/``tier``, which only make sense for a model the sidecar
   knows (then: 404).
4. Precedence for ``prefer``/``tier``: the route's explicit values, then the request's, then
   ``defaults``. Without a tier every tier competes, except for ``balanced``, which takes the
   default tier.
5. Candidates are filtered (provider configured and up, capabilities, context window, output
   limit), ranked, and the top ones form the plan: the first serves, the rest are fallbacks.
6. Cooldowns only reorder or shrink plans that have alternatives: a deployment cooling down is
   left out of a plan unless that leaves the plan empty; then the cooling candidates, in their
   usual order, form the plan (``RouteDecision.cooling``) -- trying them is never worse than
   refusing. This holds for pins (with or without fallbacks), auto, and auto with route
   fallbacks (a fallback that is not cooling serves before cooling candidates). A provider
   down (no key, no credentials) still refuses.

Speed. The decision runs on every call, so what does not depend on the call is derived once per
``RuleSet`` (lazily, kept in ``rules.memo``), and a call only touches the few models that can
end up in its plan. ``choose_route(..., detail=True)`` (``model-router explain``) still takes
the full path: every model of the pool ranked (``candidates``) and every exclusion with its
reason (``excluded``); without ``detail`` an auto decision carries only the leading
``MAX_PLAN`` candidates and no exclusions, but the same plan, exactly.

* App: ``rules.app_matcher`` (``sidecar.core.config.apps.AppMatcher``): compiled matches and a
  cache from the caller's identity to its app.
* Auto: pools of the models that can serve, their K-skybands, and ``prefer: fast`` over a pool
  (``sidecar.core.routing.skyband``, where the fast path is proved exact).
"""

from __future__ import annotations

import math
import random
from functools import lru_cache
from typing import Any

from sidecar.core.budget import DegradeStep
from sidecar.core.config.apps import AppSpec
from sidecar.core.config.catalog import ModelSpec
from sidecar.core.config.routes import RouteSpec
from sidecar.core.config.rules import RuleSet
from sidecar.core.errors import NoEligibleModelError, NoRouteError, UnknownModelError
from sidecar.core.facts import RequestFacts
from sidecar.core.routing.autotier import score_request
from sidecar.core.routing.decision import (
    MAX_PLAN,
    Candidate,
    Exclusion,
    Health,
    RouteDecision,
    Target,
    exclusion,
    expected_output_tokens,
)
from sidecar.core.routing.latency import LatencyTracker
from sidecar.core.routing.skyband import _Index, _ranked_fast
from sidecar.core.vocabulary import AUTO, AUTO_TIER, PASSTHROUGH, PIN, TIERS, Deployment

EXPLORE_RATE = 0.05  # prefer=fast: share of calls that try a model not observed lately


_HEALTHY = Health()
_NO_ROUTE = RouteSpec(pattern="*", kind=PASSTHROUGH, where="no route: passthrough")


@lru_cache(maxsize=1024)
def _implied_route(model: str, pinned: str | None) -> RouteSpec:
    """The route of a call no route takes: auto for 'auto' or a tier name, else a pin of the
    catalog model ``pinned`` (immutable and few, so made once)."""
    if pinned is None:
        return RouteSpec(pattern=model, kind=AUTO, where=f"no route: the request asks for {model!r}")
    return RouteSpec(pattern=model, kind=PIN, model=pinned, where="no route: a catalog model")


def choose_route(
    facts: RequestFacts, rules: RuleSet, latency: LatencyTracker, *,
    health: Health | None = None, rng: random.Random | None = None,
    explore_rate: float = EXPLORE_RATE, app: AppSpec | None = None, detail: bool = False,
    degrade: DegradeStep | None = None,
) -> RouteDecision:
    """The plan for one call. ``app`` skips matching (``model-router explain --app``);
    ``detail`` ranks every candidate and lists every exclusion (``model-router explain``);
    ``degrade`` (a budget running low) routes any call but a passthrough as auto in that step's
    tier and prefer, over what the route and the request say."""
    health = health or _HEALTHY
    app = app or rules.app_matcher.choose(facts)
    route = app.route_for(facts.model)
    base: dict[str, Any] = {"app": app.name, "requested_model": facts.model,
                            "shadow": app.shadow or rules.shadow}
    model_tier = facts.model if facts.model in TIERS else None
    wants_auto = facts.model == AUTO or model_tier is not None
    if route is None or (route.kind == PASSTHROUGH and wants_auto):
        if wants_auto:
            route = _implied_route(facts.model, None)
        elif (spec := rules.catalog.find(facts.model)) is not None and (
            spec.provider in rules.providers
        ):
            route = _implied_route(facts.model, spec.name)
        elif facts.prefer or facts.tier:
            raise _no_intent_for(facts.model, spec)
        else:
            route = _NO_ROUTE
    if route.kind == PASSTHROUGH:
        return RouteDecision(kind=PASSTHROUGH, rule=route.where,
                             plan=(_passthrough(facts, rules, health),), **base)
    if degrade is not None:
        base["degraded"] = degrade.describe()
        if route.kind == PIN:  # the pinned model gives way to the budget's tier and prefer
            route = RouteSpec(pattern=route.pattern, kind=AUTO,
                              where=f"{route.where} (degraded by the budget)")
    if route.kind == PIN:
        assert route.model is not None
        plan, unfit, cooling = _pinned(route, facts, rules, health)
        return RouteDecision(kind=PIN, rule=route.where, plan=plan, excluded=unfit,
                             cooling=cooling, **base)
    prefer, tier = _intent(route, facts, rules, model_tier)
    if degrade is not None:
        prefer, tier = degrade.prefer or prefer, degrade.tier or tier
    auto = None
    if tier == AUTO_TIER:
        auto = score_request(facts.body or {}, rules.defaults.auto_tier)
        tier = auto.tier
    ranked = None if detail else _ranked_fast(facts, rules, latency, health, prefer, tier, rng,
                                                explore_rate)
    excluded: list[Exclusion] = []
    cooling = False  # the fast path only answers when some candidate is not cooling down
    if ranked is None:
        ranked, excluded, cooling = _ranked_full(facts, rules, latency, health, prefer, tier,
                                                 rng, explore_rate)
    plan, cooling = _auto_plan(ranked, route, facts, rules, health, cooling=cooling)
    return RouteDecision(kind=AUTO, rule=route.where, plan=plan, prefer=prefer, tier=tier,
                         candidates=tuple(ranked), excluded=tuple(excluded), auto=auto,
                         cooling=cooling, **base)


def _ranked_full(
    facts: RequestFacts, rules: RuleSet, latency: LatencyTracker, health: Health, prefer: str,
    tier: str | None, rng: random.Random | None, explore_rate: float,
) -> tuple[list[Candidate], list[Exclusion], bool]:
    """Every model of the tier ranked, every other one with why: ``detail``, and the reference
    the fast path must agree with. When every model that could serve is cooling down, those
    are ranked (and True says so). Raises when nothing can serve."""
    candidates, cooling, excluded = _eligible(
        facts, rules, latency if prefer == "fast" else None, health, tier=tier)
    all_cooling = not candidates and bool(cooling)
    if all_cooling:
        candidates = cooling
        excluded = [e for e in excluded if e.kind != "cooling"]
    ranked = _rank(candidates, prefer)
    if prefer == "fast" and rng is not None and rng.random() < explore_rate:
        ranked = _explore(ranked, latency, rng)
    if not ranked:
        raise _nothing_eligible(excluded, f"tier {tier}" if tier else "the catalog")
    return ranked, excluded, all_cooling


def _no_intent_for(model: str, spec: ModelSpec | None) -> UnknownModelError:
    """The 404 for 'prefer'/'tier' on a model the sidecar cannot route by intent."""
    if spec is None:
        why = "is not in the sidecar's catalog"
    else:
        why = (f"is in the sidecar's catalog, but its provider {spec.provider!r} is not "
               "configured in rules.yaml")
    return UnknownModelError(
        f"The model {model!r} {why}, so 'prefer'/'tier' cannot apply; use 'auto', a tier name "
        "(economy, standard, premium) or a catalog model whose provider is configured (see "
        "`model-router models`).", param="model",
    )


def _intent(
    route: RouteSpec, facts: RequestFacts, rules: RuleSet, model_tier: str | None
) -> tuple[str, str | None]:
    prefer = route.prefer or facts.prefer
    tier = route.tier or model_tier or facts.tier
    if prefer is None and tier is None:
        return rules.defaults.prefer, rules.defaults.tier
    if prefer is None:
        return rules.defaults.prefer, tier
    if tier is None and prefer == "balanced":
        return prefer, rules.defaults.tier
    return prefer, tier


def _passthrough(facts: RequestFacts, rules: RuleSet, health: Health) -> Target:
    spec = rules.intercept_for(facts.host, facts.port) or rules.intercept[0]
    if spec.provider in health.providers_down:
        raise NoRouteError(f"Passthrough provider {spec.provider!r} is unavailable: "
                           f"{health.providers_down[spec.provider]}.")
    known = rules.catalog.find(facts.model)  # the catalog entry only if it is this deployment
    same = known is not None and known.deployment == Deployment(spec.provider, facts.model)
    return Target(spec.provider, facts.model, known if same else None)


def _pinned(
    route: RouteSpec, facts: RequestFacts, rules: RuleSet, health: Health
) -> tuple[tuple[Target, ...], tuple[Exclusion, ...], bool]:
    """The pinned model and its fallbacks that can serve, in order; those cooling down only
    when no other can (True then)."""
    plan: list[Target] = []
    cooling: list[Target] = []
    excluded: list[Exclusion] = []
    for name in dict.fromkeys((route.model, *route.fallbacks)):  # each model once, in order
        spec = rules.catalog.find(name or "")
        assert spec is not None  # parse_route checked every name
        why = exclusion(spec, facts, rules, health)
        if why is None:
            plan.append(_target(rules, spec))
        else:
            excluded.append(why)
            if why.kind == "cooling":
                cooling.append(_target(rules, spec))
    if not plan and cooling:  # nothing else can serve: trying is never worse than refusing
        kept = tuple(e for e in excluded if e.kind != "cooling")
        return tuple(cooling[:MAX_PLAN]), kept, True
    if not plan:
        raise _nothing_eligible(excluded, f"the pinned model {route.model!r}")
    return tuple(plan[:MAX_PLAN]), tuple(excluded), False


def _eligible(
    facts: RequestFacts, rules: RuleSet, latency: LatencyTracker | None, health: Health, *,
    tier: str | None,
) -> tuple[list[Candidate], list[Candidate], list[Exclusion]]:
    """The models that can serve, and those that could but are cooling down, with this call's
    expected cost (and latency, when given a tracker: only ``prefer: fast`` ranks by it)."""
    output = expected_output_tokens(facts)
    candidates: list[Candidate] = []
    cooling: list[Candidate] = []
    excluded: list[Exclusion] = []
    for spec in rules.catalog:
        if tier is not None and spec.tier != tier:
            continue
        why = exclusion(spec, facts, rules, health)
        if why is not None:
            excluded.append(why)
            if why.kind != "cooling":
                continue
        cost = spec.expected_cost(facts.prompt_tokens, output)
        estimate = (latency.estimate(spec, stream=facts.stream, output_tokens=output)
                    if latency is not None else None)
        (candidates if why is None else cooling).append(Candidate(spec, cost, estimate))
    return candidates, cooling, excluded


def _rank(candidates: list[Candidate], prefer: str) -> list[Candidate]:
    """Best first; every key ends in the name so the order is total and stable."""
    def key(c: Candidate) -> tuple[float, float, str]:
        s = c.spec
        if prefer == "cheap":
            return (c.cost, -(s.quality or 0.0), s.name)
        if prefer == "fast":
            return (c.latency.seconds if c.latency else math.inf, c.cost, s.name)
        if prefer == "quality":
            return (-(s.quality if s.quality is not None else -math.inf), c.cost, s.name)
        if prefer == "coding":
            return (-(s.coding if s.coding is not None else -math.inf), c.cost, s.name)
        return (-balanced_score(c), c.cost, s.name)

    return sorted(candidates, key=key)


def balanced_score(c: Candidate) -> float:
    """Quality per dollar of this call; models without a quality score come last."""
    if c.spec.quality is None:
        return -math.inf
    return c.spec.quality / c.cost if c.cost > 0 else math.inf


def _explore(
    ranked: list[Candidate], latency: LatencyTracker, rng: random.Random
) -> list[Candidate]:
    stale = [c for c in ranked[1:] if latency.is_stale(c.spec.deployment)]
    if not stale:
        return ranked
    pick = rng.choice(stale)
    return [pick, *(c for c in ranked if c is not pick)]


def _auto_plan(
    ranked: list[Candidate], route: RouteSpec, facts: RequestFacts, rules: RuleSet,
    health: Health, *, cooling: bool,
) -> tuple[tuple[Target, ...], bool]:
    """The head of the ranking, or its first and the route's fallbacks that can serve. When the
    ranking is of models cooling down (``cooling``), fallbacks that are not cooling serve
    alone; else the cooling ones, in order. Returns the plan and whether it is all cooling."""
    first = ranked[0].spec
    if not route.fallbacks:
        others = [c.spec for c in ranked[1:]]
    else:
        rest = [s for n in dict.fromkeys(route.fallbacks)
                if (s := rules.catalog.find(n)) is not None and s.name != first.name]
        why = [exclusion(s, facts, rules, health) for s in rest]
        others = [s for s, w in zip(rest, why, strict=True) if w is None]
        if cooling and others:
            return tuple(_target(rules, s) for s in others[:MAX_PLAN]), False
        if cooling:
            others = [s for s, w in zip(rest, why, strict=True) if w and w.kind == "cooling"]
    return tuple(_target(rules, s) for s in [first, *others][:MAX_PLAN]), cooling


def _target(rules: RuleSet, spec: ModelSpec) -> Target:
    """The target of a catalog model (one immutable object per model and RuleSet)."""
    targets = _Index.of(rules).targets
    target = targets.get(spec.name)
    if target is None:
        target = targets[spec.name] = Target(spec.provider, spec.upstream_id, spec)
    return target


def _nothing_eligible(excluded: list[Exclusion], pool: str) -> NoEligibleModelError | NoRouteError:
    relevant = [e for e in excluded if e.kind != "unconfigured"]
    unconfigured = len(excluded) - len(relevant)
    reasons = [f"{e.model}: {e.reason}" for e in relevant[:8]]
    if len(relevant) > 8:
        reasons.append(f"{len(relevant) - 8} more")
    if unconfigured:
        reasons.append(f"{unconfigured} model(s) on providers not configured in rules.yaml")
    text = "; ".join(reasons) or "it has no models"
    if any(e.kind == "down" for e in excluded):
        return NoRouteError(f"No model in {pool} is available right now — {text}.")
    return NoEligibleModelError(f"No model in {pool} can serve this request — {text}.",
                                param="model")
