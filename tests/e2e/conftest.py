"""Fixtures for end-to-end tests: fake upstreams, a rules file naming them, a running sidecar.

Shared helpers and constants live in tests/e2e/harness.py (import them from there)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import CHEAP_KEY, KEYED_APP_KEY, OPEN_CLIENTS, RunningSidecar
from tests.fakes.openai_upstream import FakeOpenAI

# A small catalog where each `prefer` has one obvious winner, by construction:
#   cheap    -> m-cheap    (lowest prices by far)
#   fast     -> m-fast     (lowest time-to-first-token and highest tokens/s)
#   quality  -> m-smart    (highest quality)
#   coding   -> m-coder    (highest coding score)
#   balanced -> m-balanced (best quality per dollar in the standard tier)
# Provider names differ from the built-in catalog's, so no built-in model is eligible.
RULES = """
version: 1
intercept:
  - {{host: api.openai.com, provider: up1}}
providers:
  up1: {{type: openai, base_url: "{up1}", api_key: from-request}}
  up2: {{type: openai, base_url: "{up2}", api_key: "env:CHEAPCO_KEY"}}
models:
  - {{name: m-cheap, provider: up2, id: cheap-model-v1, tier: economy,
      price: {{input: 0.01, output: 0.02}}, context: 32000, quality: 10, coding: 20,
      latency: {{ttft: 5.0, tokens_per_second: 10}}}}
  - {{name: m-eco-good, provider: up2, id: eco-good-v2, tier: economy,
      price: {{input: 0.3, output: 0.6}}, context: 64000, quality: 25, coding: 25,
      latency: {{ttft: 3.0, tokens_per_second: 30}}}}
  - {{name: m-fast, provider: up1, id: fast-model, tier: standard,
      price: {{input: 1.0, output: 2.0}}, context: 128000, quality: 20, coding: 30,
      latency: {{ttft: 0.05, tokens_per_second: 500}}, supports: [tools]}}
  - {{name: m-balanced, provider: up1, id: balanced-model, tier: standard,
      price: {{input: 0.2, output: 0.4}}, context: 128000, quality: 30, coding: 35,
      latency: {{ttft: 1.0, tokens_per_second: 80}}, supports: [tools, vision]}}
  - {{name: m-smart, provider: up1, id: smart-model, tier: premium,
      price: {{input: 10.0, output: 30.0}}, context: 200000, quality: 60, coding: 50,
      latency: {{ttft: 2.0, tokens_per_second: 50}}, supports: [tools, vision, json_schema]}}
  - {{name: m-coder, provider: up2, id: coder-model, tier: premium,
      price: {{input: 3.0, output: 15.0}}, context: 200000, quality: 40, coding: 80,
      latency: {{ttft: 1.5, tokens_per_second: 60}}, supports: [tools]}}
defaults: {{tier: standard, prefer: balanced}}
apps:
  - name: summaries
    match: {{proxy_user: summarizer}}
    routes:
      gpt-4o: {{model: auto, prefer: cheap}}
      "*": passthrough
  - name: review
    match: {{header: {{x-app: review}}}}
    routes:
      "*": {{model: auto, tier: premium, prefer: coding}}
  - name: shadowed
    match: {{header: {{x-app: shadow}}}}
    shadow: true
    routes:
      gpt-4o: {{model: auto, prefer: cheap}}
  - name: autotier
    match: {{header: {{x-app: autotier}}}}
    routes:
      "*": {{model: auto, tier: auto, prefer: quality}}
  - name: keyed
    match: {{api_key_sha256: "{keyed_hash}"}}
    routes:
      gpt-4o: m-smart
  - name: batch
    match: {{client: 127.0.0.2/32}}
    routes:
      gpt-4o: m-fast
  - name: agent
    match: {{user_agent: "agent-bot/*"}}
    routes:
      gpt-4o: {{model: m-balanced, fallbacks: [m-fast]}}
"""


@pytest.fixture(autouse=True)
def close_sdk_clients() -> Iterator[None]:
    yield
    while OPEN_CLIENTS:
        OPEN_CLIENTS.pop().close()


@pytest.fixture
def up1() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(name="up1") as up:
        yield up


@pytest.fixture
def up2() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(name="up2") as up:
        yield up


@pytest.fixture
def primary() -> Iterator[FakeOpenAI]:
    """The first choice of FAULT_RULES' plans (tests/e2e/harness.py)."""
    with FakeOpenAI(name="primary") as up:
        yield up


@pytest.fixture
def backup() -> Iterator[FakeOpenAI]:
    """The fallback of FAULT_RULES' plans."""
    with FakeOpenAI(name="backup") as up:
        yield up


@pytest.fixture(scope="session")
def confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-router-home")


@pytest.fixture
def rules_path(tmp_path: Path, up1: FakeOpenAI, up2: FakeOpenAI) -> Path:
    path = tmp_path / "rules.yaml"
    keyed_hash = hashlib.sha256(KEYED_APP_KEY.encode()).hexdigest()[:12]
    path.write_text(RULES.format(up1=up1.base_url, up2=up2.base_url, keyed_hash=keyed_hash))
    return path


@pytest.fixture
def sidecar(rules_path: Path, confdir: Path) -> Iterator[RunningSidecar]:
    with RunningSidecar(rules_path, confdir, environ={"CHEAPCO_KEY": CHEAP_KEY}) as running:
        yield running
