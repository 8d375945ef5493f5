"""Health belongs to the deployment that was tried (issue 13, items 2 and 7).

Cooldowns and observed latency are keyed by what was really tried -- a provider and the model
id it was sent -- never by a model name that happens to be the same elsewhere:

* A: a passthrough to an intercepted host no provider serves (the implicit provider
  ``<host> (direct)``) that keeps failing never takes the catalog model of the same name, on
  another provider, out of plans;
* B: two providers serving the same upstream model, one of them failing: the other is never
  cooled down and its latency is not penalised, whether the failing one is reached by a
  passthrough or is a second catalog entry with the same id;
* item 7: a plan with nothing to fall back to tries its model even while it cools down.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.harness import RunningSidecar
from tests.e2e.test_bookkeeping import access_lines
from tests.e2e.test_routing import HELLO, proxied_client
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = pytest.mark.e2e

SHARED_ID = "shared-model-v1"  # the upstream model id both providers serve in B


@pytest.fixture
def healthy() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(name="healthy") as up:
        yield up


@pytest.fixture
def failing() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(name="failing") as up:
        yield up


def start(tmp_path: Path, confdir: Path, rules: str) -> RunningSidecar:
    path = tmp_path / "rules.yaml"
    path.write_text(rules)
    return RunningSidecar(path, confdir, environ={})


def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def routed(client: openai.OpenAI, **kwargs: Any) -> tuple[Any, Any]:
    raw = client.chat.completions.with_raw_response.create(messages=HELLO, **kwargs)
    return raw.parse(), raw.headers


# -- A: a failing passthrough beside a catalog model of the same name --------------------------

# ``localhost:PORT`` stands for api.openai.com: an intercepted host that no configured provider
# serves (the `openai` provider's base_url is 127.0.0.1), so passthrough goes to the host itself,
# to provider "localhost (direct)" -- here a closed port, so every passthrough is a connect error.
# The built-in catalog's gpt-4o (provider `openai`) is made the premium quality winner.
DIRECT_RULES = """
version: 1
intercept: ["localhost:{dead}"]
providers:
  openai: {{type: openai, base_url: "{healthy}"}}
models:
  - {{name: gpt-4o, quality: 99}}
apps:
  - name: legacy
    match: {{header: {{x-app: legacy}}}}
    routes:
      "*": passthrough
"""


def test_failing_direct_passthrough_never_cools_the_catalog_model(tmp_path, confdir, healthy,
                                                                   monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="sidecar.access")
    for name in ("NO_PROXY", "no_proxy"):  # localhost must go through the proxy too
        monkeypatch.delenv(name, raising=False)
    dead = closed_port()
    base_url = f"https://localhost:{dead}/v1"  # the intercepted host, through the proxy
    with start(tmp_path, confdir, DIRECT_RULES.format(dead=dead, healthy=healthy.base_url)
               ) as sidecar:
        legacy = proxied_client(sidecar, monkeypatch, base_url=base_url,
                                default_headers={"x-app": "legacy"})
        for _ in range(3):
            with pytest.raises(openai.APIStatusError) as info:
                legacy.chat.completions.create(model="gpt-4o", messages=HELLO)
            assert info.value.status_code == 502  # the premise: the host itself is unreachable
        assert len(access_lines(caplog, 3)) == 3  # each failure's bookkeeping is done
        assert healthy.requests == []

        app = proxied_client(sidecar, monkeypatch, base_url=base_url)
        completion, headers = routed(app, model="auto",
                                     extra_body={"tier": "premium", "prefer": "quality"})

    assert headers["x-model-router-model"] == "gpt-4o"
    assert headers["x-model-router-provider"] == "openai"
    assert completion.model == "gpt-4o"
    assert [r.json["model"] for r in healthy.requests] == ["gpt-4o"]


# -- B: two providers serving the same upstream model, one failing ------------------------------

# `failing` serves SHARED_ID by passthrough (the intercepted host's provider); `healthy` serves it
# as the catalog model m-shared, which wins both `prefer: quality` and `prefer: fast` (by its
# priors) over m-other in the premium tier.
PASSTHROUGH_RULES = """
version: 1
intercept: [{{host: api.openai.com, provider: failing}}]
providers:
  failing: {{type: openai, base_url: "{failing}"}}
  healthy: {{type: openai, base_url: "{healthy}"}}
models:
  - {{name: m-shared, provider: healthy, id: {shared}, tier: premium,
      price: {{input: 1.0, output: 2.0}}, context: 128000, quality: 90,
      latency: {{ttft: 0.05, tokens_per_second: 500}}}}
  - {{name: m-other, provider: healthy, id: other-model, tier: premium,
      price: {{input: 1.0, output: 2.0}}, context: 128000, quality: 50,
      latency: {{ttft: 1.0, tokens_per_second: 50}}}}
apps:
  - name: legacy
    match: {{header: {{x-app: legacy}}}}
    routes:
      "*": passthrough
"""

# The same, but the failing provider's model is a second catalog entry with the same upstream
# id (m-shared-b, standard tier, so it never competes with m-shared), reached by a pin whose
# fallback serves while it fails.
CATALOG_RULES = """
version: 1
intercept: [{{host: api.openai.com, provider: healthy}}]
providers:
  failing: {{type: openai, base_url: "{failing}"}}
  healthy: {{type: openai, base_url: "{healthy}"}}
models:
  - {{name: m-shared, provider: healthy, id: {shared}, tier: premium,
      price: {{input: 1.0, output: 2.0}}, context: 128000, quality: 90,
      latency: {{ttft: 0.05, tokens_per_second: 500}}}}
  - {{name: m-other, provider: healthy, id: other-model, tier: premium,
      price: {{input: 1.0, output: 2.0}}, context: 128000, quality: 50,
      latency: {{ttft: 1.0, tokens_per_second: 50}}}}
  - {{name: m-shared-b, provider: failing, id: {shared}, tier: standard,
      price: {{input: 1.0, output: 2.0}}, context: 128000, quality: 20}}
  - {{name: m-backup, provider: healthy, id: backup-model, tier: standard,
      price: {{input: 1.0, output: 2.0}}, context: 128000, quality: 10}}
apps:
  - name: legacy
    match: {{header: {{x-app: legacy}}}}
    routes:
      "*": {{model: m-shared-b, fallbacks: [m-backup]}}
"""

RULES_B = {"passthrough": PASSTHROUGH_RULES, "second-catalog-entry": CATALOG_RULES}


def fail_on_the_failing_provider(client: openai.OpenAI, failing: FakeOpenAI, kind: str) -> None:
    """One call that reaches the failing provider with SHARED_ID and gets a 500 there."""
    before = len(failing.requests)
    failing.script(status=500)
    if kind == "passthrough":
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model=SHARED_ID, messages=HELLO)
    else:  # the pin's fallback serves
        completion = client.chat.completions.create(model="gpt-4o", messages=HELLO)
        assert completion.model == "backup-model"
    assert [r.json["model"] for r in failing.requests[before:]] == [SHARED_ID]


@pytest.mark.parametrize("kind", list(RULES_B))
def test_failures_on_one_provider_never_cool_the_other_down(tmp_path, confdir, healthy,
                                                            failing, kind, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="sidecar.access")
    rules = RULES_B[kind].format(failing=failing.base_url, healthy=healthy.base_url,
                                 shared=SHARED_ID)
    with start(tmp_path, confdir, rules) as sidecar:
        legacy = proxied_client(sidecar, monkeypatch, default_headers={"x-app": "legacy"})
        for _ in range(3):  # three in a row: the failing deployment cools down
            fail_on_the_failing_provider(legacy, failing, kind)
        assert len(access_lines(caplog, 3)) == 3
        served_before = len(healthy.requests)

        app = proxied_client(sidecar, monkeypatch)
        completion, headers = routed(app, model="auto",
                                     extra_body={"tier": "premium", "prefer": "quality"})

    assert headers["x-model-router-model"] == "m-shared"
    assert headers["x-model-router-provider"] == "healthy"
    assert completion.model == SHARED_ID
    assert [r.json["model"] for r in healthy.requests[served_before:]] == [SHARED_ID]
    assert len(failing.requests) == 3


@pytest.mark.parametrize("kind", list(RULES_B))
def test_failures_on_one_provider_never_slow_the_other_down(tmp_path, confdir, healthy,
                                                            failing, kind, monkeypatch, caplog):
    """Two failures: below the cooldown threshold, so only the latency bookkeeping could move
    `prefer: fast` away from m-shared."""
    caplog.set_level(logging.INFO, logger="sidecar.access")
    rules = RULES_B[kind].format(failing=failing.base_url, healthy=healthy.base_url,
                                 shared=SHARED_ID)
    with start(tmp_path, confdir, rules) as sidecar:
        legacy = proxied_client(sidecar, monkeypatch, default_headers={"x-app": "legacy"})
        for _ in range(2):
            fail_on_the_failing_provider(legacy, failing, kind)
        assert len(access_lines(caplog, 2)) == 2

        app = proxied_client(sidecar, monkeypatch)
        completion, headers = routed(app, model="auto",
                                     extra_body={"tier": "premium", "prefer": "fast"})

    assert headers["x-model-router-model"] == "m-shared"
    assert completion.model == SHARED_ID


# -- item 7: a plan with nothing to fall back to ------------------------------------------------

NO_ALTERNATIVE_RULES = """
version: 1
intercept: [{{host: api.openai.com, provider: p1}}]
providers:
  p1: {{type: openai, base_url: "{p1}"}}
  p2: {{type: openai, base_url: "{p2}"}}
models:
  - {{name: m1, provider: p1, id: model-one, tier: standard,
      price: {{input: 1.0, output: 2.0}}, context: 128000, quality: 30}}
  - {{name: m2, provider: p2, id: model-two, tier: standard,
      price: {{input: 1.0, output: 2.0}}, context: 128000, quality: 20}}
apps:
  - name: a
    match: {{header: {{x-app: a}}}}
    routes:
      "*": {{model: m1, fallbacks: [m2]}}
  - name: b
    match: {{header: {{x-app: b}}}}
    routes:
      "*": m1
"""


def test_a_pin_without_fallbacks_is_tried_while_its_model_cools_down(tmp_path, confdir,
                                                                      monkeypatch):
    with FakeOpenAI(name="p1") as p1, FakeOpenAI(name="p2") as p2, start(
            tmp_path, confdir, NO_ALTERNATIVE_RULES.format(p1=p1.base_url, p2=p2.base_url)
    ) as sidecar:
        a = proxied_client(sidecar, monkeypatch, default_headers={"x-app": "a"})
        for _ in range(3):  # m1 fails three times in a row: it cools down
            p1.script(status=500)
            _, headers = routed(a, model="gpt-4o")
            assert headers["x-model-router-model"] == "m2"
        _, headers = routed(a, model="gpt-4o")
        assert headers["x-model-router-model"] == "m2"
        assert len(p1.requests) == 3  # the premise: m1 is out of a's plan now

        b = proxied_client(sidecar, monkeypatch, default_headers={"x-app": "b"})
        completion, headers = routed(b, model="gpt-4o")  # p1 answers again by now

    assert headers["x-model-router-app"] == "b"
    assert headers["x-model-router-model"] == "m1"
    assert completion.model == "model-one"
    assert len(p1.requests) == 4
    assert p1.requests[-1].json["model"] == "model-one"
