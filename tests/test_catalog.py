"""The built-in catalog (sidecar/data/catalog.yaml), its generator, and catalog parsing errors."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from sidecar.core.config.catalog import (
    Catalog,
    ModelSpec,
    load_builtin_catalog,
    parse_catalog_text,
    parse_model,
)
from sidecar.core.config.yamlfile import FieldError
from sidecar.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "build_catalog.py"
COMMITTED = ROOT / "sidecar" / "data" / "catalog.yaml"
FACTS = ROOT.parent / "shared" / "reference" / "models-facts.yaml"
ALIASES = {"claude-haiku": "claude-haiku-4.5", "claude-sonnet": "claude-sonnet-4.6",
           "claude-opus": "claude-opus-4.7"}
N_FACTS = 54

needs_facts = pytest.mark.skipif(
    not FACTS.is_file(), reason=f"research notes not found at {FACTS} (../shared not checked out)"
)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_builtin_catalog()


@pytest.fixture(scope="module")
def facts() -> list[dict[str, Any]]:
    return list(yaml.safe_load(FACTS.read_text("utf-8"))["models"])


@pytest.fixture(scope="module")
def builder() -> Iterator[ModuleType]:
    """scripts/build_catalog.py imported as a module (registered while the tests use it)."""
    spec = importlib.util.spec_from_file_location("build_catalog", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


# --- the shipped catalog ---------------------------------------------------------------------

def test_builtin_catalog_has_every_facts_entry_plus_aliases(catalog: Catalog) -> None:
    names = [m.name for m in catalog]
    assert len(names) == N_FACTS + len(ALIASES)
    assert len(set(names)) == len(names)
    assert len({m.upstream_id for m in catalog}) == N_FACTS  # aliases share their target's id


def test_every_entry_is_complete(catalog: Catalog) -> None:
    for m in catalog:
        assert m.provider in {"openai", "bedrock", "gemini", "groq", "deepseek"}, m.name
        assert m.tier in {"economy", "standard", "premium"}, m.name
        assert m.input_price > 0 and m.output_price > 0, m.name
        assert m.context >= 100_000, m.name
        assert m.source and "LiteLLM" in m.source, m.name
        assert m.as_of == "prices 2026-08-01; quality 2026-07-05", m.name


@pytest.mark.parametrize("name", [
    "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-5-mini", "o3", "gemini-2.5-flash",
    "gemini-3-flash-preview", "qwen3-235b", "qwen3-coder-480b", "qwen3-coder-next",
    "deepseek-v3.2", "deepseek-v3.1", "deepseek-r1", "mistral-large-3", "devstral-2", "glm-4.7",
    "glm-5", "minimax-m2.5", "kimi-k2.5", "llama-3.3-70b", "llama-4-maverick", "nova-micro",
    "nova-lite", "nova-pro", "nova-2-lite", "claude-haiku-4.5", "claude-sonnet-4.5",
    "claude-sonnet-4.6", "claude-opus-4.7", "gpt-oss-120b", "gpt-oss-20b", "gpt-oss-120b-groq",
    "deepseek-chat",
])
def test_names_users_will_type(catalog: Catalog, name: str) -> None:
    assert name in catalog.models


def test_hard_coded_spot_values(catalog: Catalog) -> None:
    mini = catalog.models["gpt-4o-mini"]
    assert (mini.provider, mini.upstream_id, mini.tier) == ("openai", "gpt-4o-mini", "standard")
    assert (mini.input_price, mini.output_price, mini.context) == (0.15, 0.6, 128_000)
    haiku = catalog.models["claude-haiku-4.5"]
    assert haiku.upstream_id == "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    assert (haiku.input_price, haiku.output_price, haiku.quality) == (1.1, 5.5, 29.6)
    assert haiku.supports == {"tools", "vision", "json_schema", "reasoning"}
    r1 = catalog.models["deepseek-r1"]
    assert r1.supports == {"reasoning"}  # tools: false in the facts
    assert r1.max_output == 4096
    chat = catalog.models["deepseek-chat"]
    assert chat.quality is None and chat.coding is None and chat.ttft_prior is None


def test_aliases_copy_their_target(catalog: Catalog) -> None:
    for alias, target in ALIASES.items():
        a, t = catalog.models[alias], catalog.models[target]
        assert a.source == f"alias of {target}; {t.source}"
        assert a == ModelSpec(**{**_fields(t), "name": alias, "source": a.source})


def test_find_by_name_and_by_provider_id(catalog: Catalog) -> None:
    assert catalog.find("claude-sonnet-4.6") is catalog.models["claude-sonnet-4.6"]
    by_id = catalog.find("us.anthropic.claude-sonnet-4-6")
    assert by_id is not None and by_id.name == "claude-sonnet-4.6"  # not the alias
    groq = catalog.find("openai/gpt-oss-120b")
    assert groq is not None and groq.name == "gpt-oss-120b-groq"
    assert catalog.find("gpt-4o") is catalog.models["gpt-4o"]
    assert catalog.find("no-such-model") is None


# --- the catalog against the research notes --------------------------------------------------

@needs_facts
def test_catalog_matches_facts(catalog: Catalog, facts: list[dict[str, Any]]) -> None:
    assert len(facts) == N_FACTS
    for f in facts:
        m = catalog.find(f["id"])
        assert m is not None, f["id"]
        assert (m.provider, m.upstream_id, m.tier) == (f["provider"], f["id"], f["suggested_tier"])
        prices = (f["input_usd_per_mtok"], f["output_usd_per_mtok"])
        assert (m.input_price, m.output_price) == prices, f["id"]
        assert (m.context, m.max_output) == (f["context_window"], f["max_output_tokens"])
        assert m.quality == f["quality_index"]
        assert (m.ttft_prior, m.tokens_per_second_prior) == (
            f["aa_median_ttft_s"], f["aa_median_output_tokens_per_s"])
        assert m.supports == _expected_supports(f), f["id"]
        no_inputs = f["swe_bench_verified"] is None and f["aa_coding_index"] is None
        assert (m.coding is None) == no_inputs, f["id"]


@needs_facts
def test_spot_values_agree_with_facts(facts: list[dict[str, Any]]) -> None:
    by_id = {f["id"]: f for f in facts}
    mini = by_id["gpt-4o-mini"]
    assert (mini["input_usd_per_mtok"], mini["output_usd_per_mtok"]) == (0.15, 0.6)
    assert by_id["us.anthropic.claude-haiku-4-5-20251001-v1:0"]["input_usd_per_mtok"] == 1.1


@needs_facts
def test_generator_reproduces_committed_catalog() -> None:
    run = subprocess.run([sys.executable, str(SCRIPT), str(FACTS)], capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout == COMMITTED.read_text("utf-8"), "re-run scripts/build_catalog.py"


@needs_facts
def test_coding_follows_the_documented_blend(
    catalog: Catalog, builder: ModuleType, facts: list[dict[str, Any]]
) -> None:
    fit = builder.fit_coding(facts)
    assert fit.n == 17  # 18 entries have both scores; gpt-oss-120b (Bedrock + Groq) counts once
    for f in facts:
        swe, aa = f["swe_bench_verified"], f["aa_coding_index"]
        scores = [s for s in (swe, None if aa is None else fit.a * aa + fit.b) if s is not None]
        expected = round(sum(scores) / len(scores), 1) if scores else None
        assert catalog.find(f["id"]).coding == expected, f["id"]  # type: ignore[union-attr]
    assert catalog.models["claude-haiku-4.5"].coding == 71.1  # mean(73.3, a*43.9 + b)


@needs_facts
def test_header_reports_the_fit(builder: ModuleType, facts: list[dict[str, Any]]) -> None:
    fit = builder.fit_coding(facts)
    text = COMMITTED.read_text("utf-8")
    assert f"a = {fit.a:.4f}, b = {fit.b:.4f}, n = {fit.n} models" in text
    assert "prices 2026-08-01; quality index <= 2026-07-05" in text


# --- the generator's rules --------------------------------------------------------------------

def test_fit_is_least_squares_one_point_per_slug(builder: ModuleType) -> None:
    rows = [_coding_row("a", 0, 1), _coding_row("b", 1, 3), _coding_row("c", 2, 5),
            _coding_row("c", 2, 50)]  # same AA slug as the previous row: ignored
    fit = builder.fit_coding(rows)
    assert (fit.a, fit.b, fit.n) == pytest.approx((2.0, 1.0, 3))


def test_blend_rules(builder: ModuleType) -> None:
    fit = builder.CodingFit(a=2.0, b=1.0, n=3, r=1.0)
    assert builder.blend_coding(70.0, 30.0, fit) == 65.5  # mean(70, 61)
    assert builder.blend_coding(70.0, None, fit) == 70.0
    assert builder.blend_coding(None, 30.0, fit) == 61.0
    assert builder.blend_coding(None, None, fit) is None
    assert builder.blend_coding(None, 10.04, fit) == 21.1  # rounded to 1 decimal


def test_generator_rejects_unmapped_ids(builder: ModuleType) -> None:
    with pytest.raises(builder.FactsError, match="NAMES out of date"):
        builder.check_names([{"id": "brand-new-model", "family": "x"}])


# --- parse_model / parse_catalog_text errors --------------------------------------------------

GOOD: dict[str, Any] = {"name": "m", "provider": "openai", "tier": "standard",
                        "price": {"input": 1.0, "output": 2.0}, "context": 8000}


@pytest.mark.parametrize(("raw", "key", "message"), [
    ({k: v for k, v in GOOD.items() if k != "name"}, "name", "required"),
    ({**GOOD, "colour": "red"}, "colour", "unknown key"),
    ({**GOOD, "tier": "gold"}, "tier", "not one of"),
    ({**GOOD, "price": {"input": -1, "output": 2.0}}, "price.input", "non-negative"),
    ({**GOOD, "price": 1.5}, "price", "must be a mapping"),
    ({**GOOD, "context": 1.5}, "context", "positive whole number"),
    ({**GOOD, "context": "128k"}, "context", "positive whole number"),
    ({**GOOD, "supports": ["tools", "telepathy"]}, "supports", "unknown capability 'telepathy'"),
    ({k: v for k, v in GOOD.items() if k != "provider"}, "provider", "required for the new model"),
])
def test_parse_model_errors(raw: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(FieldError) as err:
        parse_model(raw)
    assert err.value.key == key
    assert message in err.value.message


def test_parse_model_override_keeps_base_fields() -> None:
    base = parse_model({**GOOD, "max_output": 4000, "supports": ["tools"], "quality": 20})
    spec = parse_model({"name": "m", "price": {"input": 0.5}, "supports": ["vision"]}, base=base)
    assert spec.input_price == 0.5 and spec.supports == {"vision"}
    assert (spec.output_price, spec.provider, spec.tier) == (2.0, "openai", "standard")
    assert (spec.context, spec.max_output, spec.quality) == (8000, 4000, 20.0)
    assert spec.upstream_id == "m"


BROKEN = """\
models:
  - name: good
    provider: openai
    tier: standard
    price: {input: 1, output: 2}
    context: 8000
  - name: bad
    provider: openai
    tier: gold
    price: {input: 1, output: 2}
    context: 8000
"""


def test_parse_catalog_text_names_file_line_and_key() -> None:
    with pytest.raises(ConfigError) as err:
        parse_catalog_text(BROKEN, path="my/catalog.yaml")
    assert err.value.line == 9  # the 'tier: gold' line
    assert err.value.key == "models[1].tier"
    assert "my/catalog.yaml:9: models[1].tier:" in str(err.value)
    assert "gold" in str(err.value)


def test_parse_catalog_text_rejects_duplicate_names() -> None:
    with pytest.raises(ConfigError, match=r"models\[1\]\.name.*listed twice"):
        parse_catalog_text(BROKEN.replace("bad", "good").replace("gold", "premium"), path="c.yaml")


# --- helpers ----------------------------------------------------------------------------------

def _expected_supports(f: dict[str, Any]) -> set[str]:
    flags = f["supports"]
    out = {name for key, name in (("tools", "tools"), ("vision", "vision"),
                                  ("json_mode", "json_schema")) if flags.get(key) is True}
    return out | ({"reasoning"} if f.get("reasoning") is True else set())


def _coding_row(slug: str, aa: float, swe: float) -> dict[str, Any]:
    return {"id": slug, "quality_index_config": slug, "aa_coding_index": aa,
            "swe_bench_verified": swe}


def _fields(spec: ModelSpec) -> dict[str, Any]:
    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(ModelSpec) if f.init}
