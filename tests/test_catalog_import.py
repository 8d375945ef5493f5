"""`model-router catalog import`: a LiteLLM price map refreshes prices and limits through a
catalog file named in rules.yaml, recording where and when the numbers came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecar.cli import main as cli
from sidecar.core.config.catalog import load_builtin_catalog
from sidecar.core.config.catalog_import import import_litellm
from sidecar.core.config.rules import load_rules
from sidecar.core.errors import ConfigError

PRICE_MAP = {
    "gpt-4o": {"input_cost_per_token": 2e-06, "output_cost_per_token": 8e-06,
               "max_input_tokens": 100000, "max_output_tokens": 16384},
    "bedrock/us.anthropic.claude-haiku-4-5-20251001-v1:0": {
        "input_cost_per_token": 1e-06, "output_cost_per_token": 5e-06,
        "cache_read_input_token_cost": 1e-07, "max_input_tokens": 200000},
    "gemini/gemini-2.5-flash": {"input_cost_per_token": 3e-07, "output_cost_per_token": 2.5e-06},
    "gpt-4o-mini": {"mode": "chat"},  # no prices: left alone
    "sample_spec": {"input_cost_per_token": "0"},
}


def test_import_matches_by_provider_id_with_litellm_prefixes() -> None:
    result = import_litellm(PRICE_MAP, load_builtin_catalog(), source="map.json", as_of="2026-11-01")
    by_name = {e["name"]: e for e in result.entries}
    assert by_name["gpt-4o"]["price"] == {"input": 2.0, "output": 8.0}
    assert (by_name["gpt-4o"]["context"], by_name["gpt-4o"]["max_output"]) == (100000, 16384)
    assert by_name["claude-haiku-4.5"]["price"] == {"input": 1.0, "output": 5.0, "cache_read": 0.1}
    assert by_name["gemini-2.5-flash"]["price"] == {"input": 0.3, "output": 2.5}
    assert "gpt-4o-mini" not in by_name and "gpt-4o-mini" in result.unmatched
    assert by_name["gpt-4o"]["source"] == "prices/limits: map.json key 'gpt-4o'"
    assert by_name["gpt-4o"]["as_of"] == "prices 2026-11-01"
    assert "gpt-4o: input 2.5 -> 2" in result.changed


def test_cli_import_then_rules_use_the_refreshed_catalog(tmp_path: Path, capsys) -> None:
    prices = tmp_path / "model_prices_and_context_window.json"
    prices.write_text(json.dumps(PRICE_MAP))
    out = tmp_path / "catalog.prices.yaml"
    bundled = Path(__file__).parent.parent / "rules.yaml"
    with pytest.raises(SystemExit) as done:
        cli.main(["catalog", "import", str(prices), "-o", str(out), "--rules", str(bundled)])
    assert done.value.code == 0
    assert "models refreshed" in capsys.readouterr().out

    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(bundled.read_text() + "\ncatalog: catalog.prices.yaml\n")
    rules = load_rules(rules_file)
    gpt4o = rules.catalog.find("gpt-4o")
    assert gpt4o is not None and (gpt4o.input_price, gpt4o.output_price) == (2.0, 8.0)
    assert gpt4o.context == 100000 and gpt4o.quality is not None  # other fields kept
    assert "model_prices_and_context_window.json" in (gpt4o.source or "")
    haiku = rules.catalog.find("claude-haiku-4.5")
    assert haiku is not None and haiku.cache_read_price == 0.1


def test_a_broken_catalog_file_names_its_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "extra.yaml").write_text("models:\n  - name: gpt-4o\n    price: {input: -1}\n")
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text("catalog: extra.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_rules(rules_file)
    assert str(info.value).startswith(f"{tmp_path / 'extra.yaml'}:3: models[0].price.input")
