"""The native Responses fake answers like api.openai.com: the strict SDK parses it over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import ResponseFunctionToolCall, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.fakes.responses_upstream import FakeResponses

TOOL = {"type": "function", "name": "get_weather", "strict": True,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"], "additionalProperties": False}}


@pytest.fixture
def fake() -> Iterator[FakeResponses]:
    with FakeResponses(reply="Native answer here", tool_call=("get_weather", '{"city":"Oslo"}'),
                       stream_chunks=3) as server:
        yield server


def client(fake: FakeResponses) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-app", base_url=fake.base_url, max_retries=0,
                         _strict_response_validation=True)


def test_plain_and_streamed(fake: FakeResponses) -> None:
    sdk = client(fake)
    assert sdk.responses.create(model="gpt-4o", input="Hi").output_text == "Native answer here"
    deltas = [e.delta for e in sdk.responses.create(model="gpt-4o", input="Hi", stream=True)
              if e.type == "response.output_text.delta"]
    assert deltas == ["Native", " answer", " here"]
    with sdk.responses.stream(model="gpt-4o", input="Hi") as stream:
        assert stream.get_final_response().usage is not None
    assert [r.json["model"] for r in fake.requests] == ["gpt-4o"] * 3


def test_function_call_round_trip(fake: FakeResponses) -> None:
    sdk = client(fake)
    history: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
    with sdk.responses.stream(model="gpt-4o", input=history,
                              tools=[TOOL]) as stream:  # type: ignore[list-item]
        first = stream.get_final_response()
    (call,) = first.output
    assert isinstance(call, ResponseFunctionToolCall)
    assert call.parsed_arguments == {"city": "Oslo"}  # type: ignore[attr-defined]
    history += [*first.output, {"type": "function_call_output", "call_id": call.call_id,
                                "output": "-3C"}]
    second = sdk.responses.create(model="gpt-4o", input=history, tools=[TOOL])  # type: ignore
    assert second.output_text == "Native answer here"


def test_raw_events_are_valid_and_the_other_endpoints_still_work(fake: FakeResponses) -> None:
    with httpx.stream("POST", f"{fake.base_url}/responses",
                      json={"model": "m", "input": "x", "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in response.iter_lines()
                  if line.startswith("data: ")]
    adapter = TypeAdapter(ResponseStreamEvent)
    for event in events:
        adapter.validate_python(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    chat = httpx.post(f"{fake.base_url}/chat/completions",
                      json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert chat.json()["choices"][0]["message"]["content"] == "Native answer here"
    bad = httpx.post(f"{fake.base_url}/responses", json={"model": "m"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"
