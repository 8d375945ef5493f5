"""ConverseStreamTranslator + EventStreamToSSE: raw event-stream bytes split anywhere -> SSE.

The byte streams are produced by the fake's encoder (real AWS event-stream frames with CRCs).
"""

from __future__ import annotations

import binascii
import json
import struct
from collections.abc import Callable, Iterable
from typing import Any

import httpx2
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from sidecar.core.errors import UpstreamError
from sidecar.providers.bedrock.response import from_converse_response
from sidecar.providers.bedrock.stream import ConverseStreamTranslator
from sidecar.providers.bedrock.transcode import DONE, EventStreamToSSE
from tests.fakes.bedrock import (
    encode_events,
    encode_frame,
    reasoning_response,
    response,
    stream_events,
    text_response,
    tool_response,
    tool_use,
    usage,
)

IDS = {"model": "claude-haiku", "created": 1700000000, "response_id": "chatcmpl-s1"}
TEXT = text_response("Héllo, wörld! 👋 Streaming.", token_usage=usage(11, 7, cache_read=5))
TOOLS = tool_response(
    [
        tool_use("get_weather", {"city": "Paris", "unit": "c"}, "tu_1"),
        tool_use("get_time", {"tz": "Europe/Paris"}, "tu_2"),
    ],
    text="Checking.",
    token_usage=usage(30, 20, cache_write=100),
)
REASONING = reasoning_response("User says hi.", "Hello!", token_usage=usage(4, 9))
JSON_TOOL = response(
    [tool_use("sidecar_json_response", {"name": "Ada"}, "tj")], stop_reason="tool_use"
)
COMPLETE = {"text": TEXT, "tools": TOOLS, "reasoning": REASONING, "json_tool": JSON_TOOL}

_TWO = stream_events(TEXT, piece=6)[:3]
BROKEN = {
    "exception_mid_stream": encode_events(
        [
            *_TWO,
            {"modelStreamErrorException": {"message": "model failed", "originalStatusCode": 500}},
            *stream_events(TEXT)[3:],
        ]
    ),
    "throttled_before_content": encode_events([{"throttlingException": {"message": "slow down"}}]),
    "truncated_no_message_stop": encode_events(stream_events(TOOLS, piece=6)[:8]),
    "truncated_no_metadata": encode_events(stream_events(TEXT, piece=6)[:-1]),
    "error_frame": encode_events(_TWO)
    + encode_frame(
        {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "oops"}, b""
    ),
    "malformed_tool_use": encode_events(
        stream_events(response([tool_use("f", {"a": 1})], stop_reason="malformed_tool_use"))
    ),
    "cut_mid_frame": encode_events(stream_events(TEXT, piece=6))[:-20],
}
EXPECTED_ERROR_CODES = {
    "exception_mid_stream": "model_stream_error",
    "throttled_before_content": "rate_limit_exceeded",
    "truncated_no_message_stop": "stream_truncated",
    "truncated_no_metadata": "stream_truncated",
    "error_frame": "upstream_error",
    "malformed_tool_use": "malformed_tool_use",
    "cut_mid_frame": "stream_truncated",
}


def transcoder(include_usage: bool = False) -> EventStreamToSSE:
    return EventStreamToSSE(ConverseStreamTranslator(include_usage=include_usage, **IDS))


def run(pieces: Iterable[bytes], include_usage: bool = False) -> list[bytes]:
    """Feed the pieces then b"" as mitmproxy does; check the never-b"" rule on every return."""
    sse = transcoder(include_usage)
    out: list[bytes] = []
    for piece in [*pieces, b""]:
        returned = sse(piece)
        assert isinstance(returned, list) and all(chunk for chunk in returned)
        out += returned
    return out


def events(out: list[bytes]) -> list[Any]:
    """The SSE data payloads: parsed JSON, or the string "[DONE]"."""
    text = b"".join(out).decode()
    assert text.endswith("\n\n")
    items = []
    for block in text.split("\n\n")[:-1]:
        assert block.startswith("data: ") and "\n" not in block
        data = block.removeprefix("data: ")
        items.append(data if data == "[DONE]" else json.loads(data))
    return items


def splits(data: bytes) -> Iterable[list[bytes]]:
    """Two pieces at every offset, then one byte at a time."""
    for k in range(1, len(data)):
        yield [data[:k], data[k:]]
    yield [data[i : i + 1] for i in range(len(data))]


def stream_bytes(name: str) -> bytes:
    return encode_events(stream_events(COMPLETE[name], piece=5))


ALL_STREAMS: dict[str, Callable[[], bytes]] = {
    **{name: (lambda n=name: stream_bytes(n)) for name in COMPLETE},
    **{name: (lambda d=data: d) for name, data in BROKEN.items()},
}


@pytest.mark.parametrize("name", sorted(ALL_STREAMS))
def test_every_split_gives_the_same_sse(name: str) -> None:
    """With include_usage (the superset: usage on every chunk, the usage chunk at the end)."""
    data = ALL_STREAMS[name]()
    whole = events(run([data], include_usage=True))
    assert whole, "the stream produced no SSE at all"
    for pieces in splits(data):
        got = events(run(pieces, include_usage=True))
        assert got == whole, f"split into pieces of {[len(p) for p in pieces][:2]} bytes"


@pytest.mark.parametrize("name", sorted(COMPLETE))
def test_streamed_equals_non_streamed(name: str) -> None:
    """openai's own chunk accumulator rebuilds exactly the non-streaming answer."""
    items = events(run([stream_bytes(name)]))
    assert items[-1] == "[DONE]" and items.count("[DONE]") == 1
    state = ChatCompletionStreamState()
    for item in items[:-1]:
        state.handle_chunk(ChatCompletionChunk.model_validate(item))
    streamed = state.get_final_completion().model_dump()["choices"][0]
    expected = from_converse_response(COMPLETE[name], **IDS)["choices"][0]
    message = expected["message"]
    assert streamed["finish_reason"] == expected["finish_reason"]
    assert streamed["message"]["content"] == message["content"]
    got_calls = [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in streamed["message"]["tool_calls"] or []
    ]
    want_calls = [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in message.get("tool_calls", [])
    ]
    assert got_calls == want_calls


def test_multi_tool_chunks() -> None:
    items = events(run([stream_bytes("tools")]))[:-1]
    deltas = [item["choices"][0]["delta"] for item in items if item["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    heads = [d["tool_calls"][0] for d in deltas if "tool_calls" in d and "id" in d["tool_calls"][0]]
    assert heads == [
        {
            "index": 0,
            "id": "tu_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {
            "index": 1,
            "id": "tu_2",
            "type": "function",
            "function": {"name": "get_time", "arguments": ""},
        },
    ]
    arguments: dict[int, str] = {}
    for d in deltas:
        for call in d.get("tool_calls", []):
            arguments[call["index"]] = (
                arguments.get(call["index"], "") + call["function"]["arguments"]
            )
    assert [json.loads(arguments[i]) for i in (0, 1)] == [
        {"city": "Paris", "unit": "c"},
        {"tz": "Europe/Paris"},
    ]
    assert items[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }


def test_reasoning_chunks() -> None:
    deltas = [i["choices"][0]["delta"] for i in events(run([stream_bytes("reasoning")]))[:-1]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "User says hi."
    assert "".join(d.get("content", "") for d in deltas) == "Hello!"


@pytest.mark.parametrize("name", sorted(COMPLETE))
def test_usage_chunk_only_when_requested(name: str) -> None:
    plain = events(run([stream_bytes(name)]))[:-1]
    assert all("usage" not in item for item in plain)
    with_usage = events(run([stream_bytes(name)], include_usage=True))[:-1]
    assert all(item["usage"] is None for item in with_usage[:-1])
    assert with_usage[-1]["choices"] == []
    expected = from_converse_response(COMPLETE[name], **IDS)["usage"]
    assert with_usage[-1]["usage"] == expected
    assert with_usage[-2]["choices"][0]["finish_reason"] is not None


def test_usage_keeps_cache_tokens() -> None:
    last = events(run([stream_bytes("tools")], include_usage=True))[-2]
    assert last["usage"]["prompt_tokens"] == 130
    assert last["usage"]["prompt_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 100}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_failed_streams_end_with_an_error_event_not_done(name: str) -> None:
    items = events(run([BROKEN[name]], include_usage=True))
    assert "[DONE]" not in items
    assert set(items[-1]) == {"error"}
    error = items[-1]["error"]
    assert error["code"] == EXPECTED_ERROR_CODES[name]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert all("error" not in item for item in items[:-1])
    finishes = [c["finish_reason"] for i in items[:-1] for c in i.get("choices", [])]
    assert not any(finishes), "a failed stream must not report a finish_reason"


def test_nothing_after_done_or_error() -> None:
    sse = transcoder()
    out = sse(stream_bytes("text"))
    assert out[-1] == DONE
    assert sse(stream_bytes("text")) == [] and sse(b"") == []
    failed = transcoder()
    assert events(failed(BROKEN["throttled_before_content"]))[-1]["error"]["code"]
    assert failed(stream_bytes("text")) == [] and failed(b"") == []
    assert failed.error is not None and failed.closed


def test_done_is_sent_as_soon_as_metadata_arrives() -> None:
    data = stream_bytes("text")
    sse = transcoder()
    out = sse(data)
    assert out[-1] == DONE and sse.translator.done
    assert sse(b"") == []


def test_corrupted_frame_is_an_error() -> None:
    data = bytearray(stream_bytes("text"))
    data[30] ^= 0xFF  # inside the first frame: its CRC no longer matches
    items = events(run([bytes(data)]))
    assert items[-1]["error"]["code"] == "bad_event_stream"


def test_valid_crc_over_bad_headers_is_an_error() -> None:
    head = b"\x0d:message-type" + bytes([42]) + b"\x00\x05event"  # value type 42: no such type
    prelude = struct.pack(">II", 12 + len(head) + 2 + 4, len(head))
    start = prelude + struct.pack(">I", binascii.crc32(prelude)) + head + b"{}"
    frame = start + struct.pack(">I", binascii.crc32(start))
    items = events(run([encode_events(stream_events(TEXT)[:1]) + frame]))
    assert items[-1]["error"]["code"] == "bad_event_stream"


def test_translator_finish_without_message_stop_raises() -> None:
    translator = ConverseStreamTranslator(**IDS)
    translator.feed({"messageStart": {"role": "assistant"}})
    translator.feed({"contentBlockDelta": {"delta": {"text": "partial"}, "contentBlockIndex": 0}})
    with pytest.raises(UpstreamError, match="messageStop"):
        translator.finish()


def test_translator_ignores_unknown_events_and_empty_deltas() -> None:
    translator = ConverseStreamTranslator(**IDS)
    assert len(translator.feed({"messageStart": {"role": "assistant"}})) == 1
    assert translator.feed({"someFutureEvent": {"x": 1}}) == []
    assert (
        translator.feed({"contentBlockDelta": {"delta": {"text": ""}, "contentBlockIndex": 0}})
        == []
    )
    assert (
        translator.feed(
            {
                "contentBlockDelta": {
                    "delta": {"reasoningContent": {"signature": "abc"}},
                    "contentBlockIndex": 0,
                }
            }
        )
        == []
    )
    assert translator.feed({"contentBlockStop": {"contentBlockIndex": 0}}) == []


def test_server_tool_use_is_not_a_client_tool_call() -> None:
    translator = ConverseStreamTranslator(**IDS)
    start = {
        "start": {"toolUse": {"toolUseId": "s", "name": "web", "type": "server_tool_use"}},
        "contentBlockIndex": 0,
    }
    assert translator.feed({"contentBlockStart": start}) == []
    delta = {"delta": {"toolUse": {"input": "{}"}}, "contentBlockIndex": 0}
    assert translator.feed({"contentBlockDelta": delta}) == []


def _sdk_stream(body: bytes) -> list[Any]:
    """Iterate ``body`` as an SSE response through the real openai client."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    client = openai.OpenAI(
        api_key="k", base_url="http://sidecar.test/v1", http_client=http, max_retries=0
    )
    with client:
        stream = client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        return list(stream)


def test_openai_sdk_reads_the_stream() -> None:
    chunks = _sdk_stream(b"".join(run([stream_bytes("tools")], include_usage=True)))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Checking."
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 150
    assert chunks[-1].usage.prompt_tokens_details.cache_write_tokens == 100


@pytest.mark.parametrize("name", ["exception_mid_stream", "truncated_no_message_stop"])
def test_openai_sdk_raises_on_the_error_event(name: str) -> None:
    with pytest.raises(openai.APIError) as info:
        _sdk_stream(b"".join(run([BROKEN[name]])))
    assert info.value.code == EXPECTED_ERROR_CODES[name]
