"""sidecar/core/vocabulary.py: each vocabulary once, its tuple derived from its Literal, and the
old names elsewhere the very same values (so they cannot drift)."""

from __future__ import annotations

from typing import get_args

import pytest

from sidecar.core import facts, vocabulary
from sidecar.core.config import catalog
from sidecar.core.routing import autotier
from sidecar.core.vocabulary import Deployment


@pytest.mark.parametrize("values, literal", [
    (vocabulary.TIERS, vocabulary.Tier),
    (vocabulary.REQUESTABLE_TIERS, vocabulary.RequestableTier),
    (vocabulary.PREFERS, vocabulary.Prefer),
    (vocabulary.ROUTE_KINDS, vocabulary.RouteKind),
    (vocabulary.EXCLUSION_KINDS, vocabulary.ExclusionKind),
    (vocabulary.LISTENERS, vocabulary.Listener),
    (vocabulary.OUTCOMES, vocabulary.Outcome),
    (vocabulary.ROUTER_FIELDS, vocabulary.RouterField),
])
def test_each_tuple_is_its_literal(values: tuple[str, ...], literal: object) -> None:
    assert values == get_args(literal) and len(set(values)) == len(values)


def test_the_words() -> None:
    assert vocabulary.TIERS == ("economy", "standard", "premium")
    assert vocabulary.REQUESTABLE_TIERS == (*vocabulary.TIERS, vocabulary.AUTO_TIER)
    assert vocabulary.PREFERS == ("cheap", "fast", "balanced", "quality", "coding")
    assert {vocabulary.PIN, vocabulary.PASSTHROUGH, vocabulary.AUTO} == set(
        vocabulary.ROUTE_KINDS)
    assert "cooling" in vocabulary.EXCLUSION_KINDS and "down" in vocabulary.EXCLUSION_KINDS
    assert vocabulary.INTENT_MODELS == ("auto", "economy", "standard", "premium")


def test_old_names_stay_importable_with_the_same_values() -> None:
    assert catalog.TIERS is vocabulary.TIERS
    assert catalog.REQUESTABLE_TIERS is vocabulary.REQUESTABLE_TIERS
    assert catalog.AUTO_TIER == vocabulary.AUTO_TIER
    assert autotier.TIERS is vocabulary.TIERS
    assert tuple(facts.PREFERS) == vocabulary.PREFERS
    assert tuple(facts.LISTENERS) == vocabulary.LISTENERS
    assert tuple(facts.ROUTER_FIELDS) == vocabulary.ROUTER_FIELDS


def test_a_deployment_is_a_provider_and_a_model_id() -> None:
    d = Deployment("openai", "gpt-4o")
    assert d == ("openai", "gpt-4o") and (d.provider, d.model) == ("openai", "gpt-4o")
    assert d != Deployment("api.openai.com (direct)", "gpt-4o")
    assert str(d) == "gpt-4o on openai"
    assert {d: 1}[Deployment("openai", "gpt-4o")] == 1
