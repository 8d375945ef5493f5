"""sidecar/policy.py: choose_route on a small catalog where every prefer has an obvious winner."""

from __future__ import annotations

import random
from typing import Any

import pytest

from sidecar.core.config.catalog import Catalog, parse_models
from sidecar.core.config.rules import RuleSet, parse_rules_text
from sidecar.core.errors import NoEligibleModelError, NoRouteError, UnknownModelError
from sidecar.core.facts import RequestFacts
from sidecar.core.routing.decision import MAX_PLAN, Exclusion, Health, RouteDecision, Target
from sidecar.core.routing.latency import STALE_AFTER, LatencyTracker
from sidecar.core.routing.policy import choose_route
from sidecar.core.vocabulary import Deployment

ALL = ["tools", "vision", "json_schema"]


def model(name: str, tier: str, provider: str, price: float, quality: float, coding: float,
          ttft: float, tps: float, supports: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "tier": tier, "provider": provider, "quality": quality,
            "coding": coding, "price": {"input": price, "output": price}, "context": 100_000,
            "latency": {"ttft": ttft, "tokens_per_second": tps}, "supports": supports, **extra}


CATALOG = Catalog.of(parse_models([
    model("cheapo", "economy", "p", 0.1, 10, 10, 0.05, 10, ["tools"]),
    model("speedy", "standard", "p", 1, 20, 20, 0.1, 1000, ALL),
    model("value", "standard", "q", 0.5, 60, 30, 0.5, 200, ["tools", "json_schema"]),
    model("smart", "premium", "p", 10, 90, 50, 3, 30, ALL, id="vendor/smart-v1", context=200_000),
    model("coder", "premium", "q", 8, 60, 95, 3, 30, ["tools", "json_schema"], context=50_000,
          max_output=4096),
    model("orphan", "standard", "r", 0.01, 99, 99, 0.01, 5000, ALL),  # provider not configured
]))
PROVIDERS = """
intercept: [{host: api.openai.com, provider: p}, {host: q.example, provider: q}]
providers:
  p: {type: openai, base_url: https://p.example/v1}
  q: {type: openai, base_url: https://q.example/v1}
"""


def rules(extra: str = "") -> RuleSet:
    return parse_rules_text(PROVIDERS + extra, path="r.yaml", catalog=CATALOG)


def route(**facts: Any) -> RouteDecision:
    """The decision with ``detail`` (every candidate and exclusion), checked against the fast
    path: the same plan and intent, or the same error (each path with the same rng state)."""
    options = {k: facts.pop(k) for k in ("health", "rng", "explore_rate", "latency", "rules")
               if k in facts}
    facts.setdefault("model", "auto")
    facts.setdefault("prompt_tokens", 1000)
    call = RequestFacts(**facts)
    ruleset = options.pop("rules", None) or rules()
    latency = options.pop("latency", None) or LatencyTracker()
    rng = options.pop("rng", None)
    twin = None if rng is None else random.Random()
    if twin is not None:
        twin.setstate(rng.getstate())
    try:
        fast = choose_route(call, ruleset, latency, rng=twin, **options)
    except Exception as e:  # the detailed path must fail the same way
        with pytest.raises(type(e)) as info:
            choose_route(call, ruleset, latency, rng=rng, detail=True, **options)
        assert str(info.value) == str(e)
        raise
    detailed = choose_route(call, ruleset, latency, rng=rng, detail=True, **options)
    assert (fast.plan, fast.kind, fast.prefer, fast.tier, fast.rule, fast.app, fast.cooling) == (
        detailed.plan, detailed.kind, detailed.prefer, detailed.tier, detailed.rule, detailed.app,
        detailed.cooling)
    assert fast.candidates == detailed.candidates[:len(fast.candidates)]
    return detailed


def at(name: str) -> Deployment:
    """The deployment of a catalog model: what health and latency are keyed by."""
    return CATALOG.models[name].deployment


def plan(decision: RouteDecision) -> list[str]:
    return [t.name for t in decision.plan]


@pytest.mark.parametrize("prefer, tier, expected", [
    ("cheap", None, ["cheapo", "value", "speedy"]),
    ("fast", None, ["speedy", "value", "coder"]),  # coder ties smart on latency; it is cheaper
    ("quality", None, ["smart", "value", "coder"]),  # value ties coder on quality; it is cheaper
    ("coding", None, ["coder", "smart", "value"]),
    ("balanced", None, ["value", "speedy"]),  # balanced without a tier: the default tier
    ("quality", "economy", ["cheapo"]),
    ("cheap", "premium", ["coder", "smart"]),
    ("coding", "standard", ["value", "speedy"]),
])
def test_each_prefer_and_tier(prefer: str, tier: str | None, expected: list[str]) -> None:
    decision = route(prefer=prefer, tier=tier)
    assert plan(decision) == expected
    assert decision.kind == "auto"
    if tier:
        assert {c.spec.tier for c in decision.candidates} == {tier}


def test_tier_filtering_leaves_other_tiers_out_of_the_exclusions_too() -> None:
    decision = route(prefer="cheap", tier="standard")
    assert [c.spec.name for c in decision.candidates] == ["value", "speedy"]
    assert decision.excluded == (Exclusion("orphan", "provider 'r' is not configured",
                                           "unconfigured"),)


@pytest.mark.parametrize("requested, prefer, tier, winner", [
    ("premium", "cheap", None, "coder"),
    ("premium", "cheap", "economy", "coder"),  # the model names the tier; the request's is ignored
    ("economy", None, None, "cheapo"),  # default prefer (balanced), the model's tier
    ("standard", "quality", "premium", "value"),
])
def test_a_tier_name_as_the_model(requested: str, prefer: str | None, tier: str | None,
                                  winner: str) -> None:
    decision = route(model=requested, prefer=prefer, tier=tier)
    assert (decision.kind, decision.tier, plan(decision)[0]) == ("auto", requested, winner)


PQ = "defaults: {tier: premium, prefer: quality}\n"


@pytest.mark.parametrize("route_value, defaults, prefer, tier, expected", [
    (None, "", None, None, ("balanced", "standard")),
    (None, "", "cheap", None, ("cheap", None)),
    (None, "", "balanced", None, ("balanced", "standard")),
    (None, "", None, "premium", ("balanced", "premium")),
    (None, PQ, None, None, ("quality", "premium")),
    (None, PQ, "fast", None, ("fast", None)),
    (None, PQ, "balanced", None, ("balanced", "premium")),
    ("{prefer: quality}", "", "cheap", "economy", ("quality", "economy")),
    ("{tier: premium}", "", "cheap", None, ("cheap", "premium")),
    ("{tier: premium}", "", None, "economy", ("balanced", "premium")),
    ("{prefer: coding, tier: economy}", "", "cheap", "premium", ("coding", "economy")),
    ("{prefer: cheap}", "", None, None, ("cheap", None)),
    ("standard", "", "fast", "economy", ("fast", "standard")),
])
def test_precedence_route_then_request_then_defaults(
    route_value: str | None, defaults: str, prefer: str | None, tier: str | None,
    expected: tuple[str, str | None],
) -> None:
    apps = f"apps:\n  - {{name: a, routes: {{auto: {route_value}}}}}\n" if route_value else ""
    decision = route(prefer=prefer, tier=tier, rules=rules(defaults + apps))
    assert (decision.prefer, decision.tier) == expected


PIN = "apps:\n  - name: a\n    routes:\n      gpt-4o: {model: smart, fallbacks: [coder, cheapo]}\n"


@pytest.mark.parametrize("prefer, tier", [(None, None), ("cheap", "economy"), ("fast", None)])
def test_a_pin_and_its_fallbacks_ignore_the_requests_intent(prefer: str | None,
                                                            tier: str | None) -> None:
    decision = route(model="gpt-4o", prefer=prefer, tier=tier, rules=rules(PIN))
    assert decision.plan == (Target("p", "vendor/smart-v1", CATALOG.models["smart"]),
                             Target("q", "coder", CATALOG.models["coder"]),
                             Target("p", "cheapo", CATALOG.models["cheapo"]))
    assert (decision.kind, decision.reason, decision.rule) == ("pin", "pin",
                                                               "apps[0].routes.gpt-4o")
    assert decision.prefer is None and decision.candidates == ()


def test_a_pin_that_cannot_serve_falls_to_its_fallbacks_or_refuses() -> None:
    decision = route(model="gpt-4o", needs=frozenset({"vision"}), rules=rules(PIN))
    assert plan(decision) == ["smart"]
    assert [e.model for e in decision.excluded] == ["coder", "cheapo"]
    pin_only = "apps:\n  - name: a\n    routes: {gpt-4o: coder}\n"
    with pytest.raises(NoEligibleModelError, match=r"the pinned model 'coder'.*does not support "
                       r"vision"):
        route(model="gpt-4o", needs=frozenset({"vision"}), rules=rules(pin_only))


def test_pin_plans_are_cut_at_max_plan() -> None:
    many = ("apps:\n  - name: a\n    routes:\n      gpt-4o: {model: smart, "
            "fallbacks: [coder, cheapo, value, speedy]}\n")
    assert plan(route(model="gpt-4o", rules=rules(many))) == ["smart", "coder", "cheapo"]
    assert MAX_PLAN == 3


def test_a_pin_plan_names_each_model_once() -> None:
    repeats = ("apps:\n  - name: a\n    routes:\n      gpt-4o: {model: smart, "
               "fallbacks: [vendor/smart-v1, coder, coder, cheapo]}\n")
    assert plan(route(model="gpt-4o", rules=rules(repeats))) == ["smart", "coder", "cheapo"]
    auto = ("apps:\n  - name: a\n    routes:\n      '*': {prefer: quality, "
            "fallbacks: [coder, coder]}\n")
    assert plan(route(rules=rules(auto))) == ["smart", "coder"]


@pytest.mark.parametrize("requested, target", [
    ("smart", Target("p", "vendor/smart-v1", CATALOG.models["smart"])),
    ("vendor/smart-v1", Target("p", "vendor/smart-v1", CATALOG.models["smart"])),
    ("my-finetune", Target("p", "my-finetune", None)),  # unknown: passes through unchanged
    # provider not configured: passes through to p, another deployment than the catalog's
    ("orphan", Target("p", "orphan", None)),
])
def test_without_a_route(requested: str, target: Target) -> None:
    decision = route(model=requested)
    assert decision.plan == (target,)
    assert decision.kind == ("passthrough" if target.spec is None else "pin")
    assert decision.reason == decision.kind and decision.app == "default"


def test_passthrough_goes_to_the_provider_of_the_intercepted_host() -> None:
    assert route(model="my-finetune", host="q.example").plan == (Target("q", "my-finetune"),)
    with pytest.raises(NoRouteError, match="'q' is unavailable: outage"):
        route(model="my-finetune", host="q.example", health=Health(providers_down={"q": "outage"}))


PASS_ALL = "apps:\n  - name: a\n    routes: {'*': passthrough}\n"


@pytest.mark.parametrize("requested, host, target", [
    # the catalog's smart is served by p under the id vendor/smart-v1: that very deployment
    ("vendor/smart-v1", "api.openai.com", Target("p", "vendor/smart-v1", CATALOG.models["smart"])),
    ("smart", "api.openai.com", Target("p", "smart", None)),  # p, but not the catalog's id
    ("value", "api.openai.com", Target("p", "value", None)),  # the catalog's value is on q
    ("value", "q.example", Target("q", "value", CATALOG.models["value"])),
])
def test_a_passthrough_carries_the_catalog_entry_only_of_its_own_deployment(
    requested: str, host: str, target: Target
) -> None:
    decision = route(model=requested, host=host, rules=rules(PASS_ALL))
    assert (decision.kind, decision.plan) == ("passthrough", (target,))
    assert decision.target.deployment == Deployment(target.provider, requested)


def test_health_and_latency_belong_to_the_deployment_not_the_name() -> None:
    """A passthrough of 'value' to p failing (its deployment cooling down, penalised) leaves
    the catalog's value, served by q, alone."""
    passthrough = Deployment("p", "value")
    tracker = LatencyTracker(clock=Clock())
    for _ in range(3):
        tracker.penalize(passthrough)
    health = Health(deployments_down={passthrough: "cooling down after 3 failures in a row"})
    assert plan(route(prefer="quality", tier="standard", health=health))[0] == "value"
    fast = route(prefer="fast", tier="standard", health=health, latency=tracker)
    assert plan(fast) == ["speedy", "value"]
    assert all(not c.latency.observed for c in fast.candidates if c.latency)
    excluded = route(prefer="quality", tier="standard", health=health).excluded
    assert [e.kind for e in excluded] == ["unconfigured"]  # orphan only


@pytest.mark.parametrize("intent", [{"prefer": "cheap"}, {"tier": "economy"}])
def test_an_unknown_model_with_intent_is_a_404(intent: dict[str, str]) -> None:
    with pytest.raises(UnknownModelError) as info:
        route(model="my-finetune", **intent)
    assert (info.value.status_code, info.value.code, info.value.param) == (
        404, "model_not_found", "model")


def test_intent_on_a_model_whose_provider_is_unconfigured_says_so() -> None:
    with pytest.raises(UnknownModelError) as info:
        route(model="orphan", prefer="cheap")
    assert "not in the sidecar's catalog" not in info.value.message
    assert "'r'" in info.value.message


def test_a_passthrough_route_does_not_swallow_auto() -> None:
    app = "apps:\n  - name: a\n    routes: {'*': passthrough}\n"
    assert route(model="gpt-4o", rules=rules(app)).kind == "passthrough"
    assert route(model="auto", prefer="cheap", rules=rules(app)).plan[0].name == "cheapo"
    assert route(model="economy", rules=rules(app)).tier == "economy"


@pytest.mark.parametrize("facts, prefer, excluded, winner", [
    ({"needs": frozenset({"vision"})}, "cheap",
     {"cheapo": "does not support vision", "value": "does not support vision",
      "coder": "does not support vision"}, "speedy"),
    ({"needs": frozenset({"json_schema", "vision"})}, "cheap",
     {"cheapo": "does not support json_schema, vision", "value": "does not support vision",
      "coder": "does not support vision"}, "speedy"),
    ({"needs": frozenset({"json_schema"})}, "cheap",
     {"cheapo": "does not support json_schema"}, "value"),
    ({"prompt_tokens": 60_000}, "coding",
     {"coder": "needs ~60000 tokens; context window is 50000"}, "smart"),
    ({"prompt_tokens": 49_000, "max_tokens": 2000}, "coding",
     {"coder": "needs ~51000 tokens; context window is 50000"}, "smart"),
    ({"max_tokens": 8000}, "coding",
     {"coder": "max_tokens 8000 exceeds its output limit 4096"}, "smart"),
])
def test_capability_and_size_filtering(facts: dict[str, Any], prefer: str,
                                       excluded: dict[str, str], winner: str) -> None:
    decision = route(prefer=prefer, **facts)
    reasons = {e.model: e.reason for e in decision.excluded if e.kind == "request"}
    assert reasons == excluded
    assert plan(decision)[0] == winner
    assert not set(excluded) & {c.spec.name for c in decision.candidates}


def test_health_excludes_providers_down_and_deployments_cooling_down() -> None:
    health = Health(providers_down={"q": "rate limited (429)"},
                    deployments_down={at("smart"): "cooling"})
    decision = route(prefer="coding", health=health)
    down = {e.model: (e.kind, e.reason) for e in decision.excluded if e.kind != "unconfigured"}
    assert down == {"value": ("down", "rate limited (429)"),
                    "coder": ("down", "rate limited (429)"), "smart": ("cooling", "cooling")}
    assert plan(decision) == ["speedy", "cheapo"] and not decision.cooling


def cooling(*names: str) -> Health:
    return Health(deployments_down={at(n): "cooling down after 3 failures in a row"
                                    for n in names})


PIN_ALONE = "apps:\n  - name: a\n    routes: {gpt-4o: smart}\n"
PIN_ONE = "apps:\n  - name: a\n    routes:\n      gpt-4o: {model: smart, fallbacks: [coder]}\n"


def test_a_pin_alone_cooling_down_is_tried_rather_than_refused() -> None:
    decision = route(model="gpt-4o", rules=rules(PIN_ALONE), health=cooling("smart"))
    assert (plan(decision), decision.cooling, decision.excluded) == (["smart"], True, ())
    implied = route(model="smart", health=cooling("smart"))  # no route: the catalog's pin
    assert (implied.kind, plan(implied), implied.cooling) == ("pin", ["smart"], True)


def test_a_pin_with_a_fallback_drops_its_primary_while_it_cools_down() -> None:
    """The primary is left out (not tried last): the plan has an alternative."""
    decision = route(model="gpt-4o", rules=rules(PIN_ONE), health=cooling("smart"))
    assert (plan(decision), decision.cooling) == (["coder"], False)
    assert decision.excluded == (Exclusion("smart", "cooling down after 3 failures in a row",
                                           "cooling"),)
    both = route(model="gpt-4o", rules=rules(PIN_ONE), health=cooling("smart", "coder"))
    assert (plan(both), both.cooling, both.excluded) == (["smart", "coder"], True, ())


def test_only_models_that_could_serve_the_call_are_tried_while_cooling_down() -> None:
    # coder lacks vision; smart is cooling down: smart is tried
    decision = route(model="gpt-4o", rules=rules(PIN_ONE), needs=frozenset({"vision"}),
                     health=cooling("smart"))
    assert (plan(decision), decision.cooling) == (["smart"], True)
    coder_alone = "apps:\n  - name: a\n    routes: {gpt-4o: coder}\n"
    with pytest.raises(NoEligibleModelError, match="does not support vision"):
        route(model="gpt-4o", rules=rules(coder_alone), needs=frozenset({"vision"}),
              health=cooling("coder"))  # it could never serve this call: still the 400


@pytest.mark.parametrize("prefer", ["quality", "cheap", "fast", "coding", "balanced"])
def test_auto_with_every_candidate_cooling_down_ranks_them(prefer: str) -> None:
    fine = route(prefer=prefer, tier="premium")
    decision = route(prefer=prefer, tier="premium", health=cooling("smart", "coder"))
    assert decision.cooling and plan(decision) == plan(fine)  # in their usual order
    assert [c.spec.name for c in decision.candidates] == [c.spec.name for c in fine.candidates]
    assert [e.kind for e in decision.excluded] == []  # ranked, not excluded
    one = route(prefer=prefer, tier="premium", health=cooling("smart"))
    assert (plan(one), one.cooling) == (["coder"], False)


def test_auto_route_fallbacks_that_are_not_cooling_serve_first() -> None:
    app = ("apps:\n  - name: a\n    routes:\n      '*': {tier: economy, "
           "fallbacks: [value, speedy]}\n")
    assert plan(route(rules=rules(app))) == ["cheapo", "value", "speedy"]
    decision = route(rules=rules(app), health=cooling("cheapo"))
    assert (plan(decision), decision.cooling) == (["value", "speedy"], False)
    decision = route(rules=rules(app), health=cooling("cheapo", "value"))
    assert (plan(decision), decision.cooling) == (["speedy"], False)
    decision = route(rules=rules(app), health=cooling("cheapo", "value", "speedy"))
    assert (plan(decision), decision.cooling) == (["cheapo", "value", "speedy"], True)


def test_a_provider_down_still_refuses_even_beside_cooling_models() -> None:
    p_down = Health(providers_down={"p": "no key"},
                    deployments_down={at("coder"): "cooling down"})
    with pytest.raises(NoRouteError, match="pinned model 'smart' is available"):
        route(model="gpt-4o", rules=rules(PIN_ALONE), health=p_down)
    decision = route(tier="premium", prefer="quality", health=p_down)  # smart is on p
    assert (plan(decision), decision.cooling) == (["coder"], True)
    both = Health(providers_down={"p": "no key", "q": "no key"},
                  deployments_down={at("smart"): "cooling", at("coder"): "cooling"})
    with pytest.raises(NoRouteError, match="No model in tier premium is available right now"):
        route(tier="premium", health=both)
    with pytest.raises(NoRouteError):
        route(model="gpt-4o", rules=rules(PIN_ONE), health=both)


def test_nothing_up_is_a_503_nothing_capable_is_a_400() -> None:
    down = Health(providers_down={"p": "outage", "q": "outage"})
    with pytest.raises(NoRouteError) as info:
        route(tier="premium", health=down)
    assert (info.value.status_code, info.value.code) == (503, "no_available_model")
    assert "No model in tier premium is available right now" in info.value.message
    with pytest.raises(NoEligibleModelError) as refused:
        route(tier="economy", needs=frozenset({"vision"}))
    assert refused.value.status_code == 400
    assert refused.value.message == ("No model in tier economy can serve this request — "
                                     "cheapo: does not support vision.")


def test_a_request_no_model_could_ever_serve_is_a_400_even_when_one_is_down() -> None:
    with pytest.raises(NoEligibleModelError):
        route(tier="premium", prompt_tokens=300_000, health=Health(deployments_down={at("coder"): "x"}))


def test_route_fallbacks_form_the_tail_of_an_auto_plan() -> None:
    app = ("apps:\n  - name: a\n    routes:\n      '*': {prefer: quality, "
           "fallbacks: [cheapo, smart, coder]}\n")
    assert plan(route(rules=rules(app))) == ["smart", "cheapo", "coder"]
    assert plan(route(rules=rules(app), needs=frozenset({"vision"}))) == ["smart"]


@pytest.mark.parametrize("prompt_tokens, max_tokens, winner", [
    (10_000, 10, "inlite"),  # a long prompt, a short answer: cheap input wins
    (10, 4000, "flat"),  # a short prompt, a long answer: cheap output wins
])
def test_cheap_is_the_cost_of_this_request(prompt_tokens: int, max_tokens: int,
                                           winner: str) -> None:
    cat = Catalog.of(parse_models([
        {"name": "inlite", "provider": "p", "tier": "standard", "context": 100_000,
         "price": {"input": 0.1, "output": 10}},
        {"name": "flat", "provider": "p", "tier": "standard", "context": 100_000,
         "price": {"input": 1, "output": 1}},
    ]))
    decision = route(prefer="cheap", prompt_tokens=prompt_tokens, max_tokens=max_tokens,
                     rules=parse_rules_text(PROVIDERS, path="r.yaml", catalog=cat))
    assert plan(decision)[0] == winner
    output = min(max_tokens, 500)
    for c in decision.candidates:
        assert c.cost == pytest.approx(c.spec.expected_cost(prompt_tokens, output))


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_fast_uses_observed_latency_over_priors() -> None:
    tracker = LatencyTracker(clock=Clock())
    assert plan(route(prefer="fast", latency=tracker))[0] == "speedy"
    for _ in range(3):
        tracker.record(at("speedy"), duration=30.0, output_tokens=100)  # 0.3 s per token
    decision = route(prefer="fast", latency=tracker)
    assert plan(decision)[0] == "value"
    speedy = next(c for c in decision.candidates if c.spec.name == "speedy")
    assert speedy.latency.observed and speedy.latency.samples == 3
    assert speedy.latency.seconds == pytest.approx(150.0)


def test_fast_for_streams_ranks_by_time_to_first_token() -> None:
    assert plan(route(prefer="fast", stream=True))[:2] == ["cheapo", "speedy"]


def fresh_except(*stale: str) -> LatencyTracker:
    clock = Clock()
    tracker = LatencyTracker(clock=clock)
    for name in ("cheapo", "speedy", "value", "smart", "coder"):
        if name not in stale:
            tracker.record(at(name), duration=1.0)
    clock.now += STALE_AFTER / 2
    return tracker


@pytest.mark.parametrize("stale, rate, prefer, winner", [
    (("smart",), 1.0, "fast", "smart"),
    (("smart",), 0.0, "fast", "speedy"),
    ((), 1.0, "fast", "speedy"),  # nothing stale: nothing to explore
    (("smart",), 1.0, "cheap", "cheapo"),  # exploration is for prefer=fast only
])
def test_exploration_promotes_a_stale_model(stale: tuple[str, ...], rate: float, prefer: str,
                                            winner: str) -> None:
    decision = route(prefer=prefer, latency=fresh_except(*stale), rng=random.Random(0),
                     explore_rate=rate)
    assert plan(decision)[0] == winner


def test_without_an_rng_the_choice_is_deterministic() -> None:
    assert plan(route(prefer="fast", latency=fresh_except("smart"), explore_rate=1.0))[0] == (
        "speedy")


@pytest.mark.parametrize("facts, reason", [
    ({"prefer": "cheap"}, "auto prefer=cheap tier=any"),
    ({}, "auto prefer=balanced tier=standard"),
    ({"model": "premium", "prefer": "coding"}, "auto prefer=coding tier=premium"),
    ({"model": "smart"}, "pin"),
    ({"model": "my-finetune"}, "passthrough"),
])
def test_reason(facts: dict[str, Any], reason: str) -> None:
    assert route(**facts).reason == reason


@pytest.mark.parametrize("extra, proxy_user, shadow", [
    ("apps:\n  - {name: a, match: {proxy_user: a}, shadow: true}\n", "a", True),
    ("apps:\n  - {name: a, match: {proxy_user: a}, shadow: true}\n", "b", False),
    ("shadow: true\napps:\n  - {name: a, match: {proxy_user: a}}\n", "b", True),
    ("", None, False),
])
def test_shadow_from_the_app_or_the_whole_file(extra: str, proxy_user: str | None,
                                               shadow: bool) -> None:
    assert route(proxy_user=proxy_user, rules=rules(extra)).shadow is shadow


def test_the_app_is_matched_unless_given() -> None:
    app_rules = rules("apps:\n  - {name: a, match: {proxy_user: a}, routes: {gpt-4o: economy}}\n")
    assert route(model="gpt-4o", proxy_user="a", rules=app_rules).tier == "economy"
    assert route(model="gpt-4o", rules=app_rules).app == "default"
    given = choose_route(RequestFacts(model="gpt-4o"), app_rules, LatencyTracker(),
                         app=app_rules.apps[0])
    assert (given.app, given.tier) == ("a", "economy")


HARD = {"messages": [
    {"role": "system", "content": "You are a senior distributed-systems architect."},
    {"role": "user", "content": "Prove that this consensus protocol is safe under network "
     "partitions, find the root cause of the split-brain we saw, and analyze the trade-offs of "
     "three fixes step by step."}]}
EASY = {"messages": [{"role": "user", "content": "hi there!"}]}


@pytest.mark.parametrize("body, tier", [(EASY, "economy"), (HARD, "premium")])
def test_tier_auto_reads_the_conversation(body: dict[str, Any], tier: str) -> None:
    decision = route(tier="auto", prefer="quality", body=body)
    assert decision.auto is not None and decision.auto.tier == tier == decision.tier
    assert decision.reason == f"auto prefer=quality tier=auto:{tier}"
    assert all(t.spec is not None and t.spec.tier == tier for t in decision.plan)


def test_tier_auto_thresholds_come_from_the_rules() -> None:
    lenient = rules("defaults: {tier: auto, prefer: quality, auto_tier: {standard: 0, "
                    "premium: 1}}\n")
    decision = route(body=EASY, rules=lenient)  # no tier anywhere: the defaults say auto
    assert decision.auto is not None and decision.tier == "premium"


def test_a_pinned_or_explicit_tier_is_never_auto_scored() -> None:
    assert route(tier="economy", body=HARD).auto is None
