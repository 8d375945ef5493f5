"""sidecar/apps.py: parsing apps (match, routes) out of rules.yaml, and matching calls to apps."""

from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
import random
import textwrap
from typing import Any

import pytest

from sidecar.core.config.apps import DEFAULT_APP, AppMatcher, AppSpec, choose_app
from sidecar.core.config.catalog import Catalog, load_builtin_catalog, parse_models
from sidecar.core.config.matching import MatchSpec, _parse_address, parse_match
from sidecar.core.config.routes import RouteSpec
from sidecar.core.config.rules import RuleSet, parse_rules_text
from sidecar.core.errors import ConfigError
from sidecar.core.facts import RequestFacts

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
     "unknown key; allowed: budget, cache, match, name, routes, shadow"),
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


# --- compiled matches and the caller-identity cache -----------------------------------------

def reference_matches(spec: MatchSpec, call: RequestFacts) -> bool:
    """MatchSpec.matches as it was before compiling: fnmatch and ipaddress on every call."""
    if spec.proxy_user is not None and call.proxy_user != spec.proxy_user:
        return False
    if spec.listen is not None and call.listener != spec.listen:
        return False
    if spec.client:
        try:
            addr = ipaddress.ip_address(call.client_ip)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if not any(addr.version == n.version and addr in n for n in spec.client):
            return False
    if spec.api_key_sha256 is not None and not (call.api_key_sha256 or "").startswith(
            spec.api_key_sha256):
        return False
    if spec.user_agent is not None and not fnmatch.fnmatchcase(call.user_agent, spec.user_agent):
        return False
    return all(name in call.headers and fnmatch.fnmatchcase(call.headers[name], glob)
               for name, glob in spec.header)


GLOBS = ["review", "rev*", "*", "?eview", "re[vw]iew", "re[!v]iew", "a.b", "a+b", "(x)", "[*]",
         "team-1*", "x\\y", "*-prod", "", "[a-c]?*"]
VALUES = ["review", "reweiw", "rewiew", "REVIEW", "a.b", "axb", "a+b", "(x)", "*", "team-12",
          "team-1", "x\\y", "svc-prod", "", "b9z", "line\nbreak", "agent/1.0"]
NETWORKS = ["10.1.0.0/16", "10.0.0.0/8", "10.1.2.3", "0.0.0.0/0", "fd00::/8", "::/0",
            "::ffff:10.1.0.0/112", "2001:db8::/32", "192.168.1.0/24", "::1"]
ADDRESSES = ["10.1.2.3", "10.2.0.1", "::ffff:10.1.2.3", "::ffff:192.168.1.9", "fd12::1",
             "2001:db8::5", "::1", "127.0.0.1", "not-an-ip", "", "fe80::1%eth0", "192.168.1.255"]


def random_match(rnd: random.Random) -> MatchSpec:
    raw: dict[str, Any] = {}
    while not raw:
        if rnd.random() < 0.3:
            raw["proxy_user"] = rnd.choice(["a", "b"])
        if rnd.random() < 0.4:
            raw["client"] = rnd.sample(NETWORKS, rnd.randint(1, 3))
        if rnd.random() < 0.3:
            raw["header"] = {name: rnd.choice(GLOBS) for name in rnd.sample(["x-app", "x-env"],
                                                                             rnd.randint(1, 2))}
        if rnd.random() < 0.2:
            raw["api_key_sha256"] = rnd.choice([KEY_HASH[:6], KEY_HASH[:6].upper(), "abcd"])
        if rnd.random() < 0.2:
            raw["listen"] = rnd.choice(["proxy", "reverse"])
        if rnd.random() < 0.3:
            raw["user_agent"] = rnd.choice([g for g in GLOBS if g])
    return parse_match(raw)


def random_facts(rnd: random.Random) -> RequestFacts:
    headers = {name: rnd.choice(VALUES) for name in ("x-app", "x-env", "user-agent")
               if rnd.random() < 0.6}
    if rnd.random() < 0.5:
        headers["authorization"] = rnd.choice([f"Bearer {KEY}", "Bearer other", f"Basic {KEY}"])
    return facts(proxy_user=rnd.choice([None, "a", "b"]), listener=rnd.choice(["proxy", "reverse"]),
                 client_ip=rnd.choice(ADDRESSES), headers=headers)


def test_compiled_matches_decide_as_fnmatch_and_ipaddress_do() -> None:
    rnd = random.Random(7)
    outcomes = set()
    for _ in range(3000):
        spec, call = random_match(rnd), random_facts(rnd)
        expected = reference_matches(spec, call)
        assert spec.matches(call) is expected, (spec, call)
        outcomes.add(expected)
    assert outcomes == {True, False}


@pytest.mark.parametrize("network, address, expected", [
    ("10.1.0.0/16", "10.1.255.255", True),
    ("10.1.0.0/16", "10.0.255.255", False),
    ("10.1.0.0/16", "::ffff:10.1.0.9", True),  # IPv4-mapped: compared as IPv4
    ("::ffff:10.1.0.0/112", "::ffff:10.1.0.9", False),  # ...so a mapped network never holds it
    ("fd00::/8", "fdff:ffff::1", True),
    ("fd00::/8", "fe00::1", False),
    ("::/0", "10.1.2.3", False),  # versions never mix
    ("0.0.0.0/0", "::1", False),
    ("fe80::/10", "fe80::1%eth0", True),  # a zone does not change the address
    ("10.1.2.3", "10.1.2.3", True),
    ("10.1.2.3", "10.1.2.4", False),
])
def test_networks_compile_to_integer_checks(network: str, address: str, expected: bool) -> None:
    spec = parse_match({"client": network})
    assert spec.matches(facts(client_ip=address)) is expected
    assert reference_matches(spec, facts(client_ip=address)) is expected


@pytest.mark.parametrize("glob, value, expected", [
    ("rev*", "review", True), ("re?iew", "review", True), ("re[vw]iew", "rewiew", True),
    ("re[!v]iew", "review", False), ("a.b", "axb", False), ("a+b", "a+b", True),
    ("[*]", "*", True), ("*", "line\nbreak", True), ("review", "Review", False),
])
def test_header_globs_compile_to_fnmatch_regexes(glob: str, value: str, expected: bool) -> None:
    assert parse_match({"header": {"x-app": glob}}).matches(
        facts(headers={"x-app": value})) is expected
    assert fnmatch.fnmatchcase(value, glob) is expected


def test_route_globs_compile_as_applies_to_decides() -> None:
    routes = parse_routes('"gpt-4o*": passthrough\ngpt-4.1: economy\n"o[13]-*": premium\n'
                          '"gpt-?": standard\n"a.b": economy\n')
    spec = AppSpec(name="a", match=None, routes=routes)
    for model in ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4x1", "o1-mini", "o2-mini", "gpt-5",
                  "gpt-55", "a.b", "aXb", "", "GPT-4o"]:
        expected = next((r for r in routes if fnmatch.fnmatchcase(model, r.pattern)), None)
        assert spec.route_for(model) is expected
        assert all(r.applies_to(model) is fnmatch.fnmatchcase(model, r.pattern) for r in routes)


MANY = """  - {name: by-user, match: {proxy_user: a}}
  - {name: by-header, match: {header: {x-app: 'team-*'}}}
  - {name: by-net, match: {client: [10.1.0.0/16, 'fd00::/8']}}
  - {name: by-key, match: {api_key_sha256: '%s'}}
  - {name: by-agent, match: {user_agent: 'agent/*', listen: reverse}}
""" % KEY_HASH[:8]


def test_the_cache_chooses_as_matching_every_app_does() -> None:
    rules = parse(MANY)
    rnd = random.Random(3)
    chosen = set()
    for _ in range(2000):
        call = random_facts(rnd)
        if rnd.random() < 0.3:
            call = facts(headers={"x-app": rnd.choice(["team-1", "team-2", "solo"])},
                         client_ip=rnd.choice(ADDRESSES))
        app = rules.app_matcher.choose(call)
        assert app is choose_app(rules.apps, call), call
        chosen.add(app.name)
    assert chosen == {"by-user", "by-header", "by-net", "by-key", "by-agent", "default"}
    assert 0 < len(rules.app_matcher) < 2000  # callers repeat: the cache holds each once


def test_two_callers_with_different_identities_get_their_own_apps() -> None:
    rules = parse(MANY)
    matcher = rules.app_matcher
    inside, outside = facts(client_ip="10.1.9.9"), facts(client_ip="10.2.9.9")
    for _ in range(2):  # the second round is answered from the cache
        assert matcher.choose(inside).name == "by-net"
        assert matcher.choose(outside).name == "default"
    assert len(matcher) == 2
    keyed = facts(headers={"authorization": f"Bearer {KEY}"})
    other = facts(headers={"authorization": "Bearer sk-someone-else"})
    assert (matcher.choose(keyed).name, matcher.choose(other).name) == ("by-key", "default")


def test_the_identity_holds_only_what_the_matches_read_and_never_the_key() -> None:
    call = facts(proxy_user="a", client_ip="10.1.2.3", listener="reverse",
                 headers={"authorization": f"Bearer {KEY}", "x-app": "team-1",
                          "user-agent": "agent/1", "x-other": "ignored"})
    full = parse(MANY).app_matcher.key(call)
    assert KEY not in repr(full) and KEY_HASH in repr(full)
    assert "ignored" not in repr(full)
    by_user = parse("  - {name: u, match: {proxy_user: a}}\n").app_matcher
    assert by_user.key(call) == by_user.key(facts(proxy_user="a"))  # the address is not read
    assert KEY_HASH not in repr(by_user.key(call))
    assert by_user.choose(facts(proxy_user="a")).name == "u"


def test_apps_after_a_catch_all_are_not_read_and_a_constant_choice_is_not_cached() -> None:
    rules = parse("  - {name: all}\n  - {name: never, match: {proxy_user: a}}\n")
    assert rules.app_matcher.key(facts(proxy_user="a")) == (None, ())
    assert rules.app_matcher.choose(facts(proxy_user="a")).name == "all"
    assert len(rules.app_matcher) == 0
    assert AppMatcher(()).choose(facts()) is DEFAULT_APP


def test_a_reloaded_rule_set_starts_a_new_cache() -> None:
    old = parse(MANY)
    old.app_matcher.choose(facts(proxy_user="a"))
    new = parse(MANY.replace("proxy_user: a", "proxy_user: b"))
    assert new.app_matcher is not old.app_matcher and len(new.app_matcher) == 0
    assert new.app_matcher.choose(facts(proxy_user="a")).name == "default"
    assert old.app_matcher.choose(facts(proxy_user="a")).name == "by-user"
    assert old == parse(MANY)  # the matcher is not part of the rules' value


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AppMatcher, "MAX_ENTRIES", 16)
    rules = parse(MANY)
    for i in range(100):
        call = facts(client_ip=f"10.1.0.{i}")
        assert rules.app_matcher.choose(call).name == "by-net"
        assert len(rules.app_matcher) <= 16
    assert len(rules.app_matcher) == 4  # cleared when full: 100 = 6 * 16 + 4


def test_huge_identities_are_matched_but_not_cached() -> None:
    rules = parse(MANY)
    call = facts(headers={"x-app": "team-" + "x" * AppMatcher.MAX_KEY_CHARS})
    assert rules.app_matcher.choose(call).name == "by-header"
    assert len(rules.app_matcher) == 0


def test_addresses_are_read_as_ipaddress_reads_them() -> None:
    rnd = random.Random(9)
    texts = ["10.1.2.3", "0.0.0.0", "255.255.255.255", "256.1.1.1", "010.1.2.3", "1.2.3",
             "1.2.3.4.5", "1.2.3.4\n", " 1.2.3.4", "1.2.3.04", "1.2.3.00", "١.2.3.4", "1..3.4",
             "::ffff:1.2.3.4", "::1", "fe80::1%eth0", "", "x", "1.2.3.-4", "+1.2.3.4"]
    texts += [".".join(str(rnd.choice((0, 1, 9, 10, 99, 100, 199, 200, 249, 250, 255, 256, 999)))
                       for _ in range(4)) for _ in range(300)]
    for text in texts:
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            expected = None
        else:
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            expected = (addr.version, int(addr))
        assert _parse_address(text) == expected, text


@pytest.mark.parametrize("apps", [
    "  - {name: k, match: {api_key_sha256: '%s'}}\n" % KEY_HASH[:8],  # the key alone
    "  - {name: u, match: {proxy_user: x}}\n  - {name: k, match: {api_key_sha256: '%s'}}\n"
    % KEY_HASH[:8],
])
def test_a_key_hash_in_the_identity_is_the_one_matched(apps: str) -> None:
    matcher = parse(apps).app_matcher
    for _ in range(2):
        assert matcher.choose(facts(headers={"authorization": f"Bearer {KEY}"})).name == "k"
        assert matcher.choose(facts(headers={"authorization": "Bearer nope"})).name == "default"
        assert matcher.choose(facts()).name == "default"
