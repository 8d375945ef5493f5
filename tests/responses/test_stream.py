"""The chat -> Responses stream translator: event order, ids and indexes, every split point,
failures that never become completions, and agreement with the non-streamed translation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from sidecar.apis.responses import (
    AfterChat,
    ChatSSEToResponsesSSE,
    ChatToResponsesStream,
    to_responses_object,
)
from sidecar.providers.bedrock.stream import ConverseStreamTranslator
from sidecar.providers.bedrock.transcode import EventStreamToSSE
from tests.fakes import bedrock

from .chat_streams import (
    INTERLEAVED,
    ROLE,
    SCENARIOS,
    USAGE,
    Chunk,
    call,
    chunk,
    completion_of,
    ending,
    sse,
)

REQUEST = {"model": "gpt-4o", "input": "Hi", "stream": True}
CREATED, NOW = 1700000000, 1700000005
EVENT = TypeAdapter(ResponseStreamEvent)


def translator(request: dict[str, Any] | None = None) -> ChatSSEToResponsesSSE:
    return ChatSSEToResponsesSSE(ChatToResponsesStream(
        request or REQUEST, "resp_s", CREATED, clock=lambda: NOW))


def run(raw: bytes, *pieces: int) -> list[bytes]:
    """Feed ``raw`` cut at ``pieces`` offsets, then the end; checks no ``b""`` comes out."""
    t, out, start = translator(), [], 0
    for end in [*pieces, len(raw)]:
        out += t(raw[start:end])
        start = end
    out += t(b"")
    assert all(out), "a stream callable must never return b''"
    return out


def parse(events: list[bytes]) -> list[dict[str, Any]]:
    """Each event's JSON; checks the SSE framing and that ``event:`` matches ``type``."""
    parsed = []
    for raw in events:
        head, data = raw.decode().removesuffix("\n\n").split("\n")
        obj = json.loads(data.removeprefix("data: "))
        assert head == f"event: {obj['type']}"
        parsed.append(obj)
    return parsed


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def test_text_stream_event_sequence() -> None:
    events = parse(run(sse(SCENARIOS["text"])))
    assert types(events) == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == [
        "Hé", "llo 🌍", "!"]
    assert events[0]["response"]["status"] == "in_progress"
    assert events[0]["response"]["model"] == "claude-haiku"
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["completed_at"] == NOW
    assert final["usage"]["input_tokens_details"]["cached_tokens"] == 4


def test_tool_call_stream_event_sequence() -> None:
    events = parse(run(sse(SCENARIOS["tool_calls"])))
    assert types(events)[8:] == [
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.output_item.added",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [d["arguments"] for d in done] == ['{"city":"Paris"}', "{}"]  # no arguments -> {}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_event_is_valid_for_the_sdk_and_consistent(name: str) -> None:
    events = parse(run(sse(SCENARIOS[name])))
    for event in events:
        EVENT.validate_python(event)  # strict: the SDK's own event models
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    added = {e["output_index"]: e["item"] for e in events
             if e["type"] == "response.output_item.added"}
    done = {e["output_index"]: e["item"] for e in events
            if e["type"] == "response.output_item.done"}
    assert sorted(added) == sorted(done) == list(range(len(added)))
    for index, item in added.items():
        assert done[index]["id"] == item["id"] and done[index]["type"] == item["type"]
    for e in events:
        if "item_id" in e:
            assert added[e["output_index"]]["id"] == e["item_id"]
    assert events[-1]["response"]["output"] == [done[i] for i in sorted(done)]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_streamed_answer_equals_the_non_streamed_one(name: str) -> None:
    final = parse(run(sse(SCENARIOS[name])))[-1]["response"]
    expected = to_responses_object(completion_of(SCENARIOS[name]), request=REQUEST,
                                   response_id="resp_s", created_at=CREATED, completed_at=NOW)
    assert final == expected


@pytest.mark.parametrize("name", ["text", "tool_calls", "reasoning"])
def test_split_at_every_byte_gives_identical_events(name: str) -> None:
    raw = sse(SCENARIOS[name])
    whole = run(raw)
    for offset in range(1, len(raw)):
        assert run(raw, offset) == whole, f"split at {offset}"


def test_byte_by_byte_crlf_comments_and_multiline_data() -> None:
    lines = []
    for c in SCENARIOS["text"]:
        text = json.dumps(c, ensure_ascii=False, indent=1)  # JSON over several data: lines
        lines.append(": keep-alive\r\n" + "".join(f"data: {ln}\r\n" for ln in text.split("\n")))
    raw = ("\r\n".join(lines) + "\r\ndata: [DONE]\r\n\r\n").encode()
    assert run(raw, *range(1, len(raw))) == run(sse(SCENARIOS["text"]))


def test_incomplete_when_the_provider_hit_max_tokens() -> None:
    events = parse(run(sse(SCENARIOS["length"])))
    final = events[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["response"]["output"][-1]["status"] == "incomplete"


def test_interleaved_parallel_tool_calls() -> None:
    events = parse(run(sse(INTERLEAVED)))
    final = events[-1]["response"]["output"]
    assert [(i["call_id"], i["name"], i["arguments"]) for i in final] == [
        ("call_a", "f", '{"x":1}'), ("call_b", "g", '{"y":2}')]


def test_tool_calls_without_index_are_told_apart_by_id() -> None:
    def no_index(call_id: str, name: str, args: str) -> Chunk:
        return chunk({"tool_calls": [{"id": call_id, "type": "function",
                                      "function": {"name": name, "arguments": args}}]})
    chunks = [ROLE, no_index("c1", "f", "{}"), no_index("c2", "g", '{"a":1}'),
              *ending("tool_calls")]
    final = parse(run(sse(chunks)))[-1]["response"]["output"]
    assert [(i["call_id"], i["arguments"]) for i in final] == [("c1", "{}"), ("c2", '{"a":1}')]


def test_finish_without_done_still_completes() -> None:
    assert types(parse(run(sse(SCENARIOS["text"], done=False))))[-1] == "response.completed"


FAILURES = {
    "cut-before-finish": (sse(SCENARIOS["text"][:3], done=False), "stream_truncated"),
    "done-without-finish": (sse(SCENARIOS["text"][:3]), "stream_truncated"),
    "error-event": (sse(SCENARIOS["text"][:2], done=False)
                    + b'data: {"error": {"message": "Throttled", "type": "rate_limit_error",'
                      b' "param": null, "code": "rate_limit_exceeded"}}\n\n'
                    + sse(SCENARIOS["text"][2:]), "rate_limit_exceeded"),
    "error-first": (b'data: {"error": {"message": "boom", "type": "api_error"}}\n\n',
                    None),
    "not-json": (sse(SCENARIOS["text"][:2], done=False) + b"data: {nope\n\n", "bad_stream"),
    "output-after-finish": (sse([ROLE, chunk({}, "stop"), chunk({"content": "late"})]),
                            "translation_error"),
    "call-continued-after-text": (
        sse([ROLE, chunk(call(0, "c", "f")), chunk({"content": "x"}),
             chunk(call(0, arguments="{}")), *ending()]), "translation_error"),
}


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_failures_end_with_error_and_response_failed_never_completed(name: str) -> None:
    raw, code = FAILURES[name]
    events = parse(run(raw))
    assert types(events)[:2] == ["response.created", "response.in_progress"]
    assert types(events)[-2:] == ["error", "response.failed"]
    assert "response.completed" not in types(events)
    assert events[-2]["code"] == code and events[-2]["message"]
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["message"] == events[-2]["message"]
    for event in events:
        EVENT.validate_python(event)


def test_rate_limit_error_keeps_its_code_in_response_failed() -> None:
    failed = parse(run(FAILURES["error-event"][0]))[-1]["response"]
    assert failed["error"] == {"code": "rate_limit_exceeded", "message": "Throttled"}
    assert failed["output"][0]["content"][0]["text"] == "Hé"  # what had arrived


def test_everything_after_the_terminal_event_is_swallowed() -> None:
    t = translator()
    assert t(sse(SCENARIOS["text"]))
    assert t(sse(SCENARIOS["text"])) == [] and t(b"") == [] and t(b"") == []
    assert t.translator.status == "completed" and t.translator.usage == USAGE


def test_translator_reports_status_usage_and_error() -> None:
    t = translator()
    t(FAILURES["error-event"][0])
    assert t.translator.status == "failed"
    assert t.translator.error is not None and t.translator.error["code"] == "rate_limit_exceeded"


def _bedrock_route(events: list[dict[str, Any]]) -> Any:
    """Bedrock's event-stream -> chat SSE transcoder chained into the Responses translator."""
    transcoder = EventStreamToSSE(ConverseStreamTranslator(
        model="qwen3", created=CREATED, response_id="chatcmpl-b", include_usage=True))
    responses = ChatSSEToResponsesSSE(ChatToResponsesStream(REQUEST, "resp_b", CREATED,
                                                            clock=lambda: NOW))
    route = AfterChat(transcoder, responses)
    raw = bedrock.encode_events(events)
    out = [e for i in range(0, len(raw), 13) for e in route(raw[i:i + 13])] + route(b"")
    assert all(out)
    return parse(out)


def test_bedrock_event_stream_chained_into_responses() -> None:
    answer = bedrock.response(
        [{"reasoningContent": {"reasoningText": {"text": "Think.", "signature": "c2ln"}}},
         {"text": "Sure thing."}, bedrock.tool_use("f", {"a": 1}, "tooluse_1")],
        stop_reason="tool_use", token_usage=bedrock.usage(10, 5, cache_read=2))
    events = _bedrock_route(bedrock.stream_events(answer))
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed" and final["model"] == "qwen3"
    assert [i["type"] for i in final["output"]] == ["reasoning", "message", "function_call"]
    assert final["output"][0]["content"] == [{"type": "reasoning_text", "text": "Think."}]
    assert final["output"][1]["content"][0]["text"] == "Sure thing."
    assert (final["output"][2]["call_id"], final["output"][2]["arguments"]) == (
        "tooluse_1", '{"a": 1}')
    assert final["usage"]["input_tokens"] == 12
    assert final["usage"]["input_tokens_details"]["cached_tokens"] == 2
    assert not events_route_failed(answer)
    for event in events:
        EVENT.validate_python(event)


def test_a_cut_bedrock_stream_fails_through_the_chain() -> None:
    events = bedrock.stream_events(bedrock.text_response("Hello there"))
    parsed = _bedrock_route(events[:3])  # no messageStop, no metadata
    assert types(parsed)[-2:] == ["error", "response.failed"]
    assert parsed[-2]["code"] == "stream_truncated"
    assert events_route_failed(None, events[:3])


def events_route_failed(answer: Any, events: list[dict[str, Any]] | None = None) -> bool:
    """Whether the chained transform reports the failure (what the shell counts)."""
    transcoder = EventStreamToSSE(ConverseStreamTranslator(
        model="qwen3", created=CREATED, response_id="chatcmpl-b", include_usage=True))
    route = AfterChat(transcoder, ChatSSEToResponsesSSE(ChatToResponsesStream(
        REQUEST, "resp_b", CREATED, clock=lambda: NOW)))
    route(bedrock.encode_events(events if events is not None else bedrock.stream_events(answer)))
    route(b"")
    assert events is not None or (route.usage is not None and route.usage.cached == 2)
    return route.failed
