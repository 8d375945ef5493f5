"""sidecar/apps.py: parsing apps (match, routes) out of rules.yaml, and matching calls to apps."""

from __future__ import annotations

import hashlib
import textwrap
from typing import Any

import pytest

from sidecar.apps import DEFAULT_APP, AppSpec, MatchSpec, RouteSpec, choose_app, parse_match
from sidecar.catalog import Catalog, load_builtin_catalog, parse_models
from sidecar.errors import ConfigError
from sidecar.facts import RequestFacts
from sidecar.rules import RuleSet, parse_rules_text

BUILTIN = load_builtin_catalog()
HEAD = "providers:\n  openai: {type: openai, base_url: https://api.openai.com/v1}\napps:\n"


def parse(apps: str, catalog: Catalog | None = None) -> RuleSet:
    return parse_rules_text(HEAD + apps, path="r.yaml",
                            catalog=catalog or BUILTIN)


def refused(apps: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(apps)
    return str(info.value)


# Lines: HEAD is lines 1-3, so an app list starts on line 4.
@pytest.mark.parametrize("apps, where, message", [
    ("  name: a\n", "r.yaml:3: apps", "must be a list of apps"),
    ("  - name: a\n  - name: b\n  - name: a\n", "r.yaml:6: apps[2].name",
     "app 'a' is defined twice"),
    ("  - just-a-name\n", "r.yaml:4: apps[0]",
     "an app must be a mapping with name, match and routes"),
    ("  - match: {proxy_user: x}\n", "r.yaml:4: apps[0].name", "required, a non-empty string"),
    ("  - name: a\n    rules: {}\n", "r.yaml:5: apps[0].rules",
     "unknown key; allowed: match, name, routes, shadow"),
    ("  - name: a\n    shadow: sometimes\n", "r.yaml:5: apps[0].shadow", "must be true or false"),
    # match
    ("  - name: a\n    match: {}\n", "r.yaml:5: apps[0].match", "must be a mapping with any of:"),
    ("  - name: a\n    match:\n      ip: 10.0.0.1\n", "r.yaml:6: apps[0].match.ip",
     "unknown match key; allowed: api_key_sha256, client, header, listen, proxy_user, user_agent"),
    ("  - name: a\n    match:\n      client: 10.0.0.0/33\n", "r.yaml:6: apps[0].match.client",
     "not a CIDR or address"),
    ("  - name: a\n    match:\n      client: [10.0.0.0/8, office]\n",
     "r.yaml:6: apps[0].match.client", "not a CIDR or address"),
    ("  - name: a\n    match:\n      api_key_sha256: sk-proj-abc\n",
     "r.yaml:6: apps[0].match.api_key_sha256", "must be a hex prefix (at least 4 characters)"),
    ("  - name: a\n    match:\n      api_key_sha256: abc\n",
     "r.yaml:6: apps[0].match.api_key_sha256", "must be a hex prefix"),
    ("  - name: a\n    match:\n      listen: socks\n", "r.yaml:6: apps[0].match.listen",
     "'socks' is not one of: proxy, reverse, transparent"),
    ("  - name: a\n    match:\n      header: x-app\n", "r.yaml:6: apps[0].match.header",
     "must be a mapping of header name -> value (glob)"),
    ("  - name: a\n    match:\n      proxy_user: 42\n", "r.yaml:6: apps[0].match.proxy_user",
     "must be a non-empty string"),
    # routes
    ("  - name: a\n    routes: [gpt-4o]\n", "r.yaml:5: apps[0].routes",
     "must be a mapping of model glob -> route"),
    ("  - name: a\n    routes:\n      gpt-4o: gpt-9\n", "r.yaml:6: apps[0].routes.gpt-4o",
     "unknown model 'gpt-9': not in the catalog or this file's models"),
    ("  - name: a\n    routes:\n      gpt-4o: {model: gpt-9}\n",
     "r.yaml:6: apps[0].routes.gpt-4o.model", "unknown model 'gpt-9'"),
    ("  - name: a\n    routes:\n      gpt-4o:\n        prefer: cheapest\n",
     "r.yaml:7: apps[0].routes.gpt-4o.prefer",
     "'cheapest' is not one of: cheap, fast, balanced, quality, coding"),
    ("  - name: a\n    routes:\n      gpt-4o:\n        tier: gold\n",
     "r.yaml:7: apps[0].routes.gpt-4o.tier", "'gold' is not one of: economy, standard, premium, auto"),
    ("  - name: a\n    routes:\n      gpt-4o:\n        priority: 1\n",
     "r.yaml:7: apps[0].routes.gpt-4o.priority", "unknown key; allowed: fallbacks, model, prefer, "
     "tier"),
    ("  - name: a\n    routes:\n      gpt-4o:\n        fallbacks: [gpt-4o-mini, nope]\n",
     "r.yaml:7: apps[0].routes.gpt-4o.fallbacks[1]", "unknown model 'nope'"),
    ("  - name: a\n    routes:\n      gpt-4o: {model: auto, fallbacks: gpt-4o-mini}\n",
     "r.yaml:6: apps[0].routes.gpt-4o.fallbacks", "must be a list of model names"),
    ("  - name: a\n    routes:\n      gpt-4o:\n", "r.yaml:6: apps[0].routes.gpt-4o",
     "must be a model name, 'passthrough', or a mapping"),
    ('  - name: a\n  - name: b\n    routes:\n      "gpt-4.1": {prefer: cheapest}\n',
     'r.yaml:7: apps[1].routes["gpt-4.1"].prefer', "'cheapest' is not one of"),
])
def test_broken_apps(apps: str, where: str, message: str) -> None:
    error = refused(apps)
    assert error.startswith(f"{where}: "), error
    assert message in error


def test_an_error_under_a_character_class_glob_is_a_config_error() -> None:
    assert refused('  - name: a\n    routes:\n      "gpt-[45]*": {prefer: cheapest}\n'
                   ).startswith('r.yaml:6: apps[0].routes["gpt-[45]*"].prefer')


@pytest.mark.parametrize("route", ["claude-haiku", "{model: auto, fallbacks: [gemini-2.5-flash]}"])
def test_a_route_to_an_unconfigured_provider_is_refused(route: str) -> None:
    assert "no provider named" in refused(f"  - name: a\n    routes:\n      gpt-4o: {route}\n")


def test_a_header_without_a_value_is_refused() -> None:
    assert "apps[0].match.header" in refused("  - name: a\n    match:\n      header: {x-app: }\n")


# --- what routes resolve to -----------------------------------------------------------------

def parse_routes(text: str, catalog: Catalog | None = None) -> tuple[RouteSpec, ...]:
    rules = parse(f"  - name: a\n    routes:\n{textwrap.indent(text, '      ')}", catalog)
    return rules.apps[0].routes


@pytest.mark.parametrize("value, kind, model, prefer, tier", [
    ("passthrough", "passthrough", None, None, None),
    ("auto", "auto", None, None, None),
    ("economy", "auto", None, None, "economy"),
    ("{model: premium, prefer: coding}", "auto", None, "coding", "premium"),
    ("{prefer: cheap}", "auto", None, "cheap", None),
    ("{model: auto, tier: standard, prefer: fast}", "auto", None, "fast", "standard"),
    ("gpt-4o-mini", "pin", "gpt-4o-mini", None, None),
    ("{model: gpt-4o-mini}", "pin", "gpt-4o-mini", None, None),
])
def test_route_values(value: str, kind: str, model: str | None, prefer: str | None,
                      tier: str | None) -> None:
    (route,) = parse_routes(f"gpt-4o: {value}\n")
    assert (route.pattern, route.kind, route.model, route.prefer, route.tier) == (
        "gpt-4o", kind, model, prefer, tier)
    assert route.where == "apps[0].routes.gpt-4o"


def test_a_pin_or_fallback_by_provider_id_resolves_to_the_catalog_name() -> None:
    cat = Catalog.of(parse_models([
        {"name": "haiku", "provider": "openai", "id": "us.anthropic.claude-haiku-4-5-v1:0",
         "tier": "standard", "price": {"input": 1, "output": 5}, "context": 200000},
        {"name": "mini", "provider": "openai", "id": "gpt-4o-mini-2024-07-18",
         "tier": "standard", "price": {"input": 0.15, "output": 0.6}, "context": 128000},
    ]))
    (route,) = parse_routes('gpt-4o: {model: "us.anthropic.claude-haiku-4-5-v1:0", '
                            'fallbacks: [gpt-4o-mini-2024-07-18]}\n', catalog=cat)
    assert (route.kind, route.model, route.fallbacks) == ("pin", "haiku", ("mini",))


def test_routes_keep_file_order() -> None:
    routes = parse_routes('"gpt-4o*": passthrough\ngpt-4o: economy\n"*": auto\n')
    assert [r.pattern for r in routes] == ["gpt-4o*", "gpt-4o", "*"]


# --- matching a call to an app --------------------------------------------------------------

KEY = "sk-test-123"
KEY_HASH = hashlib.sha256(KEY.encode()).hexdigest()


def facts(**kw: Any) -> RequestFacts:
    return RequestFacts(model="gpt-4o", **kw)


@pytest.mark.parametrize("match, call, expected", [
    ({"proxy_user": "summarizer"}, {"proxy_user": "summarizer"}, True),
    ({"proxy_user": "summarizer"}, {"proxy_user": "Summarizer"}, False),
    ({"proxy_user": "summarizer"}, {}, False),
    ({"client": "10.1.0.0/16"}, {"client_ip": "10.1.2.3"}, True),
    ({"client": "10.1.0.0/16"}, {"client_ip": "10.2.0.1"}, False),
    ({"client": "10.1.0.0/16"}, {"client_ip": "::ffff:10.1.2.3"}, True),
    ({"client": "10.1.0.0/16"}, {"client_ip": "::ffff:10.2.2.3"}, False),
    ({"client": "fd00::/8"}, {"client_ip": "fd12::1"}, True),
    ({"client": "fd00::/8"}, {"client_ip": "10.1.2.3"}, False),
    ({"client": ["192.168.0.0/16", "10.1.2.3"]}, {"client_ip": "10.1.2.3"}, True),
    ({"client": "10.1.0.0/16"}, {"client_ip": "not-an-ip"}, False),
    ({"header": {"X-App": "review"}}, {"headers": {"x-app": "review"}}, True),
    ({"header": {"x-app": "rev*"}}, {"headers": {"x-app": "review"}}, True),
    ({"header": {"x-app": "review"}}, {"headers": {"x-app": "Review"}}, False),
    ({"header": {"x-app": "*"}}, {"headers": {}}, False),
    ({"header": {"x-app": "*"}}, {"headers": {"x-app": ""}}, True),
    ({"header": {"x-app": "review", "x-env": "prod"}}, {"headers": {"x-app": "review"}}, False),
    ({"api_key_sha256": KEY_HASH[:8]}, {"headers": {"authorization": f"Bearer {KEY}"}}, True),
    ({"api_key_sha256": KEY_HASH[:8].upper()}, {"headers": {"authorization": f"Bearer {KEY}"}},
     True),
    ({"api_key_sha256": KEY_HASH}, {"headers": {"authorization": f"bearer {KEY}"}}, True),
    ({"api_key_sha256": KEY_HASH[:8]}, {"headers": {"authorization": "Bearer sk-other"}}, False),
    ({"api_key_sha256": KEY_HASH[:8]}, {"headers": {"authorization": f"Basic {KEY}"}}, False),
    ({"api_key_sha256": KEY_HASH[:8]}, {"headers": {}}, False),
    ({"listen": "reverse"}, {"listener": "reverse"}, True),
    ({"listen": "reverse"}, {"listener": "proxy"}, False),
    ({"user_agent": "OpenAI/Python*"}, {"headers": {"user-agent": "OpenAI/Python 1.99"}}, True),
    ({"user_agent": "OpenAI/Python*"}, {"headers": {"user-agent": "curl/8.5"}}, False),
    ({"user_agent": "*"}, {}, True),
    ({"proxy_user": "s", "listen": "proxy"}, {"proxy_user": "s", "listener": "proxy"}, True),
    ({"proxy_user": "s", "listen": "proxy"}, {"proxy_user": "s", "listener": "reverse"}, False),
])
def test_match(match: dict[str, Any], call: dict[str, Any], expected: bool) -> None:
    assert parse_match(match).matches(facts(**call)) is expected


def test_the_key_itself_never_lands_in_the_match() -> None:
    spec = parse_match({"api_key_sha256": KEY_HASH[:12]})
    assert KEY not in repr(spec) and spec.api_key_sha256 == KEY_HASH[:12]


def app(name: str, match: dict[str, Any] | None) -> AppSpec:
    return AppSpec(name=name, match=None if match is None else parse_match(match))


APPS = (app("a", {"proxy_user": "a"}), app("wide", {"client": "10.0.0.0/8"}),
        app("narrow", {"client": "10.1.0.0/16"}))


@pytest.mark.parametrize("call, expected", [
    ({"proxy_user": "a", "client_ip": "10.1.0.1"}, "a"),
    ({"client_ip": "10.1.0.1"}, "wide"),  # first match wins, not the most specific
    ({"client_ip": "192.168.1.1"}, "default"),
])
def test_choose_app_first_match_wins(call: dict[str, Any], expected: str) -> None:
    assert choose_app(APPS, facts(**call)).name == expected


def test_no_match_is_the_default_app_and_an_app_without_match_takes_everything() -> None:
    assert choose_app((), facts()) is DEFAULT_APP
    assert DEFAULT_APP.routes == () and DEFAULT_APP.name == "default"
    catch_all = app("all", None)
    assert choose_app((*APPS, catch_all), facts(client_ip="192.168.1.1")) is catch_all
    assert choose_app((catch_all, *APPS), facts(proxy_user="a")) is catch_all


def test_match_spec_defaults_match_everything() -> None:
    assert MatchSpec().matches(facts(client_ip="::1", listener="transparent"))


@pytest.mark.parametrize("model, expected", [
    ("gpt-4o", "gpt-4o*"),
    ("gpt-4o-mini", "gpt-4o*"),
    ("gpt-4.1", "gpt-4.1"),
    ("gpt-4.1-mini", "*"),
    ("GPT-4O", "*"),  # globs are case-sensitive, as model names are
])
def test_route_for_first_matching_glob_wins(model: str, expected: str) -> None:
    routes = parse_routes('"gpt-4o*": passthrough\ngpt-4o: economy\n"gpt-4.1": premium\n'
                          '"*": auto\n')
    spec = AppSpec(name="a", match=None, routes=routes)
    route = spec.route_for(model)
    assert route is not None and route.pattern == expected


def test_route_for_without_a_matching_route_is_none() -> None:
    spec = AppSpec(name="a", match=None, routes=parse_routes("gpt-4o: economy\n"))
    assert spec.route_for("gpt-4o-mini") is None
