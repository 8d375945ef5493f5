"""sidecar/rules.py: top-level keys, providers, intercept, models, defaults; file:line: key errors.

App entries (match, routes) are covered by test_apps.py.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sidecar.core.config.catalog import Catalog, load_builtin_catalog, parse_models
from sidecar.core.config.rules import (
    InterceptSpec,
    ProviderSpec,
    RuleSet,
    load_rules,
    parse_rules_text,
    unavailable_providers,
)
from sidecar.core.errors import ConfigError

BUNDLED = Path(__file__).resolve().parents[1] / "rules.yaml"
BUILTIN = load_builtin_catalog()
OPENAI = "providers:\n  openai: {type: openai, base_url: https://api.openai.com/v1}\n"


def parse(text: str, catalog: Catalog | None = None) -> RuleSet:
    return parse_rules_text(textwrap.dedent(text), path="r.yaml", catalog=catalog or BUILTIN)


def refused(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return str(info.value)


@pytest.mark.parametrize("text, where, message", [
    # YAML itself
    ("version: 1\ndefaults:\n  tier: standard: premium\n", "r.yaml:3", "not valid YAML"),
    ("version: 1\nversion: 1\n", "r.yaml:2", "not valid YAML: duplicate key 'version'"),
    ("- a\n- b\n", "r.yaml:1", "the rules file must be a mapping"),
    # top level
    ("version: 1\nrouting: {}\n", "r.yaml:2: routing",
     "unknown key; allowed: apps, budget, cache, catalog, defaults,"),
    ("version: 2\n", "r.yaml:1: version", "only version 1 is supported"),
    ("shadow: yes please\n", "r.yaml:1: shadow", "must be true or false"),
    # providers
    ("providers: [openai]\n", "r.yaml:1: providers", "must be a mapping of provider name"),
    ("providers:\n  x: openai\n", "r.yaml:2: providers.x",
     "must be a mapping with at least 'type'"),
    ("providers:\n  x: {type: azure}\n", "r.yaml:2: providers.x.type",
     "'azure' is not one of: openai, bedrock"),
    ("providers:\n  x:\n    base_url: https://a.example\n", "r.yaml:2: providers.x.type",
     "None is not one of: openai, bedrock"),
    ("providers:\n  x:\n    type: openai\n", "r.yaml:2: providers.x.base_url",
     "required, an http(s) URL"),
    ("providers:\n  x:\n    type: openai\n    base_url: ftp://a.example\n",
     "r.yaml:4: providers.x.base_url", "'ftp://a.example' is not an http(s) URL"),
    ("providers:\n  x:\n    type: openai\n    base_url: https://\n",
     "r.yaml:4: providers.x.base_url", "is not an http(s) URL"),
    ("providers:\n  x:\n    type: openai\n    base_url: https://a.example:99x\n",
     "r.yaml:4: providers.x.base_url", "has an invalid port"),
    ("providers:\n  x:\n    type: openai\n    base_url: https://a.example\n    api_key: \"env:\"\n",
     "r.yaml:5: providers.x.api_key", "must be 'from-request', 'none' or 'env:VARIABLE'"),
    ("providers:\n  x:\n    type: openai\n    base_url: https://a.example\n    region: eu\n",
     "r.yaml:5: providers.x.region",
     "unknown key for a openai provider; allowed: api_key, base_url"),
    ("providers:\n  b:\n    type: bedrock\n", "r.yaml:2: providers.b.region",
     "required for a bedrock provider, e.g. us-east-1"),
    ("providers:\n  b:\n    type: bedrock\n    region: us-east-1\n    api_key: from-request\n",
     "r.yaml:5: providers.b.api_key", "unknown key for a bedrock provider; allowed: control_endpoint_url,"),
    ("providers:\n  b:\n    type: bedrock\n    region: us-east-1\n    endpoint_url: localhost\n",
     "r.yaml:5: providers.b.endpoint_url", "'localhost' is not an http(s) URL"),
    ('providers:\n  "my.gw":\n    type: openai\n', 'r.yaml:2: providers["my.gw"].base_url',
     "required"),
    ("providers:\n  x:\n    type: openai\n    base_url: https://a.example\n    timeout: 2m\n",
     "r.yaml:5: providers.x.timeout", "'2m': seconds without a byte from this provider"),
    ("providers:\n  x:\n    type: openai\n    base_url: https://a.example\n    timeout: 0\n",
     "r.yaml:5: providers.x.timeout", "from 1 to 3600 (default 120)"),
    ("providers:\n  b:\n    type: bedrock\n    region: us-east-1\n    timeout: 7200\n",
     "r.yaml:5: providers.b.timeout", "from 1 to 3600"),
    ("providers:\n  x:\n    type: openai\n    base_url: https://a.example\n    timeout: true\n",
     "r.yaml:5: providers.x.timeout", "True: seconds without a byte"),
    # intercept
    ("intercept: api.openai.com\n", "r.yaml:1: intercept", "must be a non-empty list of hosts"),
    ("intercept: []\n", "r.yaml:1: intercept", "must be a non-empty list"),
    ("intercept:\n  - api.openai.com\n  - 42\n", "r.yaml:3: intercept[1]",
     "must be a host name or {host: ..., provider: ...}"),
    ("intercept: [\"api.openai.com:https\"]\n", "r.yaml:1: intercept[0]",
     "'api.openai.com:https' is not a host name"),
    (OPENAI + "intercept:\n  - {host: api.openai.com, provider: azure}\n",
     "r.yaml:4: intercept[0].provider", "no provider named 'azure'"),
    # models
    ("models: {name: x}\n", "r.yaml:1: models", "must be a list of model entries"),
    (OPENAI + "models:\n  - name: x\n    provider: openai\n", "r.yaml:4: models[0].tier",
     "required for the new model 'x'"),
    (OPENAI + "models:\n  - {name: gpt-4o, price: {input: -1}}\n",
     "r.yaml:4: models[0].price.input", "must be a non-negative number, not -1"),
    (OPENAI + "models:\n  - name: gpt-4o\n    speed: 9\n", "r.yaml:5: models[0].speed",
     "unknown key; allowed:"),
    (OPENAI + "models:\n  - {name: gpt-4o}\n  - {name: gpt-4o}\n", "r.yaml:5: models[1].name",
     "model 'gpt-4o' is listed twice"),
    (OPENAI + "models:\n  - name: mine\n    provider: vllm\n    tier: economy\n"
     "    price: {input: 1, output: 1}\n    context: 8000\n", "r.yaml:5: models[0].provider",
     "no provider named 'vllm' (configured: openai)"),
    # defaults
    ("defaults: [standard]\n", "r.yaml:1: defaults", "must be a mapping like {tier: standard"),
    ("defaults:\n  prefer: cheap\n  tier: gold\n", "r.yaml:3: defaults.tier",
     "'gold' is not one of: economy, standard, premium, auto"),
    ("defaults:\n  prefer: cheapest\n", "r.yaml:2: defaults.prefer",
     "'cheapest' is not one of: cheap, fast, balanced, quality, coding"),
    ("defaults:\n  speed: fast\n", "r.yaml:2: defaults.speed",
     "unknown key; allowed: auto_tier, prefer, tier"),
])
def test_broken_rules_files(text: str, where: str, message: str) -> None:
    error = refused(text)
    assert error.startswith(f"{where}: "), error
    assert message in error


def test_an_api_key_written_in_the_file_is_refused_and_not_echoed() -> None:
    error = refused("providers:\n  x:\n    type: openai\n    base_url: https://a.example\n"
                    "    api_key: sk-live-abc123\n")
    assert error.startswith("r.yaml:5: providers.x.api_key: must be 'from-request', 'none' or "
                            "'env:VARIABLE'")
    assert "sk-live-abc123" not in error


def test_config_error_carries_path_line_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse("version: 1\ndefaults:\n  tier: gold\n")
    assert (info.value.path, info.value.line, info.value.key) == ("r.yaml", 3, "defaults.tier")
    assert str(info.value) == ("r.yaml:3: defaults.tier: 'gold' is not one of: economy, "
                               "standard, premium, auto")


@pytest.mark.parametrize("text, message", [
    ("apps: {}\n", "apps: must be a list"),
    ("providers: []\n", "providers: must be a mapping"),
    ("models: {}\n", "models: must be a list"),
    ("version: true\n", "version: only version 1"),
])
def test_wrong_types_that_happen_to_be_falsy_are_refused(text: str, message: str) -> None:
    assert message in refused(text)


@pytest.mark.parametrize("text", [
    "1: x\nfoo: y\n",
    OPENAI + "intercept:\n  - {host: api.openai.com, provider: [openai]}\n",
])
def test_odd_values_are_config_errors_not_crashes(text: str) -> None:
    assert refused(text).startswith("r.yaml:")


# --- what a valid file resolves to ----------------------------------------------------------

def test_the_bundled_rules_file_loads() -> None:
    rules = load_rules(BUNDLED)
    assert rules.path == str(BUNDLED)
    assert rules.intercept == (InterceptSpec("api.openai.com", 443, "openai"),)
    assert rules.providers["openai"] == ProviderSpec(
        "openai", "openai", base_url="https://api.openai.com/v1", api_key="from-request",
        responses=True)
    assert rules.providers["bedrock"].region == "us-east-1"
    assert [a.name for a in rules.apps] == ["nightly-summaries", "code-review"]
    assert (rules.defaults.tier, rules.defaults.prefer, rules.shadow) == ("standard", "balanced",
                                                                          False)
    assert rules.catalog.find("claude-haiku") is not None


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read the rules file"):
        load_rules(tmp_path / "nope.yaml")


def test_an_empty_file_intercepts_openai_directly_with_the_apps_key() -> None:
    rules = parse("")
    assert rules.intercept == (InterceptSpec("api.openai.com", 443, "api.openai.com (direct)"),)
    direct = rules.providers["api.openai.com (direct)"]
    assert (direct.type, direct.base_url, direct.forwards_app_key) == (
        "openai", "https://api.openai.com/v1", True)
    assert rules.apps == () and rules.catalog == load_builtin_catalog()


@pytest.mark.parametrize("intercept, expected", [
    ("[api.openai.com]", InterceptSpec("api.openai.com", 443, "gw")),
    ("[API.OpenAI.com]", InterceptSpec("api.openai.com", 443, "gw")),
    ("[llm.internal:8443]", InterceptSpec("llm.internal", 8443, "llm.internal (direct)")),
    ("[{host: api.openai.com, provider: other}]", InterceptSpec("api.openai.com", 443, "other")),
    ("[{host: llm.internal, provider: gw}]", InterceptSpec("llm.internal", 443, "gw")),
])
def test_intercept_forms(intercept: str, expected: InterceptSpec) -> None:
    rules = parse(f"""
        intercept: {intercept}
        providers:
          gw: {{type: openai, base_url: "https://api.openai.com/v1/"}}
          other: {{type: openai, base_url: https://other.example/v1, api_key: none}}
    """)
    assert rules.intercept == (expected,)
    assert rules.intercept_for(expected.host, expected.port) == expected
    assert rules.intercept_for(expected.host, expected.port + 1) is None
    assert rules.providers["gw"].base_url == "https://api.openai.com/v1"  # trailing / dropped


def test_an_intercepted_host_without_a_provider_gets_a_direct_one() -> None:
    rules = parse("intercept: [llm.internal:8443]\n")
    direct = rules.providers["llm.internal (direct)"]
    assert direct.base_url == "https://llm.internal:8443/v1"
    assert direct.api_key == "from-request"


def test_overriding_a_price_keeps_the_other_fields() -> None:
    builtin = load_builtin_catalog().models["gpt-4o-mini"]
    rules = parse(OPENAI + "models:\n  - {name: gpt-4o-mini, price: {input: 0.12, output: 0.5}}\n")
    mine = rules.catalog.models["gpt-4o-mini"]
    assert (mine.input_price, mine.output_price) == (0.12, 0.5)
    assert (builtin.input_price, builtin.output_price) != (0.12, 0.5)
    for field in ("provider", "upstream_id", "tier", "context", "quality", "coding", "supports",
                  "ttft_prior", "max_output"):
        assert getattr(mine, field) == getattr(builtin, field), field
    assert len(rules.catalog) == len(load_builtin_catalog())


def test_a_new_model_joins_the_catalog() -> None:
    cat = Catalog.of(parse_models([{"name": "base", "provider": "openai", "tier": "standard",
                                    "price": {"input": 1, "output": 2}, "context": 1000}]))
    rules = parse(OPENAI + "models:\n  - {name: mine, provider: openai, tier: economy, "
                  "price: {input: 0.1, output: 0.2}, context: 32000}\n", catalog=cat)
    assert sorted(m.name for m in rules.catalog) == ["base", "mine"]
    assert rules.catalog.models["mine"].upstream_id == "mine"


def test_global_shadow() -> None:
    assert parse("shadow: true\n").shadow is True
    assert parse("shadow: false\n").shadow is False


GEMINI = """
    providers:
      openai: {type: openai, base_url: https://api.openai.com/v1}
      gemini: {type: openai, base_url: https://g.example/v1, api_key: env:MR_TEST_GEMINI_KEY}
      local: {type: openai, base_url: http://127.0.0.1:9000/v1, api_key: none}
"""


@pytest.mark.parametrize("environ, down", [
    ({}, {"gemini": "its key variable MR_TEST_GEMINI_KEY is not set"}),
    ({"MR_TEST_GEMINI_KEY": ""}, {"gemini": "its key variable MR_TEST_GEMINI_KEY is not set"}),
    ({"MR_TEST_GEMINI_KEY": "sk-gem-secret"}, {}),
])
def test_unavailable_providers(environ: dict[str, str], down: dict[str, str]) -> None:
    rules = parse(GEMINI)
    assert unavailable_providers(rules, environ) == down
    assert "sk-gem-secret" not in repr(unavailable_providers(rules, environ))


def test_provider_keys_resolve_from_the_environment_only() -> None:
    p = parse(GEMINI).providers
    env = {"MR_TEST_GEMINI_KEY": "sk-gem-secret", "OPENAI_API_KEY": "sk-openai"}
    assert p["gemini"].resolve_key(env) == "sk-gem-secret"
    assert p["openai"].resolve_key(env) is None and p["openai"].forwards_app_key
    assert p["local"].resolve_key(env) is None and not p["local"].forwards_app_key


@pytest.mark.parametrize("text, message", [
    ("defaults: {tier: auto, auto_tier: {standard: 70, premium: 40}}\n",
     "r.yaml:1: defaults.auto_tier.standard"),
    ("defaults: {auto_tier: {premium: 101}}\n", "r.yaml:1: defaults.auto_tier.premium"),
    ("defaults: {auto_tier: {hard: 80}}\n", "r.yaml:1: defaults.auto_tier.hard: unknown key"),
    ("defaults: {auto_tier: 50}\n", "r.yaml:1: defaults.auto_tier: must be a mapping"),
])
def test_auto_tier_thresholds_are_validated(text: str, message: str) -> None:
    assert refused(text).startswith(message)


def test_auto_tier_defaults_and_thresholds_load() -> None:
    rules = parse("defaults: {tier: auto, auto_tier: {standard: 30, premium: 70}}\n")
    assert rules.defaults.tier == "auto"
    assert (rules.defaults.auto_tier.standard, rules.defaults.auto_tier.premium) == (30, 70)


def test_a_provider_timeout_is_seconds_and_optional() -> None:
    rules = parse("""
        providers:
          slow: {type: openai, base_url: "https://slow.example/v1", timeout: 600}
          quick: {type: openai, base_url: "https://quick.example/v1", timeout: 2.5}
          aws: {type: bedrock, region: us-east-1, timeout: 300}
          plain: {type: openai, base_url: "https://plain.example/v1"}
    """)
    timeouts = {name: p.timeout for name, p in rules.providers.items()}
    assert {k: timeouts[k] for k in ("slow", "quick", "aws", "plain")} == {
        "slow": 600.0, "quick": 2.5, "aws": 300.0, "plain": None}
