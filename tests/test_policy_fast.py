"""sidecar/policy.py, the fast path: pools and K-skybands must give exactly the plan (or the error)
of the full path (``detail=True``: every model ranked, the routing as it always was).

Random catalogs are built to make ties and edge cases likely: few distinct prices (free models,
prices that differ in the last bit), equal or missing quality and coding scores, capabilities,
small context windows and output limits, providers down or not configured, models cooling down,
latency observed for some models (some of them stale), and exploration. Health and latency are
per deployment: some catalog models share one, and some deployments down are no catalog model's
(a passthrough's).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from sidecar.core.config.catalog import TIERS, Catalog, ModelSpec
from sidecar.core.config.rules import RuleSet, parse_rules_text
from sidecar.core.errors import SidecarError
from sidecar.core.facts import PREFERS, RequestFacts
from sidecar.core.routing import policy
from sidecar.core.routing.decision import MAX_PLAN, Candidate, Health, RouteDecision
from sidecar.core.routing.latency import LatencyTracker
from sidecar.core.routing.policy import _rank, choose_route
from sidecar.core.routing.skyband import SKYBAND_K, _dominates, skyband
from sidecar.core.vocabulary import Deployment

CAPS = ("tools", "vision", "json_schema")
PRICES = (0.0, 0.0, 0.1, 0.2, 0.3, 0.1 + 0.2, 0.5, 1.0, 1.0, 2.5, 10.0, 1e-9)
SCORES = (None, 0.0, 10.0, 10.0, 35.5, 60.0, 60.0000000000001, 90.0)
PROVIDERS = """
intercept: [{host: api.openai.com, provider: p}]
providers:
  p: {type: openai, base_url: https://p.example/v1}
  q: {type: openai, base_url: https://q.example/v1}
"""


class Clock:
    now = 10_000.0

    def __call__(self) -> float:
        return self.now


def _price(rnd: random.Random) -> float:
    return rnd.choice(PRICES) if rnd.random() < 0.7 else round(rnd.uniform(0, 20), rnd.randint(0, 4))


def _score(rnd: random.Random) -> float | None:
    return rnd.choice(SCORES) if rnd.random() < 0.7 else round(rnd.uniform(0, 100), 1)


def random_catalog(rnd: random.Random, n: int) -> Catalog:
    models = []
    for i in range(n):
        models.append(ModelSpec(
            name=f"m{rnd.randrange(10 * n):04d}-{i}", provider=rnd.choice("ppqqr"),
            # some models share a deployment: the same provider and upstream id
            upstream_id=f"vendor/m{i}" if rnd.random() < 0.8 else f"vendor/shared{rnd.randrange(3)}",
            tier=rnd.choice(TIERS), input_price=_price(rnd),
            output_price=_price(rnd), context=rnd.choice((1000, 8000, 32_000, 128_000)),
            max_output=rnd.choice((None, None, 256, 1024, 4096)), quality=_score(rnd),
            coding=_score(rnd),
            supports=frozenset(c for c in CAPS if rnd.random() < 0.75),
            ttft_prior=rnd.choice((None, 0.2, 0.5, 1.0, 1.0)),
            tokens_per_second_prior=rnd.choice((None, 10.0, 50.0, 100.0))))
    return Catalog.of(models)


def random_rules(rnd: random.Random, catalog: Catalog) -> RuleSet:
    served = [m.name for m in catalog if m.provider in "pq"]
    extra = ""
    if served and rnd.random() < 0.5:
        fallbacks = ", ".join(rnd.sample(served, min(len(served), rnd.randint(1, 4))))
        extra = ("apps:\n  - name: a\n    routes:\n"
                 f"      gpt-4o: {{prefer: {rnd.choice(PREFERS)}, fallbacks: [{fallbacks}]}}\n")
    return parse_rules_text(PROVIDERS + extra, path="r.yaml", catalog=catalog)


def random_latency(rnd: random.Random, catalog: Catalog) -> LatencyTracker:
    clock = Clock()
    tracker = LatencyTracker(clock=clock)
    for spec in catalog:
        if rnd.random() < 0.5:
            for _ in range(rnd.randint(1, 3)):
                stream = rnd.random() < 0.5
                tracker.record(spec.deployment, duration=rnd.choice((0.5, 1.0, 2.0, rnd.uniform(0.1, 9))),
                               ttft=rnd.choice((0.1, 0.5)) if stream else None,
                               output_tokens=rnd.choice((None, 100, 400)))
        clock.now += rnd.choice((0.0, 0.0, 400.0))  # the models observed first go stale
    return tracker


def random_call(rnd: random.Random, catalog: Catalog) -> tuple[RequestFacts, Health]:
    facts = RequestFacts(
        model=rnd.choice(("auto", "auto", "gpt-4o", *TIERS)),
        prefer=rnd.choice((None, *PREFERS, *PREFERS, "odd")),
        tier=rnd.choice((None, None, *TIERS, "auto")),
        needs=frozenset(c for c in CAPS if rnd.random() < 0.15),
        prompt_tokens=rnd.choice((0, 10, 120, 999, 5000, 30_000, 200_000)),
        max_tokens=rnd.choice((None, None, 0, 1, 100, 256, 500, 1000, 5000)),
        stream=rnd.random() < 0.3,
    )
    # the catalog's deployments, and passthroughs' (the name, not the id, on some provider)
    deployments = sorted({m.deployment for m in catalog}
                         | {Deployment(rnd.choice("pqr"), m.name) for m in catalog})
    down = rnd.sample(deployments, min(len(deployments), rnd.choice((0, 0, 0, 1, 3, 6, 12, 24))))
    health = Health(providers_down={p: "outage" for p in "pqr" if rnd.random() < 0.1},
                    deployments_down={d: "cooling" for d in down})
    return facts, health


def decide(facts: RequestFacts, rules: RuleSet, latency: LatencyTracker, health: Health,
           rng: random.Random, rate: float, detail: bool) -> RouteDecision | SidecarError:
    try:
        return choose_route(facts, rules, latency, health=health, rng=rng, explore_rate=rate,
                            detail=detail)
    except SidecarError as e:
        return e


@pytest.mark.parametrize("seed", range(8))
def test_the_fast_path_decides_exactly_as_the_full_one(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = policy._ranked_full
    fell_back = []

    def counting(*args: Any) -> Any:
        fell_back.append(1)
        return full(*args)

    monkeypatch.setattr(policy, "_ranked_full", counting)
    rnd = random.Random(seed)
    auto = decided_fast = all_cooling = 0
    for _ in range(12):
        catalog = random_catalog(rnd, rnd.choice((3, 8, 20, 60, 120)))
        rules = random_rules(rnd, catalog)
        latency = random_latency(rnd, catalog)
        for _ in range(40):  # many calls per RuleSet: pools and skybands are reused
            facts, health = random_call(rnd, catalog)
            rate = rnd.choice((0.0, 0.3, 1.0))
            rng = random.Random(rnd.random())
            twin = random.Random()
            twin.setstate(rng.getstate())
            before = len(fell_back)
            fast = decide(facts, rules, latency, health, rng, rate, detail=False)
            took_fast_path = len(fell_back) == before
            ref = decide(facts, rules, latency, health, twin, rate, detail=True)
            context = (seed, facts, health)
            assert rng.getstate() == twin.getstate(), context  # the same draws
            if isinstance(ref, SidecarError):
                assert isinstance(fast, SidecarError), context
                assert (type(fast), fast.message, fast.param) == (type(ref), ref.message,
                                                                  ref.param), context
                continue
            assert isinstance(fast, RouteDecision), (context, fast)
            assert (fast.plan, fast.kind, fast.rule, fast.prefer, fast.tier, fast.app,
                    fast.cooling) == (ref.plan, ref.kind, ref.rule, ref.prefer, ref.tier,
                                      ref.app, ref.cooling), context
            assert fast.candidates == ref.candidates[:len(fast.candidates)], context
            if ref.kind == "auto" and ref.cooling:
                all_cooling += 1  # only the full path ranks models cooling down
            elif ref.kind == "auto":
                auto += 1
                decided_fast += took_fast_path
                assert len(fast.candidates) >= min(len(ref.candidates), MAX_PLAN), context
    assert auto > 100 and decided_fast >= 0.8 * auto, (auto, decided_fast)  # it was exercised
    assert all_cooling > 0


def test_nothing_eligible_is_the_same_error_with_every_exclusion() -> None:
    rnd = random.Random(11)
    catalog = random_catalog(rnd, 40)
    rules = parse_rules_text(PROVIDERS, path="r.yaml", catalog=catalog)
    facts = RequestFacts(model="auto", prefer="cheap", prompt_tokens=10**6)  # no context fits
    errors = []
    for detail in (False, True):
        with pytest.raises(SidecarError) as info:
            choose_route(facts, rules, LatencyTracker(), detail=detail)
        errors.append((type(info.value), info.value.message))
    assert errors[0] == errors[1]
    assert "model(s) on providers not configured" in errors[0][1]


def test_without_detail_an_auto_decision_carries_only_the_head() -> None:
    rnd = random.Random(5)
    catalog = random_catalog(rnd, 60)
    rules = parse_rules_text(PROVIDERS, path="r.yaml", catalog=catalog)
    facts = RequestFacts(model="auto", prefer="quality", prompt_tokens=100)
    fast = choose_route(facts, rules, LatencyTracker())
    full = choose_route(facts, rules, LatencyTracker(), detail=True)
    assert fast.plan == full.plan and fast.excluded == ()
    assert fast.candidates == full.candidates[:MAX_PLAN] and len(full.candidates) > MAX_PLAN
    assert full.excluded  # r's models, at least


def test_a_non_finite_catalog_number_takes_the_full_path() -> None:
    nan = ModelSpec(name="odd", provider="p", upstream_id="odd", tier="standard",
                    input_price=float("nan"), output_price=1.0, context=1000, quality=1.0)
    rules = parse_rules_text(PROVIDERS, path="r.yaml", catalog=Catalog.of([nan]))
    assert not policy._Index.of(rules).exact
    facts = RequestFacts(model="auto", prefer="cheap", tier="standard")
    assert choose_route(facts, rules, LatencyTracker()).plan[0].name == "odd"


def test_pools_and_targets_belong_to_one_rule_set() -> None:
    rnd = random.Random(3)
    catalog = random_catalog(rnd, 30)
    first = parse_rules_text(PROVIDERS, path="r.yaml", catalog=catalog)
    second = parse_rules_text(PROVIDERS, path="r.yaml", catalog=catalog)
    choose_route(RequestFacts(model="auto", prefer="cheap"), first, LatencyTracker())
    assert policy._Index.MEMO_KEY in first.memo and second.memo == {}
    assert first == second  # the memo is not compared


# --- the dominance relation and the skyband -------------------------------------------------

def random_specs(rnd: random.Random, n: int) -> list[ModelSpec]:
    return [m for m in random_catalog(rnd, n) if m.provider != "r"]


@pytest.mark.parametrize("prefer", ["cheap", "balanced", "quality", "coding"])
def test_a_dominator_ranks_first_on_every_call(prefer: str) -> None:
    """What makes the skyband exact: x dominates m => x's rank key is smaller, whatever the
    token counts (and their float arithmetic)."""
    rnd = random.Random(prefer)
    checked = 0
    for _ in range(40):
        specs = random_specs(rnd, 30)
        for x in specs:
            for m in specs:
                if x is m or not _dominates(prefer, x, m):
                    continue
                assert not _dominates(prefer, m, x)
                for prompt, output in ((0, 0), (0, 1), (1, 0), (120, 256), (10**6, 500),
                                       (rnd.randrange(10**5), rnd.randrange(501))):
                    ranked = _rank([Candidate(m, m.expected_cost(prompt, output)),
                                    Candidate(x, x.expected_cost(prompt, output))], prefer)
                    assert ranked[0].spec is x, (prefer, x, m, prompt, output)
                    checked += 1
    assert checked > 1000


@pytest.mark.parametrize("prefer", ["cheap", "balanced", "quality", "coding"])
def test_the_skyband_is_the_models_with_fewer_than_k_dominators(prefer: str) -> None:
    rnd = random.Random(f"band-{prefer}")
    pruned = 0
    for _ in range(30):
        specs = random_specs(rnd, rnd.choice((5, 30, 90)))
        band = skyband(specs, prefer)
        brute = [m for m in specs if sum(_dominates(prefer, x, m) for x in specs) < SKYBAND_K]
        assert sorted(s.name for s in band) == sorted(s.name for s in brute)
        pruned += len(specs) - len(band)
    assert pruned > 0  # the test catalogs do leave models out


@pytest.mark.parametrize("prefer", ["cheap", "balanced", "quality", "coding"])
def test_every_model_outside_the_band_has_k_dominators_inside(prefer: str) -> None:
    rnd = random.Random(f"outside-{prefer}")
    for _ in range(20):
        specs = random_specs(rnd, 60)
        band = skyband(specs, prefer)
        inside = {s.name for s in band}
        for m in specs:
            if m.name not in inside:
                assert sum(_dominates(prefer, x, m) for x in band) >= SKYBAND_K
