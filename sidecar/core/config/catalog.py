"""The model catalog: what each model costs, how good it is, what it supports, who serves it.

The built-in catalog is the data file ``sidecar/data/catalog.yaml`` (generated from the research
notes by ``scripts/build_catalog.py``); rules.yaml's ``models:`` adds or overrides entries with the
same keys. Model knowledge lives here and nowhere else: translators and the policy read
``ModelSpec`` fields, never model-name substrings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

from sidecar.core.config.yamlfile import (
    FieldError,
    key_name,
    key_step,
    load_config_yaml,
    load_yaml,
    locate,
    unknown_keys,
)
from sidecar.core.errors import ConfigError
from sidecar.core.vocabulary import AUTO_TIER, REQUESTABLE_TIERS, TIERS, Deployment, Tier

CAPABILITIES = frozenset({"tools", "vision", "json_schema", "reasoning"})
BUILTIN_CATALOG = "catalog.yaml"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str  # what apps and rules call it
    provider: str  # a provider name from rules.yaml
    upstream_id: str  # the provider's own model id
    tier: Tier
    input_price: float  # USD per million tokens
    output_price: float
    context: int  # max input tokens
    max_output: int | None = None
    cache_read_price: float | None = None
    cache_write_price: float | None = None
    quality: float | None = None  # Artificial Analysis Intelligence Index (compare within catalog)
    coding: float | None = None  # SWE-bench Verified scale, blended with the AA coding index
    supports: frozenset[str] = field(default_factory=frozenset)
    ttft_prior: float | None = None  # seconds to first token (cross-provider median)
    tokens_per_second_prior: float | None = None
    source: str | None = None
    as_of: str | None = None
    # (provider, upstream_id), made once (__post_init__): what health and latency are keyed by
    _deployment: Deployment = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_deployment", Deployment(self.provider, self.upstream_id))

    @property
    def deployment(self) -> Deployment:
        """Where this model is served: its provider and the provider's own model id."""
        return self._deployment

    def expected_cost(self, prompt_tokens: int, output_tokens: int) -> float:
        """USD for a call with these token counts, at the catalog's base prices."""
        return (prompt_tokens * self.input_price + output_tokens * self.output_price) / 1e6


_KEYS = {
    "name", "provider", "id", "tier", "price", "context", "max_output", "quality", "coding",
    "supports", "latency", "source", "as_of",
}


def parse_model(raw: Mapping[str, Any], *, base: ModelSpec | None = None) -> ModelSpec:
    """One catalog entry -> ModelSpec. With ``base``, missing keys keep the base's values."""
    if not isinstance(raw, Mapping):
        raise FieldError("", "a model entry must be a mapping")
    unknown = unknown_keys(raw, _KEYS)
    if unknown:
        raise FieldError(key_name(unknown[0]), f"unknown key; allowed: {', '.join(sorted(_KEYS))}")
    name = _text(raw, "name")
    price = raw.get("price")
    if price is not None and not isinstance(price, Mapping):
        raise FieldError("price", "must be a mapping like {input: 0.15, output: 0.60}")
    latency = {} if raw.get("latency") is None else raw["latency"]
    if not isinstance(latency, Mapping):
        raise FieldError("latency", "must be a mapping like {ttft: 0.8, tokens_per_second: 90}")
    _only(price or {}, "price", ("input", "output", "cache_read", "cache_write"))
    _only(latency, "latency", ("ttft", "tokens_per_second"))
    values: dict[str, Any] = {
        "name": name,
        "provider": _opt_text(raw, "provider"),
        "upstream_id": _opt_text(raw, "id"),
        "tier": _opt_choice(raw, "tier", TIERS),
        "input_price": _opt_number(price or {}, "input", "price.input"),
        "output_price": _opt_number(price or {}, "output", "price.output"),
        "cache_read_price": _opt_number(price or {}, "cache_read", "price.cache_read"),
        "cache_write_price": _opt_number(price or {}, "cache_write", "price.cache_write"),
        "context": _opt_int(raw, "context"),
        "max_output": _opt_int(raw, "max_output"),
        "quality": _opt_number(raw, "quality", "quality"),
        "coding": _opt_number(raw, "coding", "coding"),
        "supports": _supports(raw),
        "ttft_prior": _opt_number(latency, "ttft", "latency.ttft"),
        "tokens_per_second_prior": _opt_number(
            latency, "tokens_per_second", "latency.tokens_per_second"
        ),
        "source": _opt_text(raw, "source"),
        "as_of": None if raw.get("as_of") is None else str(raw["as_of"]),
    }
    given = {k: v for k, v in values.items() if v is not None}
    if base is not None:
        return replace(base, **given)
    if "upstream_id" not in given:
        given["upstream_id"] = name
    for key, label in (("provider", "provider"), ("tier", "tier"), ("input_price", "price.input"),
                       ("output_price", "price.output"), ("context", "context")):
        if key not in given:
            raise FieldError(label, f"required for the new model {name!r}")
    return ModelSpec(**given)


def _only(raw: Mapping[str, Any], label: str, allowed: tuple[str, ...]) -> None:
    unknown = unknown_keys(raw, allowed)
    if unknown:
        raise FieldError(f"{label}{key_step(unknown[0])}",
                         f"unknown key; allowed: {', '.join(allowed)}")


def _text(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise FieldError(key, "required, a non-empty string")
    return value.strip()


def _opt_text(raw: Mapping[str, Any], key: str) -> str | None:
    return None if raw.get(key) is None else _text(raw, key)


def _opt_choice(raw: Mapping[str, Any], key: str, allowed: Iterable[str]) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if value not in allowed:
        raise FieldError(key, f"{value!r} is not one of: {', '.join(allowed)}")
    return str(value)


def _opt_number(raw: Mapping[str, Any], key: str, label: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise FieldError(label, f"must be a non-negative number, not {value!r}")
    return float(value)


def _opt_int(raw: Mapping[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise FieldError(key, f"must be a positive whole number, not {value!r}")
    return value


def _supports(raw: Mapping[str, Any]) -> frozenset[str] | None:
    value = raw.get("supports")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FieldError("supports", f"must be a list drawn from: {', '.join(sorted(CAPABILITIES))}")
    unknown = sorted(set(value) - CAPABILITIES)
    if unknown:
        raise FieldError(
            "supports", f"unknown capability {unknown[0]!r}; allowed: {', '.join(sorted(CAPABILITIES))}"
        )
    return frozenset(value)


@dataclass(frozen=True, slots=True)
class Catalog:
    """Models by name; a model can also be found by its provider id (``find``)."""

    models: Mapping[str, ModelSpec]
    _by_upstream_id: Mapping[str, ModelSpec] = field(default_factory=dict)

    @classmethod
    def of(cls, models: Iterable[ModelSpec]) -> Catalog:
        by_name = {m.name: m for m in models}
        by_id: dict[str, ModelSpec] = {}
        for m in by_name.values():
            by_id.setdefault(m.upstream_id, m)
        return cls(by_name, by_id)

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)

    def find(self, name: str) -> ModelSpec | None:
        return self.models.get(name) or self._by_upstream_id.get(name)

    def merged(self, overrides: Iterable[ModelSpec]) -> Catalog:
        return Catalog.of([*self.models.values(), *overrides])


def parse_models(entries: Any, *, base: Catalog | None = None, prefix: str = "models") -> list[ModelSpec]:
    """A ``models:`` list -> specs; entries whose name is in ``base`` override that model."""
    if not isinstance(entries, list):
        raise FieldError(prefix, "must be a list of model entries")
    specs: list[ModelSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(entries):
        try:
            name = raw.get("name") if isinstance(raw, Mapping) else None
            known = name.strip() if isinstance(name, str) else None
            spec = parse_model(raw, base=base.models.get(known) if base and known else None)
        except FieldError as e:
            raise e.under(f"{prefix}[{i}]") from None
        if spec.name in seen:
            raise FieldError(f"{prefix}[{i}].name", f"model {spec.name!r} is listed twice")
        seen.add(spec.name)
        specs.append(spec)
    return specs


def load_builtin_catalog() -> Catalog:
    """The catalog shipped inside the package."""
    text = resources.files("sidecar.data").joinpath(BUILTIN_CATALOG).read_text("utf-8")
    return parse_catalog_text(text, path=f"<sidecar>/data/{BUILTIN_CATALOG}")


def load_catalog_overlay(path: str, base: Catalog) -> Catalog:
    """``base`` with a catalog file's entries added or overriding (``catalog:`` in rules.yaml,
    e.g. the output of ``model-router catalog import``)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read the catalog file: {e.strerror}", path=path) from None
    doc = load_config_yaml(text, path=path)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("models"), list):
        raise ConfigError("a catalog file needs a top-level 'models:' list", path=path)
    try:
        return base.merged(parse_models(doc["models"], base=base))
    except FieldError as e:
        raise ConfigError(e.message, path=path, line=locate(doc, e.key), key=e.key) from None


def parse_catalog_text(text: str, *, path: str) -> Catalog:
    doc = load_yaml(text)
    if not isinstance(doc, Mapping) or "models" not in doc:
        raise ConfigError("a catalog file needs a top-level 'models:' list", path=path)
    try:
        return Catalog.of(parse_models(doc["models"]))
    except FieldError as e:
        raise ConfigError(e.message, path=path, line=locate(doc, e.key), key=e.key) from None


__all__ = [
    "AUTO_TIER", "CAPABILITIES", "REQUESTABLE_TIERS", "TIERS", "Catalog", "Deployment", "ModelSpec",
    "key_step", "load_builtin_catalog", "parse_catalog_text", "parse_model", "parse_models",
]
