"""Apps in rules.yaml: how a call is recognised (``match``) and how its models are routed.

    apps:
      - name: nightly-summaries
        match: {proxy_user: summarizer}
        routes:
          gpt-4o: {model: auto, prefer: cheap}
          "*": passthrough

Apps are tried in file order and the first whose every match key holds wins; an app without
``match`` matches everything. Traffic no app matches belongs to the app ``default``.

Matching is on the per-call path, so it is compiled when the rules load:

* each ``MatchSpec`` turns its globs into compiled regular expressions (``fnmatch.translate``, the
  very expressions ``fnmatch.fnmatchcase`` uses) and its networks into integer
  ``(version, network, mask)`` checks on the caller's address, parsed once per call (``Probe``);
* each ``AppSpec`` compiles its route globs the same way (a glob without ``*?[`` is a plain
  string comparison);
* ``AppMatcher`` (one per ``RuleSet``) remembers which app each caller identity chose. The
  identity is the tuple of exactly the call fields some app's match reads -- proxy user,
  listener, client address, the SHA-256 of the API key (never the key), user agent, and the
  values of the headers named in a match -- so two calls with the same identity must choose the
  same app. A sidecar sees few distinct callers, so nearly every call is one dictionary look-up;
  the cache is bounded (cleared when full) and a reloaded ``RuleSet`` starts a new one.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from sidecar.core.config.catalog import Catalog, ModelSpec
from sidecar.core.config.yamlfile import FieldError, key_name, key_step, unknown_keys
from sidecar.core.facts import RequestFacts
from sidecar.core.vocabulary import (
    AUTO,
    LISTENERS,
    PASSTHROUGH,
    PIN,
    PREFERS,
    REQUESTABLE_TIERS,
    TIERS,
    Listener,
    Prefer,
    RequestableTier,
    RouteKind,
)

Glob = Callable[[str], "re.Match[str] | None"]  # a compiled glob: ``glob(text) is not None``
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_GLOB_CHARS = re.compile(r"[*?[]")


def compile_glob(pattern: str) -> Glob:
    """``fnmatch.fnmatchcase(text, pattern)`` as ``compile_glob(pattern)(text) is not None``."""
    return re.compile(fnmatch.translate(pattern)).match


def compile_network(net: Network) -> tuple[int, int, int]:
    """(version, network, mask) as integers: ``addr in net`` is ``version == addr.version and
    int(addr) & mask == network``, exactly as ``ipaddress`` decides it."""
    return net.version, int(net.network_address), int(net.netmask)


@dataclass(frozen=True, slots=True)
class MatchSpec:
    proxy_user: str | None = None
    client: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()  # see Network
    header: tuple[tuple[str, str], ...] = ()  # (lower-case name, value glob)
    api_key_sha256: str | None = None  # a hex prefix
    listen: Listener | None = None
    user_agent: str | None = None  # glob
    # compiled from the above (__post_init__): one test, the conjunction of one check per key
    _test: Test = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_test", _compile_match(self))  # frozen: set once, here

    def matches(self, facts: RequestFacts, probe: Probe | None = None) -> bool:
        """Whether every key given holds. ``probe`` carries what is derived from the call once
        (its parsed address, its key's hash) across all the apps tried."""
        return self._test(facts, probe or Probe(facts))

    def reads(self) -> set[str]:
        """The call fields this match reads (``AppMatcher`` keys its cache on them)."""
        used = {name for name, value in (
            ("proxy_user", self.proxy_user), ("listener", self.listen),
            ("client_ip", self.client), ("api_key_sha256", self.api_key_sha256),
            ("user_agent", self.user_agent)) if value}
        return used | {f"header:{name}" for name, _ in self.header}


Test = Callable[[RequestFacts, "Probe"], bool]


def _compile_match(spec: MatchSpec) -> Test:
    """A function checking exactly the keys ``spec`` gives: globs as compiled regular
    expressions, networks as integer (version, network, mask) checks on the probed address."""
    checks: list[Test] = []
    if spec.proxy_user is not None:
        user = spec.proxy_user
        checks.append(lambda facts, probe: facts.proxy_user == user)
    if spec.listen is not None:
        listen = spec.listen
        checks.append(lambda facts, probe: facts.listener == listen)
    if spec.client:
        networks = tuple(compile_network(n) for n in spec.client)
        checks.append(lambda facts, probe: probe.in_networks(networks))
    if spec.api_key_sha256 is not None:
        prefix = spec.api_key_sha256
        checks.append(lambda facts, probe: probe.key_hash().startswith(prefix))
    if spec.user_agent is not None:
        agent = compile_glob(spec.user_agent)
        checks.append(lambda facts, probe: agent(facts.user_agent) is not None)
    for name, pattern in spec.header:
        checks.append(_header_check(name, compile_glob(pattern)))
    return _conjunction(checks)


def _header_check(name: str, glob: Glob) -> Test:
    def check(facts: RequestFacts, probe: Probe) -> bool:
        value = facts.headers.get(name)
        return value is not None and glob(value) is not None
    return check


def _conjunction(checks: list[Test]) -> Test:
    """All of ``checks``, in order, stopping at the first that fails."""
    if not checks:
        return lambda facts, probe: True  # a match without keys holds for every call
    first = checks[0]
    if len(checks) == 1:
        return first
    rest = _conjunction(checks[1:])
    return lambda facts, probe: first(facts, probe) and rest(facts, probe)


class Probe:
    """Per-call values the match keys need, computed at most once per call."""

    __slots__ = ("_addr", "_facts", "_key")

    def __init__(self, facts: RequestFacts, key_hash: str | None = None) -> None:
        self._facts = facts
        self._addr: tuple[int, int] | None | bool = False  # (version, address as an int)
        self._key = key_hash  # when the caller has computed it already

    def key_hash(self) -> str:
        if self._key is None:
            self._key = self._facts.api_key_sha256 or ""
        return self._key

    def in_networks(self, networks: tuple[tuple[int, int, int], ...]) -> bool:
        """Whether the client address is in any of ``networks`` (``compile_network``)."""
        if self._addr is False:
            self._addr = _parse_address(self._facts.client_ip)
        if self._addr is None or isinstance(self._addr, bool):
            return False
        version, ip = self._addr
        for net_version, net, mask in networks:
            if net_version == version and ip & mask == net:
                return True
        return False


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # 0-255, no leading zeros
_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")


def _parse_address(ip: str) -> tuple[int, int] | None:
    """(version, address as an int) as ``_address`` reads ``ip``; None if it is no address.
    Dotted IPv4 -- what ipaddress accepts as IPv4, exactly -- is read without its objects."""
    if _IPV4.fullmatch(ip):
        a, b, c, d = ip.split(".")
        return 4, int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d)
    addr = _address(ip)
    return None if addr is None else (addr.version, int(addr))


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
    kind: RouteKind
    model: str | None = None  # the pinned model (kind == PIN)
    prefer: Prefer | None = None
    tier: RequestableTier | None = None
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
    # (route, its compiled glob or None for a plain name), set in __post_init__
    _route_globs: tuple[tuple[RouteSpec, Glob | None], ...] = field(
        init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "_route_globs", tuple(
            (r, compile_glob(r.pattern) if _GLOB_CHARS.search(r.pattern) else None)
            for r in self.routes))

    def route_for(self, model: str) -> RouteSpec | None:
        """The first route whose glob matches ``model`` (as ``RouteSpec.applies_to``)."""
        for route, glob in self._route_globs:
            if route.pattern == model or (glob is not None and glob(model) is not None):
                return route
        return None


DEFAULT_APP = AppSpec(name="default", match=None)


def choose_app(
    apps: tuple[AppSpec, ...], facts: RequestFacts, probe: Probe | None = None
) -> AppSpec:
    """The first app whose match holds, else ``DEFAULT_APP`` (uncached; see ``AppMatcher``)."""
    probe = probe or Probe(facts)
    for app in apps:
        if app.match is None or app.match._test(facts, probe):
            return app
    return DEFAULT_APP


class AppMatcher:
    """``choose_app`` for one rules file, remembering the app each caller identity chose.

    The identity (``key``) holds exactly the call fields the apps' matches read, and only those
    some app up to the first catch-all (an app without ``match``) reads, so it is cheap to build
    and the app is a function of it. The API key enters only as its SHA-256, and only when some
    app matches on it. The cache holds at most ``MAX_ENTRIES`` identities (it is cleared when
    full: a sidecar sees few distinct callers); an identity longer than ``MAX_KEY_CHARS``
    characters (huge user agents or header values) is matched every time instead of cached.
    """

    MAX_ENTRIES = 4096
    MAX_KEY_CHARS = 1024

    __slots__ = ("_apps", "_cache", "_constant", "_fields", "_hash_at", "_headers")

    def __init__(self, apps: tuple[AppSpec, ...]) -> None:
        self._apps = apps
        reads: set[str] = set()
        for app in apps:
            if app.match is None:
                break  # it takes every call that reaches it: the apps after it are never tried
            reads |= app.match.reads()
        fields = [f for f in ("proxy_user", "listener", "client_ip", "api_key_sha256",
                              "user_agent") if f in reads]
        # one C call for all the fields (a single field comes back bare, which is as good a key)
        self._fields: Callable[[RequestFacts], Any] = attrgetter(*fields) if fields else _none
        # where the key holds the API key's hash (so a miss does not hash it again)
        self._hash_at = (None if "api_key_sha256" not in fields
                         else -1 if len(fields) == 1 else fields.index("api_key_sha256"))
        self._headers = tuple(sorted(r[7:] for r in reads if r.startswith("header:")))
        # nothing is read: every call chooses the same app
        self._constant = None if reads else choose_app(apps, RequestFacts(model=""))
        self._cache: dict[tuple[Any, ...], AppSpec] = {}

    def key(self, facts: RequestFacts) -> tuple[Any, ...]:
        """The caller identity: what the matches read, in a fixed order."""
        return self._fields(facts), tuple(map(facts.headers.get, self._headers))

    def choose(self, facts: RequestFacts) -> AppSpec:
        if self._constant is not None:
            return self._constant
        key = self.key(facts)
        app = self._cache.get(key)
        if app is None:
            at = self._hash_at
            probe = Probe(facts) if at is None else Probe(
                facts, (key[0] if at < 0 else key[0][at]) or "")
            app = choose_app(self._apps, facts, probe)
            if _chars(key) <= self.MAX_KEY_CHARS:
                if len(self._cache) >= self.MAX_ENTRIES:
                    self._cache.clear()
                self._cache[key] = app
        return app

    def __len__(self) -> int:
        """How many identities are cached."""
        return len(self._cache)


def _none(facts: RequestFacts) -> None:
    return None


def _chars(value: Any) -> int:
    """The characters of the strings in a (nested) key."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, tuple):
        return sum(_chars(v) for v in value)
    return 0


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


def _listen(value: Any) -> Listener | None:
    if value is None:
        return None
    for listener in LISTENERS:
        if value == listener:
            return listener
    raise FieldError("match.listen", f"{value!r} is not one of: {', '.join(LISTENERS)}")


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
