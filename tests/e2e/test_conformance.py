"""The conformance matrix: every intent x endpoint x JSON/stream x tools cell of
``tests/e2e/matrix.py``, through a real sidecar per provider kind, with the real openai SDK
(max_retries=0) as the unmodified app, over both listeners (HTTPS_PROXY and base URL).

In every cell: the SDK parses the answer in its exact OpenAI shape (or the call is the
documented 400, with its class and code); exactly one upstream request (none for a 400); no
upstream body carries ``prefer`` or ``tier`` anywhere; the app's key reaches only the
``from-request`` provider; the tool definition reached the provider in its own wire form; and
the served model agrees in the answer's ``model``, the ``x-model-router-model`` header and what
the provider received.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response

from tests.e2e import matrix as mx
from tests.e2e.harness import RunningSidecar
from tests.fakes import bedrock as fb
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.responses_upstream import FakeResponses

pytestmark = pytest.mark.e2e

AWS_ENV = {"AWS_ACCESS_KEY_ID": fb.TEST_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": fb.TEST_SECRET_KEY,
           "AWS_EC2_METADATA_DISABLED": "true"}
ARGUMENTS = json.dumps(mx.TOOL_ARGUMENTS)


@dataclass(frozen=True, slots=True)
class Sent:
    """One request a fake provider received, as the invariants read it."""

    provider: str  # its rules.yaml name
    path: str
    model: str
    body: Any  # parsed JSON
    headers: dict[str, str]  # lower-case names
    signed: bool = False  # Bedrock: a valid SigV4 signature


@dataclass(frozen=True, slots=True)
class World:
    kind: str
    sidecar: RunningSidecar
    fakes: dict[str, Any]  # provider name -> fake
    clients: dict[str, openai.OpenAI]  # transport -> the app's SDK client

    def sent(self, since: dict[str, int]) -> list[Sent]:
        return [_sent(name, r) for name, fake in self.fakes.items()
                for r in fake.requests[since[name]:]]

    def counts(self) -> dict[str, int]:
        return {name: len(fake.requests) for name, fake in self.fakes.items()}


def _sent(provider: str, r: Any) -> Sent:
    if isinstance(r, fb.RecordedRequest):
        return Sent(provider, r.path, r.model_id, r.body, dict(r.headers), r.signature_ok)
    body = r.json if isinstance(r.json, dict) else {}
    return Sent(provider, r.url_path, str(body.get("model")), r.json,
                {k.lower(): v for k, v in r.headers.items()})


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest, confdir: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    kind = request.param
    with contextlib.ExitStack() as stack:
        env = stack.enter_context(pytest.MonkeyPatch.context())
        tmp = tmp_path_factory.mktemp(f"matrix-{kind}")
        for name, value in {**AWS_ENV, "AWS_CONFIG_FILE": str(tmp / "none"),
                            "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "none")}.items():
            env.setenv(name, value)
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
            env.delenv(name, raising=False)
        origin = stack.enter_context(FakeOpenAI(name=mx.ORIGIN) if kind == "compat"
                                     else FakeResponses(name=mx.ORIGIN))
        serving: Any
        if kind == "bedrock":
            serving = stack.enter_context(fb.FakeBedrock(tool_call=(mx.TOOL_NAME,
                                                                    mx.TOOL_ARGUMENTS)))
            serving_url = serving.url
        elif kind == "native":
            serving = stack.enter_context(FakeResponses(name="native",
                                                        tool_call=(mx.TOOL_NAME, ARGUMENTS)))
            serving_url = serving.base_url
        else:
            serving = stack.enter_context(FakeOpenAI(name="compat"))
            serving_url = serving.base_url
        rules = tmp / "rules.yaml"
        rules.write_text(mx.rules_yaml(kind, serving_url=serving_url, origin_url=origin.base_url))
        environ = {mx.KEY_VARIABLES[k]: mx.SIDECAR_KEYS[k] for k in mx.SIDECAR_KEYS}
        sidecar = stack.enter_context(RunningSidecar(rules, confdir, environ=environ,
                                                     latency=mx.PriorsOnly()))
        clients = {"proxy": _client(http_client=openai.DefaultHttpxClient(
                       proxy=sidecar.proxy_url, trust_env=False,
                       verify=ssl.create_default_context(cafile=str(sidecar.ca.bundle)))),
                   "base-url": _client(base_url=sidecar.base_url,
                                       http_client=openai.DefaultHttpxClient(trust_env=False))}
        for client in clients.values():
            stack.callback(client.close)
        yield World(kind, sidecar, {mx.ORIGIN: origin, mx.SERVING[kind]: serving}, clients)


def _client(**kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(api_key=mx.APP_KEY, max_retries=0, timeout=15, **kwargs)


# -- the app's call, and what the SDK made of the answer ------------------------------------------


@dataclass(frozen=True, slots=True)
class Served:
    models: set[str]  # every `model` the answer carried
    text: str
    call: tuple[str, Any] | None  # (tool name, parsed arguments)


def call(client: openai.OpenAI, cell: mx.Cell) -> tuple[Any, Served]:
    """(response headers, the answer) of the cell's call, made as an app makes it."""
    intent = cell.intent
    kwargs: dict[str, Any] = {"model": intent.model, "extra_body": dict(intent.extra) or None,
                              "extra_headers": {"x-app": intent.app} if intent.app else None}
    if cell.endpoint == "chat":
        api: Any = client.chat.completions
        kwargs["messages"] = [{"role": "user", "content": mx.HELLO}]
        tool = mx.CHAT_TOOL
    else:
        api = client.responses
        kwargs["input"] = mx.HELLO
        tool = mx.RESPONSES_TOOL
    if cell.tools:
        kwargs["tools"] = [tool]
    if not cell.stream:
        raw = api.with_raw_response.create(**kwargs)
        answer = raw.parse()
        return raw.headers, (read_chat(answer) if cell.endpoint == "chat"
                             else read_response(answer))
    with api.with_streaming_response.create(stream=True, **kwargs) as response:
        events = list(response.parse())
        return response.headers, (read_chat_stream(events) if cell.endpoint == "chat"
                                  else read_response_stream(events))


def read_chat(completion: Any) -> Served:
    assert isinstance(completion, ChatCompletion) and completion.object == "chat.completion"
    [choice] = completion.choices
    message, call_ = choice.message, None
    assert message.role == "assistant"
    if message.tool_calls:
        [tool_call] = message.tool_calls
        call_ = (tool_call.function.name, json.loads(tool_call.function.arguments))
    assert choice.finish_reason == ("tool_calls" if call_ else "stop")
    return Served({completion.model}, message.content or "", call_)


def read_chat_stream(chunks: list[Any]) -> Served:
    assert chunks and all(isinstance(c, ChatCompletionChunk)
                          and c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text, names, arguments, finishes = "", [], "", []
    for chunk in chunks:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for tool_call in choice.delta.tool_calls or []:
                assert tool_call.index == 0
                if tool_call.function and tool_call.function.name:
                    names.append(tool_call.function.name)
                if tool_call.function and tool_call.function.arguments:
                    arguments += tool_call.function.arguments
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    assert len(names) <= 1
    call_ = (names[0], json.loads(arguments)) if names else None
    assert finishes == ["tool_calls" if call_ else "stop"]
    return Served({c.model for c in chunks}, text, call_)


def read_response(response: Any) -> Served:
    assert isinstance(response, Response) and response.object == "response"
    assert response.status == "completed"
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) <= 1
    call_ = (calls[0].name, json.loads(calls[0].arguments)) if calls else None
    return Served({response.model}, response.output_text, call_)


def read_response_stream(events: list[Any]) -> Served:
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
    assert kinds.count("response.completed") == 1 and "error" not in kinds
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(set(numbers)), "sequence numbers must increase"
    final = read_response(events[-1].response)
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == final.text
    if final.call:
        arguments = "".join(e.delta for e in events
                            if e.type == "response.function_call_arguments.delta")
        assert json.loads(arguments) == final.call[1]
    models = {e.response.model for e in events if getattr(e, "response", None) is not None}
    return Served(models, text, final.call)


# -- the wire -------------------------------------------------------------------------------------


def router_fields(value: Any, at: str = "body") -> list[str]:
    """Where ``prefer`` or ``tier`` appears as a key, at any depth."""
    found = []
    if isinstance(value, dict):
        found += [f"{at}.{k}" for k in value if k in ("prefer", "tier")]
        for k, v in value.items():
            found += router_fields(v, f"{at}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += router_fields(v, f"{at}[{i}]")
    return found


def check_wire(world: World, cell: mx.Cell, sent: Sent) -> None:
    """The request has the provider's own shape: path, and the tool definition in its form."""
    body = sent.body
    assert isinstance(body, dict), f"{sent.provider} got a body that is not a JSON object"
    if sent.provider == mx.SERVING["bedrock"] and world.kind == "bedrock":
        assert sent.signed, "the Bedrock request's SigV4 signature does not verify"
        assert sent.path.endswith("/converse-stream" if cell.stream else "/converse")
        tools = (body.get("toolConfig") or {}).get("tools")
        assert tools == ([mx.BEDROCK_TOOL] if cell.tools else None), body.get("toolConfig")
        return
    native = world.kind != "compat" if sent.provider == mx.ORIGIN else world.kind == "native"
    if cell.endpoint == "responses" and native:
        assert sent.path == "/v1/responses"
        assert body.get("tools") == ([mx.RESPONSES_TOOL] if cell.tools else None)
    else:
        assert sent.path == "/v1/chat/completions"
        assert body.get("tools") == ([mx.CHAT_TOOL] if cell.tools else None)
    assert body.get("stream") is (True if cell.stream else None)


def check_keys(sent: Sent) -> None:
    """The app's key goes to the from-request provider only; the others get the sidecar's."""
    authorization = sent.headers.get("authorization", "")
    if sent.provider == mx.ORIGIN:
        assert authorization == f"Bearer {mx.APP_KEY}"
        return
    assert mx.APP_KEY not in json.dumps(sent.headers), f"the app's key reached {sent.provider}"
    if sent.provider in mx.SIDECAR_KEYS:
        assert authorization == f"Bearer {mx.SIDECAR_KEYS[sent.provider]}"
    else:
        assert authorization.startswith("AWS4-HMAC-SHA256 ")


def expected_text(world: World, sent: Sent) -> str:
    if sent.provider == mx.SERVING["bedrock"] and world.kind == "bedrock":
        return f"You said: {mx.HELLO}"  # the fake's echo
    return f"{sent.provider} says hi to {sent.model}"


def calls_tool(world: World, cell: mx.Cell, sent: Sent) -> bool:
    """Whether the fake that served answers with a call of the declared tool: the fake Bedrock
    does on every route, the native fake on /v1/responses; the chat fakes never do."""
    if not cell.tools or sent.provider == mx.ORIGIN:
        return False
    return world.kind == "bedrock" or (world.kind == "native" and sent.path == "/v1/responses")


# -- the matrix -----------------------------------------------------------------------------------


@pytest.mark.parametrize("world", mx.PROVIDERS, indirect=True, scope="module")
@pytest.mark.parametrize("cell", mx.CELLS, ids=[c.id for c in mx.CELLS])
def test_cell(world: World, cell: mx.Cell) -> None:
    before = world.counts()
    client = world.clients[cell.transport]
    if cell.refused:
        with pytest.raises(openai.BadRequestError) as refused:
            call(client, cell)
        assert (refused.value.status_code, refused.value.code, refused.value.type) == (
            400, "no_eligible_model", "invalid_request_error")
        assert str(cell.intent.serves) in refused.value.message
        assert world.sent(before) == [], "a refused call must not reach any provider"
        return
    headers, served = call(client, cell)
    sent = world.sent(before)
    assert len(sent) == 1, f"expected exactly one upstream request, got {len(sent)}"
    [upstream] = sent

    intent = cell.intent
    auto_tier = headers.get("x-model-router-auto-tier")
    if intent.rank is not None and intent.rank[1] == "auto":
        assert auto_tier in mx.TIERS and 0 <= float(headers["x-model-router-auto-score"]) <= 100
    else:
        assert auto_tier is None
    model = intent.expected(auto_tier)
    provider = mx.ORIGIN if intent.passthrough else mx.SERVING[world.kind]
    upstream_model = model if intent.passthrough else mx.upstream_id(world.kind, model)
    assert headers["x-model-router-app"] == (intent.app or "default")
    assert (headers["x-model-router-model"], headers["x-model-router-provider"]) == (
        model, provider)
    assert (upstream.provider, upstream.model) == (provider, upstream_model)
    assert served.models == {upstream_model}

    assert router_fields(upstream.body) == [], "the router's own fields left the sidecar"
    check_keys(upstream)
    check_wire(world, cell, upstream)
    if calls_tool(world, cell, upstream):
        assert served.call == (mx.TOOL_NAME, mx.TOOL_ARGUMENTS)
    else:
        assert served.call is None
        assert served.text.strip() == expected_text(world, upstream)
