"""The chat cache's canonical form (``sidecar.apis.chat_cache``): a stream adds up to the
``chat.completion`` the same call answers without ``stream``, a completion is replayed as the
stream a provider would have sent, and the official ``openai`` SDK (strict validation, its own
stream parsing and accumulation) reads the replayed bytes as the original answer."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx2
import openai
import pytest

from sidecar.apis.chat_cache import DONE, StreamAssembler, replay_stream
from sidecar.apis.responses import SSE_HEADERS
from tests.responses.chat_streams import MODEL, ROLE, SCENARIOS, USAGE, call, chunk, sse

HEAD = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": MODEL,
        "system_fingerprint": None}


def completion(message: dict[str, Any], finish: str = "stop", *,
               usage: dict[str, Any] | None = USAGE) -> dict[str, Any]:
    out = {**HEAD, "choices": [{"index": 0, "message": {"role": "assistant", "content": None,
                                                        "refusal": None, **message},
                                "logprobs": None, "finish_reason": finish}]}
    return {**out, "usage": usage} if usage is not None else out


def function(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": arguments}}


EXPECTED = {
    "text": completion({"content": "Héllo 🌍!"}),
    "tool_calls": completion({"content": "Checking.", "tool_calls": [
        function("call_a", "get_weather", '{"city":"Paris"}'),
        function("call_b", "get_time", "")]}, "tool_calls"),
    "reasoning": completion({"content": "4", "reasoning_content": "Two and two."}),
    "refusal": completion({"content": "", "refusal": "I can't help."}),
    "length": completion({"content": "Once upon"}, "length"),
    "empty": completion({"content": ""}),
}


def assemble(*pieces: bytes) -> dict[str, Any] | None:
    assembler = StreamAssembler()
    for piece in pieces:
        assembler.feed(piece)
    return assembler.result()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_stream_adds_up_to_its_completion(name: str) -> None:
    assert assemble(sse(SCENARIOS[name])) == EXPECTED[name]


def test_a_stream_split_at_every_byte_adds_up_the_same() -> None:
    raw = sse(SCENARIOS["tool_calls"]).replace(b"Checking.", "Vérifié 🌍.".encode())
    expected = copy.deepcopy(EXPECTED["tool_calls"])
    expected["choices"][0]["message"]["content"] = "Vérifié 🌍."
    for cut in range(1, len(raw)):
        assert assemble(raw[:cut], raw[cut:]) == expected, cut
    assert assemble(*(raw[i:i + 1] for i in range(len(raw)))) == expected


def test_crlf_comments_and_multi_line_data_are_read() -> None:
    raw = sse(SCENARIOS["text"]).replace(b"\n", b"\r\n")
    assert assemble(b": keep-alive\r\n\r\n", raw) == EXPECTED["text"]
    one = json.dumps(chunk({"content": "x"}, "stop"), indent=1).encode()
    lines = b"".join(b"data: " + line + b"\n" for line in one.split(b"\n"))
    assert assemble(sse([ROLE], done=False), lines, b"\n", DONE) == completion({"content": "x"}, usage=None)


def test_an_openai_stream_as_sent_adds_up_to_its_json_answer() -> None:
    """What api.openai.com sends (usage asked for): ``usage: null`` on every chunk, the
    obfuscation field, a service tier and fingerprint; text then two parallel calls."""
    head = {"id": "chatcmpl-Bx1", "object": "chat.completion.chunk", "created": 1754000000,
            "model": "gpt-4o-2024-08-06", "service_tier": "default",
            "system_fingerprint": "fp_07871e2ad8"}

    def event(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                     "finish_reason": finish}], "usage": None,
                "obfuscation": "Xq9"}

    usage = {"prompt_tokens": 80, "completion_tokens": 40, "total_tokens": 120,
             "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
             "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                           "accepted_prediction_tokens": 0,
                                           "rejected_prediction_tokens": 0}}
    chunks = [event({"role": "assistant", "content": None, "refusal": None, "annotations": []}),
              event({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                     "function": {"name": "get_weather", "arguments": ""}}]}),
              event({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
              event({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
              event({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
                                     "function": {"name": "get_time", "arguments": "{}"}}]}),
              event({}, "tool_calls"), {**head, "choices": [], "usage": usage}]
    assert assemble(sse(chunks)) == {
        "id": "chatcmpl-Bx1", "object": "chat.completion", "created": 1754000000,
        "model": "gpt-4o-2024-08-06", "service_tier": "default",
        "system_fingerprint": "fp_07871e2ad8",
        "choices": [{"index": 0, "message": {
            "role": "assistant", "content": None, "refusal": None, "tool_calls": [
                function("call_1", "get_weather", '{"city":"Oslo"}'),
                function("call_2", "get_time", "{}")]},
            "logprobs": None, "finish_reason": "tool_calls"}],
        "usage": usage}


def test_usage_is_there_only_when_the_stream_had_it() -> None:
    no_usage = [c for c in SCENARIOS["text"] if c["choices"]]
    assert assemble(sse(no_usage)) == completion({"content": "Héllo 🌍!"}, usage=None)
    on_the_last_choice = [*no_usage[:-1], {**no_usage[-1], "usage": USAGE}]  # some providers
    assert assemble(sse(on_the_last_choice)) == EXPECTED["text"]


TEXT = SCENARIOS["text"]
INCOMPLETE: dict[str, bytes] = {
    "no [DONE]": sse(TEXT, done=False),
    "cut inside [DONE]": sse(TEXT)[:-3],
    "no finish_reason": sse([ROLE, chunk({"content": "Hi"})]),
    "only [DONE]": DONE,
    "nothing": b"",
    "an error event": sse(TEXT[:2]) + b'data: {"error":{"message":"overloaded"}}\n\n' + DONE,
    "an error event type": sse(TEXT[:2]) + b'event: error\ndata: {"message":"x"}\n\n' + DONE,
    "not JSON": sse(TEXT[:2]) + b"data: {oops\n\n" + sse(TEXT[2:]),
    "two choices": sse([ROLE, {**chunk({"content": "b"}), "choices": [
        {"index": 1, "delta": {"content": "b"}, "logprobs": None, "finish_reason": None}]},
        *TEXT[1:]]),
    "log probabilities": sse([ROLE, {**chunk({"content": "Hi"}), "choices": [
        {"index": 0, "delta": {"content": "Hi"}, "logprobs": {"content": []},
         "finish_reason": None}]}, *TEXT[-2:]]),
    "an audio delta": sse([ROLE, chunk({"audio": {"id": "a1", "data": "AAA"}}), *TEXT[-2:]]),
    "a legacy function_call": sse([ROLE, chunk({"function_call": {"name": "f"}}), *TEXT[-2:]]),
    "a custom tool call": sse([ROLE, chunk({"tool_calls": [
        {"index": 0, "id": "c", "type": "custom", "custom": {"name": "f", "input": "x"}}]}),
        *TEXT[-2:]]),
    "a tool call without index": sse([ROLE, chunk({"tool_calls": [{"id": "c"}]}), *TEXT[-2:]]),
}


@pytest.mark.parametrize("name", sorted(INCOMPLETE))
def test_an_incomplete_or_unreplayable_stream_adds_up_to_nothing(name: str) -> None:
    assert assemble(INCOMPLETE[name]) is None


def test_events_after_done_are_ignored_and_not_chunks_are_skipped() -> None:
    azure_filter = b'data: {"object":"","choices":[],"prompt_filter_results":[]}\n\n'
    assert assemble(azure_filter, sse(TEXT), sse(TEXT)) == EXPECTED["text"]


def test_an_answer_over_max_chars_is_given_up() -> None:
    raw = sse(SCENARIOS["tool_calls"])  # 9 + 11 + 8 + 16 characters of text
    fits = StreamAssembler(max_chars=44)
    fits.feed(raw)
    assert fits.result() == EXPECTED["tool_calls"]
    over = StreamAssembler(max_chars=43)
    over.feed(raw)
    assert over.failed and over.result() is None
    endless = StreamAssembler(max_chars=10)
    for _ in range(200):
        endless.feed(b'data: {"id":"' + b"x" * 1000)  # one line that never ends
    assert endless.failed and endless.result() is None


# -- replay -----------------------------------------------------------------------------------


def events(raw: list[bytes]) -> list[Any]:
    assert all(e.startswith(b"data: ") and e.endswith(b"\n\n") for e in raw)
    assert raw[-1] == DONE
    return [json.loads(e[6:]) for e in raw[:-1]]


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("chunk_chars", [1, 3, 64])
def test_a_replayed_completion_adds_up_to_itself(name: str, chunk_chars: int) -> None:
    answer = EXPECTED[name]
    with_usage = replay_stream(answer, include_usage=True, chunk_chars=chunk_chars)
    assert assemble(*with_usage) == answer
    without = replay_stream(answer, include_usage=False, chunk_chars=chunk_chars)
    assert assemble(*without) == {k: v for k, v in answer.items() if k != "usage"}
    assert assemble(b"".join(with_usage)) == answer


def test_the_replayed_chunks_have_the_provider_shape() -> None:
    answer = {**EXPECTED["tool_calls"], "service_tier": "default", "system_fingerprint": "fp_1"}
    chunks = events(replay_stream(answer, include_usage=True, chunk_chars=4))
    for c in chunks:
        assert (c["id"], c["object"], c["created"], c["model"], c["service_tier"],
                c["system_fingerprint"]) == ("chatcmpl-1", "chat.completion.chunk", 1700000000,
                                             MODEL, "default", "fp_1")
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1]]
    assert deltas[0] == {"role": "assistant", "content": "", "refusal": None}
    assert [d["content"] for d in deltas[1:4]] == ["Chec", "king", "."]
    assert deltas[4] == call(0, "call_a", "get_weather")  # id, type, name; no arguments yet
    assert [d["tool_calls"][0]["function"]["arguments"] for d in deltas[5:9]] == [
        '{"ci', 'ty":', '"Par', 'is"}']
    assert deltas[9]["tool_calls"][0]["id"] == "call_b" and deltas[10] == {}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == USAGE
    without = events(replay_stream(answer, include_usage=False))
    assert all("usage" not in c and c["choices"] for c in without)


def test_a_completion_without_usage_replays_without_a_usage_chunk() -> None:
    answer = completion({"content": "Hi"}, usage=None)
    assert all(c["choices"] for c in events(replay_stream(answer, include_usage=True)))


@pytest.mark.parametrize("bad", [
    {**HEAD, "choices": []},
    {**HEAD, "choices": EXPECTED["text"]["choices"] * 2},
    {**HEAD, "choices": [{"index": 0, "message": {"role": "assistant", "content": [
        {"type": "text", "text": "Hi"}]}, "finish_reason": "stop"}]},
    {**HEAD, "choices": [{"index": 0, "message": {"role": "assistant", "content": None,
        "tool_calls": [{"id": "c", "type": "custom", "custom": {}}]}, "finish_reason": "stop"}]},
])
def test_what_cannot_be_replayed_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        replay_stream(bad, include_usage=False)


# -- the openai SDK reads the replayed stream as the answer -----------------------------------


def sdk(content: bytes | dict[str, Any]) -> openai.OpenAI:
    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/chat/completions"
        if isinstance(content, dict):
            return httpx2.Response(200, json=content)
        return httpx2.Response(200, headers=SSE_HEADERS, content=content)

    return openai.OpenAI(api_key="sk-app", base_url="https://api.openai.com/v1", max_retries=0,
                         http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
                         _strict_response_validation=True)


ASK: dict[str, Any] = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize("name", ["text", "tool_calls", "refusal"])
@pytest.mark.parametrize("include_usage", [True, False])
def test_the_sdk_streams_the_replayed_answer(name: str, include_usage: bool) -> None:
    answer = EXPECTED[name]
    message = answer["choices"][0]["message"]
    raw = b"".join(replay_stream(answer, include_usage=include_usage, chunk_chars=5))
    text, refusal, usage, finish = "", "", None, None
    calls: dict[int, dict[str, Any]] = {}
    for got in sdk(raw).chat.completions.create(**ASK, stream=True):
        assert (got.id, got.model, got.created) == ("chatcmpl-1", MODEL, 1700000000)
        usage = got.usage or usage
        for choice in got.choices:
            text += choice.delta.content or ""
            refusal += choice.delta.refusal or ""
            finish = choice.finish_reason or finish
            for tool in choice.delta.tool_calls or []:
                entry = calls.setdefault(tool.index, {"id": tool.id, "args": ""})
                assert tool.function is not None
                entry["args"] += tool.function.arguments or ""
    assert text == (message["content"] or "") and refusal == (message["refusal"] or "")
    assert finish == answer["choices"][0]["finish_reason"]
    assert [(c["id"], c["args"]) for _, c in sorted(calls.items())] == [
        (t["id"], t["function"]["arguments"]) for t in message.get("tool_calls", [])]
    assert (usage.model_dump(exclude_none=True) if usage else None) == (
        USAGE if include_usage else None)


@pytest.mark.parametrize("name", ["text", "tool_calls", "refusal", "empty"])
@pytest.mark.parametrize("include_usage", [True, False])
def test_the_sdk_stream_helper_accumulates_the_answer(name: str, include_usage: bool) -> None:
    answer = EXPECTED[name]
    raw = b"".join(replay_stream(answer, include_usage=include_usage, chunk_chars=3))
    with sdk(raw).chat.completions.stream(**ASK) as stream:
        final = stream.get_final_completion()
    got = final.model_dump(mode="json", exclude_none=True)
    expected = json.loads(json.dumps(answer))
    if not include_usage:
        expected.pop("usage")
    message = expected["choices"][0]["message"]
    for key in ("content", "refusal", "system_fingerprint", "logprobs"):
        for holder in (message, expected, expected["choices"][0]):
            if holder.get(key) is None:
                holder.pop(key, None)
    got_message = got["choices"][0]["message"]
    got_message.pop("parsed", None)
    for tool in got_message.get("tool_calls", []):
        tool["function"].pop("parsed_arguments", None)
        tool.pop("index")
    assert got == expected


@pytest.mark.parametrize("name", ["text", "tool_calls", "reasoning"])
def test_the_sdk_reads_the_assembled_completion_as_json(name: str) -> None:
    answer = assemble(b"".join(replay_stream(EXPECTED[name], include_usage=True)))
    assert answer is not None
    got = sdk(answer).chat.completions.create(**ASK)
    assert got.choices[0].message.content == answer["choices"][0]["message"]["content"]
    assert got.usage is not None and got.usage.total_tokens == 18
    assert got.model_dump(mode="json")["choices"][0]["message"].get("reasoning_content") == (
        answer["choices"][0]["message"].get("reasoning_content"))
