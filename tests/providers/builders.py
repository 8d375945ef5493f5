"""Builders for the adapter tables (``tests/providers/test_adapters.py``, ``tests/forward/``).

Providers as rules.yaml declares them (``parse_provider``), targets, app requests (through
``sidecar.forward.call``, as both forwarding paths build them), provider answers (buffered bodies,
chat SSE, Bedrock event-stream frames) and readers for what the app gets. No sockets: Bedrock
signs with static test credentials from the environment (``use_test_credentials``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from sidecar.core.accounting import Usage
from sidecar.core.config.rules import ProviderSpec, parse_provider
from sidecar.forward.call import Dispatcher, app_request
from sidecar.providers import Adapter, Api, AppRequest, StreamTransform, UpstreamCall
from sidecar.providers.registry import make_adapters
from tests.fakes.bedrock import (
    TEST_ACCESS_KEY,
    TEST_REGION,
    TEST_SECRET_KEY,
    encode_events,
    stream_events,
    text_response,
    usage,
)
from tests.providers.bedrock.specs import model_spec

try:
    from sidecar.core.routing.policy import Target
except ImportError:  # moved by a colleague
    from sidecar.core.routing.decision import Target  # type: ignore[no-redef]

KINDS = ("openai", "bedrock")
KEY_VARIABLE = "EXAMPLE_KEY"
OWN_KEY = "sk-sidecar-own-key"
ENV = {KEY_VARIABLE: OWN_KEY}
OPENAI_BASE = "https://llm.example.com/v1"
UPSTREAM_MODEL = "provider-model-7b"  # the OpenAI-compatible target's id
BEDROCK_SPEC = model_spec(upstream_id="us.anthropic.claude-test-v1:0")
APP_MODEL = "gpt-4o"  # what the app asked for
# What an app (the openai SDK behind the sidecar) sends: its own key and identity, plus
# headers that only describe its connection to the sidecar.
APP_KEY = "Bearer sk-app-own-key"
APP_IDENTITY = {"authorization": APP_KEY, "openai-organization": "org-app",
                "openai-project": "proj-app"}
APP_CONNECTION = {"host": "api.openai.com", "connection": "keep-alive", "content-length": "99",
                  "transfer-encoding": "chunked", "proxy-authorization": "Basic cHJveHk=",
                  "te": "trailers", "upgrade": "h2c", "keep-alive": "timeout=5"}
APP_HEADERS = {**APP_IDENTITY, **APP_CONNECTION, "user-agent": "OpenAI/Python 1.99.0",
               "x-stainless-lang": "python", "content-type": "application/json"}
CONNECTION_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer",
                                "upgrade", "host", "content-length", "content-encoding",
                                "proxy-authorization", "proxy-connection"})
TEXT = "Hello from the provider"
OPENAI_USAGE = Usage(prompt=12, completion=7, cached=3)
BEDROCK_USAGE = Usage(prompt=14, completion=5, cached=4)  # 10 fresh + 4 cache reads


def use_test_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Static AWS test credentials through the standard chain (env provider), nothing else of
    the host's AWS set-up (no profile files, no IMDS)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY)


# -- providers, targets, requests ----------------------------------------------------------------


def providers(*, api_key: str = f"env:{KEY_VARIABLE}", responses: bool = False,
              base_url: str = OPENAI_BASE) -> dict[str, ProviderSpec]:
    """One provider of each kind, as rules.yaml would declare them."""
    return {
        "openai": parse_provider("openai", {"type": "openai", "base_url": base_url,
                                            "api_key": api_key, "responses": responses}),
        "bedrock": parse_provider("bedrock", {"type": "bedrock", "region": TEST_REGION}),
    }


def adapters(*, environ: Mapping[str, str] = ENV, **provider_options: Any) -> dict[str, Adapter]:
    return make_adapters(providers(**provider_options), environ)


def target(kind: str) -> Target:
    if kind == "bedrock":
        return Target("bedrock", BEDROCK_SPEC.upstream_id, BEDROCK_SPEC)
    return Target("openai", UPSTREAM_MODEL)


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": APP_MODEL, "messages": [{"role": "user", "content": "Hi"}], **extra}


def responses_body(**extra: Any) -> dict[str, Any]:
    return {"model": APP_MODEL, "input": "Hi", **extra}


APP_PATHS: dict[Api, str] = {"chat": "/v1/chat/completions", "responses": "/v1/responses",
                             "other": "/v1/models"}


def app(api: Api = "chat", body: Mapping[str, Any] | None = None, *, stream: bool = False,
        headers: Mapping[str, str] = APP_HEADERS, path: str | None = None,
        raw: bytes | None = None) -> AppRequest:
    """The app's call as the sidecar reads it (``app_request``: router fields removed)."""
    if body is None and api != "other":
        body = chat_body() if api == "chat" else responses_body()
    if body is not None and stream:
        body = {**body, "stream": True}
    if raw is None:
        raw = json.dumps(body).encode() if body is not None else b""
    return app_request(api=api, path=path or APP_PATHS[api], headers=headers, raw=raw,
                       body=body, stream=stream)


def prepared(kind: str, api: Api = "chat", *, stream: bool = False,
             body: Mapping[str, Any] | None = None, **provider_options: Any) -> UpstreamCall:
    """One attempt for ``kind``'s target, as the dispatcher prepares it (a Responses call to a
    provider without the Responses API goes as chat, ``call.responses`` set)."""
    dispatcher = Dispatcher(adapters(**provider_options))
    return dispatcher.prepare(target(kind), app(api, body, stream=stream))


# -- what providers answer -----------------------------------------------------------------------


def openai_completion(*, with_usage: bool = True, text: str = TEXT) -> dict[str, Any]:
    completion: dict[str, Any] = {
        "id": "chatcmpl-upstream-1", "object": "chat.completion", "created": 1700000000,
        "model": UPSTREAM_MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "logprobs": None, "finish_reason": "stop"}],
    }
    if with_usage:
        completion["usage"] = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19,
                               "prompt_tokens_details": {"cached_tokens": 3}}
    return completion


def converse_answer(*, with_usage: bool = True, text: str = TEXT) -> dict[str, Any]:
    answer = text_response(text, token_usage=usage(10, 5, cache_read=4))
    if not with_usage:
        del answer["usage"]
    return answer


def success_bodies(kind: str) -> dict[str, bytes]:
    """The body axis of a buffered answer: two valid ones (with and without usage) and the ways
    a body can fail to be one."""
    build = openai_completion if kind == "openai" else converse_answer
    valid = json.dumps(build()).encode()
    return {
        "valid": valid,
        "valid-no-usage": json.dumps(build(with_usage=False)).encode(),
        "non-json": b"<html><body>502 Bad Gateway</body></html>",
        "json-array": b'[{"id": "chatcmpl-1"}]',
        "truncated": valid[: len(valid) // 2],
        "empty": b"",
    }


VALID_BODIES = frozenset({"valid", "valid-no-usage"})
BODY_NAMES = tuple(success_bodies("openai"))


def chat_chunk(delta: dict[str, Any] | None, finish: str | None = None,
               **extra: Any) -> dict[str, Any]:
    """A chat.completion.chunk as OpenAI sends it when the request asked for usage: every chunk
    has ``"usage": null`` but the last, which has no choices."""
    choices = [] if delta is None else [
        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    return {"id": "chatcmpl-upstream-1", "object": "chat.completion.chunk",
            "created": 1700000000, "model": UPSTREAM_MODEL, "choices": choices,
            "usage": None, **extra}


CHAT_STREAM = [
    chat_chunk({"role": "assistant", "content": ""}),
    chat_chunk({"content": "Hello"}),
    chat_chunk({"content": " wörld 👋"}),
    chat_chunk({}, "stop"),
    chat_chunk(None, usage={"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}),
]
CHAT_STREAM_TEXT = "Hello wörld 👋"
CHAT_STREAM_USAGE = Usage(prompt=9, completion=2)


def sse(chunks: Iterable[Any], *, done: bool = True, crlf: bool = False) -> bytes:
    """Chunks as the provider's SSE bytes (``data: {...}`` events, then ``data: [DONE]``)."""
    end = b"\r\n\r\n" if crlf else b"\n\n"
    events = [b"data: " + json.dumps(c, ensure_ascii=False).encode() + end for c in chunks]
    return b"".join(events) + (b"data: [DONE]" + end if done else b"")


def converse_stream(answer: Mapping[str, Any] | None = None, *, piece: int = 5) -> bytes:
    """The ConverseStream event-stream bytes Bedrock sends for a Converse answer."""
    return encode_events(stream_events(answer or converse_answer(), piece=piece))


def feed(transform: StreamTransform, pieces: Iterable[bytes]) -> list[bytes]:
    """Run a stream transform as mitmproxy does: every piece, then ``b""`` at the end."""
    out: list[bytes] = []
    for piece in [*pieces, b""]:
        produced = transform(piece)
        assert b"" not in produced, "a stream transform must never return b'' (it ends a stream)"
        out += produced
    return out


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


def sse_data(out: Iterable[bytes]) -> list[Any]:
    """The ``data:`` payloads of SSE output, parsed (``"[DONE]"`` kept as the string)."""
    text = b"".join(out).decode().replace("\r\n", "\n")
    payloads: list[Any] = []
    for event in text.split("\n\n"):
        for line in event.split("\n"):
            if line.startswith("data: "):
                value = line[6:]
                payloads.append(value if value == "[DONE]" else json.loads(value))
    return payloads


def sse_event_names(out: Iterable[bytes]) -> list[str]:
    text = b"".join(out).decode()
    return [line[7:] for line in text.split("\n") if line.startswith("event: ")]


def openai_error(body: bytes) -> dict[str, Any]:
    """``body`` as an OpenAI error object; fails the test if it is not exactly that shape."""
    parsed = json.loads(body)
    assert isinstance(parsed, dict) and set(parsed) == {"error"}, parsed
    error = parsed["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    assert error["param"] is None or isinstance(error["param"], str), error
    assert error["code"] is None or isinstance(error["code"], str), error
    return error


def chat_completion_text(body: bytes | Mapping[str, Any]) -> str:
    """The assistant text of a chat.completion; fails the test if it is not that shape."""
    completion = json.loads(body) if isinstance(body, bytes) else body
    assert completion["object"] == "chat.completion", completion
    assert isinstance(completion["id"], str) and isinstance(completion["created"], int)
    (choice,) = completion["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"
    return str(choice["message"]["content"])
