"""A catalog that keeps itself current (issue 14), end to end through a real sidecar and the
real openai SDK: a LiteLLM-format price map served on loopback, and an OpenAI-compatible
provider whose ``GET /v1/models`` says what this account can call.

Each scenario drives a refresh itself (``CatalogRefresher.refresh``) after the automatic one at
start has finished, so nothing waits on the 1 h schedule and nothing races it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.harness import RunningSidecar, scrape, value, wait_for
from tests.e2e.test_routing import HELLO
from tests.fakes.catalog_sources import SourceServer
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = pytest.mark.e2e

KEY = "sk-the-sidecars-own-key"
RULES = """
version: 1
intercept: [api.openai.com]
providers:
  # named like the built-in catalog's provider: its gpt-4o-mini is on this provider too
  openai: {{type: openai, base_url: "{base_url}", api_key: "env:OPENAI_OWN_KEY"}}
catalog:
  sources: [{{name: prices, format: litellm, url: "{prices}"}}]
  discover: true
  refresh: 1h
  timeout: 2
apps:
  - name: batch
    match: {{header: {{x-app: batch}}}}
    routes: {{"*": {{model: auto, tier: economy, prefer: cheap}}}}
  - name: pinned
    match: {{header: {{x-app: pinned}}}}
    routes: {{"*": gpt-4o-mini}}
"""


def per_token(per_million: float) -> float:
    return per_million / 1_000_000


def entry(input_price: float, output_price: float, **extra: Any) -> dict[str, Any]:
    return {"input_cost_per_token": per_token(input_price),
            "output_cost_per_token": per_token(output_price), "max_input_tokens": 128000,
            "mode": "chat", "litellm_provider": "openai", "supports_function_calling": True,
            **extra}


@pytest.fixture
def provider() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(name="provider", models=["small-v1", "gpt-4o-mini"]) as up:
        yield up


@pytest.fixture
def sources() -> Iterator[SourceServer]:
    with SourceServer() as server:
        server.documents["/prices.json"] = {"small-v1": entry(0.2, 0.8)}
        yield server


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A confdir of this test's own: the last good catalog must not leak between tests."""
    return tmp_path / "home"


@pytest.fixture
def rules(tmp_path: Path, provider: FakeOpenAI, sources: SourceServer) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES.format(base_url=provider.base_url, prices=sources.url("/prices.json")))
    return path


@contextmanager
def started(rules: Path, home: Path) -> Iterator[RunningSidecar]:
    """A sidecar, once the refresh it makes when it starts is over (applied or not)."""
    with RunningSidecar(rules, home, environ={"OPENAI_OWN_KEY": KEY}) as sidecar:
        assert wait_for(lambda: sidecar.addon.catalog is not None
                        and sidecar.addon.catalog.refreshes > 0, 10)
        yield sidecar


def refresh(sidecar: RunningSidecar) -> Any:
    catalog = sidecar.addon.catalog
    assert catalog is not None
    return sidecar.call(catalog.refresh())


def served(sidecar: RunningSidecar, provider: FakeOpenAI, app: str = "batch") -> str:
    """The upstream model a call of ``app`` reached (the provider's record); app ``batch``
    asks for the cheapest economy model."""
    client = openai.OpenAI(api_key="sk-app", base_url=f"{sidecar.base_url}/v1",
                           default_headers={"x-app": app}, max_retries=0)
    reply = client.chat.completions.create(model="gpt-4o", messages=HELLO)
    client.close()
    sent = provider.requests[-1].json["model"]
    assert reply.model == sent  # what the app is told served is what really served
    return str(sent)


def test_a_new_cheaper_model_serves_the_next_call_without_a_restart(
        rules: Path, home: Path, provider: FakeOpenAI, sources: SourceServer,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sidecar")
    with started(rules, home) as sidecar:
        assert served(sidecar, provider) == "small-v1"
        provider.models.append("tiny-v2")  # the provider starts offering it...
        sources.documents["/prices.json"]["tiny-v2"] = entry(0.05, 0.1)  # ...with a price
        update = refresh(sidecar)
        assert any("tiny-v2" in line for line in update.changes)
        assert served(sidecar, provider) == "tiny-v2"
        assert "economy/cheap now picks tiny-v2 instead of small-v1" in caplog.text
        # The discovery asked with the provider's own key, never the app's.
        listing = [r for r in provider.requests if r.path.endswith("/models")]
        assert listing and all(r.headers["authorization"] == f"Bearer {KEY}" for r in listing)
        m = scrape(sidecar)
        assert value(m, "sidecar_catalog_source_up", source="prices") == 1
        assert value(m, "sidecar_catalog_source_models", source="prices") == 2
        assert value(m, "sidecar_catalog_source_up", source="discover:openai") == 1


def test_a_model_the_provider_stops_listing_leaves_the_plans(
        rules: Path, home: Path, provider: FakeOpenAI, sources: SourceServer) -> None:
    provider.models.append("tiny-v2")
    sources.documents["/prices.json"]["tiny-v2"] = entry(0.05, 0.1)
    with started(rules, home) as sidecar:
        assert served(sidecar, provider) == "tiny-v2"
        provider.models.remove("tiny-v2")
        refresh(sidecar)
        assert served(sidecar, provider) == "small-v1"
        assert sidecar.addon.rules is not None and sidecar.addon.rules.catalog.find(
            "tiny-v2") is None


def test_a_model_rules_yaml_routes_to_stays_when_its_provider_stops_listing_it(
        rules: Path, home: Path, provider: FakeOpenAI, sources: SourceServer,
        caplog: pytest.LogCaptureFixture) -> None:
    with started(rules, home) as sidecar:
        provider.models[:] = ["small-v1", "tiny-v2"]  # gpt-4o-mini no longer listed; a new one is
        sources.documents["/prices.json"]["tiny-v2"] = entry(0.05, 0.1)
        assert refresh(sidecar) is not None  # applied: the pin does not block the refresh
        assert served(sidecar, provider) == "tiny-v2"
        assert served(sidecar, provider, app="pinned") == "gpt-4o-mini"  # the operator's pin
        assert "gpt-4o-mini is not offered by openai any more, but rules.yaml routes to it" in (
            caplog.text)


@pytest.mark.parametrize("failure", ["down", "truncated"])
def test_a_source_that_goes_away_keeps_what_it_said(
        rules: Path, home: Path, provider: FakeOpenAI, sources: SourceServer, failure: str,
        caplog: pytest.LogCaptureFixture) -> None:
    provider.models.append("tiny-v2")
    sources.documents["/prices.json"]["tiny-v2"] = entry(0.05, 0.1)
    with started(rules, home) as sidecar:
        assert served(sidecar, provider) == "tiny-v2"
        sources.broken["/prices.json"] = failure
        refresh(sidecar)
        assert served(sidecar, provider) == "tiny-v2"  # its last answer still prices the model
        assert value(scrape(sidecar), "sidecar_catalog_source_up", source="prices") == 0
        assert "catalog source prices failed" in caplog.text
        assert not any(r.exc_info for r in caplog.records)


def test_a_hostile_source_never_poisons_routing(
        rules: Path, home: Path, provider: FakeOpenAI, sources: SourceServer,
        caplog: pytest.LogCaptureFixture) -> None:
    provider.models += ["free-v1", "dear-v1"]
    with started(rules, home) as sidecar:
        sources.documents["/prices.json"] = {
            "small-v1": entry(0.2, 0.8e9),  # a price a billion times dearer
            "free-v1": entry(0, 0, supports_vision=True, supports_response_schema=True,
                             supports_reasoning=True),  # free, and claims everything
            "dear-v1": entry(1e9, 1e9),
            "garbage": "not an entry",
        }
        refresh(sidecar)
        rules_now = sidecar.addon.rules
        assert rules_now is not None
        assert rules_now.catalog.find("free-v1") is None
        assert rules_now.catalog.find("dear-v1") is None
        small = rules_now.catalog.find("small-v1")
        assert small is not None and small.output_price == pytest.approx(0.8)
        assert served(sidecar, provider) == "small-v1"
        assert "rejected" in caplog.text


def test_a_restart_without_network_uses_the_last_good_catalog(
        rules: Path, home: Path, provider: FakeOpenAI, sources: SourceServer) -> None:
    provider.models.append("tiny-v2")
    sources.documents["/prices.json"]["tiny-v2"] = entry(0.05, 0.1)
    with started(rules, home) as sidecar:
        assert served(sidecar, provider) == "tiny-v2"
    assert (home / "catalog-last-good.yaml").exists()
    sources.broken["/prices.json"] = "down"  # the new process never hears from the source
    with started(rules, home) as sidecar:
        assert served(sidecar, provider) == "tiny-v2"


# -- Bedrock: the control plane says what the account can call ---------------------------------

BEDROCK_RULES = """
version: 1
intercept: [api.openai.com]
providers:
  aws: {{type: bedrock, region: us-east-1, endpoint_url: "{runtime}",
         control_endpoint_url: "{control}"}}
catalog:
  sources: [{{name: openrouter, format: openrouter, url: "{prices}"}}]
  discover: true
  refresh: 1h
  timeout: 2
apps:
  - name: batch
    match: {{header: {{x-app: batch}}}}
    routes: {{"*": {{model: auto, tier: economy, prefer: cheap}}}}
"""
SMALL, TINY, TINY_PROFILE = "acme.small-v1:0", "acme.tiny-v1:0", "us.acme.tiny-v1:0"


def openrouter_model(model_id: str, prompt: float, completion: float) -> dict[str, Any]:
    """An entry of OpenRouter's /api/v1/models (prices per token, as strings)."""
    return {"id": f"amazon-bedrock/{model_id}", "context_length": 128000,
            "pricing": {"prompt": str(per_token(prompt)), "completion": str(per_token(completion))},
            "supported_parameters": ["tools", "max_tokens"],
            "architecture": {"input_modalities": ["text"]}}


@pytest.fixture
def aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    from tests.fakes import bedrock as fb
    from tests.fakes.bedrock_control import FakeBedrockControl, foundation_model, inference_profile
    from tests.providers.builders import use_test_credentials

    use_test_credentials(monkeypatch, tmp_path)
    with fb.FakeBedrock() as runtime, FakeBedrockControl() as control:
        control.models = [foundation_model(SMALL),
                          foundation_model(TINY, inference_types=["INFERENCE_PROFILE"])]
        control.profiles = [inference_profile(TINY_PROFILE, [TINY])]
        yield runtime, control


def test_bedrock_discovery_plans_only_what_the_account_can_call(
        tmp_path: Path, home: Path, sources: SourceServer, aws: tuple[Any, Any]) -> None:
    from tests.fakes.bedrock_control import foundation_model

    runtime, control = aws
    sources.documents["/models.json"] = {"data": [openrouter_model(SMALL, 0.2, 0.8),
                                                  openrouter_model(TINY, 0.05, 0.1)]}
    rules = tmp_path / "bedrock-rules.yaml"
    rules.write_text(BEDROCK_RULES.format(runtime=runtime.url, control=control.url,
                                          prices=sources.url("/models.json")))
    with RunningSidecar(rules, home, environ={}) as sidecar:
        assert wait_for(lambda: sidecar.addon.catalog is not None
                        and sidecar.addon.catalog.refreshes > 0, 10)
        client = openai.OpenAI(api_key="sk-app", base_url=f"{sidecar.base_url}/v1",
                               default_headers={"x-app": "batch"}, max_retries=0)
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
        # The cheaper model, callable only through its inference profile, is called by it.
        assert runtime.requests[-1].model_id == TINY_PROFILE
        assert runtime.requests[-1].signature_ok
        control.models = [foundation_model(SMALL),
                          foundation_model(TINY, status="LEGACY",
                                           inference_types=["INFERENCE_PROFILE"])]
        refresh(sidecar)
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
        assert runtime.requests[-1].model_id == SMALL  # a LEGACY model leaves the plans
        client.close()
        assert all(r.signature_ok for r in control.requests)


def test_a_source_pointed_elsewhere_does_not_inherit_the_old_answer(
        rules: Path, home: Path, provider: FakeOpenAI, sources: SourceServer,
        caplog: pytest.LogCaptureFixture) -> None:
    """What a source said last belongs to that source (its URL), not to its name: renamed or
    moved in rules.yaml, it starts afresh, and until it answers refreshes keep the catalog."""
    with started(rules, home) as sidecar:
        assert refresh(sidecar) is not None  # "prices" answered: a last answer exists
        rules.write_text(rules.read_text().replace("/prices.json", "/moved.json"))
        assert sidecar.call(sidecar.addon.reload("test"))
        assert refresh(sidecar) is None  # the moved source never answered: nothing applied
        assert "prices never answered since the start" in caplog.text
        assert served(sidecar, provider) == "small-v1"
