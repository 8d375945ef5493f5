"""The Responses cache's canonical form (``sidecar.apis.responses_cache``): a Responses stream adds
up to the completed ``response`` object, that object is replayed as the stream a provider would
have sent, and the official ``openai`` SDK (strict validation, its own stream parsing and
accumulation) reads the replayed bytes as the original answer."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx2
import openai
import pytest

from sidecar.apis.responses import SSE_HEADERS, ChatToResponsesStream
from sidecar.apis.responses.objects import envelope
from sidecar.apis.responses_cache import ResponsesStreamAssembler, replay_responses_stream
from tests.responses.chat_streams import SCENARIOS, Chunk

REQUEST: dict[str, Any] = {"model": "gpt-4o", "input": "Hi"}


def translated(chunks: list[Chunk], *, finish: bool = True) -> bytes:
    """A Responses stream as the sidecar's translator makes it from a chat stream."""
    stream = ChatToResponsesStream(REQUEST, "resp_1", 1700000000, clock=lambda: 1700000009.0)
    events = [e for c in chunks for e in stream.feed(c)]
    return b"".join(events + (stream.finish() if finish else []))


def parse(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for block in raw.decode().split("\n\n")[:-1]:
        event, data = block.split("\n")
        payload = json.loads(data.removeprefix("data: "))
        assert event == f"event: {payload['type']}"
        out.append(payload)
    return out


def completed_of(raw: bytes) -> dict[str, Any]:
    return next(e["response"] for e in parse(raw) if e["type"] == "response.completed")


def native() -> dict[str, Any]:
    """As api.openai.com answers: encrypted reasoning, an annotated message, two calls."""
    response = envelope({**REQUEST, "reasoning": {"effort": "low", "summary": "auto"}},
                        response_id="resp_native", created_at=1754000000,
                        model="gpt-5-2025-08-07", status="completed")
    response.update(completed_at=1754000003, store=True, output=[
        {"id": "rs_1", "type": "reasoning", "encrypted_content": "gAAAA==",
         "summary": [{"type": "summary_text", "text": "**Weather** lookup."}]},
        {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "Vérifié 🌍, see Météo.",
                      "annotations": [{"type": "url_citation", "start_index": 16,
                                       "end_index": 21, "url": "https://meteo.example",
                                       "title": "Météo"}], "logprobs": []}]},
        {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_a",
         "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"id": "fc_2", "type": "function_call", "status": "completed", "call_id": "call_b",
         "name": "get_time", "arguments": "{}"},
    ], usage={"input_tokens": 30, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
              "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 20},
              "total_tokens": 80})
    return response


NAMES = ["text", "tool_calls", "reasoning", "refusal", "empty"]
ANSWERS = {**{name: completed_of(translated(SCENARIOS[name])) for name in NAMES},
           "native": native()}


def assemble(*pieces: bytes, max_chars: int | None = None) -> dict[str, Any] | None:
    assembler = ResponsesStreamAssembler(max_chars=max_chars)
    for piece in pieces:
        assembler.feed(piece)
    return assembler.result()


def text_of(response: dict[str, Any]) -> str:
    return "".join(part["text"] for item in response["output"] if item["type"] == "message"
                   for part in item["content"] if part["type"] == "output_text")


@pytest.mark.parametrize("name", NAMES)
def test_a_translated_stream_adds_up_to_its_completed_response(name: str) -> None:
    raw = translated(SCENARIOS[name])
    assert assemble(raw) == completed_of(raw)


def test_a_stream_split_at_every_byte_adds_up_the_same() -> None:
    raw = b"".join(replay_responses_stream(ANSWERS["native"], chunk_chars=4))
    for cut in range(1, len(raw)):
        assert assemble(raw[:cut], raw[cut:]) == ANSWERS["native"], cut
    assert assemble(*(raw[i:i + 1] for i in range(len(raw)))) == ANSWERS["native"]


TEXT = translated(SCENARIOS["text"])
CUT = TEXT[:TEXT.rindex(b"event: response.completed")]
COMPLETED = parse(TEXT)[-1]


def test_crlf_comments_done_multi_line_data_and_events_after_the_end() -> None:
    answer = COMPLETED["response"]
    assert assemble(b": keep-alive\r\n\r\n", TEXT.replace(b"\n", b"\r\n")) == answer
    lines = json.dumps(COMPLETED, indent=1).encode().split(b"\n")
    multi = b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"  # no event: line
    assert assemble(CUT, multi, b"data: [DONE]\n\n") == answer
    assert assemble(TEXT, b"event: error\ndata: {}\n\n", b"garbage") == answer  # after the end


def completed_with(**response: Any) -> bytes:
    event = {**COMPLETED, "response": {**COMPLETED["response"], **response}}
    return CUT + f"event: response.completed\ndata: {json.dumps(event)}\n\n".encode()


INCOMPLETE: dict[str, bytes] = {
    "nothing": b"",
    "no response.completed": CUT,
    "cut inside response.completed": TEXT[:-40],
    "response.completed without its blank line": TEXT[:-1],
    "a chat stream cut before its finish (error, response.failed)": translated(
        SCENARIOS["text"][:3]),
    "response.failed, then response.completed": CUT + b"event: response.failed\ndata: " + (
        json.dumps({**COMPLETED, "type": "response.failed"}).encode() + b"\n\n" + TEXT),
    "response.incomplete (max tokens)": translated(SCENARIOS["length"]),
    "an error event": CUT + b'event: error\ndata: {"type":"error","message":"x"}\n\n' + TEXT,
    "a bare error object": CUT + b'data: {"error":{"message":"overloaded"}}\n\n' + TEXT,
    "not JSON": CUT + b"event: response.output_text.delta\ndata: {oops\n\n" + TEXT,
    "a completed event whose status is not completed": completed_with(status="incomplete"),
    "a completed event without a response": CUT + b'data: {"type":"response.completed"}\n\n',
    "an output item that cannot be replayed": completed_with(output=[
        {"id": "ws_1", "type": "web_search_call", "status": "completed"}]),
}


@pytest.mark.parametrize("name", sorted(INCOMPLETE))
def test_an_incomplete_or_failed_stream_adds_up_to_nothing(name: str) -> None:
    assert assemble(INCOMPLETE[name]) is None


def test_a_stream_over_max_chars_is_given_up() -> None:
    raw = translated(SCENARIOS["tool_calls"])
    assert assemble(raw, max_chars=len(raw)) == completed_of(raw)
    over = ResponsesStreamAssembler(max_chars=len(raw) - 1)
    over.feed(raw)
    assert over.failed and over.result() is None
    endless = ResponsesStreamAssembler(max_chars=10_000)
    for _ in range(200):
        endless.feed(b'data: {"type":"' + b"x" * 1000)  # one line that never ends
    assert endless.failed and endless.result() is None and endless._sse.pending == 0  # let go


# -- replay -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ANSWERS))
@pytest.mark.parametrize("chunk_chars", [1, 3, 64])
def test_a_replayed_response_adds_up_to_itself(name: str, chunk_chars: int) -> None:
    answer = ANSWERS[name]
    before = copy.deepcopy(answer)
    raw = replay_responses_stream(answer, chunk_chars=chunk_chars)
    assert answer == before  # not changed by the replay
    assert assemble(*raw) == answer and assemble(b"".join(raw)) == answer
    assert [e["sequence_number"] for e in parse(b"".join(raw))] == list(range(len(raw)))


def test_the_replayed_events_have_the_provider_shape() -> None:
    events = parse(b"".join(replay_responses_stream(answer := ANSWERS["native"], chunk_chars=8)))
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.output_item.done",  # reasoning
        "response.output_item.added", "response.content_part.added",
        *["response.output_text.delta"] * 3, "response.output_text.done",
        "response.content_part.done", "response.output_item.done",
        "response.output_item.added", *["response.function_call_arguments.delta"] * 2,
        "response.function_call_arguments.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed"]
    start = events[0]["response"]
    assert start == {**answer, "status": "in_progress", "output": [], "usage": None,
                     "completed_at": None}
    assert events[1]["response"] == start and events[-1]["response"] == answer
    reasoning, message, call, _ = answer["output"]
    assert events[2]["item"] == {**reasoning, "summary": []} and events[3]["item"] == reasoning
    assert events[4]["item"] == {**message, "status": "in_progress", "content": []}
    assert events[5]["part"] == {"type": "output_text", "text": "", "annotations": [],
                                 "logprobs": []}
    assert [e["delta"] for e in events[6:9]] == ["Vérifié ", "🌍, see M", "étéo."]
    assert events[6]["item_id"] == "msg_1" and events[6]["content_index"] == 0
    assert events[9]["text"] == "Vérifié 🌍, see Météo." and events[10]["part"] == message["content"][0]
    assert events[12]["item"] == {**call, "status": "in_progress", "arguments": ""}
    assert [e["delta"] for e in events[13:15]] == ['{"city":', '"Paris"}']
    assert events[15]["arguments"] == call["arguments"] and events[16]["item"] == call


def test_a_refusal_is_replayed_as_refusal_events() -> None:
    events = parse(b"".join(replay_responses_stream(ANSWERS["refusal"], chunk_chars=5)))
    deltas = [e["delta"] for e in events if e["type"] == "response.refusal.delta"]
    assert "".join(deltas) == "I can't help." and deltas[0] == "I can"
    assert [e["refusal"] for e in events if e["type"] == "response.refusal.done"] == [
        "I can't help."]


@pytest.mark.parametrize("bad", [
    {**ANSWERS["text"], "status": "incomplete"},
    {**ANSWERS["text"], "status": "in_progress"},
    {**ANSWERS["text"], "object": "chat.completion"},
    {**ANSWERS["text"], "output": None},
    {**ANSWERS["text"], "output": [{"id": "ws_1", "type": "web_search_call"}]},
    {**ANSWERS["text"], "output": [{"type": "message", "content": []}]},
    {**ANSWERS["text"], "output": [{"id": "m", "type": "message", "content": [
        {"type": "output_audio", "data": "AAA"}]}]},
    {**ANSWERS["text"], "output": [{"id": "fc", "type": "function_call", "name": "f"}]},
    {"choices": []},
])
def test_what_cannot_be_replayed_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        replay_responses_stream(bad)
    with pytest.raises(ValueError):
        replay_responses_stream(ANSWERS["text"], chunk_chars=0)


# -- the openai SDK reads the replayed stream as the answer -----------------------------------


def sdk(content: bytes | dict[str, Any]) -> openai.OpenAI:
    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/responses"
        if isinstance(content, dict):
            return httpx2.Response(200, json=content)
        return httpx2.Response(200, headers=SSE_HEADERS, content=content)

    return openai.OpenAI(api_key="sk-app", base_url="https://api.openai.com/v1", max_retries=0,
                         http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
                         _strict_response_validation=True)


def calls_of(answer: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(i["call_id"], i["name"], i["arguments"]) for i in answer["output"] if i.get("name")]


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_the_sdk_streams_the_replayed_answer(name: str) -> None:
    answer = ANSWERS[name]
    raw = replay_responses_stream(answer, chunk_chars=5)
    kinds, text, final = [], "", None
    arguments: dict[str, str] = {}
    for event in sdk(b"".join(raw)).responses.create(model="gpt-4o", input="Hi", stream=True):
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        elif event.type == "response.function_call_arguments.delta":
            arguments[event.item_id] = arguments.get(event.item_id, "") + event.delta
        elif event.type == "response.completed":
            final = event.response
    assert kinds == [e["type"] for e in parse(b"".join(raw))]
    assert text == text_of(answer)
    assert arguments == {i["id"]: i["arguments"] for i in answer["output"]
                         if i["type"] == "function_call" and i["arguments"]}
    assert final is not None and final.id == answer["id"] and final.status == "completed"
    assert final.output_text == text_of(answer)


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_the_sdk_stream_helper_accumulates_the_answer(name: str) -> None:
    answer = ANSWERS[name]
    raw = b"".join(replay_responses_stream(answer, chunk_chars=3))
    with sdk(raw).responses.stream(model="gpt-4o", input="Hi") as stream:
        snapshots = [e.snapshot for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.output_text == text_of(answer)
    assert (snapshots[-1] if snapshots else "") == text_of(answer)
    assert [(c.call_id, c.name, c.arguments) for c in final.output
            if c.type == "function_call"] == calls_of(answer)
    got = final.model_dump(mode="json", exclude_none=True)
    for item in got["output"]:
        item.pop("parsed_arguments", None)
        for part in item.get("content") or []:
            part.pop("parsed", None)
    assert got == json.loads(json.dumps(_without_none(answer)))


@pytest.mark.parametrize("name", ["native", "tool_calls"])
def test_the_sdk_reads_the_assembled_response_as_json(name: str) -> None:
    answer = assemble(b"".join(replay_responses_stream(ANSWERS[name])))
    assert answer is not None
    got = sdk(answer).responses.create(model="gpt-4o", input="Hi")
    assert got.output_text == text_of(answer) and got.usage is not None
    assert [(c.call_id, c.name, c.arguments) for c in got.output
            if c.type == "function_call"] == calls_of(answer)


def _without_none(value: Any) -> Any:
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return {k: _without_none(v) for k, v in value.items() if v is not None} if isinstance(
        value, dict) else value
