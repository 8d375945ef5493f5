"""The ``routes`` of an app in rules.yaml: per model glob, what to do with a call (``RouteSpec``)
-- pin a catalog model (with fallbacks), ``passthrough``, or ``auto`` (``prefer`` within
``tier``) -- read by ``parse_routes`` and checked against the catalog and the configured
providers.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.core.config.catalog import Catalog, ModelSpec
from sidecar.core.config.yamlfile import FieldError, key_name, key_step, unknown_keys
from sidecar.core.vocabulary import (
    AUTO,
    PASSTHROUGH,
    PIN,
    PREFERS,
    REQUESTABLE_TIERS,
    TIERS,
    Prefer,
    RequestableTier,
    RouteKind,
)

_ROUTE_KEYS = {"model", "prefer", "tier", "fallbacks"}


@dataclass(frozen=True, slots=True)
class RouteSpec:
    pattern: str  # a model glob as the app sends it
    kind: RouteKind
    model: str | None = None  # the pinned model (kind == PIN)
    prefer: Prefer | None = None
    tier: RequestableTier | None = None
    fallbacks: tuple[str, ...] = ()
    where: str = ""  # the rules.yaml key path, for explanations

    def applies_to(self, model: str) -> bool:
        return self.pattern == model or fnmatch.fnmatchcase(model, self.pattern)


def parse_routes(
    raw: Any, *, catalog: Catalog, providers: Collection[str], where: str = ""
) -> tuple[RouteSpec, ...]:
    if not isinstance(raw, Mapping):
        raise FieldError("routes", "must be a mapping of model glob -> route")
    routes = []
    for pattern, value in raw.items():
        step = key_step(pattern)
        try:
            routes.append(parse_route(str(pattern), value, catalog=catalog, providers=providers,
                                      where=where + step))
        except FieldError as e:
            raise e.under(f"routes{step}") from None
    return tuple(routes)


def parse_route(
    pattern: str, value: Any, *, catalog: Catalog, providers: Collection[str], where: str = ""
) -> RouteSpec:
    if value == PASSTHROUGH:
        return RouteSpec(pattern=pattern, kind=PASSTHROUGH, where=where)
    short = isinstance(value, str)
    if short:
        value = {"model": value}
    if not isinstance(value, Mapping):
        raise FieldError("", "must be a model name, 'passthrough', or a mapping with model, "
                         "prefer, tier, fallbacks")
    unknown = unknown_keys(value, _ROUTE_KEYS)
    if unknown:
        raise FieldError(key_name(unknown[0]),
                         f"unknown key; allowed: {', '.join(sorted(_ROUTE_KEYS))}")
    model = value.get("model", AUTO)
    prefer, tier = value.get("prefer"), value.get("tier")
    if prefer is not None and prefer not in PREFERS:
        raise FieldError("prefer", f"{prefer!r} is not one of: {', '.join(PREFERS)}")
    if tier is not None and tier not in REQUESTABLE_TIERS:
        raise FieldError("tier", f"{tier!r} is not one of: {', '.join(REQUESTABLE_TIERS)}")
    if model in TIERS:
        model, tier = AUTO, tier or model
    fallbacks = _fallbacks(value.get("fallbacks"), catalog, providers)
    if model == AUTO:
        return RouteSpec(pattern=pattern, kind=AUTO, prefer=prefer, tier=tier,
                         fallbacks=fallbacks, where=where)
    if not isinstance(model, str) or catalog.find(model) is None:
        raise FieldError("" if short else "model",
                         f"unknown model {model!r}: not in the catalog or this file's models")
    spec = catalog.find(model)
    assert spec is not None
    _check_served(spec, providers, "" if short else "model")
    return RouteSpec(pattern=pattern, kind=PIN, model=spec.name, fallbacks=fallbacks,
                     where=where)


def _fallbacks(value: Any, catalog: Catalog, providers: Collection[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FieldError("fallbacks", "must be a list of model names")
    out = []
    for i, name in enumerate(value):
        spec = catalog.find(name)
        if spec is None:
            raise FieldError(f"fallbacks[{i}]", f"unknown model {name!r}")
        _check_served(spec, providers, f"fallbacks[{i}]")
        out.append(spec.name)
    return tuple(out)


def _check_served(spec: ModelSpec, providers: Collection[str], key: str) -> None:
    """A route may only name a model whose provider rules.yaml configures."""
    if spec.provider not in providers:
        raise FieldError(key, f"no provider named {spec.provider!r} (configured: "
                         f"{', '.join(providers) or 'none'}); the model {spec.name!r} needs it")
