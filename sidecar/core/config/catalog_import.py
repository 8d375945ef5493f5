"""Refresh catalog prices and limits from a LiteLLM-format price map, without a release.

``model_prices_and_context_window.json`` maps model keys to per-token prices and limits. For
each catalog model, the map's entry is found by the provider's model id (``gpt-4o``), or with
LiteLLM's provider prefix (``bedrock/…``, ``gemini/…``); the matched numbers become a catalog
file (``catalog:`` in rules.yaml) that records where and when they came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.core.config.catalog import Catalog, ModelSpec

PREFIXES = {"openai": ("", "openai/"), "bedrock": ("", "bedrock/", "bedrock/converse/"),
            "gemini": ("gemini/", ""), "groq": ("groq/",), "deepseek": ("deepseek/", "")}
PER_MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class ImportResult:
    entries: list[dict[str, Any]]  # catalog-file entries (name + the refreshed fields)
    changed: list[str]  # "gpt-4o: input 2.5 -> 2.0"
    unmatched: list[str]  # catalog models the map has no entry for


def import_litellm(price_map: Mapping[str, Any], catalog: Catalog, *, source: str, as_of: str
                   ) -> ImportResult:
    entries, changed, unmatched = [], [], []
    for spec in sorted(catalog, key=lambda m: m.name):
        key = _find(price_map, spec)
        if key is None:
            unmatched.append(spec.name)
            continue
        entry = _entry(spec, price_map[key], source=f"{source} key {key!r}", as_of=as_of)
        if entry is None:
            unmatched.append(spec.name)
            continue
        entries.append(entry)
        changed += _changes(spec, entry)
    return ImportResult(entries, changed, unmatched)


def _find(price_map: Mapping[str, Any], spec: ModelSpec) -> str | None:
    for prefix in PREFIXES.get(spec.provider, ("",)):
        key = prefix + spec.upstream_id
        if isinstance(price_map.get(key), Mapping):
            return key
    return None


def _entry(spec: ModelSpec, raw: Mapping[str, Any], *, source: str, as_of: str
           ) -> dict[str, Any] | None:
    inp, out = _per_million(raw, "input_cost_per_token"), _per_million(raw,
                                                                        "output_cost_per_token")
    if inp is None or out is None:
        return None
    price: dict[str, float] = {"input": inp, "output": out}
    for ours, theirs in (("cache_read", "cache_read_input_token_cost"),
                         ("cache_write", "cache_creation_input_token_cost")):
        value = _per_million(raw, theirs)
        if value is not None:
            price[ours] = value
    entry: dict[str, Any] = {"name": spec.name, "price": price}
    for ours, theirs in (("context", "max_input_tokens"), ("max_output", "max_output_tokens")):
        value = raw.get(theirs)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            entry[ours] = value
    entry["source"] = f"prices/limits: {source}"
    entry["as_of"] = f"prices {as_of}"
    return entry


def _per_million(raw: Mapping[str, Any], key: str) -> float | None:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return round(float(value) * PER_MILLION, 6)


def _changes(spec: ModelSpec, entry: Mapping[str, Any]) -> list[str]:
    price = entry["price"]
    pairs = [("input", spec.input_price, price["input"]),
             ("output", spec.output_price, price["output"]),
             ("context", spec.context, entry.get("context", spec.context))]
    return [f"{spec.name}: {what} {old:g} -> {new:g}" for what, old, new in pairs if old != new]
