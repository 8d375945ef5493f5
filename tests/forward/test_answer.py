"""``sidecar.forward.answer`` over both adapters: a Responses call served via chat gets a
``response`` object (buffered) or Responses SSE (streamed); anything else is the adapter's answer
as it is; stream headers; what a verdict means for a deployment's health."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from sidecar.forward import answer as answers
from sidecar.providers import SSE_CONTENT_TYPE, UpstreamCall
from tests.fakes.bedrock import encode_event, encode_events, stream_events
from tests.providers.builders import (
    BEDROCK_USAGE,
    BODY_NAMES,
    CHAT_STREAM,
    CHAT_STREAM_TEXT,
    CHAT_STREAM_USAGE,
    CONNECTION_HEADERS,
    KINDS,
    OPENAI_USAGE,
    TEXT,
    VALID_BODIES,
    byte_by_byte,
    converse_answer,
    converse_stream,
    feed,
    openai_error,
    prepared,
    responses_body,
    sse,
    sse_data,
    sse_event_names,
    success_bodies,
)

USAGE = {"openai": OPENAI_USAGE, "bedrock": BEDROCK_USAGE}
PROVIDER_HEADERS = {"content-type": "application/json", "x-request-id": "req-3",
                    "x-amzn-requestid": "amzn-3", "connection": "keep-alive",
                    "content-length": "512", "content-encoding": "gzip",
                    "transfer-encoding": "chunked"}


def responses_call(kind: str, *, stream: bool = False, **body: Any) -> UpstreamCall:
    """A Responses call served as chat (the OpenAI-compatible provider lacks /v1/responses)."""
    call = prepared(kind, "responses", stream=stream, body=responses_body(**body))
    assert call.responses is not None and call.api == "chat"
    return call


# -- buffered ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "body_name"), [
    pytest.param(k, b, id=f"{k}-{b}") for k, b in itertools.product(KINDS, sorted(VALID_BODIES))
])
def test_responses_served_via_chat_get_a_response_object(kind: str, body_name: str) -> None:
    call = responses_call(kind, instructions="Be brief.", prefer="cheap", tier="economy",
                          metadata={"trace": "t-1"})
    answer = answers.buffered(call, 200, PROVIDER_HEADERS, success_bodies(kind)[body_name])

    assert (answer.status, answer.verdict) == (200, "ok")
    assert answer.headers["content-type"] == "application/json"
    assert not CONNECTION_HEADERS & set(answer.headers)
    assert answer.headers["x-request-id"] == "req-3"
    response = json.loads(answer.body)
    assert response["object"] == "response" and response["status"] == "completed"
    assert response["id"].startswith("resp")
    assert response["instructions"] == "Be brief." and response["metadata"] == {"trace": "t-1"}
    assert not {"prefer", "tier", "choices"} & set(response)
    (message,) = response["output"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert [part["text"] for part in message["content"]] == [TEXT]
    if body_name == "valid":
        expected = USAGE[kind]
        assert answer.usage == expected
        assert response["usage"]["input_tokens"] == expected.prompt
        assert response["usage"]["output_tokens"] == expected.completion
        assert response["usage"]["input_tokens_details"]["cached_tokens"] == expected.cached
    else:
        assert answer.usage is None and response["usage"] is None


@pytest.mark.parametrize(("kind", "status", "body_name"), [
    pytest.param(k, s, b, id=f"{k}-{s}-{b}")
    for k, s, b in itertools.product(KINDS, (200, 400, 429, 503), BODY_NAMES)
    if not (s == 200 and b in VALID_BODIES) and not (k, s, b) == ("bedrock", 200, "json-array")
])
def test_responses_via_chat_failures_are_the_adapters_answer(kind: str, status: int,
                                                             body_name: str) -> None:
    """Nothing to translate: the app gets the adapter's error as it is (an OpenAI error or the
    provider's own body), with the same verdict."""
    call = responses_call(kind)
    body = success_bodies(kind)[body_name]
    answer = answers.buffered(call, status, PROVIDER_HEADERS, body)
    direct = call.adapter.answer(call, status, PROVIDER_HEADERS, body)
    assert answer.verdict in ("retry", "malformed", "final")
    assert (answer.status, answer.headers, answer.body, answer.verdict, answer.usage) == (
        direct.status, direct.headers, direct.body, direct.verdict, direct.usage)
    if kind == "bedrock" or answer.verdict == "malformed":
        openai_error(answer.body)


@pytest.mark.parametrize("kind", KINDS)
def test_chat_calls_get_the_chat_completion(kind: str) -> None:
    call = prepared(kind)
    assert call.responses is None
    answer = answers.buffered(call, 200, PROVIDER_HEADERS, success_bodies(kind)["valid"])
    assert json.loads(answer.body)["object"] == "chat.completion"
    assert answer.usage == USAGE[kind]


@pytest.mark.parametrize("body", [
    b"{}",
    b'{"object": "chat.completion", "choices": []}',
    b'{"error": {"message": "upstream hiccup", "type": "server_error"}}',
], ids=["empty-object", "no-choices", "error-object"])
def test_responses_via_chat_success_without_choices_is_malformed(body: bytes) -> None:
    call = responses_call("openai")
    answer = answers.buffered(call, 200, {"content-type": "application/json"}, body)
    assert (answer.status, answer.verdict) == (502, "malformed")
    openai_error(answer.body)


# -- streams -------------------------------------------------------------------------------------

PROVIDER_STREAMS = {  # what each kind's provider streams for the same answer
    "openai": (lambda: sse(CHAT_STREAM), CHAT_STREAM_TEXT, CHAT_STREAM_USAGE),
    "bedrock": (lambda: converse_stream(), TEXT, BEDROCK_USAGE),
}


@pytest.mark.parametrize(("kind", "include_usage"), [
    pytest.param(k, u, id=f"{k}-{'usage' if u else 'no-usage'}")
    for k, u in itertools.product(KINDS, (False, True))
])
def test_responses_via_chat_stream(kind: str, include_usage: bool) -> None:
    data, text, usage = PROVIDER_STREAMS[kind]
    call = responses_call(kind, stream=True)
    transform = answers.stream_transform(call, request_id="r-1", include_usage=include_usage)

    out = feed(transform, byte_by_byte(data()))

    names = sse_event_names(out)
    assert names[0] == "response.created" and names[-1] == "response.completed"
    assert "error" not in names and "response.failed" not in names
    payloads = sse_data(out)
    assert "[DONE]" not in payloads
    deltas = [p["delta"] for p in payloads if p.get("type") == "response.output_text.delta"]
    assert "".join(deltas) == text
    completed = payloads[-1]["response"]
    assert completed["status"] == "completed"
    assert completed["usage"]["input_tokens"] == usage.prompt
    assert transform.usage == usage and transform.failed is False


@pytest.mark.parametrize("kind", KINDS)
def test_responses_via_chat_stream_failure(kind: str) -> None:
    if kind == "openai":
        data = sse([CHAT_STREAM[0], {"error": {"message": "overloaded", "type": "server_error",
                                               "param": None, "code": None}}], done=False)
    else:
        events = stream_events(converse_answer(), piece=3)
        data = encode_events(events[:3]) + encode_event(
            {"modelStreamErrorException": {"message": "overloaded"}})
    call = responses_call(kind, stream=True)
    transform = answers.stream_transform(call, request_id="r-1", include_usage=False)
    out = feed(transform, [data])
    names = sse_event_names(out)
    assert names[-2:] == ["error", "response.failed"]
    assert sse_data(out)[-2]["message"] == "overloaded"
    assert transform.failed is True and transform.usage is None


@pytest.mark.parametrize("kind", KINDS)
def test_chat_stream_is_the_adapters_transform(kind: str) -> None:
    """Without a Responses call nothing is added: chat chunks and [DONE]."""
    data, text, usage = PROVIDER_STREAMS[kind]
    call = prepared(kind, stream=True)
    transform = answers.stream_transform(call, request_id="r-1", include_usage=False)
    payloads = sse_data(feed(transform, [data()]))
    assert payloads[-1] == "[DONE]"
    assert "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads[:-1]) == text
    assert transform.usage == usage


STREAM_HEADERS = {"content-type": "text/event-stream", "x-request-id": "req-8",
                  "transfer-encoding": "chunked", "connection": "keep-alive",
                  "content-length": "0", "content-encoding": "br", "cache-control": "no-cache"}


@pytest.mark.parametrize(("kind", "via", "content_type"), [
    ("openai", "chat", "text/event-stream"),  # the provider's SSE as it is
    ("openai", "responses", SSE_CONTENT_TYPE),
    ("bedrock", "chat", SSE_CONTENT_TYPE),  # an AWS event stream became SSE
    ("bedrock", "responses", SSE_CONTENT_TYPE),
])
def test_stream_headers(kind: str, via: str, content_type: str) -> None:
    call = responses_call(kind, stream=True) if via == "responses" else prepared(kind,
                                                                                  stream=True)
    provider = {**STREAM_HEADERS, "content-type": "application/vnd.amazon.eventstream"
                if kind == "bedrock" else "text/event-stream"}
    headers = answers.stream_headers(call, provider)
    assert headers["content-type"] == content_type
    assert not CONNECTION_HEADERS & set(headers)
    assert headers["x-request-id"] == "req-8" and headers["cache-control"] == "no-cache"


# -- health --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("verdict", "health"), [
    ("ok", True), ("retry", False), ("malformed", False), ("final", None)])
def test_health(verdict: str, health: bool | None) -> None:
    assert answers.health(verdict) is health  # type: ignore[arg-type]


# What one attempt says about its deployment: served, failed, or nothing (the request's fault).
HEALTH_CELLS = [
    ("openai", 200, "valid", True),
    ("openai", 200, "non-json", False),
    ("openai", 400, "empty", None),
    ("openai", 401, "empty", False),  # its own env: key refused: another provider may serve
    ("openai", 429, "empty", False),
    ("openai", 529, "empty", False),
    ("bedrock", 200, "valid", True),
    ("bedrock", 200, "truncated", False),
    ("bedrock", 400, "empty", None),
    ("bedrock", 403, "empty", False),  # the sidecar's AWS credentials: another provider may serve
    ("bedrock", 408, "empty", False),
    ("bedrock", 503, "empty", False),
]


@pytest.mark.parametrize(("kind", "status", "body_name", "health"), HEALTH_CELLS,
                         ids=[f"{k}-{s}-{b}" for k, s, b, _ in HEALTH_CELLS])
def test_health_of_an_attempt(kind: str, status: int, body_name: str,
                              health: bool | None) -> None:
    call = prepared(kind)
    answer = answers.buffered(call, status, {}, success_bodies(kind)[body_name])
    assert answers.health(answer.verdict) is health

