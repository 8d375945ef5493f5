"""The router's own request fields never reach Bedrock (issue 13, item 1).

``{"model": "auto", "tier": "economy", "prefer": "quality"}`` (``extra_body``), and the same
with only ``prefer``, with a Bedrock model winning: served by Bedrock for chat completions and
the Responses API, JSON and stream, and the Converse request carries neither field anywhere
(``additionalModelRequestFields`` included). Two catalogs: Bedrock alone (a plan of one model:
mitmproxy forwards chat calls itself) and Bedrock ahead of an OpenAI-compatible model (a plan
with a fallback: the sidecar's own attempts).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.harness import RunningSidecar
from tests.e2e.test_routing import HELLO, proxied_client
from tests.fakes import bedrock as fb
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = pytest.mark.e2e

MODEL_ID = "us.test.eco-model-v1:0"
BEDROCK_MODEL = """
  - {{name: b-eco, provider: aws, id: "{model_id}", tier: economy,
      price: {{input: 0.2, output: 0.8}}, context: 100000, max_output: 8192, quality: 30}}"""
OPENAI_MODEL = """
  - {{name: m-eco, provider: up1, id: eco-model, tier: economy,
      price: {{input: 0.1, output: 0.2}}, context: 100000, quality: 10}}"""
RULES = """
version: 1
intercept: [{{host: api.openai.com, provider: up1}}]
providers:
  up1: {{type: openai, base_url: "{up1}"}}
  aws: {{type: bedrock, region: us-east-1, endpoint_url: "{bedrock}"}}
models:{models}
"""
CATALOGS = {"bedrock-only": BEDROCK_MODEL, "bedrock-then-openai": BEDROCK_MODEL + OPENAI_MODEL}
FIELDS = {"tier+prefer": {"tier": "economy", "prefer": "quality"}, "prefer": {"prefer": "quality"}}
ROUTER_FIELDS = (b'"tier"', b'"prefer"')


@pytest.fixture(scope="module", params=list(CATALOGS))
def served(request: pytest.FixtureRequest, confdir: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[RunningSidecar, fb.FakeBedrock, FakeOpenAI]]:
    """A sidecar per catalog, shared by that catalog's tests (the fakes are cleared per test)."""
    tmp = tmp_path_factory.mktemp("router-fields")
    with pytest.MonkeyPatch.context() as env, FakeOpenAI(name="up1") as up1, \
            fb.FakeBedrock() as bedrock:
        env.setenv("AWS_ACCESS_KEY_ID", fb.TEST_ACCESS_KEY)
        env.setenv("AWS_SECRET_ACCESS_KEY", fb.TEST_SECRET_KEY)
        env.setenv("AWS_CONFIG_FILE", str(tmp / "none"))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp / "none"))
        env.delenv("AWS_SESSION_TOKEN", raising=False)
        env.delenv("AWS_PROFILE", raising=False)
        rules = tmp / "rules.yaml"
        models = CATALOGS[request.param].format(model_id=MODEL_ID)
        rules.write_text(RULES.format(up1=up1.base_url, bedrock=bedrock.url, models=models))
        with RunningSidecar(rules, confdir, environ={}) as sidecar:
            yield sidecar, bedrock, up1


@pytest.fixture
def fakes(served: tuple[RunningSidecar, fb.FakeBedrock, FakeOpenAI]
          ) -> Iterator[tuple[RunningSidecar, fb.FakeBedrock, FakeOpenAI]]:
    _, bedrock, up1 = served
    bedrock.requests.clear()
    up1.clear()
    yield served


def chat(client: openai.OpenAI, stream: bool, extra: dict[str, str]) -> tuple[str, Any]:
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=HELLO,
                                                           stream=stream, extra_body=extra)
    if not stream:
        return raw.parse().choices[0].message.content, raw.headers
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    return text, raw.headers


def responses(client: openai.OpenAI, stream: bool, extra: dict[str, str]) -> tuple[str, Any]:
    raw = client.responses.with_raw_response.create(model="auto", input="Say hello.",
                                                    stream=stream, extra_body=extra)
    if not stream:
        response = raw.parse()
        assert response.status == "completed"
        return response.output_text, raw.headers
    events = list(raw.parse())
    assert events[-1].type == "response.completed"
    return "".join(e.delta for e in events if e.type == "response.output_text.delta"), raw.headers


CALLS = {"chat": chat, "responses": responses}


@pytest.mark.parametrize("fields", list(FIELDS))
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("api", list(CALLS))
def test_router_fields_never_reach_bedrock(fakes, api, stream, fields, monkeypatch):
    sidecar, bedrock, up1 = fakes
    client = proxied_client(sidecar, monkeypatch)

    text, headers = CALLS[api](client, stream, FIELDS[fields])

    assert text == "You said: Say hello."  # the fake's echo, through Converse
    assert headers["x-model-router-model"] == "b-eco"
    assert headers["x-model-router-provider"] == "aws"
    [sent] = bedrock.requests
    assert sent.signature_ok and sent.model_id == MODEL_ID
    assert sent.operation == ("converse-stream" if stream else "converse")
    # Neither name anywhere in the Converse body (additionalModelRequestFields included).
    assert [f for f in ROUTER_FIELDS if f in sent.raw_body] == []
    assert up1.requests == []  # no fallback was needed
