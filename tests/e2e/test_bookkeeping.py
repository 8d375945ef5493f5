"""Every record of a call names the app that matched and the deployment really tried
(issue 13, item 5): metrics, cost, latency, cooldowns and the access log.

* a passthrough whose model name equals a catalog entry on another provider is not counted,
  costed, timed or cooled down as that entry;
* calls refused before a routing decision are counted under the app that matched;
* attempts refused inside the sidecar (a model that cannot take the request) are not upstream
  errors or fallbacks of a provider that was never called.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.harness import RunningSidecar
from tests.e2e.test_metrics import scrape, value
from tests.e2e.test_routing import HELLO, proxied_client
from tests.fakes import bedrock as fb
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = pytest.mark.e2e

# up1 is the intercepted host's provider (passthrough); m-listed lives on `cat`, at a price no
# passthrough may be charged; m-locked's provider has no key (down); b-chat is on Bedrock.
RULES = """
version: 1
intercept: [{{host: api.openai.com, provider: up1}}]
providers:
  up1: {{type: openai, base_url: "{up1}"}}
  cat: {{type: openai, base_url: "{cat}"}}
  bak: {{type: openai, base_url: "{bak}"}}
  keyless: {{type: openai, base_url: "{bak}", api_key: "env:BOOKKEEPING_MISSING_KEY"}}
  aws: {{type: bedrock, region: us-east-1, endpoint_url: "{bedrock}"}}
models:
  - {{name: m-listed, provider: cat, id: listed-model, tier: standard,
      price: {{input: 100.0, output: 200.0}}, context: 128000, quality: 40,
      latency: {{ttft: 0.05, tokens_per_second: 500}}}}
  - {{name: m-backup, provider: bak, id: backup-model, tier: standard,
      price: {{input: 1.0, output: 2.0}}, context: 128000, quality: 20,
      latency: {{ttft: 1.0, tokens_per_second: 80}}}}
  - {{name: m-locked, provider: keyless, id: locked-model, tier: economy,
      price: {{input: 1.0, output: 2.0}}, context: 128000, quality: 10}}
  - {{name: b-chat, provider: aws, id: "us.test.chat-model-v1:0", tier: economy,
      price: {{input: 0.2, output: 0.8}}, context: 100000, max_output: 8192, quality: 20}}
apps:
  - name: legacy
    match: {{header: {{x-app: legacy}}}}
    routes:
      "*": passthrough
  - name: pinned
    match: {{header: {{x-app: pinned}}}}
    routes:
      "*": {{model: m-listed, fallbacks: [m-backup]}}
  - name: locked
    match: {{header: {{x-app: locked}}}}
    routes:
      "*": m-locked
  - name: mixed
    match: {{header: {{x-app: mixed}}}}
    routes:
      "*": {{model: b-chat, fallbacks: [m-backup]}}
"""


@pytest.fixture
def fakes() -> Iterator[dict[str, Any]]:
    with FakeOpenAI(name="up1") as up1, FakeOpenAI(name="cat") as cat, \
            FakeOpenAI(name="bak") as bak, fb.FakeBedrock() as bedrock:
        yield {"up1": up1, "cat": cat, "bak": bak, "aws": bedrock}


@pytest.fixture
def books(tmp_path: Path, confdir: Path, fakes: dict[str, Any],
          monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningSidecar]:
    for name, setting in {"AWS_ACCESS_KEY_ID": fb.TEST_ACCESS_KEY,
                          "AWS_SECRET_ACCESS_KEY": fb.TEST_SECRET_KEY,
                          "AWS_CONFIG_FILE": str(tmp_path / "none"),
                          "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(name, setting)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(up1=fakes["up1"].base_url, cat=fakes["cat"].base_url,
                                  bak=fakes["bak"].base_url, bedrock=fakes["aws"].url))
    with RunningSidecar(rules, confdir, environ={}) as running:
        yield running


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="sidecar.access")
    return caplog


def access_lines(caplog: pytest.LogCaptureFixture, count: int) -> list[dict[str, Any]]:
    """The access-log lines so far, once there are ``count`` (waiting at most 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(r.getMessage()) for r in caplog.records
                 if r.name == "sidecar.access"]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def client_for(sidecar: RunningSidecar, monkeypatch: pytest.MonkeyPatch, app: str
               ) -> openai.OpenAI:
    return proxied_client(sidecar, monkeypatch, default_headers={"x-app": app})


def counted(samples: dict[tuple[str, frozenset], float], name: str, **labels: str
            ) -> dict[frozenset, float]:
    """The non-zero samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return {lbl: v for (n, lbl), v in samples.items() if n == name and v and wanted <= lbl}


# -- a passthrough of a name the catalog has on another provider --------------------------------

def test_a_passthrough_is_not_counted_or_costed_as_the_catalog_entry(books, fakes, access,
                                                                     monkeypatch):
    client = client_for(books, monkeypatch, "legacy")
    raw = client.chat.completions.with_raw_response.create(model="m-listed", messages=HELLO)

    assert raw.parse().model == "m-listed"  # forwarded as it was, to the intercepted host
    assert raw.headers["x-model-router-provider"] == "up1"
    assert [r.json["model"] for r in fakes["up1"].requests] == ["m-listed"]
    assert fakes["cat"].requests == []
    [line] = access_lines(access, 1)
    assert (line["app"], line["provider"], line["status"]) == ("legacy", "up1", 200)
    assert line["prompt_tokens"] > 0  # the usage is known ...
    assert line["cost_usd"] is None  # ... but not what up1 charges for it
    m = scrape(books)
    [(labels, count)] = counted(m, "sidecar_requests_total", app="legacy").items()
    assert count == 1
    assert dict(labels)["provider"] == "up1"  # the deployment tried, not the entry on `cat`
    assert counted(m, "sidecar_requests_total", provider="cat") == {}
    assert counted(m, "sidecar_cost_usd_total") == {}  # no cost at m-listed's price


def test_a_slow_passthrough_does_not_time_the_catalog_entry(books, fakes, monkeypatch):
    """`prefer: fast` ranks m-listed first by its priors (1.05 s vs 7.25 s for 500 tokens); a
    0.5 s passthrough of the same name, read as m-listed's (0.1 s per output token), would
    make it look 50 s slow."""
    fakes["up1"].script(delay=0.5)
    client_for(books, monkeypatch, "legacy").chat.completions.create(model="m-listed",
                                                                     messages=HELLO)
    app = proxied_client(books, monkeypatch)
    raw = app.chat.completions.with_raw_response.create(
        model="auto", messages=HELLO, extra_body={"tier": "standard", "prefer": "fast"})

    assert raw.headers["x-model-router-model"] == "m-listed"
    assert [r.json["model"] for r in fakes["cat"].requests] == ["listed-model"]


def test_a_passthrough_failure_does_not_extend_the_entrys_cooldown(books, fakes, access,
                                                                   monkeypatch):
    pinned = client_for(books, monkeypatch, "pinned")
    for _ in range(3):  # m-listed fails three times in a row (m-backup serves): cooling down
        fakes["cat"].script(status=500)
        assert pinned.chat.completions.create(model="gpt-4o",
                                              messages=HELLO).model == "backup-model"
    assert len(access_lines(access, 3)) == 3
    assert value(scrape(books), "sidecar_cooldowns_total", model="m-listed") == 1

    fakes["up1"].script(status=500)  # the passthrough of the same name fails, on up1
    with pytest.raises(openai.InternalServerError):
        client_for(books, monkeypatch, "legacy").chat.completions.create(model="m-listed",
                                                                         messages=HELLO)

    assert len(access_lines(access, 4)) == 4  # the passthrough's bookkeeping is done
    m = scrape(books)
    assert value(m, "sidecar_cooldowns_total", model="m-listed") == 1  # not a failed probe
    assert len(fakes["cat"].requests) == 3


# -- refused before a routing decision: counted under the app that matched ---------------------

REFUSALS = {
    # app, request, expected status
    "unknown prefer": ("pinned", {"model": "auto", "extra_body": {"prefer": "cheapest"}}, 400),
    "every provider down": ("locked", {"model": "gpt-4o"}, 503),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refused_call_is_counted_under_the_app_that_matched(books, fakes, access, case,
                                                               monkeypatch):
    app, request, status = REFUSALS[case]
    with pytest.raises(openai.APIStatusError) as info:
        client_for(books, monkeypatch, app).chat.completions.create(messages=HELLO, **request)
    assert info.value.status_code == status  # the premise

    [line] = access_lines(access, 1)
    assert (line["app"], line["status"]) == (app, status)
    m = scrape(books)
    assert sum(counted(m, "sidecar_requests_total", app=app).values()) == 1
    assert counted(m, "sidecar_requests_total", app="other") == {}
    assert not any(fake.requests for fake in fakes.values())


# -- refused inside the sidecar: not an upstream error of a provider never called --------------

def test_a_model_that_cannot_take_the_request_is_no_upstream_error(books, fakes, access,
                                                                    monkeypatch):
    """Bedrock returns one choice: `n: 2` cannot go to b-chat, so m-backup serves."""
    client = client_for(books, monkeypatch, "mixed")
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO, n=2)

    assert raw.headers["x-model-router-model"] == "m-backup"
    assert raw.parse().model == "backup-model"
    assert fakes["aws"].requests == []  # the premise: Bedrock was never called
    [line] = access_lines(access, 1)
    assert line["served_model"] == "m-backup"
    assert [f for f in line["fallbacks"] if f["provider"] == "aws"] == []
    m = scrape(books)
    assert counted(m, "sidecar_upstream_errors_total", provider="aws") == {}
    assert counted(m, "sidecar_fallbacks_total", model="b-chat") == {}
