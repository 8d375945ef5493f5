"""rules.yaml: intercepted hosts, providers, extra models, defaults, and per-app routes.

``parse_rules(doc, catalog)`` turns the YAML document into a frozen ``RuleSet`` and raises
``FieldError`` with the dotted key at fault; ``load_rules(path)`` adds the file name and line
(``ConfigError``). A ``RuleSet`` is built whole or not at all, so a failed reload keeps the old one.

A ``RuleSet`` also carries what the routing decision derives from it once instead of per call:
``app_matcher`` (compiled matches and the caller-identity cache, ``sidecar.apps.AppMatcher``) and
``memo`` (``sidecar.policy`` keeps its candidate pools and skybands there). Neither is compared
or printed, and every new ``RuleSet`` -- a reload, a ``replace`` -- starts with fresh ones.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sidecar.core.budget import BudgetSpec, parse_budget
from sidecar.core.cache import CacheStoreSpec, parse_cache_store
from sidecar.core.config.apps import AppMatcher, AppSpec, parse_apps
from sidecar.core.config.catalog import (
    REQUESTABLE_TIERS,
    Catalog,
    ModelSpec,
    load_builtin_catalog,
    load_catalog_overlay,
    parse_models,
)
from sidecar.core.config.catalog_spec import CatalogSpec, parse_catalog_spec
from sidecar.core.config.state import StateSpec, parse_state
from sidecar.core.config.yamlfile import (
    FieldError,
    key_name,
    key_step,
    load_config_yaml,
    locate,
    unknown_keys,
)
from sidecar.core.errors import ConfigError
from sidecar.core.facts import PREFERS
from sidecar.core.routing.autotier import DEFAULT_THRESHOLDS, Thresholds

PROVIDER_TYPES = ("openai", "bedrock")
FROM_REQUEST = "from-request"
_TOP_KEYS = {"version", "intercept", "catalog", "providers", "models", "defaults", "apps",
             "shadow", "budget", "state", "cache"}


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    name: str
    type: str  # "openai" | "bedrock"
    base_url: str | None = None  # openai: scheme://host[:port][/prefix]
    api_key: str = FROM_REQUEST  # "from-request" | "env:NAME" | "none"
    region: str | None = None  # bedrock
    endpoint_url: str | None = None  # bedrock runtime (VPC endpoints, local fakes)
    control_endpoint_url: str | None = None  # bedrock control plane (model discovery)
    profile: str | None = None  # bedrock: a named AWS profile
    responses: bool = False  # openai: speaks the Responses API (/v1/responses) natively
    timeout: float | None = None  # seconds without a byte before an attempt that can fall back
    #                               gives up (None: the sidecar's default, 120)

    @property
    def forwards_app_key(self) -> bool:
        return self.api_key == FROM_REQUEST

    def resolve_key(self, environ: Mapping[str, str]) -> str | None:
        """The sidecar's own key for this provider (None for from-request / none / unset)."""
        if self.api_key.startswith("env:"):
            return environ.get(self.api_key[4:]) or None
        return None


@dataclass(frozen=True, slots=True)
class InterceptSpec:
    host: str
    port: int
    provider: str  # where passthrough traffic for this host goes

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class DefaultsSpec:
    tier: str = "standard"  # or "auto": chosen per request from the conversation
    prefer: str = "balanced"
    auto_tier: Thresholds = DEFAULT_THRESHOLDS  # where tier auto's 0-100 score changes tier


@dataclass(frozen=True, slots=True)
class RuleSet:
    intercept: tuple[InterceptSpec, ...]
    providers: Mapping[str, ProviderSpec]
    catalog: Catalog
    defaults: DefaultsSpec
    apps: tuple[AppSpec, ...]
    shadow: bool = False
    path: str = ""
    catalog_spec: CatalogSpec = CatalogSpec()  # catalog files and the sources refreshing it
    budget: BudgetSpec | None = None  # what every app together may spend per window
    state: StateSpec = StateSpec()  # where budget counts and cached answers live
    cache_store: CacheStoreSpec = CacheStoreSpec()  # the in-process response cache's size
    # derived once per RuleSet (see the module docstring); set in __post_init__
    app_matcher: AppMatcher = field(init=False, repr=False, compare=False)
    memo: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "app_matcher", AppMatcher(self.apps))
        object.__setattr__(self, "memo", {})

    def intercept_for(self, host: str, port: int) -> InterceptSpec | None:
        for spec in self.intercept:
            if spec.host == host and spec.port == port:
                return spec
        return None


def load_rules(path: str | os.PathLike[str], *, catalog: Catalog | None = None) -> RuleSet:
    """Read and validate a rules file. Raises ``ConfigError`` naming file, line and key."""
    name = str(path)
    try:
        text = Path(path).read_text("utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read the rules file: {e.strerror}", path=name) from None
    return parse_rules_text(text, path=name, catalog=catalog)


def parse_rules_text(text: str, *, path: str, catalog: Catalog | None = None) -> RuleSet:
    doc = load_config_yaml(text, path=path)
    try:
        spec = parse_catalog_spec(doc.get("catalog") if isinstance(doc, Mapping) else None,
                                  rules_path=path)
        base = catalog or load_builtin_catalog()
        for name in spec.files:
            base = load_catalog_overlay(name, base)
        rules = parse_rules(doc, base)
        _check_source_providers(spec, rules.providers)
    except FieldError as e:
        raise ConfigError(e.message, path=path, line=locate(doc, e.key), key=e.key) from None
    return RuleSet(**{**_fields(rules), "path": path, "catalog_spec": spec})


def _check_source_providers(spec: CatalogSpec, providers: Mapping[str, ProviderSpec]) -> None:
    for i, source in enumerate(spec.sources):
        if source.provider is not None and source.provider not in providers:
            raise FieldError(f"catalog.sources[{i}].provider",
                             f"{source.provider!r} is not a configured provider")


def _fields(rules: RuleSet) -> dict[str, Any]:
    return {f.name: getattr(rules, f.name) for f in fields(RuleSet) if f.init}


def parse_rules(doc: Any, builtin: Catalog) -> RuleSet:
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise FieldError("", "the rules file must be a mapping of top-level keys")
    unknown = unknown_keys(doc, _TOP_KEYS)
    if unknown:
        raise FieldError(key_name(unknown[0]),
                         f"unknown key; allowed: {', '.join(sorted(_TOP_KEYS))}")
    version = doc.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version != 1:
        raise FieldError("version", "only version 1 is supported")
    providers = parse_providers(_section(doc, "providers", {}))
    intercept = parse_intercept(doc.get("intercept", ["api.openai.com"]), providers)
    providers = {**providers, **_implicit_providers(intercept, providers)}
    models = parse_models(_section(doc, "models", []), base=builtin)
    _check_model_providers(models, providers)
    catalog = builtin.merged(models)
    defaults = parse_defaults(_section(doc, "defaults", {}))
    apps = parse_apps(_section(doc, "apps", []), catalog=catalog, providers=providers)
    return RuleSet(
        intercept=intercept, providers=providers, catalog=catalog, defaults=defaults,
        apps=apps, shadow=_bool(doc, "shadow"), budget=parse_budget(doc.get("budget"), "budget"),
        state=parse_state(doc.get("state")), cache_store=parse_cache_store(doc.get("cache")),
    )


def _section(doc: Mapping[str, Any], key: str, default: Any) -> Any:
    """A top-level section; only a missing or empty (null) one takes the default, so a falsy
    value of the wrong type (``apps: {}``) is still refused by its parser."""
    value = doc.get(key)
    return default if value is None else value


def parse_providers(raw: Any) -> dict[str, ProviderSpec]:
    if not isinstance(raw, Mapping):
        raise FieldError("providers", "must be a mapping of provider name -> settings")
    out: dict[str, ProviderSpec] = {}
    for name, value in raw.items():
        try:
            out[str(name)] = parse_provider(str(name), value)
        except FieldError as e:
            raise e.under(f"providers{key_step(name)}") from None
    return out


_OPENAI_KEYS = {"type", "base_url", "api_key", "responses", "timeout"}
NATIVE_RESPONSES_HOSTS = frozenset({"api.openai.com"})  # `responses:` defaults to true there
_BEDROCK_KEYS = {"type", "region", "endpoint_url", "control_endpoint_url", "profile", "timeout"}
MAX_TIMEOUT = 3600.0


def parse_provider(name: str, raw: Any) -> ProviderSpec:
    if not isinstance(raw, Mapping):
        raise FieldError("", "must be a mapping with at least 'type'")
    kind = raw.get("type")
    if kind not in PROVIDER_TYPES:
        raise FieldError("type", f"{kind!r} is not one of: {', '.join(PROVIDER_TYPES)}")
    allowed, parse = _PROVIDER_KINDS[kind]
    unknown = unknown_keys(raw, allowed)
    if unknown:
        raise FieldError(key_name(unknown[0]), f"unknown key for a {kind} provider; allowed: "
                         f"{', '.join(sorted(allowed))}")
    return parse(name, raw)


def _parse_bedrock(name: str, raw: Mapping[str, Any]) -> ProviderSpec:
    region = raw.get("region")
    if not isinstance(region, str) or not region:
        raise FieldError("region", "required for a bedrock provider, e.g. us-east-1")
    return ProviderSpec(name=name, type=raw["type"], api_key="none", region=region,
                        endpoint_url=_opt_url(raw, "endpoint_url"),
                        control_endpoint_url=_opt_url(raw, "control_endpoint_url"),
                        profile=raw.get("profile"), timeout=_timeout(raw))


def _parse_openai(name: str, raw: Mapping[str, Any]) -> ProviderSpec:
    base_url = _url(raw.get("base_url"), "base_url").rstrip("/")
    responses = raw.get("responses", urlsplit(base_url).hostname in NATIVE_RESPONSES_HOSTS)
    if not isinstance(responses, bool):
        raise FieldError("responses", "must be true or false (does it serve /v1/responses?)")
    return ProviderSpec(name=name, type=raw["type"], base_url=base_url, api_key=_api_key(raw),
                        responses=responses, timeout=_timeout(raw))


# type -> (the keys it accepts, its parser)
_ProviderParser = Callable[[str, Mapping[str, Any]], ProviderSpec]
_PROVIDER_KINDS: Mapping[str, tuple[set[str], _ProviderParser]] = {
    "openai": (_OPENAI_KEYS, _parse_openai),
    "bedrock": (_BEDROCK_KEYS, _parse_bedrock),
}


def _timeout(raw: Mapping[str, Any]) -> float | None:
    value = raw.get("timeout")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            1 <= value <= MAX_TIMEOUT):
        raise FieldError("timeout", f"{value!r}: seconds without a byte from this provider "
                         f"before an attempt that can fall back gives up, from 1 to "
                         f"{MAX_TIMEOUT:g} (default 120)")
    return float(value)


def _opt_url(raw: Mapping[str, Any], key: str) -> str | None:
    return None if raw.get(key) is None else _url(raw[key], key)


def _url(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise FieldError(key, "required, an http(s) URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FieldError(key, f"{value!r} is not an http(s) URL")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise FieldError(key, f"{value!r} has an invalid port") from None
    return value


def _api_key(raw: Mapping[str, Any]) -> str:
    value = raw.get("api_key", FROM_REQUEST)
    if value in (FROM_REQUEST, "none"):
        return str(value)
    if isinstance(value, str) and value.startswith("env:") and len(value) > 4:
        return value
    raise FieldError(
        "api_key", "must be 'from-request', 'none' or 'env:VARIABLE' (keys are never written "
        "in the file itself)"
    )


def parse_intercept(raw: Any, providers: Mapping[str, ProviderSpec]) -> tuple[InterceptSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise FieldError("intercept", "must be a non-empty list of hosts, e.g. [api.openai.com]")
    out = []
    for i, item in enumerate(raw):
        where = f"intercept[{i}]"
        if isinstance(item, str):
            host, provider = item, None
        elif isinstance(item, Mapping) and isinstance(item.get("host"), str):
            host, provider = item["host"], item.get("provider")
            if provider is not None and (not isinstance(provider, str) or provider not in providers):
                raise FieldError(f"{where}.provider", f"no provider named {provider!r} "
                                 f"(configured: {', '.join(providers) or 'none'})")
        else:
            raise FieldError(where, "must be a host name or {host: ..., provider: ...}")
        name, _, port = host.partition(":")
        if not name or (port and not (port.isascii() and port.isdigit())):
            raise FieldError(where, f"{host!r} is not a host name")
        provider = provider or _provider_for_host(name, providers) or f"{name} (direct)"
        out.append(InterceptSpec(host=name.lower(), port=int(port or 443), provider=provider))
    return tuple(out)


def _provider_for_host(host: str, providers: Mapping[str, ProviderSpec]) -> str | None:
    for spec in providers.values():
        if spec.base_url and urlsplit(spec.base_url).hostname == host.lower():
            return spec.name
    return None


def _implicit_providers(
    intercept: tuple[InterceptSpec, ...], providers: Mapping[str, ProviderSpec]
) -> dict[str, ProviderSpec]:
    """An intercepted host no provider serves gets one: itself, with the app's own key."""
    out = {}
    for spec in intercept:
        if spec.provider not in providers:
            url = f"https://{spec.host}" + ("" if spec.port == 443 else f":{spec.port}") + "/v1"
            out[spec.provider] = ProviderSpec(name=spec.provider, type="openai", base_url=url,
                                              responses=spec.host in NATIVE_RESPONSES_HOSTS)
    return out


def _check_model_providers(
    models: list[ModelSpec], providers: Mapping[str, ProviderSpec]
) -> None:
    """Every model this file adds or overrides must name a configured provider."""
    for i, spec in enumerate(models):
        if spec.provider not in providers:
            raise FieldError(f"models[{i}].provider", f"no provider named {spec.provider!r} "
                             f"(configured: {', '.join(providers) or 'none'})")


def parse_defaults(raw: Any) -> DefaultsSpec:
    if not isinstance(raw, Mapping):
        raise FieldError("defaults", "must be a mapping like {tier: standard, prefer: balanced}")
    unknown = unknown_keys(raw, ("tier", "prefer", "auto_tier"))
    if unknown:
        raise FieldError(f"defaults{key_step(unknown[0])}",
                         "unknown key; allowed: auto_tier, prefer, tier")
    tier = raw.get("tier", "standard")
    prefer = raw.get("prefer", "balanced")
    if tier not in REQUESTABLE_TIERS:
        raise FieldError("defaults.tier",
                         f"{tier!r} is not one of: {', '.join(REQUESTABLE_TIERS)}")
    if prefer not in PREFERS:
        raise FieldError("defaults.prefer", f"{prefer!r} is not one of: {', '.join(PREFERS)}")
    return DefaultsSpec(tier=tier, prefer=prefer, auto_tier=_thresholds(raw.get("auto_tier")))


def _thresholds(raw: Any) -> Thresholds:
    if raw is None:
        return DEFAULT_THRESHOLDS
    if not isinstance(raw, Mapping):
        raise FieldError("defaults.auto_tier", "must be a mapping like {standard: 35, premium: 60}")
    unknown = unknown_keys(raw, ("standard", "premium"))
    if unknown:
        raise FieldError(f"defaults.auto_tier{key_step(unknown[0])}",
                         "unknown key; allowed: premium, standard")
    values = {k: raw.get(k, getattr(DEFAULT_THRESHOLDS, k)) for k in ("standard", "premium")}
    try:
        return Thresholds(**values)
    except ValueError as e:
        bad = "premium" if "premium" in str(e).split("must")[0] else "standard"
        raise FieldError(f"defaults.auto_tier.{bad}", str(e).split(" ", 1)[1]) from None


def _bool(raw: Mapping[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise FieldError(key, "must be true or false")
    return value


def unavailable_providers(rules: RuleSet, environ: Mapping[str, str]) -> dict[str, str]:
    """Providers that cannot serve now, with the reason (checked at load; keys never logged)."""
    down = {}
    for spec in rules.providers.values():
        if spec.api_key.startswith("env:") and not spec.resolve_key(environ):
            down[spec.name] = f"its key variable {spec.api_key[4:]} is not set"
    return down
