"""boto3 itself talks to FakeBedrock: proof that the fake speaks Bedrock Runtime's wire protocol."""

from __future__ import annotations

import time
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError

from tests.fakes.bedrock import (
    TEST_ACCESS_KEY,
    TEST_REGION,
    TEST_SECRET_KEY,
    FakeBedrock,
    reasoning_response,
    response,
    stream_events,
    text_response,
    tool_response,
    tool_use,
    usage,
)

SERVICE = botocore.session.get_session().get_service_model("bedrock-runtime")
HELLO = [{"role": "user", "content": [{"text": "Hello"}]}]
CONVERSE_ERRORS = [shape.name for shape in SERVICE.operation_model("Converse").error_shapes]
STREAM_EXCEPTIONS = [
    name
    for name, shape in SERVICE.operation_model("ConverseStream")
    .output_shape.members["stream"]
    .members.items()
    if shape.metadata.get("exception")
]


def _without_metadata(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "ResponseMetadata"}


def test_default_answer_echoes(fake: FakeBedrock, client: Any) -> None:
    result = client.converse(modelId="anthropic.claude-3-haiku-20240307-v1:0", messages=HELLO)
    assert result["output"]["message"]["content"] == [{"text": "You said: Hello"}]
    assert result["stopReason"] == "end_turn"
    assert result["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert result["ResponseMetadata"]["RequestId"]
    recorded = fake.requests[-1]
    assert recorded.model_id == "anthropic.claude-3-haiku-20240307-v1:0"
    assert recorded.path == "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    assert recorded.signature_ok and recorded.body == {"messages": HELLO}


@pytest.mark.parametrize(
    "canned",
    [
        text_response("Plain text.", token_usage=usage(3, 2)),
        tool_response(
            [
                tool_use("get_weather", {"city": "Paris"}, "t1"),
                tool_use("get_time", {"tz": "UTC", "list": [1, 2]}, "t2"),
            ],
            text="Two tools.",
        ),
        reasoning_response("Thinking it over.", "Answer."),
        text_response("Cached.", token_usage=usage(5, 7, cache_read=1000, cache_write=200)),
    ],
    ids=["text", "multi_tool", "reasoning", "cache_usage"],
)
def test_converse_parses_canned_outputs(
    fake: FakeBedrock, client: Any, canned: dict[str, Any]
) -> None:
    fake.push(canned)
    assert _without_metadata(client.converse(modelId="m", messages=HELLO)) == canned


@pytest.mark.parametrize("stop_reason", SERVICE.shape_for("StopReason").enum)
def test_every_stop_reason(fake: FakeBedrock, client: Any, stop_reason: str) -> None:
    fake.push(text_response("x", stop_reason=stop_reason))
    assert client.converse(modelId="m", messages=HELLO)["stopReason"] == stop_reason
    fake.push(text_response("x", stop_reason=stop_reason))
    events = list(client.converse_stream(modelId="m", messages=HELLO)["stream"])
    assert events[-2] == {"messageStop": {"stopReason": stop_reason}}


@pytest.mark.parametrize(
    "canned",
    [
        text_response("Streaming text, a few pieces long."),
        tool_response([tool_use("a", {"x": 1}, "t1"), tool_use("b", {"y": "z"}, "t2")], text="Hm."),
        reasoning_response("Because.", "Done."),
    ],
    ids=["text", "multi_tool", "reasoning"],
)
def test_converse_stream_decodes_to_the_scripted_events(
    fake: FakeBedrock, client: Any, canned: dict[str, Any]
) -> None:
    fake.push(canned)
    result = client.converse_stream(modelId="m", messages=HELLO)
    assert list(result["stream"]) == stream_events(canned)
    assert fake.requests[-1].stream and fake.requests[-1].signature_ok


def test_stream_events_arrive_as_they_are_produced(fake: FakeBedrock, client: Any) -> None:
    events = stream_events(text_response("abcdefghijkl"), piece=3)
    fake.push_stream(events, delay=0.05)
    stamps = [
        time.monotonic() for _ in client.converse_stream(modelId="m", messages=HELLO)["stream"]
    ]
    assert len(stamps) == len(events)
    assert stamps[-1] - stamps[0] >= 0.05 * (len(events) - 2)


@pytest.mark.parametrize("code", CONVERSE_ERRORS)
def test_http_errors(fake: FakeBedrock, client: Any, code: str) -> None:
    fake.push_error(code, "scripted failure")
    with pytest.raises(ClientError) as info:
        client.converse(modelId="m", messages=HELLO)
    error = info.value.response
    assert error["Error"] == {"Code": code, "Message": "scripted failure"}
    status = SERVICE.shape_for(code).metadata["error"]["httpStatusCode"]
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    assert isinstance(info.value, getattr(client.exceptions, code))


def test_error_before_the_stream_is_raised_by_the_call(fake: FakeBedrock, client: Any) -> None:
    fake.push_error("ThrottlingException")
    with pytest.raises(client.exceptions.ThrottlingException):
        client.converse_stream(modelId="m", messages=HELLO)


@pytest.mark.parametrize("member", STREAM_EXCEPTIONS)
def test_mid_stream_exceptions(fake: FakeBedrock, client: Any, member: str) -> None:
    events = stream_events(text_response("partial answer"))[:3]
    fake.push_stream([*events, {member: {"message": f"{member} happened"}}])
    received = []
    stream = client.converse_stream(modelId="m", messages=HELLO)["stream"]
    with pytest.raises(EventStreamError) as info:
        for event in stream:
            received.append(event)
    stream.close()
    assert received == events
    assert info.value.response["Error"] == {"Code": member, "Message": f"{member} happened"}


def test_truncated_stream_has_no_message_stop(fake: FakeBedrock, client: Any) -> None:
    events = stream_events(text_response("cut short"))[:3]
    fake.push_stream(events)
    assert list(client.converse_stream(modelId="m", messages=HELLO)["stream"]) == events


def test_bedrock_validation(fake: FakeBedrock, client: Any) -> None:
    twice = [*HELLO, *HELLO]
    with pytest.raises(client.exceptions.ValidationException, match="alternate"):
        client.converse(modelId="m", messages=twice)
    with pytest.raises(client.exceptions.ValidationException, match="less than or equal to 1"):
        client.converse(modelId="m", messages=HELLO, inferenceConfig={"temperature": 1.5})
    tool_turns = [
        *HELLO,
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}],
        },
    ]
    with pytest.raises(client.exceptions.ValidationException, match="toolConfig"):
        client.converse(modelId="m", messages=tool_turns)


@pytest.mark.parametrize(
    ("key", "secret", "code"),
    [
        (TEST_ACCESS_KEY, "not-the-secret", "InvalidSignatureException"),
        ("AKIDSOMEONEELSE", "whatever", "UnrecognizedClientException"),
    ],
)
def test_wrongly_signed_requests_get_403(
    fake: FakeBedrock, key: str, secret: str, code: str
) -> None:
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=fake.url,
        region_name=TEST_REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}),
    )
    try:
        with pytest.raises(ClientError) as info:
            client.converse(modelId="m", messages=HELLO)
    finally:
        client.close()
    assert info.value.response["Error"]["Code"] == code
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert not fake.requests[-1].signature_ok


def test_wrong_region_is_rejected(fake: FakeBedrock) -> None:
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=fake.url,
        region_name="eu-west-1",
        aws_access_key_id=TEST_ACCESS_KEY,
        aws_secret_access_key=TEST_SECRET_KEY,
        config=Config(retries={"total_max_attempts": 1}),
    )
    try:
        with pytest.raises(ClientError, match="InvalidSignatureException"):
            client.converse(modelId="m", messages=HELLO)
    finally:
        client.close()


def test_response_fixture_shape(fake: FakeBedrock, client: Any) -> None:
    canned = response([{"text": "x"}], stop_reason="max_tokens")
    fake.push(canned)
    assert _without_metadata(client.converse(modelId="m", messages=HELLO)) == canned
