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
5. Candidates are filtered (provider configured and up, model not cooling down, capabilities,
   context window, output limit), ranked, and the top ones form the plan: the first serves,
   the rest are fallbacks.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from sidecar.apps import AUTO, PASSTHROUGH, AppSpec, RouteSpec, choose_app
from sidecar.autotier import TierScore, score_request
from sidecar.catalog import AUTO_TIER, TIERS, ModelSpec
from sidecar.errors import NoEligibleModelError, NoRouteError, UnknownModelError
from sidecar.facts import RequestFacts
from sidecar.latency import LatencyEstimate, LatencyTracker
from sidecar.rules import RuleSet

MAX_PLAN = 3  # the serving model and up to two fallbacks
EXPECTED_OUTPUT_TOKENS = 500  # what a call is assumed to generate when max_tokens says no less
EXPLORE_RATE = 0.05  # prefer=fast: share of calls that try a model not observed lately


@dataclass(frozen=True, slots=True)
class Target:
    """Where one attempt goes. ``spec`` is None for a passthrough of a model the catalog lacks."""

    provider: str
    upstream_model: str
    spec: ModelSpec | None = None

    @property
    def name(self) -> str:
        return self.spec.name if self.spec else self.upstream_model


@dataclass(frozen=True, slots=True)
class Candidate:
    spec: ModelSpec
    cost: float  # expected USD for this call
    latency: LatencyEstimate | None = None  # only computed when ranking by speed


@dataclass(frozen=True, slots=True)
class Exclusion:
    model: str
    reason: str
    kind: str = "request"  # "request": cannot serve this call; "down": may pass later;
    #                        "unconfigured": its provider is not in rules.yaml


@dataclass(frozen=True, slots=True)
class Health:
    """What is unavailable right now: provider -> reason, model name -> reason."""

    providers_down: Mapping[str, str] = field(default_factory=dict)
    models_down: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RouteDecision:
    app: str
    requested_model: str
    kind: str  # "pin" | "passthrough" | "auto"
    rule: str  # which rules.yaml entry decided, or why none did
    plan: tuple[Target, ...]
    prefer: str | None = None
    tier: str | None = None
    candidates: tuple[Candidate, ...] = ()  # ranked, best first (auto only)
    excluded: tuple[Exclusion, ...] = ()
    shadow: bool = False
    auto: TierScore | None = None  # tier auto: the conversation's score and the tier it chose

    @property
    def target(self) -> Target:
        return self.plan[0]

    @property
    def reason(self) -> str:
        """Short, for the x-model-router-reason header."""
        if self.kind == AUTO:
            tier = f"auto:{self.tier}" if self.auto else self.tier or "any"
            return f"auto prefer={self.prefer} tier={tier}"
        return self.kind


def choose_route(
    facts: RequestFacts, rules: RuleSet, latency: LatencyTracker, *,
    health: Health | None = None, rng: random.Random | None = None,
    explore_rate: float = EXPLORE_RATE, app: AppSpec | None = None,
) -> RouteDecision:
    """The plan for one call. ``app`` skips matching (``model-router explain --app``)."""
    health = health or Health()
    app = app or choose_app(rules.apps, facts)
    route = app.route_for(facts.model)
    base = {"app": app.name, "requested_model": facts.model, "shadow": app.shadow or rules.shadow}
    model_tier = facts.model if facts.model in TIERS else None
    wants_auto = facts.model == AUTO or model_tier is not None
    if route is None or (route.kind == PASSTHROUGH and wants_auto):
        if wants_auto:
            route = RouteSpec(pattern=facts.model, kind=AUTO, where="no route: the request asks "
                              f"for {facts.model!r}")
        elif (spec := rules.catalog.find(facts.model)) is not None and (
            spec.provider in rules.providers
        ):
            route = RouteSpec(pattern=facts.model, kind="pin", model=spec.name,
                              where="no route: a catalog model")
        elif facts.prefer or facts.tier:
            raise _no_intent_for(facts.model, spec)
        else:
            route = RouteSpec(pattern="*", kind=PASSTHROUGH, where="no route: passthrough")
    if route.kind == PASSTHROUGH:
        return RouteDecision(kind=PASSTHROUGH, rule=route.where,
                             plan=(_passthrough(facts, rules, health),), **base)
    if route.kind == "pin":
        assert route.model is not None
        plan, excluded = _pinned(route, facts, rules, health)
        return RouteDecision(kind="pin", rule=route.where, plan=plan, excluded=excluded, **base)
    prefer, tier = _intent(route, facts, rules, model_tier)
    auto = None
    if tier == AUTO_TIER:
        auto = score_request(facts.body or {}, rules.defaults.auto_tier)
        tier = auto.tier
    candidates, excluded = _eligible(facts, rules, latency if prefer == "fast" else None,
                                     health, tier=tier)
    ranked = _rank(candidates, prefer)
    if prefer == "fast" and rng is not None and rng.random() < explore_rate:
        ranked = _explore(ranked, latency, rng)
    if not ranked:
        raise _nothing_eligible(excluded, f"tier {tier}" if tier else "the catalog")
    plan = _auto_plan(ranked, route, facts, rules, health)
    return RouteDecision(kind=AUTO, rule=route.where, plan=plan, prefer=prefer, tier=tier,
                         candidates=tuple(ranked), excluded=tuple(excluded), auto=auto, **base)


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
    return Target(spec.provider, facts.model, rules.catalog.find(facts.model))


def _pinned(
    route: RouteSpec, facts: RequestFacts, rules: RuleSet, health: Health
) -> tuple[tuple[Target, ...], tuple[Exclusion, ...]]:
    plan: list[Target] = []
    excluded: list[Exclusion] = []
    for name in dict.fromkeys((route.model, *route.fallbacks)):  # each model once, in order
        spec = rules.catalog.find(name or "")
        assert spec is not None  # parse_route checked every name
        why = exclusion(spec, facts, rules, health)
        if why is None:
            plan.append(Target(spec.provider, spec.upstream_id, spec))
        else:
            excluded.append(why)
    if not plan:
        raise _nothing_eligible(excluded, f"the pinned model {route.model!r}")
    return tuple(plan[:MAX_PLAN]), tuple(excluded)


def _eligible(
    facts: RequestFacts, rules: RuleSet, latency: LatencyTracker | None, health: Health, *,
    tier: str | None,
) -> tuple[list[Candidate], list[Exclusion]]:
    """The models that can serve, with this call's expected cost (and latency, when given a
    tracker: only ``prefer: fast`` ranks by it)."""
    output = expected_output_tokens(facts)
    candidates, excluded = [], []
    for spec in rules.catalog:
        if tier is not None and spec.tier != tier:
            continue
        why = exclusion(spec, facts, rules, health)
        if why is not None:
            excluded.append(why)
            continue
        cost = spec.expected_cost(facts.prompt_tokens, output)
        estimate = latency and latency.estimate(spec, stream=facts.stream, output_tokens=output)
        candidates.append(Candidate(spec, cost, estimate))
    return candidates, excluded


def exclusion(
    spec: ModelSpec, facts: RequestFacts, rules: RuleSet, health: Health
) -> Exclusion | None:
    """Why ``spec`` cannot serve this call, or None when it can.

    What the request needs is checked before health: a model that could never serve this call
    is a "request" exclusion (400), not "down" (a retryable 503), even while it is down.
    """
    if spec.provider not in rules.providers:
        return Exclusion(spec.name, f"provider {spec.provider!r} is not configured",
                         kind="unconfigured")
    unfit = _unfit(spec, facts)
    if unfit is not None:
        return Exclusion(spec.name, unfit)
    if spec.provider in health.providers_down:
        return Exclusion(spec.name, health.providers_down[spec.provider], kind="down")
    if spec.name in health.models_down:
        return Exclusion(spec.name, health.models_down[spec.name], kind="down")
    return None


def _unfit(spec: ModelSpec, facts: RequestFacts) -> str | None:
    """Why ``spec`` could never serve this call (capabilities, context, output limit)."""
    missing = facts.needs - spec.supports if facts.needs else None
    if missing:
        return f"does not support {', '.join(sorted(missing))}"
    needed = facts.prompt_tokens + (facts.max_tokens or 0)
    if needed > spec.context:
        return f"needs ~{needed} tokens; context window is {spec.context}"
    if facts.max_tokens and spec.max_output and facts.max_tokens > spec.max_output:
        return f"max_tokens {facts.max_tokens} exceeds its output limit {spec.max_output}"
    return None


def expected_output_tokens(facts: RequestFacts) -> int:
    if facts.max_tokens is not None:
        return min(facts.max_tokens, EXPECTED_OUTPUT_TOKENS)
    return EXPECTED_OUTPUT_TOKENS


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
    stale = [c for c in ranked[1:] if latency.is_stale(c.spec.name)]
    if not stale:
        return ranked
    pick = rng.choice(stale)
    return [pick, *(c for c in ranked if c is not pick)]


def _auto_plan(
    ranked: list[Candidate], route: RouteSpec, facts: RequestFacts, rules: RuleSet,
    health: Health,
) -> tuple[Target, ...]:
    first = ranked[0].spec
    if route.fallbacks:
        rest = [rules.catalog.find(n) for n in dict.fromkeys(route.fallbacks)]
        others = [s for s in rest if s and s.name != first.name
                  and exclusion(s, facts, rules, health) is None]
    else:
        others = [c.spec for c in ranked[1:]]
    return tuple(Target(s.provider, s.upstream_id, s) for s in [first, *others][:MAX_PLAN])


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
