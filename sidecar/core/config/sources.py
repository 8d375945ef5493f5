"""Read remote model sources (already fetched and decoded by the shell) into ``Offer``s and
``Score``s, distrusting every value: a hostile or broken source must never poison routing.

* ``read_litellm``: LiteLLM's ``model_prices_and_context_window.json`` (key -> per-token prices,
  limits, ``supports_*`` flags). Only ``mode`` None/"chat"/"responses" entries are read;
  ``sample_spec`` is skipped.
* ``read_openrouter``: OpenRouter's ``/api/v1/models`` (``{"data": [...]}``, prices as per-token
  strings). ``tools`` and ``reasoning`` from ``supported_parameters``, ``json_schema`` from
  ``structured_outputs`` or ``response_format``, ``vision`` from an ``image`` input modality.
* ``read_scores``: ``{"scores": {name: {quality, coding, tier}}}`` (or the bare mapping).

Rules for every entry (a broken one is left out with one sentence in ``rejected``):

* keys: non-empty strings of at most 200 printable characters without whitespace (they become
  catalog names and ids; a catalog file strips names);
* input and output prices: required, finite, in (0, 1000] USD per million tokens (a price of 0
  would win every ``prefer: cheap``); cache prices outside that range are dropped (None);
* context and max output: whole numbers in [1024, 20,000,000], else dropped (None);
* capabilities: only those of ``catalog.CAPABILITIES``; unknown claims are ignored;
* scores: quality and coding in [0, 100], tier one of ``TIERS``.

A document that is not the expected shape at all, or holds more than 100,000 entries, raises
``SourceError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.core.config.catalog import CAPABILITIES
from sidecar.core.config.offers import Offer, Score, Scores
from sidecar.core.vocabulary import TIERS

MAX_ENTRIES = 100_000
MAX_KEY = 200
MAX_PRICE = 1000.0  # USD per million tokens
MIN_TOKENS, MAX_TOKENS = 1024, 20_000_000
PER_MILLION = 1_000_000
LITELLM_MODES = (None, "chat", "responses")
LITELLM_FLAGS = {"supports_function_calling": "tools", "supports_vision": "vision",
                 "supports_response_schema": "json_schema", "supports_reasoning": "reasoning"}
OPENROUTER_PARAMETERS = {"tools": "tools", "structured_outputs": "json_schema",
                         "response_format": "json_schema", "reasoning": "reasoning"}


class SourceError(ValueError):
    """A source document that is not the expected shape at all (nothing of it is used)."""


class Rejected(ValueError):
    """One entry left out; the message is the human sentence (without the key)."""


@dataclass(frozen=True, slots=True)
class SourceRead:
    offers: dict[str, Offer]  # key -> offer, in the source's order
    rejected: list[str]  # "key 'x': input price 0 is not in (0, 1000] USD per million tokens"


@dataclass(frozen=True, slots=True)
class ScoresRead:
    scores: dict[str, Score]
    rejected: list[str]


def read_litellm(doc: Any) -> SourceRead:
    """A LiteLLM price map -> offers (per-token prices become per million, rounded to 6)."""
    if not isinstance(doc, Mapping):
        raise SourceError("not a LiteLLM price map: expected a JSON object of model entries")
    _check_count(len(doc), "LiteLLM price map")
    entries = ((key, raw) for key, raw in doc.items() if key != "sample_spec")
    return _read(entries, _litellm_offer)


def read_openrouter(doc: Any) -> SourceRead:
    """An OpenRouter model list -> offers keyed by the OpenRouter id (``openai/gpt-4o``)."""
    data = doc.get("data") if isinstance(doc, Mapping) else None
    if not isinstance(data, list):
        raise SourceError("not an OpenRouter model list: expected a JSON object with a 'data' list")
    _check_count(len(data), "OpenRouter model list")
    entries = ((raw.get("id") if isinstance(raw, Mapping) else None, raw) for raw in data)
    return _read(entries, _openrouter_offer)


def read_scores(doc: Any) -> Scores:
    """A scores document -> scores by model name; invalid entries are left out."""
    return read_scores_report(doc).scores


def read_scores_report(doc: Any) -> ScoresRead:
    """``read_scores`` with one sentence per entry it left out."""
    if isinstance(doc, Mapping) and isinstance(doc.get("scores"), Mapping):
        doc = doc["scores"]
    if not isinstance(doc, Mapping):
        raise SourceError("not a scores document: expected {scores: {model: {quality, coding, "
                          "tier}}}")
    _check_count(len(doc), "scores document")
    scores: dict[str, Score] = {}
    rejected: list[str] = []
    for i, (key, raw) in enumerate(doc.items()):
        try:
            scores[_key(key)] = _score(raw)
        except Rejected as e:
            rejected.append(f"{_show(key, i)}: {e}")
    return ScoresRead(scores, rejected)


def _check_count(n: int, what: str) -> None:
    if n > MAX_ENTRIES:
        raise SourceError(f"too many entries in the {what}: {n} (at most {MAX_ENTRIES:,})")


def _read(entries: Iterable[tuple[Any, Any]],
          offer: Callable[[str, Mapping[str, Any]], Offer | None]) -> SourceRead:
    offers: dict[str, Offer] = {}
    rejected: list[str] = []
    for i, (key, raw) in enumerate(entries):
        try:
            name = _key(key)
            if name in offers:
                raise Rejected("listed twice; the first is kept")
            if not isinstance(raw, Mapping):
                raise Rejected("not an object")
            made = offer(name, raw)
        except Rejected as e:
            rejected.append(f"{_show(key, i)}: {e}")
            continue
        if made is not None:
            offers[name] = made
    return SourceRead(offers, rejected)


def _litellm_offer(key: str, raw: Mapping[str, Any]) -> Offer | None:
    if raw.get("mode") not in LITELLM_MODES:
        return None  # embeddings, images, audio: not for chat routing
    max_output = raw.get("max_output_tokens")
    return Offer(
        id=key,
        input_price=_price(raw.get("input_cost_per_token"), "input"),
        output_price=_price(raw.get("output_cost_per_token"), "output"),
        cache_read_price=_optional_price(raw.get("cache_read_input_token_cost")),
        cache_write_price=_optional_price(raw.get("cache_creation_input_token_cost")),
        context=_tokens(raw.get("max_input_tokens")),
        max_output=_tokens(raw.get("max_tokens") if max_output is None else max_output),
        supports=frozenset(cap for flag, cap in LITELLM_FLAGS.items() if raw.get(flag) is True),
    )


def _openrouter_offer(key: str, raw: Mapping[str, Any]) -> Offer:
    pricing = _mapping(raw.get("pricing"))
    top = _mapping(raw.get("top_provider"))
    params = _strings(raw.get("supported_parameters"))
    modalities = _strings(_mapping(raw.get("architecture")).get("input_modalities"))
    supports = {cap for param, cap in OPENROUTER_PARAMETERS.items() if param in params}
    if "image" in modalities:
        supports.add("vision")
    return Offer(
        id=key,
        input_price=_price(pricing.get("prompt"), "input"),
        output_price=_price(pricing.get("completion"), "output"),
        cache_read_price=_optional_price(pricing.get("input_cache_read")),
        cache_write_price=_optional_price(pricing.get("input_cache_write")),
        context=_tokens(raw.get("context_length")),
        max_output=_tokens(top.get("max_completion_tokens")),
        supports=frozenset(supports) & CAPABILITIES,
    )


def _score(raw: Any) -> Score:
    if not isinstance(raw, Mapping):
        raise Rejected("not an object like {quality: 40, coding: 60, tier: standard}")
    quality, coding = _score_value(raw.get("quality"), "quality"), _score_value(
        raw.get("coding"), "coding")
    tier = raw.get("tier")
    if tier is not None and tier not in TIERS:
        raise Rejected(f"tier {_show_value(tier)} is not one of: {', '.join(TIERS)}")
    if quality is None and coding is None and tier is None:
        raise Rejected("gives no quality, coding or tier")
    return Score(quality=quality, coding=coding, tier=tier)


def _score_value(value: Any, what: str) -> float | None:
    if value is None:
        return None
    number = _number(value, what)
    if not 0 <= number <= 100:
        raise Rejected(f"{what} {number:g} is not in [0, 100]")
    return number


def is_valid_key(key: Any) -> bool:
    """Whether ``key`` may name a model: the key rule above (also for discovered ids)."""
    try:
        _key(key)
    except Rejected:
        return False
    return True


def _key(key: Any) -> str:
    if not isinstance(key, str) or not key.strip():
        raise Rejected("the key must be a non-empty string")
    if len(key) > MAX_KEY:
        raise Rejected(f"the key is longer than {MAX_KEY} characters ({len(key)})")
    if not key.isprintable() or any(c.isspace() for c in key):
        raise Rejected("the key holds whitespace or unprintable characters")
    return key


def _price(per_token: Any, what: str) -> float:
    if per_token is None:
        raise Rejected(f"no {what} price")
    per_million = round(_number(per_token, f"{what} price") * PER_MILLION, 6)
    if not 0 < per_million <= MAX_PRICE:
        raise Rejected(f"{what} price {per_million:g} is not in (0, {MAX_PRICE:g}] USD per million "
                       "tokens")
    return per_million


def _optional_price(per_token: Any) -> float | None:
    try:
        return None if per_token is None else _price(per_token, "cache")
    except Rejected:
        return None


def _number(value: Any, what: str) -> float:
    """A finite number from a JSON number or a numeric string ("0.0000025")."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Rejected(f"{what} {_show_value(value)} is not a number")
    try:
        if isinstance(value, str) and len(value) > 64:
            raise ValueError(value)
        number = float(value)
    except (ValueError, OverflowError):
        raise Rejected(f"{what} {_show_value(value)} is not a number") from None
    if not math.isfinite(number):
        raise Rejected(f"{what} {_show_value(value)} is not a finite number")
    return number


def _tokens(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    if value != int(value) or not MIN_TOKENS <= value <= MAX_TOKENS:
        return None
    return int(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strings(value: Any) -> frozenset[str]:
    return frozenset(v for v in value if isinstance(v, str)) if isinstance(value, list) else frozenset()


def _show(key: Any, index: int) -> str:
    return f"key {_show_value(key)}" if isinstance(key, str) else f"entry {index}"


def _show_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:50]}... ({len(text)} chars)"
