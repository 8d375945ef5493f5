"""The adapters as tables, without sockets: provider kind x status x headers x body -> what the
app gets (status, headers, an OpenAI object or OpenAI error), the usage counted and the verdict
(``sidecar.providers``: ok / retry / malformed / final); then ``prepare`` (keys, model ids,
paths, signing) and the stream transforms (usage hidden or kept, SSE from Bedrock frames).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from sidecar.core.errors import UnknownModelError
from sidecar.providers import (
    RETRYABLE_STATUS,
    SSE_CONTENT_TYPE,
    AppRequest,
    UpstreamCall,
    status_verdict,
)
from sidecar.providers.bedrock.adapter import NO_AWS_CREDENTIALS
from tests.fakes.bedrock import (
    TEST_ACCESS_KEY,
    TEST_REGION,
    FakeBedrock,
    encode_event,
    encode_events,
    stream_events,
    tool_response,
    tool_use,
)
from tests.providers.builders import (
    APP_HEADERS,
    APP_IDENTITY,
    APP_KEY,
    BEDROCK_SPEC,
    BEDROCK_USAGE,
    BODY_NAMES,
    CHAT_STREAM,
    CHAT_STREAM_TEXT,
    CHAT_STREAM_USAGE,
    CONNECTION_HEADERS,
    KEY_VARIABLE,
    KINDS,
    OPENAI_USAGE,
    OWN_KEY,
    TEXT,
    UPSTREAM_MODEL,
    VALID_BODIES,
    Target,
    adapters,
    app,
    byte_by_byte,
    chat_body,
    chat_completion_text,
    converse_answer,
    converse_stream,
    feed,
    openai_error,
    prepared,
    responses_body,
    sse,
    sse_data,
    success_bodies,
    target,
    use_test_credentials,
)


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_test_credentials(monkeypatch, tmp_path)


# ================================================================================================
# answer(): kind x status x headers x body
# ================================================================================================

STATUSES = (200, 400, 401, 403, 404, 408, 409, 422, 429, 500, 503, 529)
# The provider's response headers (lower-case, as both forwarding paths hand them over).
RESPONSE_HEADERS: dict[str, dict[str, str]] = {
    "bare": {},
    "typical": {"content-type": "application/json", "x-request-id": "req-42",
                "x-amzn-requestid": "amzn-42", "openai-processing-ms": "17"},
    "hop-by-hop": {"content-type": "application/json", "x-request-id": "req-42",
                   "connection": "keep-alive", "keep-alive": "timeout=5",
                   "transfer-encoding": "chunked", "content-length": "1234",
                   "content-encoding": "gzip", "trailer": "x-checksum", "upgrade": "h2c"},
}


def expected_verdict(kind: str, status: int, body: str) -> str:
    """The rule, independent of the code: a 2xx serves only when it is a valid answer; 408, 409,
    429 and 5xx are worth the next model; 401/403 refuse the sidecar's own credentials (AWS's,
    or the ``env:`` key of the table's OpenAI provider), not the app's: worth another provider;
    any other 4xx is final."""
    if 200 <= status < 300:
        return "ok" if body in VALID_BODIES else "malformed"
    if status in (408, 409, 429) or status >= 500:
        return "retry"
    if status in (401, 403):
        return "retry"
    return "final"


def expected_app_status(kind: str, status: int, verdict: str) -> int:
    if verdict == "malformed" or status in (401, 403):
        return 502  # a refused sidecar credential is a gateway error, never the app's 401
    if kind == "bedrock" and status >= 500:
        return 502  # Bedrock's own errors without a known code become a gateway error
    return status


def answer_cells() -> list[Any]:
    cells = []
    for kind, status, headers, body in itertools.product(
            KINDS, STATUSES, RESPONSE_HEADERS, BODY_NAMES):
        cells.append(pytest.param(kind, status, headers, body,
                                  id=f"{kind}-{status}-{headers}-{body}"))
    return cells


@pytest.mark.parametrize(("kind", "status", "headers_name", "body_name"), answer_cells())
def test_answer_cell(kind: str, status: int, headers_name: str, body_name: str) -> None:
    call = prepared(kind)
    headers = RESPONSE_HEADERS[headers_name]
    body = success_bodies(kind)[body_name]

    answer = call.adapter.answer(call, status, headers, body)

    verdict = expected_verdict(kind, status, body_name)
    assert answer.verdict == verdict
    assert answer.status == expected_app_status(kind, status, verdict)
    assert answer.reason == {"ok": "ok", "malformed": "malformed"}.get(verdict, f"status {status}")
    if status in (401, 403):
        assert openai_error(answer.body)["code"] == "upstream_auth_failed"
    # Headers: lower-case, never a hop-by-hop one, and the provider's request id for support.
    assert all(name == name.lower() for name in answer.headers)
    assert not CONNECTION_HEADERS & set(answer.headers), answer.headers
    if "x-request-id" in headers:
        assert answer.headers["x-request-id"] == "req-42"
    # Usage: exactly when a success carried it.
    carried = verdict == "ok" and body_name == "valid"
    assert answer.usage == ((OPENAI_USAGE if kind == "openai" else BEDROCK_USAGE)
                            if carried else None)
    # Body: what the app reads.
    if verdict == "ok":
        assert answer.parsed is not None and json.loads(answer.body) == answer.parsed
        assert chat_completion_text(answer.body) == TEXT
    else:
        assert answer.parsed is None
    if verdict == "malformed":
        error = openai_error(answer.body)
        assert error["type"] in ("api_error", "server_error")
        assert answer.headers["content-type"] == "application/json"
    if kind == "openai" and status not in (401, 403):
        if verdict != "malformed":  # the provider's own answer, byte for byte
            assert answer.body == body
        else:
            assert error["code"] == "upstream_malformed_response"
            assert UPSTREAM_MODEL in error["message"]
    elif kind == "bedrock":  # always JSON, in OpenAI's shape
        assert answer.headers["content-type"] == "application/json"
        if verdict == "ok":
            completion = json.loads(answer.body)
            assert completion["model"] == BEDROCK_SPEC.upstream_id
            if "x-amzn-requestid" in headers:
                assert completion["id"] == "chatcmpl-amzn-42"
        else:
            openai_error(answer.body)


def test_answer_table_has_every_verdict() -> None:
    """The table above is not degenerate: each verdict occurs for each kind."""
    for kind in KINDS:
        seen = {expected_verdict(kind, s, b) for s, b in itertools.product(STATUSES, BODY_NAMES)}
        assert seen == {"ok", "retry", "malformed", "final"}


@pytest.mark.parametrize("status", [*STATUSES, 201, 204, 301, 407, 451, 499, 599])
def test_status_verdict_rule(status: int) -> None:
    want = ("ok" if status < 300 else
            "retry" if status in (408, 409, 429) or 500 <= status < 600 else "final")
    assert status_verdict(status) == want
    assert (status in RETRYABLE_STATUS) == (want == "retry")


@pytest.mark.parametrize("body", [b"[]", b"null", b'"text"', b"42",
                                  b'{"output": {"message": {"content": [1]}}}'],
                         ids=["array", "null", "string", "number", "content-not-objects"])
def test_bedrock_success_that_is_not_a_converse_object_is_malformed(body: bytes) -> None:
    call = prepared("bedrock")
    answer = call.adapter.answer(call, 200, {}, body)
    assert (answer.verdict, answer.status) == ("malformed", 502)
    openai_error(answer.body)


@pytest.mark.parametrize(("name", "body"), [
    ("no-output", b"{}"),
    ("output-null", b'{"output": null}'),
    ("content-not-a-list", b'{"output": {"message": {"content": "hi"}}}'),
    ("malformed-model-output", json.dumps(
        converse_answer() | {"stopReason": "malformed_model_output"}).encode()),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bedrock_success_without_a_usable_answer_is_malformed(name: str, body: bytes) -> None:
    call = prepared("bedrock")
    answer = call.adapter.answer(call, 200, {"x-amzn-requestid": "amzn-1"}, body)
    assert (answer.verdict, answer.status, answer.usage) == ("malformed", 502, None)
    assert openai_error(answer.body)["type"] in ("api_error", "server_error")


@pytest.mark.parametrize(("kind", "body"), [
    ("openai", b"{}"),
    ("openai", b'{"object": "chat.completion", "choices": []}'),
])
def test_openai_success_needs_only_a_json_object(kind: str, body: bytes) -> None:
    """The documented minimum: an OpenAI-compatible success is served when it is a JSON object
    (whatever its fields); the usage is None when it has none."""
    call = prepared(kind)
    answer = call.adapter.answer(call, 200, {"content-type": "application/json"}, body)
    assert (answer.verdict, answer.status, answer.body, answer.usage) == ("ok", 200, body, None)


# Bedrock errors as AWS sends them (x-amzn-ErrorType, {"message"}): the app gets an OpenAI error
# with Bedrock's message; the verdict follows the code, not only the status.
BEDROCK_ERRORS = [
    # code, status, message -> app status, OpenAI type, OpenAI code, verdict
    ("ThrottlingException", 429, "Too many requests", 429, "rate_limit_error",
     "rate_limit_exceeded", "retry"),
    ("ValidationException", 400, "messages.0: blank text", 400, "invalid_request_error", None,
     "final"),
    ("ValidationException", 400, "Input is too long for requested model.", 400,
     "invalid_request_error", "context_length_exceeded", "retry"),
    ("ValidationException", 400, "This model doesn't support tool use.", 400,
     "invalid_request_error", "unsupported_by_model", "retry"),
    ("AccessDeniedException", 403, "You don't have access to the model", 403, "permission_error",
     "model_access_denied", "retry"),
    ("ResourceNotFoundException", 404, "Model not found", 404, "invalid_request_error",
     "model_not_found", "retry"),
    ("ModelNotReadyException", 429, "Model is not ready", 503, "server_error", "model_not_ready",
     "retry"),
    ("ServiceUnavailableException", 503, "Service unavailable", 503, "server_error",
     "service_unavailable", "retry"),
    ("InternalServerException", 500, "Internal error", 502, "server_error",
     "upstream_server_error", "retry"),
    ("ModelTimeoutException", 408, "Model timed out", 504, "timeout_error", "model_timeout",
     "retry"),
    ("UnrecognizedClientException", 403, "The security token is invalid.", 502, "server_error",
     "upstream_auth_failed", "retry"),
]


@pytest.mark.parametrize(("code", "status", "message", "app_status", "type_", "openai_code",
                          "verdict"), BEDROCK_ERRORS,
                         ids=[f"{row[0]}-{row[1]}-{row[6]}-{row[5]}" for row in BEDROCK_ERRORS])
def test_bedrock_error_table(code: str, status: int, message: str, app_status: int, type_: str,
                             openai_code: str | None, verdict: str) -> None:
    call = prepared("bedrock")
    headers = {"x-amzn-errortype": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/",
               "x-amzn-requestid": "amzn-7", "content-type": "application/json",
               "content-length": "40", "connection": "close"}
    answer = call.adapter.answer(call, status, headers, json.dumps({"message": message}).encode())
    assert (answer.status, answer.verdict, answer.usage) == (app_status, verdict, None)
    error = openai_error(answer.body)
    assert (error["message"], error["type"], error["code"]) == (message, type_, openai_code)
    assert answer.headers == {"content-type": "application/json", "x-amzn-errortype": headers[
        "x-amzn-errortype"], "x-amzn-requestid": "amzn-7"}


def test_openai_error_body_reaches_the_app_unchanged() -> None:
    call = prepared("openai")
    body = json.dumps({"error": {"message": "Unknown parameter 'foo'", "type":
                                 "invalid_request_error", "param": "foo",
                                 "code": "unknown_parameter"}}).encode()
    answer = call.adapter.answer(call, 400, {"content-type": "application/json",
                                             "x-request-id": "req-9"}, body)
    assert (answer.status, answer.verdict, answer.body) == (400, "final", body)
    assert answer.headers == {"content-type": "application/json", "x-request-id": "req-9"}


@pytest.mark.parametrize("status", [200, 404, 500])
def test_openai_other_endpoints_pass_as_they_are(status: int) -> None:
    """/v1/models and other endpoints: no JSON check, the status alone decides."""
    call = prepared("openai", "other")
    body = b"not json, and not checked"
    answer = call.adapter.answer(call, status, {"content-length": "25"}, body)
    assert (answer.status, answer.body, answer.verdict) == (status, body, status_verdict(status))
    assert answer.headers == {}


# ================================================================================================
# prepare(): OpenAI-compatible providers
# ================================================================================================

API_KEYS = ("from-request", f"env:{KEY_VARIABLE}", "env:UNSET_KEY", "none")
APIS = ("chat", "responses", "other")


@pytest.mark.parametrize(("api_key", "api", "native"), [
    pytest.param(k, a, n, id=f"{k}-{a}{'-native' if n else ''}")
    for k, a, n in itertools.product(API_KEYS, APIS, (False, True))
    if not (n and a != "responses")
])
def test_openai_prepare_keys(api_key: str, api: str, native: bool) -> None:
    """The app's key and identity go only to a ``from-request`` provider; ``env:NAME`` sends
    the sidecar's own key; nothing else ever carries one. Connection headers never go."""
    call = prepared("openai", api, api_key=api_key, responses=native)  # type: ignore[arg-type]
    identity = {k: call.headers[k] for k in APP_IDENTITY if k in call.headers}
    if api_key == "from-request":
        assert identity == APP_IDENTITY
    elif api_key == f"env:{KEY_VARIABLE}":
        assert identity == {"authorization": f"Bearer {OWN_KEY}"}
    else:
        assert identity == {}
    assert APP_KEY not in call.headers.values() or api_key == "from-request"
    assert not CONNECTION_HEADERS & set(call.headers), call.headers
    assert call.headers["user-agent"] == APP_HEADERS["user-agent"]
    assert call.url.startswith("https://llm.example.com/v1/")


@pytest.mark.parametrize(("api_key", "environ", "reason"), [
    ("from-request", {}, None),
    ("none", {}, None),
    (f"env:{KEY_VARIABLE}", {KEY_VARIABLE: OWN_KEY}, None),
    (f"env:{KEY_VARIABLE}", {}, KEY_VARIABLE),
    (f"env:{KEY_VARIABLE}", {KEY_VARIABLE: ""}, KEY_VARIABLE),
], ids=["from-request", "none", "env-set", "env-unset", "env-empty"])
def test_openai_unavailable(api_key: str, environ: dict[str, str], reason: str | None) -> None:
    adapter = adapters(api_key=api_key, environ=environ)["openai"]
    why = adapter.unavailable()
    assert (why is None) == (reason is None)
    if reason is not None:
        assert why is not None and reason in why


@pytest.mark.parametrize(("api", "stream", "native", "app_options"), [
    pytest.param(a, s, n, o, id=f"{a}{'-native' if n else ''}-{'stream' if s else 'once'}-"
                 f"{'no-options' if o is None else json.dumps(o)}")
    for a, s, n, o in itertools.product(
        ("chat", "responses"), (False, True), (False, True),
        (None, {"include_usage": False}, {"include_usage": True}))
    if not (n and a == "chat") and not (o is not None and (a != "chat" or not s))
])
def test_openai_prepare_body(api: str, stream: bool, native: bool,
                             app_options: dict[str, Any] | None) -> None:
    """The model id becomes the target's; a chat stream (also a Responses call served as chat)
    asks for the usage report; every other field goes as the app sent it."""
    extra = {"temperature": 0.2, "metadata": {"k": "v"}}
    if app_options is not None:
        extra["stream_options"] = app_options
    body = (chat_body if api == "chat" else responses_body)(**extra)
    call = prepared("openai", api, stream=stream, body=body,  # type: ignore[arg-type]
                    responses=native)
    sent = json.loads(call.body)
    assert sent["model"] == UPSTREAM_MODEL
    assert sent["temperature"] == 0.2
    as_chat = api == "chat" or not native
    assert call.path == ("/v1/chat/completions" if as_chat else "/v1/responses")
    assert (call.responses is not None) == (api == "responses" and not native)
    if as_chat and stream:
        assert sent["stream_options"] == {"include_usage": True}
        assert sent["stream"] is True
    else:
        assert sent.get("stream_options") == app_options
    if api == "responses" and not native:
        assert "input" not in sent and sent["messages"][-1]["role"] == "user"
    else:
        assert sent["metadata"] == {"k": "v"}


def test_openai_prepare_keeps_the_raw_body_when_nothing_changes() -> None:
    """Same model, no stream: the app's bytes go as they are (key order, spacing, unicode)."""
    body = {"model": UPSTREAM_MODEL, "messages": [{"role": "user", "content": "héllo"}]}
    raw = b'{ "model" : "provider-model-7b",\n  "messages": [{"role":"user","content":"h\\u00e9llo"}] }'
    adapter = adapters()["openai"]
    call = adapter.prepare(target("openai"), app("chat", body, raw=raw))
    assert call.body == raw


@pytest.mark.parametrize(("base_url", "path", "url"), [
    ("https://llm.example.com/v1", "/v1/chat/completions",
     "https://llm.example.com/v1/chat/completions"),
    ("https://llm.example.com/v1/", "/v1/chat/completions?api-version=2",
     "https://llm.example.com/v1/chat/completions?api-version=2"),
    ("https://gw.example.com/v1beta/openai", "/v1/chat/completions",
     "https://gw.example.com/v1beta/openai/chat/completions"),
    ("http://localhost:8000/v1", "/v1/models", "http://localhost:8000/v1/models"),
    ("https://llm.example.com:443/v1", "/v1/responses", "https://llm.example.com/v1/responses"),
    ("http://127.0.0.1:11434", "/v1/chat/completions", "http://127.0.0.1:11434/chat/completions"),
])
def test_openai_prepare_url(base_url: str, path: str, url: str) -> None:
    adapter = adapters(base_url=base_url)["openai"]
    api = "other" if path.endswith("/models") else "chat"
    call = adapter.prepare(target("openai"), app(api, path=path))  # type: ignore[arg-type]
    assert call.url == url


# ================================================================================================
# prepare(): Bedrock
# ================================================================================================

BEDROCK_BODIES = {
    "plain": chat_body(),
    "system-and-limits": chat_body(messages=[{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": "Hi"}],
                                   max_tokens=100, temperature=0.5),
    "router-fields": chat_body(prefer="cheap", tier="fast", user="u-1"),
}


@pytest.mark.parametrize(("stream", "body_name"), [
    pytest.param(s, b, id=f"{'stream' if s else 'once'}-{b}")
    for s, b in itertools.product((False, True), BEDROCK_BODIES)
])
def test_bedrock_prepare_signs_a_converse_request(stream: bool, body_name: str) -> None:
    call = prepared("bedrock", stream=stream, body=BEDROCK_BODIES[body_name])
    operation = "converse-stream" if stream else "converse"
    assert call.url == (f"https://bedrock-runtime.{TEST_REGION}.amazonaws.com/model/"
                        f"us.anthropic.claude-test-v1%3A0/{operation}")
    assert unquote(call.path) == f"/model/{BEDROCK_SPEC.upstream_id}/{operation}"
    assert call.headers["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={TEST_ACCESS_KEY}/")
    assert f"/{TEST_REGION}/bedrock/aws4_request" in call.headers["authorization"]
    assert call.headers["accept"] == ("application/vnd.amazon.eventstream" if stream
                                      else "application/json")
    assert "host" not in call.headers
    for name in ("openai-organization", "openai-project", "user-agent"):
        assert name not in call.headers  # nothing of the app's goes to AWS
    # The signature is right for exactly this path and body (recomputed as Bedrock does).
    fake = FakeBedrock()
    assert fake.check_signature("POST", call.path,
                                {**call.headers, "host": call.endpoint.host_header},
                                call.body) is None
    assert fake.check_signature("POST", call.path, {**call.headers, "host": call.endpoint
                                                    .host_header}, call.body + b" ") is not None
    converse = json.loads(call.body)
    assert not {"model", "prefer", "tier", "stream", "stream_options"} & set(converse)
    assert converse["messages"][-1] == {"role": "user", "content": [{"text": "Hi"}]}
    assert call.stream is stream and call.api == "chat" and call.responses is None


@pytest.mark.parametrize(("api", "with_spec", "body"), [
    ("responses", True, {"model": "m", "input": "Hi"}),
    ("other", True, None),
    ("chat", False, chat_body()),
], ids=["responses-api", "other-endpoint", "no-catalog-spec"])
def test_bedrock_prepare_refuses(api: str, with_spec: bool, body: dict[str, Any] | None) -> None:
    adapter = adapters()["bedrock"]
    aim = target("bedrock") if with_spec else Target("bedrock", BEDROCK_SPEC.upstream_id)
    request = AppRequest(api=api, path=f"/v1/{api}", headers=APP_HEADERS,  # type: ignore[arg-type]
                         raw=json.dumps(body).encode() if body else b"", body=body, stream=False)
    with pytest.raises(UnknownModelError) as refused:
        adapter.prepare(aim, request)
    assert refused.value.status_code == 404 and refused.value.param == "model"


def test_bedrock_unavailable_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert adapters()["bedrock"].unavailable() == NO_AWS_CREDENTIALS


def test_bedrock_available_with_credentials() -> None:
    adapter = adapters()["bedrock"]
    assert adapter.unavailable() is None
    assert adapter.needs_refresh() is False


# ================================================================================================
# stream(): OpenAI-compatible SSE through the usage tap
# ================================================================================================


def openai_stream_call(stream: bool = True) -> UpstreamCall:
    return prepared("openai", stream=stream)


SPLITS = {
    "whole": lambda data: [data],
    "byte-by-byte": byte_by_byte,
    "per-event": lambda data: [e + b"\n\n" for e in data.split(b"\n\n") if e],
}


@pytest.mark.parametrize(("include_usage", "split", "crlf"), [
    pytest.param(u, s, c, id=f"{'usage' if u else 'no-usage'}-{s}-{'crlf' if c else 'lf'}")
    for u, s, c in itertools.product((True, False), SPLITS, (False, True))
    if not (c and s == "per-event")
])
def test_openai_stream_usage(include_usage: bool, split: str, crlf: bool) -> None:
    data = sse(CHAT_STREAM, crlf=crlf)
    call = openai_stream_call()
    transform = call.adapter.stream(call, request_id="req-1", include_usage=include_usage)

    out = feed(transform, SPLITS[split](data))

    assert transform.usage == CHAT_STREAM_USAGE and transform.failed is False
    payloads = sse_data(out)
    assert payloads[-1] == "[DONE]"
    chunks = payloads[:-1]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == CHAT_STREAM_TEXT
    if include_usage:  # the app asked for it: the stream reaches it byte for byte
        assert b"".join(out) == data
    else:  # the sidecar asked on the app's behalf: no usage chunk, no "usage": null
        assert all(c["choices"] for c in chunks)
        assert not any("usage" in c for c in chunks)
        assert len(chunks) == len(CHAT_STREAM) - 1


def test_openai_stream_split_at_every_boundary() -> None:
    """Two pieces, cut at each byte (inside UTF-8 characters too): the same events come out."""
    data = sse(CHAT_STREAM)
    call = openai_stream_call()
    whole = b"".join(feed(call.adapter.stream(call, request_id="r", include_usage=False), [data]))
    assert b'"usage"' not in whole and whole.endswith(b"data: [DONE]\n\n")
    for cut in range(1, len(data)):
        transform = call.adapter.stream(call, request_id="r", include_usage=False)
        out = feed(transform, [data[:cut], data[cut:]])
        assert b"".join(out) == whole, f"cut at byte {cut}"
        assert transform.usage == CHAT_STREAM_USAGE


def test_openai_stream_error_event_marks_the_stream_failed() -> None:
    error = {"error": {"message": "overloaded", "type": "server_error", "param": None,
                       "code": None}}
    data = sse([CHAT_STREAM[0], error], done=False)
    call = openai_stream_call()
    transform = call.adapter.stream(call, request_id="r", include_usage=False)
    out = feed(transform, byte_by_byte(data))
    assert transform.failed is True and transform.usage is None
    assert sse_data(out)[-1] == error


def test_openai_native_responses_stream_usage_is_read() -> None:
    completed = {"type": "response.completed", "response": {
        "id": "resp_1", "object": "response", "status": "completed",
        "usage": {"input_tokens": 20, "output_tokens": 4, "total_tokens": 24,
                  "input_tokens_details": {"cached_tokens": 8}}}}
    data = (b'event: response.created\ndata: {"type":"response.created"}\n\n'
            b"event: response.completed\ndata: " + json.dumps(completed).encode() + b"\n\n")
    call = prepared("openai", "responses", stream=True, responses=True)
    assert call.responses is None
    transform = call.adapter.stream(call, request_id="r", include_usage=False)
    out = feed(transform, byte_by_byte(data))
    assert b"".join(out) == data
    assert transform.usage is not None
    assert (transform.usage.prompt, transform.usage.completion, transform.usage.cached) == (
        20, 4, 8)


def test_stream_content_types() -> None:
    assert adapters()["openai"].stream_content_type is None  # the provider's SSE as it is
    assert adapters()["bedrock"].stream_content_type == SSE_CONTENT_TYPE


# ================================================================================================
# stream(): Bedrock event-stream frames -> OpenAI SSE
# ================================================================================================

TOOL_ARGS = {"city": "Paris", "unit": "c"}
BEDROCK_STREAMS = {
    "text": (converse_answer(), "stop"),
    "tool-call": (tool_response([tool_use("get_weather", TOOL_ARGS, "tu_1")],
                                token_usage=converse_answer()["usage"]), "tool_calls"),
}
FRAME_SPLITS = {
    "whole": lambda data: [data],
    "byte-by-byte": byte_by_byte,
    "halves": lambda data: [data[: len(data) // 2], data[len(data) // 2:]],
}


def bedrock_stream_call() -> UpstreamCall:
    return prepared("bedrock", stream=True)


@pytest.mark.parametrize(("scenario", "include_usage", "split"), [
    pytest.param(n, u, s, id=f"{n}-{'usage' if u else 'no-usage'}-{s}")
    for n, u, s in itertools.product(BEDROCK_STREAMS, (True, False), FRAME_SPLITS)
])
def test_bedrock_stream(scenario: str, include_usage: bool, split: str) -> None:
    answer, finish = BEDROCK_STREAMS[scenario]
    call = bedrock_stream_call()
    transform = call.adapter.stream(call, request_id="amzn-5", include_usage=include_usage)

    out = feed(transform, FRAME_SPLITS[split](converse_stream(answer, piece=3)))

    assert all(piece.startswith(b"data: ") and piece.endswith(b"\n\n") for piece in out)
    payloads = sse_data(out)
    assert payloads[-1] == "[DONE]" and payloads.count("[DONE]") == 1
    chunks = payloads[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-amzn-5"
               and c["model"] == BEDROCK_SPEC.upstream_id for c in chunks)
    with_choices = [c for c in chunks if c["choices"]]
    assert with_choices[0]["choices"][0]["delta"]["role"] == "assistant"
    assert with_choices[-1]["choices"][0]["finish_reason"] == finish
    deltas = [c["choices"][0]["delta"] for c in with_choices]
    if scenario == "text":
        assert "".join(d.get("content") or "" for d in deltas) == TEXT
    else:
        calls = [t for d in deltas for t in d.get("tool_calls") or []]
        assert calls[0]["id"] == "tu_1" and calls[0]["function"]["name"] == "get_weather"
        assert json.loads("".join(t["function"]["arguments"] for t in calls)) == TOOL_ARGS
    usage_chunks = [c for c in chunks if not c["choices"]]
    if include_usage:
        assert [c["usage"]["prompt_tokens"] for c in usage_chunks] == [BEDROCK_USAGE.prompt]
    else:
        assert usage_chunks == []
    assert transform.usage == BEDROCK_USAGE and transform.failed is False


def test_bedrock_stream_exception_event() -> None:
    """An exception frame mid-stream: one OpenAI error event, no [DONE], nothing after it."""
    events = stream_events(converse_answer(), piece=3)
    data = encode_events(events[:4]) + encode_event(
        {"throttlingException": {"message": "Too many tokens, please wait."}})
    call = bedrock_stream_call()
    transform = call.adapter.stream(call, request_id="r", include_usage=True)
    out = feed(transform, [*byte_by_byte(data), encode_events(events[4:])])
    payloads = sse_data(out)
    assert "[DONE]" not in payloads
    error = payloads[-1]
    assert openai_error(json.dumps(error).encode()) == {
        "message": "Too many tokens, please wait.", "type": "rate_limit_error", "param": None,
        "code": "rate_limit_exceeded"}
    assert all("error" not in p for p in payloads[:-1])
    assert transform.failed is True and transform.usage is None


@pytest.mark.parametrize("cut", ["before-message-stop", "before-metadata"])
def test_bedrock_stream_cut_short_is_an_error(cut: str) -> None:
    events = stream_events(converse_answer(), piece=3)
    keep = -2 if cut == "before-message-stop" else -1
    call = bedrock_stream_call()
    transform = call.adapter.stream(call, request_id="r", include_usage=True)
    out = feed(transform, [encode_events(events[:keep])])
    payloads = sse_data(out)
    assert "[DONE]" not in payloads
    assert openai_error(json.dumps(payloads[-1]).encode())["code"] == "stream_truncated"
    assert transform.failed is True


def test_bedrock_stream_broken_frame_is_an_error() -> None:
    data = bytearray(converse_stream())
    data[-1] ^= 0xFF  # the last frame's message CRC
    call = bedrock_stream_call()
    transform = call.adapter.stream(call, request_id="r", include_usage=False)
    payloads = sse_data(feed(transform, [bytes(data)]))
    assert "[DONE]" not in payloads
    assert openai_error(json.dumps(payloads[-1]).encode())["code"] == "bad_event_stream"
    assert transform.failed is True


def test_the_apps_key_refused_is_the_apps_answer() -> None:
    """A provider given the app's own key (``from-request``) that refuses it: the app's 401, as
    the provider sent it, and no other model is tried (a bad key is the app's to fix)."""
    call = prepared("openai", api_key="from-request")
    body = b'{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}'
    answer = call.adapter.answer(call, 401, {"content-type": "application/json"}, body)
    assert (answer.status, answer.verdict, answer.body) == (401, "final", body)
