"""sidecar/core/config/sources.py: remote price and score documents become offers and scores,
and a hostile or broken entry is left out with a reason instead of poisoning routing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sidecar.core.config.catalog import CAPABILITIES
from sidecar.core.config.offers import Offer, Score
from sidecar.core.config.sources import (
    MAX_ENTRIES,
    SourceError,
    is_valid_key,
    read_litellm,
    read_openrouter,
    read_scores,
    read_scores_report,
)

DATA = Path(__file__).parent / "data" / "sources"
GOOD = {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05, "mode": "chat"}


def litellm_one(**raw: Any) -> tuple[Offer | None, list[str]]:
    read = read_litellm({"m": {**GOOD, **raw}})
    return read.offers.get("m"), read.rejected


def test_litellm_sample_reads_prices_per_million_limits_and_capabilities() -> None:
    read = read_litellm(json.loads((DATA / "litellm.json").read_text()))
    assert read.rejected == []
    assert sorted(read.offers) == ["bedrock/us.anthropic.claude-haiku-4-5-20251001-v1:0",
                                   "gpt-4o", "o-responses"]  # embedding, audio, sample_spec out
    gpt4o = read.offers["gpt-4o"]
    assert gpt4o == Offer(id="gpt-4o", input_price=2.5, output_price=10.0, cache_read_price=1.25,
                          context=128000, max_output=16384,
                          supports=frozenset({"tools", "vision", "json_schema"}))
    haiku = read.offers["bedrock/us.anthropic.claude-haiku-4-5-20251001-v1:0"]
    assert (haiku.cache_write_price, haiku.max_output) == (1.375, 64000)  # max_tokens fallback
    assert "reasoning" in haiku.supports


@pytest.mark.parametrize("raw, reason", [
    ({"input_cost_per_token": 0}, "key 'm': input price 0 is not in (0, 1000] USD per million tokens"),
    ({"output_cost_per_token": 0.0}, "key 'm': output price 0 is not in (0, 1000]"),
    ({"input_cost_per_token": 1e-13}, "input price 0 is not in"),  # rounds to 0 per million
    ({"input_cost_per_token": 1e3}, "input price 1e+09 is not in (0, 1000]"),
    ({"output_cost_per_token": 0.0011}, "output price 1100 is not in"),
    ({"input_cost_per_token": -1e-06}, "input price -1 is not in"),
    ({"input_cost_per_token": float("nan")}, "input price nan is not a finite number"),
    ({"input_cost_per_token": "inf"}, "input price 'inf' is not a finite number"),
    ({"input_cost_per_token": "cheap!"}, "input price 'cheap!' is not a number"),
    ({"input_cost_per_token": "1" * 100}, "is not a number"),
    ({"input_cost_per_token": True}, "input price True is not a number"),
    ({"input_cost_per_token": [1e-06]}, "input price [1e-06] is not a number"),
    ({"input_cost_per_token": 10**400}, "is not a number"),
    ({"input_cost_per_token": None}, "key 'm': no input price"),
    ({"output_cost_per_token": None}, "key 'm': no output price"),
])
def test_litellm_rejects_entries_with_a_bad_price(raw: dict[str, Any], reason: str) -> None:
    offer, rejected = litellm_one(**raw)
    assert offer is None
    assert len(rejected) == 1 and reason in rejected[0]


def test_litellm_accepts_the_price_range_bounds_and_numeric_strings() -> None:
    offer, _ = litellm_one(input_cost_per_token="0.000001", output_cost_per_token=1e-3)
    assert offer is not None and (offer.input_price, offer.output_price) == (1.0, 1000.0)


@pytest.mark.parametrize("raw, field, expected", [
    ({"max_input_tokens": 10**12}, "context", None),
    ({"max_input_tokens": 1023}, "context", None),
    ({"max_input_tokens": 1024}, "context", 1024),
    ({"max_input_tokens": 20_000_000}, "context", 20_000_000),
    ({"max_input_tokens": 20_000_001}, "context", None),
    ({"max_input_tokens": 131072.0}, "context", 131072),
    ({"max_input_tokens": 1500.5}, "context", None),
    ({"max_input_tokens": "128000"}, "context", None),
    ({"max_input_tokens": True}, "context", None),
    ({"max_input_tokens": float("inf")}, "context", None),
    ({"max_output_tokens": -5, "max_tokens": 4096}, "max_output", None),  # given, but invalid
    ({"max_tokens": 4096}, "max_output", 4096),
    ({"cache_read_input_token_cost": 0}, "cache_read_price", None),
    ({"cache_read_input_token_cost": "x"}, "cache_read_price", None),
    ({"cache_creation_input_token_cost": 5.0}, "cache_write_price", None),
    ({"cache_creation_input_token_cost": 3.75e-06}, "cache_write_price", 3.75),
])
def test_litellm_drops_out_of_range_limits_but_keeps_the_entry(
        raw: dict[str, Any], field: str, expected: Any) -> None:
    offer, rejected = litellm_one(**raw)
    assert offer is not None and rejected == []
    assert getattr(offer, field) == expected


def test_a_model_claiming_every_capability_gets_only_known_ones() -> None:
    flags = {"supports_function_calling": True, "supports_vision": True,
             "supports_response_schema": True, "supports_reasoning": True,
             "supports_teleportation": True, "supports_tools": True}
    offer, _ = litellm_one(**flags)
    assert offer is not None and offer.supports == CAPABILITIES
    offer, _ = litellm_one(supports_vision="yes", supports_function_calling=1)
    assert offer is not None and offer.supports == frozenset()  # only a JSON true counts


@pytest.mark.parametrize("key, reason", [
    ("k" * 201, "key 'kkkkkkkk"),
    ("", "the key must be a non-empty string"),
    ("   ", "the key must be a non-empty string"),
    ("gpt 4o", "whitespace or unprintable"),
    ("gpt-4o\nnew model", "whitespace or unprintable"),
    (7, "entry 0: the key must be a non-empty string"),
])
def test_bad_keys_are_rejected(key: Any, reason: str) -> None:
    read = read_litellm({key: GOOD})
    assert read.offers == {} and len(read.rejected) == 1 and reason in read.rejected[0]
    assert not is_valid_key(key)
    if isinstance(key, str) and len(key) > 200:
        assert len(read.rejected[0]) < 200 and "longer than 200 characters (201)" in read.rejected[0]


def test_a_key_of_200_characters_is_fine() -> None:
    assert list(read_litellm({"k" * 200: GOOD}).offers) == ["k" * 200]


@pytest.mark.parametrize("mode, kept", [
    (None, True), ("chat", True), ("responses", True), ("embedding", False),
    ("image_generation", False), (["chat"], False),
])
def test_litellm_reads_chat_modes_only(mode: Any, kept: bool) -> None:
    read = read_litellm({"m": {**GOOD, "mode": mode}})
    assert ("m" in read.offers) is kept and read.rejected == []


@pytest.mark.parametrize("reader, doc, message", [
    (read_litellm, [], "not a LiteLLM price map: expected a JSON object of model entries"),
    (read_litellm, '{"gpt-4o": {"input_cost', "not a LiteLLM price map"),
    (read_litellm, None, "not a LiteLLM price map"),
    (read_openrouter, {"models": []}, "not an OpenRouter model list: expected a JSON object"),
    (read_openrouter, {"data": {"id": "x"}}, "with a 'data' list"),
    (read_openrouter, [{"id": "x"}], "not an OpenRouter model list"),
    (read_openrouter, '{"data": [', "not an OpenRouter model list"),
    (read_scores, [1, 2], "not a scores document"),
    (read_scores, "quality: 40", "not a scores document"),
])
def test_wrong_shaped_documents_raise(reader: Any, doc: Any, message: str) -> None:
    with pytest.raises(SourceError, match=re.escape(message)):
        reader(doc)
    assert issubclass(SourceError, ValueError)


@pytest.mark.parametrize("reader, doc", [
    (read_litellm, {f"m{i}": GOOD for i in range(MAX_ENTRIES + 1)}),
    (read_openrouter, {"data": [{}] * (MAX_ENTRIES + 1)}),
    (read_scores, {"scores": {f"m{i}": {"quality": 1} for i in range(MAX_ENTRIES + 1)}}),
])
def test_too_many_entries_raise(reader: Any, doc: Any) -> None:
    with pytest.raises(SourceError, match="too many entries"):
        reader(doc)


def test_the_largest_document_allowed_is_read() -> None:
    assert len(read_litellm({f"m{i}": GOOD for i in range(MAX_ENTRIES)}).offers) == MAX_ENTRIES


def test_openrouter_sample_reads_string_prices_and_supported_parameters() -> None:
    read = read_openrouter(json.loads((DATA / "openrouter.json").read_text()))
    assert sorted(read.offers) == ["mistralai/tiny", "openai/gpt-4o", "qwen/qwen3-coder"]
    assert read.offers["openai/gpt-4o"] == Offer(
        id="openai/gpt-4o", input_price=2.5, output_price=10.0, cache_read_price=1.25,
        context=128000, max_output=16384,
        supports=frozenset({"tools", "json_schema", "vision"}))
    assert read.offers["qwen/qwen3-coder"].supports == frozenset({"tools", "reasoning"})
    tiny = read.offers["mistralai/tiny"]
    assert (tiny.context, tiny.max_output, tiny.supports) == (None, None, frozenset({"json_schema"}))
    assert read.rejected == [
        "key 'openrouter/auto': input price -1e+06 is not in (0, 1000] USD per million tokens",
        "key 'meta/free': input price 0 is not in (0, 1000] USD per million tokens",
        "entry 4: the key must be a non-empty string",
        "entry 5: the key must be a non-empty string",
        "key 'openai/gpt-4o': listed twice; the first is kept",
        "key 'no/pricing': no input price",
    ]


@pytest.mark.parametrize("doc, scores", [
    ({"scores": {"a": {"quality": 40, "coding": 60.5, "tier": "premium"}}},
     {"a": Score(40.0, 60.5, "premium")}),
    ({"a": {"quality": 0}, "b": {"tier": "economy"}}, {"a": Score(quality=0.0),
                                                       "b": Score(tier="economy")}),
    ({"scores": {"a": {"coding": "55"}}, "as_of": "2026-11-01"}, {"a": Score(coding=55.0)}),
])
def test_scores_read_with_or_without_the_wrapper(doc: Any, scores: dict[str, Score]) -> None:
    assert read_scores(doc) == scores


@pytest.mark.parametrize("entry, reason", [
    ({"quality": 101}, "quality 101 is not in [0, 100]"),
    ({"coding": -1}, "coding -1 is not in [0, 100]"),
    ({"quality": float("nan")}, "quality nan is not a finite number"),
    ({"quality": "great"}, "quality 'great' is not a number"),
    ({"tier": "ultra"}, "tier 'ultra' is not one of: economy, standard, premium"),
    ({"tier": ["economy"]}, "tier ['economy'] is not one of"),
    ({}, "gives no quality, coding or tier"),
    (40, "not an object"),
])
def test_invalid_score_entries_are_rejected(entry: Any, reason: str) -> None:
    read = read_scores_report({"scores": {"bad": entry, "good": {"quality": 50}}})
    assert read.scores == {"good": Score(quality=50.0)}
    assert len(read.rejected) == 1 and read.rejected[0].startswith(f"key 'bad': {reason}")
