"""The fast path of auto routing: what ``choose_route`` ranks when it needs no ``detail``.

The decision runs on every call, so what does not depend on the call is derived once per
``RuleSet`` (lazily, kept in ``rules.memo``), and a call only touches the few models that can
end up in its plan -- the same plan as the full path (``policy._ranked_full``), exactly:

* Pools: everything that decides whether a model can serve a call -- except a model cooling
  down -- is a function of a small key: (tier, needs, which distinct catalog context window
  the call's tokens fit, which distinct output limit its ``max_tokens`` fits, the configured
  providers that are down). ``_Index.pool`` keeps, per key, the models that fit every call
  with that key (a ``_Pool``; built from the first such call's facts with the very checks of
  ``exclusion``; at most ``MAX_POOLS`` are kept). Models whose provider is not configured
  never enter a pool.
* ``prefer`` cheap, balanced, quality, coding: per pool and prefer, the K-skyband
  (``SKYBAND_K``) under a static dominance relation (``_dominates``): x dominates m when,
  whatever the call's token counts, x's rank key (as ``policy._rank`` computes it, in floats) is
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
  the stale model is drawn as ``policy._explore`` draws it (the same rng calls, the same pick).
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sidecar.core.config.catalog import ModelSpec
from sidecar.core.config.rules import RuleSet
from sidecar.core.facts import RequestFacts
from sidecar.core.routing.decision import (
    MAX_PLAN,
    Candidate,
    Health,
    Target,
    _unfit,
    expected_output_tokens,
)
from sidecar.core.routing.latency import LatencyTracker, prior_seconds
from sidecar.core.vocabulary import Deployment

SKYBAND_K = 8  # per pool and prefer, the models dominated by fewer than this many (see above)
MAX_POOLS = 1024  # pools (and their skybands) kept per RuleSet; all dropped when full


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
