"""The unmodified openai SDK, through the sidecar, served by a fake Bedrock Runtime.

The fake speaks Bedrock's wire protocol (Converse JSON, AWS event-stream frames with CRCs,
``x-amzn-ErrorType`` errors) and verifies every SigV4 signature; boto3 itself is shown to parse
it in ``tests/providers/bedrock/test_fake_is_faithful.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.e2e.harness import (
    APP_KEY,
    HELLO,
    RunningSidecar,
    no_aws_credentials,
    proxied_client,
    scrape_after_stream,
    value,
)
from tests.fakes import bedrock as fb
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = pytest.mark.e2e

MODEL_ID = "us.test.chat-model-v1:0"
RULES = """
version: 1
intercept: [{{host: api.openai.com, provider: up1}}]
providers:
  up1: {{type: openai, base_url: "{up1}"}}
  aws: {{type: bedrock, region: us-east-1, endpoint_url: "{bedrock}"}}
models:
  - {{name: b-chat, provider: aws, id: "{model_id}", tier: economy,
      price: {{input: 0.2, output: 0.8}}, context: 100000, max_output: 8192, quality: 20,
      supports: [tools]}}
apps:
  - name: legacy
    match: {{header: {{x-app: legacy}}}}
    routes:
      gpt-4o: b-chat
"""

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}


@pytest.fixture
def bedrock() -> Iterator[fb.FakeBedrock]:
    with fb.FakeBedrock() as fake:
        yield fake


@pytest.fixture
def bedrock_sidecar(tmp_path: Path, confdir: Path, up1: FakeOpenAI, bedrock: fb.FakeBedrock,
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningSidecar]:
    for name, setting in {"AWS_ACCESS_KEY_ID": fb.TEST_ACCESS_KEY,
                          "AWS_SECRET_ACCESS_KEY": fb.TEST_SECRET_KEY,
                          "AWS_CONFIG_FILE": str(tmp_path / "none"),
                          "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(name, setting)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(up1=up1.base_url, bedrock=bedrock.url, model_id=MODEL_ID))
    with RunningSidecar(rules, confdir, environ={}) as running:
        yield running


@pytest.fixture
def client(bedrock_sidecar, monkeypatch) -> openai.OpenAI:
    return proxied_client(bedrock_sidecar, monkeypatch, default_headers={"x-app": "legacy"})


def test_plain_text_answer(client, bedrock, up1):
    bedrock.push(fb.text_response("Hello from Bedrock.", token_usage=fb.usage(12, 4)))
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO,
                                                           max_tokens=100, temperature=1.7)
    completion = raw.parse()

    assert completion.object == "chat.completion"
    assert completion.model == MODEL_ID
    assert completion.choices[0].message.content == "Hello from Bedrock."
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens,
            completion.usage.total_tokens) == (12, 4, 16)
    assert raw.headers["x-model-router-provider"] == "aws"
    assert raw.headers["x-model-router-model"] == "b-chat"
    [sent] = bedrock.requests
    assert sent.signature_ok and sent.operation == "converse" and sent.model_id == MODEL_ID
    assert sent.body["messages"] == [{"role": "user", "content": [{"text": "Say hello."}]}]
    assert sent.body["inferenceConfig"] == {"maxTokens": 100, "temperature": 1.0}  # clamped
    assert APP_KEY not in json.dumps(sent.headers)  # the app's key never goes to AWS
    assert sent.headers["accept-encoding"] == "identity"
    assert up1.requests == []


def test_streamed_answer_arrives_incrementally_with_usage(client, bedrock):
    answer = fb.text_response("one two three four five six", token_usage=fb.usage(9, 6,
                                                                                   cache_read=3))
    bedrock.push_stream(fb.stream_events(answer, piece=4), delay=0.1)
    stream = client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True,
                                            stream_options={"include_usage": True})
    arrivals, text, chunks = [], "", []
    for chunk in stream:
        chunks.append(chunk)
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
            text += chunk.choices[0].delta.content

    assert text == "one two three four five six"
    assert arrivals[-1] - arrivals[0] >= 0.4  # 7 pieces 0.1 s apart: not buffered
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and
              c.choices[0].finish_reason]
    assert finish == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == 12  # input + cache read
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 3
    assert chunks[-1].usage.completion_tokens == 6
    assert bedrock.requests[0].operation == "converse-stream"


def test_streamed_bedrock_usage_is_counted_even_when_not_asked(client, bedrock_sidecar,
                                                                bedrock):
    answer = fb.text_response("counted", token_usage=fb.usage(9, 6, cache_read=3))
    bedrock.push_stream(fb.stream_events(answer))
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    assert all(c.usage is None for c in chunks)
    m = scrape_after_stream(bedrock_sidecar, "sidecar_cost_usd_total", app="legacy",
                            model="b-chat")
    tokens = {kind: value(m, "sidecar_tokens_total", app="legacy", model="b-chat", kind=kind)
              for kind in ("prompt", "completion", "cached")}
    assert tokens == {"prompt": 12, "completion": 6, "cached": 3}
    # 9 uncached + 3 cached (no cache price in the catalog entry: input price) + 6 out
    assert value(m, "sidecar_cost_usd_total", app="legacy", model="b-chat") == pytest.approx(
        (12 * 0.2 + 6 * 0.8) / 1e6)


def test_stream_without_include_usage_has_no_usage_chunk(client, bedrock):
    bedrock.push(fb.text_response("short"))
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_streamed_multi_tool_call_reassembles(client, bedrock):
    answer = fb.tool_response([fb.tool_use("get_weather", {"city": "Paris"}, "tooluse_a1"),
                               fb.tool_use("get_time", {"tz": "Europe/Paris"}, "tooluse_b2")],
                              text="Let me check.")
    bedrock.push_stream(fb.stream_events(answer, piece=3))
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True,
                                                tools=[WEATHER, TIME]):
        if not chunk.choices:
            continue
        for tc in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += tc.id or ""
            entry["name"] += (tc.function.name or "") if tc.function else ""
            entry["arguments"] += (tc.function.arguments or "") if tc.function else ""
        finish = chunk.choices[0].finish_reason or finish

    assert finish == "tool_calls"
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "get_time"]
    assert [calls[i]["id"] for i in sorted(calls)] == ["tooluse_a1", "tooluse_b2"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert json.loads(calls[1]["arguments"]) == {"tz": "Europe/Paris"}
    sent = bedrock.requests[0].body
    assert [t["toolSpec"]["name"] for t in sent["toolConfig"]["tools"]] == ["get_weather",
                                                                          "get_time"]


def test_tool_round_trip(client, bedrock):
    bedrock.push(fb.tool_response([fb.tool_use("get_weather", {"city": "Oslo"}, "tooluse_x")]))
    first = client.chat.completions.create(model="gpt-4o", messages=HELLO, tools=[WEATHER])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "tooluse_x", "get_weather", {"city": "Oslo"})

    bedrock.push(fb.text_response("It is 3 degrees in Oslo."))
    messages = [*HELLO, first.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": '{"celsius": 3}'}]
    second = client.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER])
    assert second.choices[0].message.content == "It is 3 degrees in Oslo."
    sent = bedrock.requests[1].body["messages"]
    assert sent[1]["content"][0]["toolUse"] == {"toolUseId": "tooluse_x", "name": "get_weather",
                                                "input": {"city": "Oslo"}}
    result = sent[2]["content"][0]["toolResult"]
    assert sent[2]["role"] == "user" and result["toolUseId"] == "tooluse_x"


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("tool_use", "tool_calls"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_each_stop_reason_maps_to_finish_reason(client, bedrock, stop_reason, finish_reason,
                                                stream):
    calls = [fb.tool_use("get_weather", {"city": "Rome"})] if stop_reason == "tool_use" else []
    answer = fb.response([{"text": "partial"}, *calls], stop_reason=stop_reason)
    bedrock.push(answer)
    if stream:
        chunks = list(client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True,
                                                     tools=[WEATHER]))
        got = [c.choices[0].finish_reason for c in chunks if c.choices and
               c.choices[0].finish_reason]
        assert got == [finish_reason]
    else:
        completion = client.chat.completions.create(model="gpt-4o", messages=HELLO,
                                                    tools=[WEATHER])
        assert completion.choices[0].finish_reason == finish_reason


@pytest.mark.parametrize("stop_reason", ["malformed_model_output", "malformed_tool_use"])
def test_malformed_output_is_an_error_not_a_success(client, bedrock, stop_reason):
    bedrock.push(fb.response([{"text": "{broken"}], stop_reason=stop_reason))
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert info.value.status_code == 502


@pytest.mark.parametrize(
    ("code", "exception", "status"),
    [
        ("ThrottlingException", openai.RateLimitError, 429),
        ("ServiceQuotaExceededException", openai.RateLimitError, 429),
        ("ValidationException", openai.BadRequestError, 400),
        ("AccessDeniedException", openai.PermissionDeniedError, 403),
        ("ResourceNotFoundException", openai.NotFoundError, 404),
        ("ModelNotReadyException", openai.InternalServerError, 503),
        ("ModelTimeoutException", openai.InternalServerError, 504),
        ("ModelErrorException", openai.InternalServerError, 502),
        ("InternalServerException", openai.InternalServerError, 502),
        ("ServiceUnavailableException", openai.InternalServerError, 503),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_bedrock_errors_become_the_sdks_matching_exception(client, bedrock, code, exception,
                                                           status, stream):
    bedrock.push_error(code, "details from AWS")
    with pytest.raises(exception) as info:
        result = client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=stream)
        list(result) if stream else None
    assert info.value.status_code == status
    assert "details from AWS" in info.value.message


def test_exception_mid_stream_ends_with_an_error_event_not_done(client, bedrock, bedrock_sidecar):
    events = fb.stream_events(fb.text_response("abcdefgh"), piece=2)[:4]
    events.append({"throttlingException": {"message": "slow down"}})
    bedrock.push_stream(events)
    text = ""
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True):
            text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
    assert text and text != "abcdefgh" and "abcdefgh".startswith(text)  # what came, then the error
    assert "slow down" in str(info.value)
    labels = dict(app="legacy", requested_model="gpt-4o", served_model="b-chat",
                  provider="aws", outcome="stream_error")
    m = scrape_after_stream(bedrock_sidecar, "sidecar_requests_total", **labels)
    assert value(m, "sidecar_requests_total", **labels) == 1


def test_truncated_stream_is_reported_as_an_error(client, bedrock):
    events = [e for e in fb.stream_events(fb.text_response("cut short"))
              if "messageStop" not in e and "metadata" not in e]
    bedrock.push_stream(events)
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))


def test_unsupported_parameter_is_a_400_naming_it(client, bedrock):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o", messages=HELLO, n=2)
    assert info.value.param == "n"
    assert bedrock.requests == []


def test_no_aws_credentials_marks_bedrock_unavailable(tmp_path, confdir, up1, bedrock,
                                                      monkeypatch):
    no_aws_credentials(monkeypatch, tmp_path)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(up1=up1.base_url, bedrock=bedrock.url, model_id=MODEL_ID))
    with RunningSidecar(rules, confdir, environ={}) as sidecar:
        client = proxied_client(sidecar, monkeypatch, default_headers={"x-app": "legacy"})
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert info.value.status_code == 503
    assert "no AWS credentials" in info.value.message
    assert bedrock.requests == []


def test_credentials_that_appear_later_bring_bedrock_up(tmp_path, confdir, up1, bedrock,
                                                        monkeypatch):
    """Checked off the event loop every ``credentials_check`` seconds, as expiring ones are."""
    no_aws_credentials(monkeypatch, tmp_path)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(up1=up1.base_url, bedrock=bedrock.url, model_id=MODEL_ID))
    with RunningSidecar(rules, confdir, environ={}, credentials_check=0.05) as sidecar:
        assert "aws" in sidecar.addon.health.providers_down
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", fb.TEST_ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", fb.TEST_SECRET_KEY)
        deadline = time.monotonic() + 5
        while "aws" in sidecar.addon.health.providers_down and time.monotonic() < deadline:
            time.sleep(0.05)
        client = proxied_client(sidecar, monkeypatch, default_headers={"x-app": "legacy"})
        bedrock.push(fb.text_response("now with credentials"))
        completion = client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert completion.choices[0].message.content == "now with credentials"
    assert bedrock.requests[0].signature_ok
