"""A provider that cuts its JSON answer mid-body (issue 13, item 6).

The first model of a two-model plan is served by a fake that sends the head of a complete
answer (its full ``Content-Length``), half of the body, then closes the connection. The
sidecar's own attempts (a plan with fallbacks, any ``/v1/responses`` call) must treat that as a
failed attempt: the next model serves, nothing is logged with a traceback, and the cut counts
towards the first deployment's health like any other failure.
"""

from __future__ import annotations

import http.client
import json
import logging
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

RULES = """
version: 1
intercept: [{{host: api.openai.com, provider: p1}}]
providers:
  p1: {{type: openai, base_url: "{p1}"}}
  p2: {{type: openai, base_url: "{p2}"}}
models:
  - {{name: m-first, provider: p1, id: first-model, tier: standard,
      price: {{input: 1.0, output: 2.0}}, context: 128000, quality: 30}}
  - {{name: m-second, provider: p2, id: second-model, tier: standard,
      price: {{input: 1.0, output: 2.0}}, context: 128000, quality: 20}}
apps:
  - name: two
    match: {{header: {{x-app: two}}}}
    routes:
      "*": {{model: m-first, fallbacks: [m-second]}}
  - name: one
    match: {{header: {{x-app: one}}}}
    routes:
      "*": m-first
"""

APIS = ["chat", "responses"]


@pytest.fixture
def p1() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(name="p1") as up:
        yield up


@pytest.fixture
def p2() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(name="p2") as up:
        yield up


@pytest.fixture
def cut_sidecar(tmp_path: Path, confdir: Path, p1: FakeOpenAI, p2: FakeOpenAI
                ) -> Iterator[RunningSidecar]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(p1=p1.base_url, p2=p2.base_url))
    with RunningSidecar(rules, confdir, environ={}) as running:
        yield running


def call(client: Any, api: str) -> tuple[str, str, Any]:
    """One call of ``api``: (the text the app got, the model in the body, the headers)."""
    if api == "chat":
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO)
        completion = raw.parse()
        return completion.choices[0].message.content, completion.model, raw.headers
    raw = client.responses.with_raw_response.create(model="gpt-4o", input="Say hello.")
    response = raw.parse()
    assert response.status == "completed"
    return response.output_text, response.model, raw.headers


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The sidecar's log records that carry a traceback."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records
            if r.name.split(".")[0] == "sidecar" and r.exc_info]


def test_the_fake_really_cuts_the_body_mid_way(p1):
    """The premise: the head promises the whole body, half of it arrives, then the end."""
    p1.script(cut_body=True)
    conn = http.client.HTTPConnection(p1.host, p1.port, timeout=5)
    body = json.dumps({"model": "x", "messages": HELLO})
    conn.request("POST", "/v1/chat/completions", body=body,
                 headers={"content-type": "application/json"})
    resp = conn.getresponse()
    promised = int(resp.getheader("content-length"))
    assert resp.status == 200
    with pytest.raises(http.client.IncompleteRead) as info:
        resp.read()
    conn.close()
    assert 0 < len(info.value.partial) < promised


@pytest.mark.parametrize("api", APIS)
def test_a_cut_answer_falls_back_to_the_next_model(cut_sidecar, p1, p2, api, monkeypatch,
                                                    caplog):
    caplog.set_level(logging.WARNING, logger="sidecar")
    caplog.set_level(logging.INFO, logger="sidecar.access")
    p1.script(cut_body=True)
    client = proxied_client(cut_sidecar, monkeypatch, default_headers={"x-app": "two"})

    text, model, headers = call(client, api)

    assert text == "p2 says hi to second-model"
    assert model == "second-model"
    assert headers["x-model-router-model"] == "m-second"
    assert headers["x-model-router-provider"] == "p2"
    assert headers["x-model-router-app"] == "two"
    assert [r.json["model"] for r in p1.requests] == ["first-model"]  # tried, and cut
    assert [r.json["model"] for r in p2.requests] == ["second-model"]
    assert tracebacks(caplog) == []
    [line] = access_lines(caplog, 1)
    assert (line["status"], line["served_model"], line["provider"]) == (200, "m-second", "p2")
    assert [(f["model"], f["provider"]) for f in line["fallbacks"]] == [("m-first", "p1")]


@pytest.mark.parametrize("api", APIS)
def test_three_cuts_in_a_row_cool_the_first_model_down(cut_sidecar, p1, p2, api, monkeypatch,
                                                        caplog):
    caplog.set_level(logging.WARNING, logger="sidecar")
    client = proxied_client(cut_sidecar, monkeypatch, default_headers={"x-app": "two"})
    for _ in range(3):
        p1.script(cut_body=True)
    for _ in range(3):
        _, model, headers = call(client, api)
        assert (model, headers["x-model-router-model"]) == ("second-model", "m-second")
    assert len(p1.requests) == 3

    _, model, headers = call(client, api)  # m-first is cooling down: straight to m-second

    assert (model, headers["x-model-router-model"]) == ("second-model", "m-second")
    assert len(p1.requests) == 3
    assert len(p2.requests) == 4
    assert tracebacks(caplog) == []


def test_a_cut_answer_with_nothing_to_fall_back_to_is_an_upstream_error(cut_sidecar, p1, p2,
                                                                         monkeypatch, caplog):
    """A Responses call of a one-model plan is served by the sidecar's attempts too: the cut
    is the provider's failure (an OpenAI error the SDK raises), not the sidecar's."""
    caplog.set_level(logging.WARNING, logger="sidecar")
    p1.script(cut_body=True)
    client = proxied_client(cut_sidecar, monkeypatch, default_headers={"x-app": "one"})
    with pytest.raises(openai.APIStatusError) as info:
        client.responses.create(model="gpt-4o", input="Say hello.")

    assert info.value.status_code == 502
    assert set(info.value.body) == {"message", "type", "param", "code"}
    assert info.value.body["code"] != "sidecar_internal_error"
    assert len(p1.requests) == 1 and p2.requests == []
    assert tracebacks(caplog) == []
