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

* App: ``rules.app_matcher`` (``sidecar.apps.AppMatcher``): compiled matches and a cache from
  the caller's identity to its app.
* Pools: everything that decides whether a model can serve a call -- except a model cooling
  down -- is a function of a small key: (tier, needs, which distinct catalog context window
  the call's tokens fit, which distinct output limit its ``max_tokens`` fits, the configured
  providers that are down). ``_Index.pool`` keeps, per key, the models that fit every call
  with that key (a ``_Pool``; built from the first such call's facts with the very checks of
  ``exclusion``; at most ``MAX_POOLS`` are kept). Models whose provider is not configured
  never enter a pool.
* ``prefer`` cheap, balanced, quality, coding: per pool and prefer, the K-skyband
  (``SKYBAND_K``) under a static dominance relation (``_dominates``): x dominates m when,
  whatever the call's token counts, x's rank key (as ``_rank`` computes it, in floats) is
  strictly smaller than m's. It holds because a call's cost, ``(prompt * input_price +
  output * output_price) / 1e6`` with non-negative token counts, is monotone in both prices
  (float rounding is monotone), and so is quality per dollar in quality and in cost:

  - cheap (cost, -(quality or 0), name): both prices <=, and quality > (or = and name <);
  - balanced (-quality/cost, cost, name): both prices <=, quality >= (None lowest), name <;
  - quality, coding (-score, cost, name): score > (None lowest), or = and both prices <= and
    name <.

  Dominance is a strict partial order, so a model outside the K-skyband (one with K or more
  dominators) has at least K dominators inside it. The only per-call filter left is health's
  ``deployments_down`` (a model cooling down is its deployment cooling down; health and latency
  belong to deployments, ``ModelSpec.deployment``): with at most K - MAX_PLAN skyband members
  down, every model outside the
  skyband is beaten by at least MAX_PLAN eligible ones, so the top MAX_PLAN of the eligible
  skyband members are the top MAX_PLAN of all: the plan is exact. With more down (or nothing
  eligible, or a catalog with non-finite numbers), the call takes the full path.
* ``prefer: fast`` ranks by observed latency, which changes with every call, so it scans the
  whole pool -- but only for the seconds (``LatencyTracker.seconds``, with the pool's priors
  kept), sorted as plain floats; costs settle ties, and ``Candidate`` objects are made, for
  the top few only. When the rng says explore, the pool's staleness (per deployment) is read and
  the stale model is drawn as ``_explore`` draws it (the same rng calls, the same pick).
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sidecar.core.config.apps import AppSpec, RouteSpec
from sidecar.core.config.catalog import ModelSpec
from sidecar.core.config.rules import RuleSet
from sidecar.core.errors import NoEligibleModelError, NoRouteError, UnknownModelError
from sidecar.core.facts import RequestFacts
from sidecar.core.routing.autotier import TierScore, score_request
from sidecar.core.routing.latency import LatencyEstimate, LatencyTracker, prior_seconds
from sidecar.core.vocabulary import (
    AUTO,
    AUTO_TIER,
    PASSTHROUGH,
    PIN,
    TIERS,
    Deployment,
    ExclusionKind,
    RouteKind,
)

MAX_PLAN = 3  # the serving model and up to two fallbacks
EXPECTED_OUTPUT_TOKENS = 500  # what a call is assumed to generate when max_tokens says no less
EXPLORE_RATE = 0.05  # prefer=fast: share of calls that try a model not observed lately
SKYBAND_K = 8  # per pool and prefer, the models dominated by fewer than this many (see above)
MAX_POOLS = 1024  # pools (and their skybands) kept per RuleSet; all dropped when full


@dataclass(frozen=True, slots=True)
class Target:
    """Where one attempt goes. ``spec`` is the catalog entry of this very deployment, or None
    (a passthrough of a model the catalog lacks, or serves elsewhere or under another id)."""

    provider: str
    upstream_model: str
    spec: ModelSpec | None = None

    @property
    def name(self) -> str:
        return self.spec.name if self.spec else self.upstream_model

    @property
    def deployment(self) -> Deployment:
        """What this attempt is tried on: health and latency are recorded against it."""
        return Deployment(self.provider, self.upstream_model)


@dataclass(frozen=True, slots=True)
class Candidate:
    spec: ModelSpec
    cost: float  # expected USD for this call
    latency: LatencyEstimate | None = None  # only computed when ranking by speed


@dataclass(frozen=True, slots=True)
class Exclusion:
    model: str
    reason: str
    kind: ExclusionKind = "request"  # see sidecar.core.vocabulary.ExclusionKind


@dataclass(frozen=True, slots=True)
class Health:
    """What is unavailable right now: provider -> reason, deployment (cooling down) -> reason."""

    providers_down: Mapping[str, str] = field(default_factory=dict)
    deployments_down: Mapping[Deployment, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RouteDecision:
    app: str
    requested_model: str
    kind: RouteKind
    rule: str  # which rules.yaml entry decided, or why none did
    plan: tuple[Target, ...]
    prefer: str | None = None
    tier: str | None = None
    candidates: tuple[Candidate, ...] = ()  # ranked, best first (auto only); without
    #                                         detail only the leading MAX_PLAN
    excluded: tuple[Exclusion, ...] = ()  # auto: only with detail
    shadow: bool = False
    auto: TierScore | None = None  # tier auto: the conversation's score and the tier it chose
    cooling: bool = False  # every model of the plan is cooling down: nothing else can serve

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
) -> RouteDecision:
    """The plan for one call. ``app`` skips matching (``model-router explain --app``);
    ``detail`` ranks every candidate and lists every exclusion (``model-router explain``)."""
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
    if route.kind == PIN:
        assert route.model is not None
        plan, unfit, cooling = _pinned(route, facts, rules, health)
        return RouteDecision(kind=PIN, rule=route.where, plan=plan, excluded=unfit,
                             cooling=cooling, **base)
    prefer, tier = _intent(route, facts, rules, model_tier)
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


def exclusion(
    spec: ModelSpec, facts: RequestFacts, rules: RuleSet, health: Health
) -> Exclusion | None:
    """Why ``spec`` cannot serve this call, or None when it can.

    What the request needs is checked before health: a model that could never serve this call
    is a "request" exclusion (400), not "down" (a retryable 503), even while it is down; and a
    provider down before a deployment cooling down ("cooling": it serves when nothing else can).
    """
    if spec.provider not in rules.providers:
        return Exclusion(spec.name, f"provider {spec.provider!r} is not configured",
                         kind="unconfigured")
    unfit = _unfit(spec, facts)
    if unfit is not None:
        return Exclusion(spec.name, unfit)
    if spec.provider in health.providers_down:
        return Exclusion(spec.name, health.providers_down[spec.provider], kind="down")
    down = health.deployments_down
    if down and spec.deployment in down:
        return Exclusion(spec.name, down[spec.deployment], kind="cooling")
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


# --- the fast path (see the module docstring) ------------------------------------------------

def _ranked_fast(
    facts: RequestFacts, rules: RuleSet, latency: LatencyTracker, health: Health, prefer: str,
    tier: str | None, rng: random.Random | None, explore_rate: float,
) -> list[Candidate] | None:
    """The head of the ranking (at least the plan's MAX_PLAN, best first), or None when only
    the full path can tell (then nothing, the rng included, has been touched)."""
    output = expected_output_tokens(facts)
    if facts.prompt_tokens < 0 or output < 0:  # costs are monotone in prices for counts >= 0
        return None
    if prefer != "fast" and prefer not in _STATIC:
        return None  # not one of PREFERS (facts built by hand): _rank's own fallback decides
    pool = _Index.of(rules).pool(facts, health, tier)
    if pool is None:
        return None
    down = health.deployments_down
    if prefer == "fast":
        return _fastest(pool, facts, output, latency, down, rng, explore_rate)
    band = pool.band(prefer)
    if down:
        up = tuple(m for m in band if m[0].deployment not in down)
        if len(band) - len(up) > SKYBAND_K - MAX_PLAN:
            return None
        band = up
    if not band:
        return None  # nothing can serve, or only models cooling down: the full path decides
    return _top(band, prefer, facts.prompt_tokens, output)


# A skyband member: (spec, input price, output price, the static part of its rank key, name).
_Member = tuple[ModelSpec, float, float, Any, str]
_INF = math.inf


def _top(band: Sequence[_Member], prefer: str, prompt: int, output: int) -> list[Candidate]:
    """The best MAX_PLAN of ``band`` by ``_rank``'s key, computed with the same float
    expressions (``ModelSpec.expected_cost``, ``balanced_score``)."""
    if prefer == "cheap":  # (cost, -(quality or 0), name); static: -(quality or 0)
        keys = [((prompt * i + output * o) / 1e6, st, n, s) for s, i, o, st, n in band]
        return [Candidate(k[3], k[0]) for k in sorted(keys)[:MAX_PLAN]]
    if prefer == "balanced":  # (-balanced_score, cost, name); static: quality (or None)
        keys = [(_INF if q is None else -(q / c) if c > 0 else -_INF, c, n, s)
                for s, i, o, q, n in band for c in ((prompt * i + output * o) / 1e6,)]
    else:  # quality, coding: (-score, cost, name); static: -(score, or -inf)
        keys = [(st, (prompt * i + output * o) / 1e6, n, s) for s, i, o, st, n in band]
    return [Candidate(k[3], k[1]) for k in sorted(keys)[:MAX_PLAN]]


def _fastest(
    pool: _Pool, facts: RequestFacts, output: int, latency: LatencyTracker,
    down: Mapping[Deployment, str], rng: random.Random | None, explore_rate: float,
) -> list[Candidate] | None:
    """``prefer: fast`` over a pool: the seconds of every model, everything else for the few
    that can make the plan. Mirrors ``_rank`` (key: seconds, cost, name) and ``_explore``."""
    specs: Sequence[ModelSpec] = pool.specs
    deployments: Sequence[Deployment] = pool.deployments
    priors: Sequence[float] = pool.priors(facts.stream, output)
    if down:
        up = [i for i, d in enumerate(deployments) if d not in down]
        specs = [specs[i] for i in up]
        deployments = [deployments[i] for i in up]
        priors = [priors[i] for i in up]
    if not specs:
        return None  # every model is cooling down: the full path ranks them
    secs = latency.seconds(specs, stream=facts.stream, output_tokens=output, priors=priors)
    order = sorted(range(len(specs)), key=secs.__getitem__)  # by seconds; ties settled below
    prompt = facts.prompt_tokens

    def key(i: int) -> tuple[float, float, str]:
        s = specs[i]
        return secs[i], s.expected_cost(prompt, output), s.name

    top = _settled(order, secs, 0, MAX_PLAN, key)
    if rng is not None and rng.random() < explore_rate:
        first = top[0]
        old = latency.stale(deployments)
        stale = [i for i in order if old[i] and i != first]
        if stale:
            # rng.choice(stale) of _explore: the same draw, on the stale models' positions
            at = rng.choice(range(len(stale)))
            pick = _settled(stale, secs, at, 1, key)[0]
            top = [pick, *(i for i in top if i != pick)]
    return [Candidate(specs[i], specs[i].expected_cost(prompt, output),
                      latency.estimate(specs[i], stream=facts.stream, output_tokens=output))
            for i in top[:MAX_PLAN]]


def _settled(
    order: list[int], secs: Sequence[float], start: int, count: int,
    key: Callable[[int], tuple[float, float, str]],
) -> list[int]:
    """``order`` (sorted by seconds alone, stably) is the true ranking except within runs of
    equal seconds; the ``count`` entries of the true ranking from position ``start`` on."""
    lo, hi = start, min(start + count, len(order))
    while lo > 0 and secs[order[lo - 1]] == secs[order[start]]:
        lo -= 1  # the run of equal seconds the window starts in...
    while hi < len(order) and secs[order[hi]] == secs[order[hi - 1]]:
        hi += 1  # ...and the one it ends in
    return sorted(order[lo:hi], key=key)[start - lo:start - lo + count]


def _finite(spec: ModelSpec) -> bool:
    """Whether the numbers ranking reads are finite (the dominance argument needs it)."""
    return all(v is None or math.isfinite(v) for v in (
        spec.input_price, spec.output_price, spec.quality, spec.coding, spec.ttft_prior,
        spec.tokens_per_second_prior))


class _Index:
    """What the policy derives from one RuleSet: a ``Target`` per catalog model, and the pools
    of auto routing by pool key (module docstring)."""

    __slots__ = ("_contexts", "_max_outputs", "_pools", "_providers", "_specs", "exact",
                 "targets")

    MEMO_KEY = "policy"

    @classmethod
    def of(cls, rules: RuleSet) -> _Index:
        index: _Index | None = rules.memo.get(cls.MEMO_KEY)
        if index is None:
            index = rules.memo[cls.MEMO_KEY] = cls(rules)
        return index

    def __init__(self, rules: RuleSet) -> None:
        self._providers = frozenset(rules.providers)
        self._specs = [s for s in rules.catalog if s.provider in self._providers]
        self._contexts = sorted({s.context for s in self._specs})
        self._max_outputs = sorted({s.max_output for s in self._specs if s.max_output})
        self.exact = all(_finite(s) for s in self._specs)
        self._pools: dict[tuple[Any, ...], _Pool] = {}
        self.targets: dict[str, Target] = {}

    def pool(self, facts: RequestFacts, health: Health, tier: str | None) -> _Pool | None:
        """The models of ``tier`` that fit this call and are on providers up (None: use the full
        path). Every input of ``_unfit`` and the provider checks is in the key."""
        if not self.exact:
            return None
        max_tokens = facts.max_tokens
        down = health.providers_down
        key = (tier, facts.needs,
               bisect_left(self._contexts, facts.prompt_tokens + (max_tokens or 0)),
               bisect_left(self._max_outputs, max_tokens) if max_tokens else 0,
               self._providers.intersection(down) if down else frozenset())
        pool = self._pools.get(key)
        if pool is None:
            if len(self._pools) >= MAX_POOLS:
                self._pools.clear()
            pool = self._pools[key] = _Pool(tuple(
                s for s in self._specs if (tier is None or s.tier == tier)
                and _unfit(s, facts) is None and s.provider not in key[4]))
        return pool


class _Pool:
    """Models that can serve every call with one pool key, but for models cooling down, in
    catalog order; per prefer, their K-skyband (``band``); per (stream, output tokens), their
    latency priors (``priors``). Each computed on first use."""

    __slots__ = ("_bands", "_priors", "deployments", "specs")

    def __init__(self, specs: tuple[ModelSpec, ...]) -> None:
        self.specs = specs
        self.deployments = tuple(s.deployment for s in specs)
        self._bands: dict[str, tuple[_Member, ...]] = {}
        self._priors: dict[tuple[bool, int], list[float]] = {}

    def band(self, prefer: str) -> tuple[_Member, ...]:
        band = self._bands.get(prefer)
        if band is None:
            static = _STATIC[prefer]
            band = self._bands[prefer] = tuple(
                (s, s.input_price, s.output_price, static(s), s.name)
                for s in skyband(self.specs, prefer))
        return band

    def priors(self, stream: bool, output: int) -> list[float]:
        priors = self._priors.get((stream, output))
        if priors is None:
            if len(self._priors) >= MAX_POOLS:
                self._priors.clear()
            priors = self._priors[stream, output] = [
                prior_seconds(s, stream=stream, output_tokens=output) for s in self.specs]
        return priors


def skyband(specs: Sequence[ModelSpec], prefer: str, k: int = SKYBAND_K) -> list[ModelSpec]:
    """The models dominated (``_dominates``) by fewer than ``k`` others.

    Visited in an order where every dominator comes before the models it dominates (a linear
    extension of dominance), a model is in the band iff fewer than ``k`` members found so far
    dominate it: its dominators all come earlier, and one with ``k`` or more dominators has
    ``k`` or more inside the band."""
    band: list[ModelSpec] = []
    for m in sorted(specs, key=_EXTENSION[prefer]):
        beaten = 0
        for x in band:
            if _dominates(prefer, x, m):
                beaten += 1
                if beaten >= k:
                    break
        if beaten < k:
            band.append(m)
    return band


def _q(score: float | None) -> float:
    return -math.inf if score is None else score


def _dominates(prefer: str, x: ModelSpec, m: ModelSpec) -> bool:
    """Whether x ranks strictly before m for every call (see the module docstring)."""
    cheaper = x.input_price <= m.input_price and x.output_price <= m.output_price
    if prefer == "cheap":
        qx, qm = x.quality or 0.0, m.quality or 0.0
        return cheaper and (qx > qm or (qx == qm and x.name < m.name))
    if prefer == "balanced":
        return cheaper and _q(x.quality) >= _q(m.quality) and x.name < m.name
    if prefer == "quality":
        sx, sm = _q(x.quality), _q(m.quality)
    else:  # coding
        sx, sm = _q(x.coding), _q(m.coding)
    return sx > sm or (sx == sm and cheaper and x.name < m.name)


# per prefer: the static part of the rank key, and a linear extension of dominance
_STATIC: dict[str, Callable[[ModelSpec], Any]] = {
    "cheap": lambda s: -(s.quality or 0.0),
    "balanced": lambda s: s.quality,
    "quality": lambda s: -_q(s.quality),
    "coding": lambda s: -_q(s.coding),
}
_EXTENSION: dict[str, Callable[[ModelSpec], tuple[Any, ...]]] = {
    "cheap": lambda s: (s.input_price, s.output_price, -(s.quality or 0.0), s.name),
    "balanced": lambda s: (s.input_price, s.output_price, -_q(s.quality), s.name),
    "quality": lambda s: (-_q(s.quality), s.input_price, s.output_price, s.name),
    "coding": lambda s: (-_q(s.coding), s.input_price, s.output_price, s.name),
}
