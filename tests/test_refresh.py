"""sidecar/core/config/refresh.py: price sources, discovery listings and scores merged into the
catalog while the sidecar runs, without letting a broken source poison routing."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.core.config import refresh
from sidecar.core.config.catalog import (
    CAPABILITIES,
    Catalog,
    load_builtin_catalog,
    parse_catalog_text,
    parse_models,
)
from sidecar.core.config.offers import Listing, Offer, Score
from sidecar.core.config.refresh import CatalogUpdate, catalog_entries, merge_catalog, tier_by_price
from sidecar.core.config.rules import parse_rules_text
from sidecar.core.config.sources import read_litellm, read_openrouter
from sidecar.core.facts import RequestFacts
from sidecar.core.routing.latency import LatencyTracker
from sidecar.core.routing.policy import choose_route

DATA = Path(__file__).parent / "data" / "sources"
AS_OF = "2026-11-01"
CONFIGURED = ("openai", "bedrock", "openrouter")


def entry(name: str, provider: str, uid: str, tier: str, price: tuple[float, float],
          **extra: Any) -> dict[str, Any]:
    return {"name": name, "provider": provider, "id": uid, "tier": tier, "context": 128000,
            "price": {"input": price[0], "output": price[1]}, **extra}


BASE = Catalog.of(parse_models([
    entry("gpt-4o", "openai", "gpt-4o", "premium", (2.5, 10.0), quality=11.2, coding=33.2,
          supports=["tools", "vision", "json_schema"],
          source="prices/limits: LiteLLM key gpt-4o; quality: AA index",
          as_of="prices 2026-08-01; quality 2026-07-05"),
    entry("mini", "openai", "gpt-4o-mini", "standard", (0.15, 0.6), quality=7.0),
    entry("haiku", "bedrock", "us.anthropic.claude-haiku-4-5", "standard", (1.1, 5.5),
          quality=30.0),
    entry("old-claude", "bedrock", "anthropic.claude-v2", "standard", (8.0, 24.0)),
    entry("llama", "bedrock", "meta.llama3-70b", "economy", (0.72, 0.72), quality=9.0),
    entry("llama2", "bedrock", "meta.llama2-13b", "economy", (0.75, 1.0)),
    entry("orphan", "r", "orphan-1", "economy", (0.1, 0.1)),
]))
BEDROCK = Listing(
    provider="bedrock",
    ids=frozenset({"anthropic.claude-haiku-4-5", "meta.llama3-70b", "anthropic.claude-v2",
                   "amazon.nova-9"}),
    legacy=frozenset({"anthropic.claude-v2"}),
    profiles={"anthropic.claude-haiku-4-5": "us.anthropic.claude-haiku-4-5",
              "meta.llama3-70b": "us.meta.llama3-70b"})


def offer(key: str, inp: float = 2.0, out: float = 8.0, **extra: Any) -> Offer:
    return Offer(id=key, input_price=inp, output_price=out, **extra)


def merge(base: Catalog = BASE, *, offers: Sequence[tuple[str, Mapping[str, Offer]]] = (),
          listings: Mapping[str, Listing] | None = None, scores: Mapping[str, Score] | None = None,
          bound: Mapping[str, str] | None = None, providers: Collection[str] = CONFIGURED
          ) -> CatalogUpdate:
    return merge_catalog(base, offers=offers, listings=listings or {}, scores=scores or {},
                         bound=bound or {}, providers=providers, as_of=AS_OF)


def model(update: CatalogUpdate, name: str) -> Any:
    return update.catalog.models[name]


def test_nothing_given_changes_nothing() -> None:
    update = merge()
    assert list(update.catalog) == list(BASE)
    assert (update.changes, update.rejected, update.unpriced) == ([], [], [])


def test_prices_refresh_from_the_first_matching_source_and_keep_capabilities_and_scores() -> None:
    update = merge(offers=[
        ("litellm", {"gpt-4o": offer("gpt-4o", 2.0, 8.0, cache_read_price=1.0, context=100000,
                                     supports=CAPABILITIES)}),
        ("other", {"gpt-4o": offer("gpt-4o", 3.0, 9.0), "gpt-4o-mini": offer("gpt-4o-mini", 0.2, 0.8)}),
    ])
    gpt4o = model(update, "gpt-4o")
    assert (gpt4o.input_price, gpt4o.output_price, gpt4o.cache_read_price) == (2.0, 8.0, 1.0)
    assert (gpt4o.context, gpt4o.max_output) == (100000, None)  # no max_output given: kept
    assert gpt4o.supports == frozenset({"tools", "vision", "json_schema"})  # not the claimed set
    assert (gpt4o.quality, gpt4o.coding, gpt4o.tier) == (11.2, 33.2, "premium")
    assert gpt4o.source == "prices: litellm key 'gpt-4o'; quality: AA index"
    assert gpt4o.as_of == "prices 2026-11-01; quality 2026-07-05"
    assert model(update, "mini").source == "prices: other key 'gpt-4o-mini'"
    assert update.changes == [
        "gpt-4o: input 2.5 -> 2", "gpt-4o: output 10 -> 8", "gpt-4o: cache_read none -> 1",
        "gpt-4o: context 128000 -> 100000", "mini: input 0.15 -> 0.2", "mini: output 0.6 -> 0.8"]


@pytest.mark.parametrize("keys, uid, provider, expected", [
    (["gpt-4o", "openai/gpt-4o"], "gpt-4o", "openai", "gpt-4o"),  # the id itself first
    (["azure/gpt-4o", "openai/gpt-4o"], "gpt-4o", "openai", "openai/gpt-4o"),
    (["azure/gpt-4o", "openrouter/openai/gpt-4o"], "gpt-4o", "openai", "openrouter/openai/gpt-4o"),
    (["azure_ai/gpt-4o", "azure/gpt-4o"], "gpt-4o", "openai", "azure/gpt-4o"),  # the shortest
    (["gpt-4o-mini", "openai/gpt-4o-2024-08-06"], "gpt-4o", "openai", None),  # no partial ids
    (["openai.gpt-4o", "openai-gpt-4o"], "gpt-4o", "openai", None),  # only "/" separates
    (["bedrock/converse/us.x-1", "bedrock/us.x-1"], "us.x-1", "bedrock", "bedrock/us.x-1"),
    (["Bedrock/eu/us.x-1", "vertex/us.x-1"], "us.x-1", "bedrock", "Bedrock/eu/us.x-1"),
])
def test_which_key_prices_a_model(keys: list[str], uid: str, provider: str,
                                  expected: str | None) -> None:
    base = Catalog.of(parse_models([entry("m", provider, uid, "premium", (2.5, 10.0))]))
    update = merge(base, offers=[("src", {k: offer(k) for k in keys})])
    assert model(update, "m").source == (None if expected is None else f"prices: src key {expected!r}")


@pytest.mark.parametrize("inp, out, accepted", [
    (0.25, 10.0, True),  # exactly 10x cheaper: accepted
    (0.24, 10.0, False),
    (25.0, 10.0, True),
    (25.1, 10.0, False),
    (2.5, 101.0, False),
    (2.5, 0.9, False),
])
def test_a_price_more_than_10x_off_is_rejected(inp: float, out: float, accepted: bool) -> None:
    update = merge(offers=[("litellm", {"gpt-4o": offer("gpt-4o", inp, out, context=4096)})])
    gpt4o = model(update, "gpt-4o")
    assert (gpt4o == BASE.models["gpt-4o"]) is not accepted
    if accepted:
        assert (gpt4o.input_price, gpt4o.output_price, gpt4o.context) == (inp, out, 4096)
    else:
        assert gpt4o == BASE.models["gpt-4o"]  # every number kept, context too
        assert update.changes == [] and len(update.rejected) == 1
        assert update.rejected[0].startswith("gpt-4o: litellm key 'gpt-4o' says ")
        assert update.rejected[0].endswith(": more than 10x, kept the catalog's numbers")


def test_the_rejection_names_each_price_that_jumped() -> None:
    update = merge(offers=[("s", {"gpt-4o": offer("gpt-4o", 0.01, 1000.0)})])
    assert update.rejected == ["gpt-4o: s key 'gpt-4o' says input 2.5 -> 0.01, output 10 -> 1000: "
                               "more than 10x, kept the catalog's numbers"]


def test_a_listing_removes_legacy_and_unlisted_models_and_maps_profiles() -> None:
    update = merge(listings={"bedrock": BEDROCK, "r": Listing("r", frozenset())},
                   offers=[("litellm", {"bedrock/anthropic.claude-haiku-4-5": offer("x", 1.0, 5.0),
                                        "us.meta.llama3-70b": offer("y", 0.7, 0.7)})])
    names = set(update.catalog.models)
    assert {"old-claude", "llama2"}.isdisjoint(names)
    assert {"gpt-4o", "mini", "haiku", "llama", "orphan"} <= names  # openai: no listing; r: not
    #                                                                 configured
    assert "old-claude removed: provider bedrock lists anthropic.claude-v2 as LEGACY" in update.changes
    assert "llama2 removed: provider bedrock does not offer meta.llama2-13b" in update.changes
    llama = model(update, "llama")
    assert llama.upstream_id == "us.meta.llama3-70b" and llama.deployment.model == llama.upstream_id
    assert "llama: id meta.llama3-70b -> us.meta.llama3-70b" in update.changes
    haiku = model(update, "haiku")  # called by its profile; priced by the listed (base) id
    assert (haiku.upstream_id, haiku.input_price) == ("us.anthropic.claude-haiku-4-5", 1.0)
    assert haiku.source == "prices: litellm key 'bedrock/anthropic.claude-haiku-4-5'"
    assert update.unpriced == ["amazon.nova-9 on bedrock"]  # listed, no price: never added
    assert update.catalog.find("amazon.nova-9") is None


def test_a_profile_of_a_legacy_model_is_removed_too() -> None:
    listing = Listing("bedrock", frozenset({"anthropic.claude-haiku-4-5"}),
                      legacy=frozenset({"anthropic.claude-haiku-4-5"}),
                      profiles={"anthropic.claude-haiku-4-5": "us.anthropic.claude-haiku-4-5"})
    update = merge(listings={"bedrock": listing})
    assert "haiku" not in update.catalog.models
    assert "haiku removed: provider bedrock lists us.anthropic.claude-haiku-4-5 as LEGACY" in (
        update.changes)


OPENAI = Listing("openai", frozenset({"gpt-4o", "gpt-4o-mini", "gpt-9-nano", "dall-e-3"}))
NANO = offer("gpt-9-nano", 0.05, 0.2, supports=frozenset({"tools", "json_schema"}))


def test_a_new_cheaper_model_in_a_listing_and_a_price_source_joins_the_catalog() -> None:
    update = merge(listings={"openai": OPENAI}, offers=[("litellm", {"gpt-9-nano": NANO})])
    nano = model(update, "gpt-9-nano")
    assert (nano.provider, nano.upstream_id, nano.tier) == ("openai", "gpt-9-nano", "economy")
    assert (nano.input_price, nano.output_price, nano.context) == (0.05, 0.2, 8192)
    assert (nano.quality, nano.coding) == (None, None)
    assert nano.supports == frozenset({"tools", "json_schema"})
    assert (nano.source, nano.as_of) == ("prices: litellm key 'gpt-9-nano'", "prices 2026-11-01")
    assert update.changes == ["new model gpt-9-nano (economy, from litellm, served by openai)"]
    assert update.unpriced == ["dall-e-3 on openai"]


def test_an_unscored_new_model_wins_cheap_and_ranks_last_for_quality() -> None:
    update = merge(listings={"openai": OPENAI}, offers=[("litellm", {"gpt-9-nano": NANO})])
    rules = parse_rules_text("providers:\n  openai: {type: openai, base_url: https://o.example/v1}\n",
                             path="r.yaml", catalog=update.catalog)

    def ranked(prefer: str) -> list[str]:
        facts = RequestFacts(model="auto", prompt_tokens=1000, prefer=prefer)
        decision = choose_route(facts, rules, LatencyTracker(), detail=True)
        return [c.spec.name for c in decision.candidates]

    assert ranked("cheap")[0] == ranked("fast")[0] == "gpt-9-nano"  # eligible, and cheapest
    assert ranked("quality") == ["gpt-4o", "mini", "gpt-9-nano"]  # no quality: last
    assert ranked("coding") == ["gpt-4o", "gpt-9-nano", "mini"]  # the unscored, by cost


@pytest.mark.parametrize("output, tier", [
    (0.14, "economy"), (1.0, "economy"), (1.01, "standard"), (6.0, "standard"),
    (6.01, "premium"), (30.0, "premium"),
])
def test_tier_by_output_price(output: float, tier: str) -> None:
    assert tier_by_price(output) == tier


@pytest.mark.parametrize("name", [
    "nova-micro", "gpt-oss-20b", "qwen3-coder-30b", "claude-haiku-4.5", "gpt-5.4-mini",
    "gemini-2.5-flash", "gpt-4o", "claude-opus-4.7", "gpt-5.5",
])
def test_the_price_rule_agrees_with_shipped_tiers(name: str) -> None:
    spec = load_builtin_catalog().models[name]
    assert tier_by_price(spec.output_price) == spec.tier


def test_scores_set_quality_coding_and_tier_of_existing_and_new_models() -> None:
    update = merge(listings={"openai": OPENAI}, offers=[("litellm", {"gpt-9-nano": NANO})],
                   scores={"gpt-4o": Score(quality=20.0), "gpt-4o-mini": Score(coding=40.0,
                                                                                tier="economy"),
                           "gpt-9-nano": Score(quality=50.0, coding=60.0, tier="premium")})
    gpt4o, mini, nano = (model(update, n) for n in ("gpt-4o", "mini", "gpt-9-nano"))
    assert (gpt4o.quality, gpt4o.coding, gpt4o.tier) == (20.0, 33.2, "premium")
    assert gpt4o.as_of == "scores 2026-11-01; prices 2026-08-01; quality 2026-07-05"
    assert (mini.quality, mini.coding, mini.tier) == (7.0, 40.0, "economy")  # by upstream id
    assert (nano.quality, nano.coding, nano.tier) == (50.0, 60.0, "premium")  # score over price
    assert "gpt-4o: quality 11.2 -> 20" in update.changes
    assert "mini: tier standard -> economy" in update.changes
    assert "new model gpt-9-nano (premium, from litellm, served by openai)" in update.changes


def test_a_bound_openrouter_source_adds_the_models_its_provider_serves() -> None:
    read = read_openrouter(json.loads((DATA / "openrouter.json").read_text()))
    base = BASE.merged(parse_models([entry("or-4o", "openrouter", "openai/gpt-4o", "premium",
                                           (2.0, 9.0))]))
    update = merge(base, offers=[("openrouter-models", read.offers)],
                   bound={"openrouter-models": "openrouter"})
    assert model(update, "gpt-4o") == BASE.models["gpt-4o"]  # bound: prices openrouter's only
    assert model(update, "or-4o").input_price == 2.5  # its own model on openrouter is refreshed
    assert [m.name for m in update.catalog][len(base):] == ["qwen/qwen3-coder", "mistralai/tiny"]
    qwen, tiny = model(update, "qwen/qwen3-coder"), model(update, "mistralai/tiny")
    assert (qwen.provider, qwen.upstream_id, qwen.tier, qwen.context) == (
        "openrouter", "qwen/qwen3-coder", "economy", 262144)
    assert qwen.supports == frozenset({"tools", "reasoning"})
    assert (tiny.context, tiny.tier) == (8192, "economy")  # its context was out of range
    assert "new model qwen/qwen3-coder (economy, from openrouter-models, served by openrouter)" in (
        update.changes)


def test_a_bound_source_with_a_listing_adds_only_listed_models() -> None:
    update = merge(offers=[("or", {"a/x": offer("a/x"), "b/y": offer("b/y")})], bound={"or": "openrouter"},
                   listings={"openrouter": Listing("openrouter", frozenset({"a/x", "c/z"}))})
    assert "a/x" in update.catalog.models and "b/y" not in update.catalog.models
    assert update.unpriced == ["c/z on openrouter"]


def test_nothing_is_added_for_providers_that_are_not_configured() -> None:
    update = merge(offers=[("or", {"a/x": offer("a/x")}), ("lite", {"new-1": offer("new-1")})],
                   bound={"or": "openrouter"}, providers=("openai", "bedrock"),
                   listings={"r": Listing("r", frozenset({"new-1"}))})
    assert list(update.catalog) == list(BASE) and update.changes == []


@pytest.mark.parametrize("key, name", [
    ("gpt-4o", "openrouter/gpt-4o"),  # a catalog name
    ("gpt-4o-mini", "openrouter/gpt-4o-mini"),  # another model's upstream id (Catalog.find)
    ("auto", "openrouter/auto"),  # a routing word
    ("premium", "openrouter/premium"),
    ("fresh", "fresh"),
])
def test_a_new_model_whose_name_is_taken_is_prefixed_by_its_provider(key: str, name: str) -> None:
    update = merge(offers=[("or", {key: offer(key)})], bound={"or": "openrouter"})
    added = model(update, name)
    assert (added.provider, added.upstream_id) == ("openrouter", key)
    assert update.changes == [f"new model {name} (premium, from or, served by openrouter)"]
    assert update.catalog.find("gpt-4o-mini") == BASE.models["mini"]  # still the first by id


def test_a_new_model_whose_names_are_both_taken_is_rejected() -> None:
    base = BASE.merged(parse_models([entry("openrouter/gpt-4o", "openai", "x", "premium", (1, 2))]))
    update = merge(base, offers=[("or", {"gpt-4o": offer("gpt-4o")})], bound={"or": "openrouter"})
    assert len(update.catalog) == len(base)
    assert update.rejected == ["gpt-4o on openrouter: the names gpt-4o and openrouter/gpt-4o are "
                               "both taken"]


def test_the_same_new_id_on_two_providers_gets_two_names() -> None:
    update = merge(listings={"openai": Listing("openai", frozenset({"newm"}))},
                   offers=[("lite", {"newm": offer("newm")}), ("or", {"newm": offer("newm")})],
                   bound={"or": "openrouter"})
    assert (model(update, "newm").provider, model(update, "openrouter/newm").provider) == (
        "openai", "openrouter")


def test_unusable_listed_ids_and_too_many_new_models_are_rejected(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(refresh, "MAX_NEW_MODELS", 2)
    listing = Listing("openai", frozenset({"gpt-4o", "gpt-4o-mini", "bad id", "n1", "n2", "n3"}))
    update = merge(listings={"openai": listing},
                   offers=[("lite", {k: offer(k) for k in ("bad id", "n1", "n2", "n3")})])
    assert [m.name for m in update.catalog][len(BASE):] == ["n1", "n2"]
    assert update.rejected == ["'bad id' on openai: not a usable model id",
                               "more new models left out: at most 2 a merge"]


def test_litellm_document_to_merged_catalog() -> None:
    read = read_litellm(json.loads((DATA / "litellm.json").read_text()))
    update = merge(load_builtin_catalog(), offers=[("litellm.json", read.offers)])
    haiku = model(update, "claude-haiku-4.5")
    assert (haiku.cache_read_price, haiku.cache_write_price, haiku.max_output) == (0.11, 1.375, 64000)
    assert haiku.source is not None and haiku.source.startswith(
        "prices: litellm.json key 'bedrock/us.anthropic.claude-haiku-4-5-20251001-v1:0'; quality:")
    assert "gpt-4o: cache_read none -> 1.25" in update.changes
    assert not any(line.startswith("gpt-4o: input") for line in update.changes)


@pytest.mark.parametrize("catalog", [
    load_builtin_catalog(),
    merge(listings={"openai": OPENAI}, offers=[("litellm", {"gpt-9-nano": NANO})],
          scores={"gpt-4o": Score(quality=20.0)}).catalog,
])
def test_catalog_entries_round_trip(catalog: Catalog) -> None:
    entries = catalog_entries(catalog)
    assert parse_models(entries) == list(catalog)
    text = yaml.safe_dump({"models": entries}, sort_keys=False)
    assert list(parse_catalog_text(text, path="refreshed.yaml")) == list(catalog)
