"""Apps in rules.yaml: how a call is recognised (``match``) and how its models are routed.

    apps:
      - name: nightly-summaries
        match: {proxy_user: summarizer}
        routes:
          gpt-4o: {model: auto, prefer: cheap}
          "*": passthrough

Apps are tried in file order and the first whose every match key holds wins; an app without
``match`` matches everything. Traffic no app matches belongs to the app ``default``.

An app's ``match`` is ``sidecar.core.config.matching``, its ``routes``
``sidecar.core.config.routes``; this module holds the app itself, reading ``apps:``, and choosing
the app of a call.

Matching is on the per-call path, so it is compiled when the rules load:

* each ``MatchSpec`` compiles its globs and networks (``sidecar.core.config.matching``);
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

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from sidecar.core.budget import BudgetSpec, parse_budget
from sidecar.core.cache import CacheSpec, parse_cache
from sidecar.core.config.catalog import Catalog
from sidecar.core.config.matching import Glob, MatchSpec, Probe, compile_glob, parse_match
from sidecar.core.config.routes import RouteSpec, parse_routes
from sidecar.core.config.yamlfile import FieldError, key_name, unknown_keys
from sidecar.core.facts import RequestFacts

_GLOB_CHARS = re.compile(r"[*?[]")


@dataclass(frozen=True, slots=True)
class AppSpec:
    name: str
    match: MatchSpec | None
    routes: tuple[RouteSpec, ...] = ()
    shadow: bool = False
    budget: BudgetSpec | None = None  # what the app may spend per window (sidecar.core.budget)
    cache: CacheSpec | None = None  # its response cache (sidecar.core.cache); None: off
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


_APP_KEYS = {"name", "match", "routes", "shadow", "budget", "cache"}


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
    return AppSpec(name=name, match=match, routes=routes, shadow=shadow,
                   budget=parse_budget(raw.get("budget"), "budget"),
                   cache=parse_cache(raw.get("cache"), "cache"))
