"""/v1/responses through the sidecar: the official SDK's client.responses and pydantic-ai,
served natively (a Responses fake), by a chat-only provider, and by the fake Bedrock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.e2e.harness import RunningSidecar, proxied_client
from tests.fakes import bedrock as fb
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.responses_upstream import FakeResponses

pytestmark = pytest.mark.e2e

RULES = """
version: 1
intercept: [{{host: api.openai.com, provider: native}}]
providers:
  native: {{type: openai, base_url: "{native}", responses: true}}
  chatonly: {{type: openai, base_url: "{chat}"}}
  aws: {{type: bedrock, region: us-east-1, endpoint_url: "{bedrock}"}}
models:
  - {{name: m-native, provider: native, id: native-model, tier: premium,
      price: {{input: 2, output: 8}}, context: 100000, quality: 40, supports: [tools]}}
  - {{name: m-chat, provider: chatonly, id: chat-model, tier: economy,
      price: {{input: 0.1, output: 0.2}}, context: 100000, quality: 10, supports: [tools]}}
  - {{name: b-chat, provider: aws, id: "us.test.chat-model-v1:0", tier: standard,
      price: {{input: 0.2, output: 0.8}}, context: 100000, quality: 20, supports: [tools]}}
apps:
  - name: via-chat
    match: {{header: {{x-app: chat}}}}
    routes:
      "*": {{model: m-chat, fallbacks: [m-native]}}
  - name: via-bedrock
    match: {{header: {{x-app: bedrock}}}}
    routes:
      "*": b-chat
  - name: native
    match: {{header: {{x-app: native}}}}
    routes:
      "*": m-native
  - name: agent-on-chat
    match: {{proxy_user: agent-chat}}
    routes:
      "*": m-chat
  - name: agent-on-bedrock
    match: {{proxy_user: agent-bedrock}}
    routes:
      "*": b-chat
"""
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"], "additionalProperties": False}}


@pytest.fixture
def providers() -> Iterator[tuple[FakeResponses, FakeOpenAI, fb.FakeBedrock]]:
    with FakeResponses(name="native") as native, \
            FakeOpenAI(name="chatonly", stream_delay=0.15, stream_chunks=5) as chat, \
            fb.FakeBedrock() as bedrock:
        yield native, chat, bedrock


@pytest.fixture
def sidecar_r(tmp_path: Path, confdir: Path, providers, monkeypatch) -> Iterator[RunningSidecar]:
    native, chat, bedrock = providers
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", fb.TEST_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", fb.TEST_SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(native=native.base_url, chat=chat.base_url,
                                  bedrock=bedrock.url))
    with RunningSidecar(rules, confdir, environ={}) as running:
        yield running


def client_for(sidecar, monkeypatch, app: str) -> openai.OpenAI:
    return proxied_client(sidecar, monkeypatch, default_headers={"x-app": app})


def test_native_provider_gets_the_request_with_only_the_model_rewritten(sidecar_r, providers,
                                                                         monkeypatch):
    native, chat, _ = providers
    client = client_for(sidecar_r, monkeypatch, "native")
    raw = client.responses.with_raw_response.create(model="gpt-4o", input="Say hello.",
                                                   instructions="Be brief.")
    response = raw.parse()
    assert response.status == "completed" and response.output_text
    assert raw.headers["x-model-router-model"] == "m-native"
    [sent] = native.requests
    assert sent.path == "/v1/responses"
    assert sent.json == {"model": "native-model", "input": "Say hello.",
                         "instructions": "Be brief."}
    assert chat.requests == []


def test_chat_only_provider_serves_a_translated_response(sidecar_r, providers, monkeypatch):
    native, chat, _ = providers
    client = client_for(sidecar_r, monkeypatch, "chat")
    response = client.responses.create(model="gpt-4o", input="Say hello.",
                                       instructions="Be brief.", max_output_tokens=50)
    assert response.object == "response" and response.status == "completed"
    assert response.output_text.strip() == "chatonly says hi to chat-model"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    [sent] = chat.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.json["model"] == "chat-model"
    assert sent.json["messages"] == [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "Say hello."}]
    assert sent.json["max_completion_tokens"] == 50
    assert native.requests == []


def test_translated_stream_arrives_incrementally_and_the_sdk_parses_it(sidecar_r, providers,
                                                                       monkeypatch):
    client = client_for(sidecar_r, monkeypatch, "chat")
    arrivals, text, kinds = [], "", []
    with client.responses.stream(model="gpt-4o", input="Say hello.") as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                arrivals.append(time.monotonic())
                text += event.delta
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert text.strip() == "chatonly says hi to chat-model" == final.output_text.strip()
    assert arrivals[-1] - arrivals[0] >= 0.4  # 5 chunks 0.15 s apart: not buffered
    assert final.usage.output_tokens > 0


def test_bedrock_serves_responses_with_a_function_tool_round_trip(sidecar_r, providers,
                                                                  monkeypatch):
    _, _, bedrock = providers
    client = client_for(sidecar_r, monkeypatch, "bedrock")
    bedrock.push(fb.tool_response([fb.tool_use("get_weather", {"city": "Oslo"}, "tooluse_w1")]))
    first = client.responses.create(model="gpt-4o", input="Weather in Oslo?", tools=[WEATHER])
    [call] = [item for item in first.output if item.type == "function_call"]
    assert (call.name, json.loads(call.arguments), call.call_id) == (
        "get_weather", {"city": "Oslo"}, "tooluse_w1")

    bedrock.push(fb.text_response("3 degrees in Oslo."))
    second = client.responses.create(
        model="gpt-4o", tools=[WEATHER],
        input=[{"role": "user", "content": "Weather in Oslo?"}, call.model_dump(),
               {"type": "function_call_output", "call_id": call.call_id,
                "output": '{"celsius": 3}'}])
    assert second.output_text == "3 degrees in Oslo."
    sent = bedrock.requests[1].body["messages"]
    assert sent[1]["content"][0]["toolUse"]["toolUseId"] == "tooluse_w1"
    assert sent[2]["content"][0]["toolResult"]["toolUseId"] == "tooluse_w1"


def test_bedrock_streams_responses_events(sidecar_r, providers, monkeypatch):
    _, _, bedrock = providers
    bedrock.push_stream(fb.stream_events(fb.text_response("one two three four")), delay=0.05)
    client = client_for(sidecar_r, monkeypatch, "bedrock")
    deltas = [e.delta for e in client.responses.create(model="gpt-4o", input="count",
                                                       stream=True)
              if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "one two three four" and len(deltas) > 1


def test_a_native_only_feature_prefers_the_native_candidate(sidecar_r, providers, monkeypatch):
    native, chat, _ = providers
    client = client_for(sidecar_r, monkeypatch, "chat")  # plan: m-chat, then m-native
    response = client.responses.create(model="gpt-4o", input="and then?",
                                       previous_response_id="resp_earlier")
    assert response.status == "completed"
    assert len(native.requests) == 1 and chat.requests == []


def test_a_native_only_feature_on_a_translated_route_is_a_clear_400(sidecar_r, providers,
                                                                     monkeypatch):
    native, chat, bedrock = providers
    client = client_for(sidecar_r, monkeypatch, "bedrock")
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-4o", input="search the web",
                                tools=[{"type": "web_search"}])
    assert "web_search" in info.value.message and "b-chat" in info.value.message
    assert native.requests == chat.requests == [] and bedrock.requests == []


PYDANTIC_APP = """
from pydantic_ai import Agent

print(Agent("openai:gpt-4o").run_sync("Say hello.").output)
"""


@pytest.mark.parametrize("user, backend", [("", "native"), ("agent-chat", "chat"),
                                           ("agent-bedrock", "bedrock")])
def test_pydantic_ai_default_openai_model_through_the_proxy(sidecar_r, providers, user, backend):
    """pydantic-ai's ``Agent('openai:gpt-4o')`` calls /v1/responses: an unmodified app, run as
    its own process with only HTTPS_PROXY (naming the app), the CA bundle and its key."""
    native, chat, bedrock = providers
    if backend == "bedrock":
        bedrock.push(fb.text_response("Hello from Bedrock."))
    port = sidecar_r.port("regular")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/"),
           "HTTPS_PROXY": f"http://{user + ':@' if user else ''}127.0.0.1:{port}",
           "SSL_CERT_FILE": str(sidecar_r.ca.bundle), "OPENAI_API_KEY": "sk-pydantic-app"}
    proc = subprocess.run([sys.executable, "-c", PYDANTIC_APP], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    served = {"native": native.requests, "chat": chat.requests, "bedrock": bedrock.requests}
    assert [name for name, calls in served.items() if calls] == [backend]
    if backend == "native":  # the default app: passthrough to the intercepted host's provider
        assert served["native"][0].path == "/v1/responses"
        assert served["native"][0].headers.get("authorization") == "Bearer sk-pydantic-app"
    elif backend == "chat":
        assert served["chat"][0].path == "/v1/chat/completions"
        assert proc.stdout.strip() == "chatonly says hi to chat-model"
    else:
        assert proc.stdout.strip() == "Hello from Bedrock."


def test_native_stream_passes_through(sidecar_r, providers, monkeypatch):
    native, _, _ = providers
    client = client_for(sidecar_r, monkeypatch, "native")
    events = list(client.responses.create(model="gpt-4o", input="Say hello.", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text and text == events[-1].response.output_text
    assert native.requests[0].json["model"] == "native-model"
