"""Apps in rules.yaml: how a call is recognised (``match``) and how its models are routed.

    apps:
      - name: nightly-summaries
        match: {proxy_user: summarizer}
        routes:
          gpt-4o: {model: auto, prefer: cheap}
          "*": passthrough

Apps are tried in file order and the first whose every match key holds wins; an app without
``match`` matches everything. Traffic no app matches belongs to the app ``default``.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.catalog import REQUESTABLE_TIERS, TIERS, Catalog, ModelSpec
from sidecar.facts import LISTENERS, PREFERS, RequestFacts
from sidecar.yamlfile import FieldError, key_name, key_step, unknown_keys

AUTO = "auto"
PASSTHROUGH = "passthrough"


@dataclass(frozen=True, slots=True)
class MatchSpec:
    proxy_user: str | None = None
    client: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()  # see Network
    header: tuple[tuple[str, str], ...] = ()  # (lower-case name, value glob)
    api_key_sha256: str | None = None  # a hex prefix
    listen: str | None = None
    user_agent: str | None = None  # glob

    def matches(self, facts: RequestFacts, probe: Probe | None = None) -> bool:
        """Whether every key given holds. ``probe`` carries what is derived from the call once
        (its parsed address, its key's hash) across all the apps tried."""
        probe = probe or Probe(facts)
        if self.proxy_user is not None and facts.proxy_user != self.proxy_user:
            return False
        if self.listen is not None and facts.listener != self.listen:
            return False
        if self.client and not probe.in_networks(self.client):
            return False
        if self.api_key_sha256 is not None and not probe.key_hash().startswith(
                self.api_key_sha256):
            return False
        if self.user_agent is not None and not fnmatch.fnmatchcase(
            facts.user_agent, self.user_agent
        ):
            return False
        return all(
            name in facts.headers and fnmatch.fnmatchcase(facts.headers[name], glob)
            for name, glob in self.header
        )


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Probe:
    """Per-call values the match keys need, computed at most once per call."""

    __slots__ = ("_addr", "_facts", "_key")

    def __init__(self, facts: RequestFacts) -> None:
        self._facts = facts
        self._addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None | bool = False
        self._key: str | None = None

    def key_hash(self) -> str:
        if self._key is None:
            self._key = self._facts.api_key_sha256 or ""
        return self._key

    def in_networks(self, networks: tuple[Network, ...]) -> bool:
        if self._addr is False:
            self._addr = _address(self._facts.client_ip)
        addr = self._addr
        if addr is None or isinstance(addr, bool):
            return False
        return any(addr.version == net.version and addr in net for net in networks)


def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@dataclass(frozen=True, slots=True)
class RouteSpec:
    pattern: str  # a model glob as the app sends it
    kind: str  # "pin" | "passthrough" | "auto"
    model: str | None = None  # the pinned model (kind == "pin")
    prefer: str | None = None
    tier: str | None = None
    fallbacks: tuple[str, ...] = ()
    where: str = ""  # the rules.yaml key path, for explanations

    def applies_to(self, model: str) -> bool:
        return self.pattern == model or fnmatch.fnmatchcase(model, self.pattern)


@dataclass(frozen=True, slots=True)
class AppSpec:
    name: str
    match: MatchSpec | None
    routes: tuple[RouteSpec, ...] = ()
    shadow: bool = False

    def route_for(self, model: str) -> RouteSpec | None:
        return next((r for r in self.routes if r.applies_to(model)), None)


DEFAULT_APP = AppSpec(name="default", match=None)


def choose_app(apps: tuple[AppSpec, ...], facts: RequestFacts) -> AppSpec:
    probe = Probe(facts)
    for app in apps:
        if app.match is None or app.match.matches(facts, probe):
            return app
    return DEFAULT_APP


_APP_KEYS = {"name", "match", "routes", "shadow"}
_MATCH_KEYS = {"proxy_user", "client", "header", "api_key_sha256", "listen", "user_agent"}
_ROUTE_KEYS = {"model", "prefer", "tier", "fallbacks"}
_HEX = re.compile(r"^[0-9a-f]{4,64}$")


def parse_apps(
    raw: Any, *, catalog: Catalog, providers: Collection[str]
) -> tuple[AppSpec, ...]:
    """``apps:``; a route may only pin (or fall back to) models on one of ``providers``."""
    if not isinstance(raw, list):
        raise FieldError("apps", "must be a list of apps")
    apps, names = [], set()
    for i, item in enumerate(raw):
        try:
            app = parse_app(item, catalog=catalog, providers=providers, where=f"apps[{i}]")
        except FieldError as e:
            raise e.under(f"apps[{i}]") from None
        if app.name in names:
            raise FieldError(f"apps[{i}].name", f"app {app.name!r} is defined twice")
        names.add(app.name)
        apps.append(app)
    return tuple(apps)


def parse_app(
    raw: Any, *, catalog: Catalog, providers: Collection[str], where: str = ""
) -> AppSpec:
    if not isinstance(raw, Mapping):
        raise FieldError("", "an app must be a mapping with name, match and routes")
    unknown = unknown_keys(raw, _APP_KEYS)
    if unknown:
        raise FieldError(key_name(unknown[0]),
                         f"unknown key; allowed: {', '.join(sorted(_APP_KEYS))}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise FieldError("name", "required, a non-empty string")
    shadow = raw.get("shadow", False)
    if not isinstance(shadow, bool):
        raise FieldError("shadow", "must be true or false")
    match = None if raw.get("match") is None else parse_match(raw["match"])
    raw_routes = {} if raw.get("routes") is None else raw["routes"]
    routes = parse_routes(raw_routes, catalog=catalog, providers=providers,
                          where=f"{where}.routes")
    return AppSpec(name=name, match=match, routes=routes, shadow=shadow)


def parse_match(raw: Any) -> MatchSpec:
    if not isinstance(raw, Mapping) or not raw:
        raise FieldError("match", f"must be a mapping with any of: {', '.join(sorted(_MATCH_KEYS))}")
    unknown = unknown_keys(raw, _MATCH_KEYS)
    if unknown:
        raise FieldError(f"match{key_step(unknown[0])}",
                         f"unknown match key; allowed: {', '.join(sorted(_MATCH_KEYS))}")
    return MatchSpec(
        proxy_user=_opt_str(raw, "proxy_user"),
        client=_networks(raw.get("client")),
        header=_headers(raw.get("header")),
        api_key_sha256=_key_hash(raw.get("api_key_sha256")),
        listen=_listen(raw.get("listen")),
        user_agent=_opt_str(raw, "user_agent"),
    )


def _opt_str(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise FieldError(f"match.{key}", "must be a non-empty string")
    return value


def _networks(value: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    try:
        return tuple(ipaddress.ip_network(str(v), strict=False) for v in items)
    except ValueError as e:
        raise FieldError("match.client", f"not a CIDR or address: {e}") from None


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping) or not value:
        raise FieldError("match.header", "must be a mapping of header name -> value (glob)")
    for name, glob in value.items():
        if glob is None or isinstance(glob, Mapping | list):
            raise FieldError("match.header", f"header {str(name)!r} needs a value (a glob; "
                             "'*' for any value)")
    return tuple((str(k).lower(), str(v)) for k, v in value.items())


def _key_hash(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).lower()
    if not _HEX.match(text):
        raise FieldError("match.api_key_sha256", "must be a hex prefix (at least 4 characters) "
                         "of the SHA-256 of the key — never the key itself")
    return text


def _listen(value: Any) -> str | None:
    if value is None:
        return None
    if value not in LISTENERS:
        raise FieldError("match.listen", f"{value!r} is not one of: {', '.join(LISTENERS)}")
    return str(value)


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
    return RouteSpec(pattern=pattern, kind="pin", model=spec.name, fallbacks=fallbacks,
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
