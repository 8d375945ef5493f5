"""The official ``openai`` SDK, with strict response validation, parses what the translators make.

``ChatRoute`` plays a translated route in-process: the SDK's ``POST /v1/responses`` body goes
through ``to_chat_request`` to a scripted chat provider (or the loopback ``FakeOpenAI``), and its
chat answer comes back through ``to_responses_object`` or the SSE translator, served by an
``httpx2.MockTransport`` (the HTTP client the SDK is built on).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import openai
import pytest
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseFunctionToolCall,
    ResponseIncompleteEvent,
)
from pydantic import BaseModel

from sidecar.apis.responses import (
    SSE_HEADERS,
    ChatSSEToResponsesSSE,
    ChatToResponsesStream,
    to_chat_request,
    to_responses_object,
)
from sidecar.core.errors import SidecarError, render_openai_error
from tests.fakes.openai_upstream import FakeOpenAI

from .chat_streams import ROLE, SCENARIOS, Chunk, call, chunk, completion_of, ending, sse

SERVED = "claude-haiku"
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"], "additionalProperties": False},
           "strict": True}
WEATHER_CALL = [ROLE, chunk(call(0, "call_w1", "get_weather", '{"city":')),
                chunk(call(0, arguments='"Paris"}')), *ending("tool_calls")]


class ChatRoute:
    """A translated route: scripted chat answers (chunk lists), one per call, FIFO."""

    def __init__(self, *answers: list[Chunk], piece: int = 7) -> None:
        self.answers = list(answers)
        self.piece = piece  # upstream bytes arrive in pieces this small
        self.chat_requests: list[dict[str, Any]] = []
        self.produced: list[bytes] = []  # translated events, in the order they were made

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/responses"
        body = json.loads(request.content)
        try:
            chat = to_chat_request(body, model=SERVED)
        except SidecarError as exc:
            status, raw, headers = render_openai_error(exc)
            return httpx2.Response(status, headers=headers, content=raw)
        self.chat_requests.append(chat)
        chunks = self.answers.pop(0)
        rid = f"resp_{len(self.chat_requests)}"
        if chat.get("stream"):
            return httpx2.Response(200, headers=SSE_HEADERS,
                                   content=self._stream(body, rid, sse(chunks)))
        answer = to_responses_object(completion_of(chunks), request=body, response_id=rid,
                                     created_at=1700000000)
        return httpx2.Response(200, json=answer)

    def _stream(self, body: dict[str, Any], rid: str, raw: bytes) -> Iterator[bytes]:
        translate = ChatSSEToResponsesSSE(ChatToResponsesStream(body, rid, 1700000000))
        pieces = [raw[i:i + self.piece] for i in range(0, len(raw), self.piece)] + [b""]
        for piece in pieces:
            for event in translate(piece):
                self.produced.append(event)
                yield event

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(
            api_key="sk-app", base_url="https://api.openai.com/v1", max_retries=0,
            http_client=httpx2.Client(transport=httpx2.MockTransport(self.handler)),
            _strict_response_validation=True,
        )


def test_create_returns_a_complete_response() -> None:
    route = ChatRoute(SCENARIOS["text"])
    response = route.client().responses.create(model="gpt-4o", input="Hi",
                                               instructions="Be brief.")
    assert isinstance(response, Response)
    assert response.output_text == "Héllo 🌍!" and response.status == "completed"
    assert response.model == SERVED and response.instructions == "Be brief."
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens,
            response.usage.total_tokens) == (11, 7, 18)
    assert route.chat_requests == [{"model": SERVED, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}]


def test_create_with_a_function_call() -> None:
    response = ChatRoute(WEATHER_CALL).client().responses.create(
        model="gpt-4o", input="Weather in Paris?", tools=[WEATHER])  # type: ignore[list-item]
    (item,) = response.output
    assert isinstance(item, ResponseFunctionToolCall)
    assert (item.call_id, item.name, json.loads(item.arguments)) == (
        "call_w1", "get_weather", {"city": "Paris"})
    assert response.output_text == ""
    assert response.tools[0].type == "function"


def test_streamed_events_have_the_right_types_and_arrive_incrementally() -> None:
    route = ChatRoute(SCENARIOS["text"])
    seen, deltas = [], []
    for event in route.client().responses.create(model="gpt-4o", input="Hi", stream=True):
        seen.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
            assert not any(b"response.completed" in e for e in route.produced), \
                "the translator must not hold the stream back"
    assert seen[:4] == ["response.created", "response.in_progress",
                        "response.output_item.added", "response.content_part.added"]
    assert seen[-4:] == ["response.output_text.done", "response.content_part.done",
                         "response.output_item.done", "response.completed"]
    assert deltas == ["Hé", "llo 🌍", "!"]


def test_stream_helper_final_response_with_text_and_calls() -> None:
    chunks = SCENARIOS["tool_calls"]
    tools = [WEATHER, {"type": "function", "name": "get_time", "parameters": {},
                       "strict": False}]
    with ChatRoute(chunks).client().responses.stream(
        model="gpt-4o", input="Weather and time?", tools=tools,  # type: ignore[arg-type]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[-1] == "response.completed"
    assert final.output_text == "Checking."
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.name, c.parsed_arguments) for c in calls] == [
        ("get_weather", {"city": "Paris"}), ("get_time", None)]  # strict tools are parsed
    assert final.usage is not None and final.usage.total_tokens == 18


def test_parse_with_a_pydantic_text_format() -> None:
    class Answer(BaseModel):
        city: str
        celsius: int

    text = [ROLE, chunk({"content": '{"city": "Paris", '}), chunk({"content": '"celsius": 18}'}),
            *ending()]
    route = ChatRoute(text, text)
    client = route.client()
    parsed = client.responses.parse(model="gpt-4o", input="Paris?", text_format=Answer)
    assert parsed.output_parsed == Answer(city="Paris", celsius=18)
    with client.responses.stream(model="gpt-4o", input="Paris?", text_format=Answer) as stream:
        assert stream.get_final_response().output_parsed == Answer(city="Paris", celsius=18)
    response_format = route.chat_requests[0]["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "Answer"
    assert response_format["json_schema"]["strict"] is True


def test_function_tool_round_trip() -> None:
    """The SDK sends the call and its output back; the chat provider sees tool messages."""
    route = ChatRoute(WEATHER_CALL, SCENARIOS["text"])
    client = route.client()
    history: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.responses.create(model="gpt-4o", input=history,
                                    tools=[WEATHER])  # type: ignore[list-item]
    history += first.output  # SDK objects, as the OpenAI docs show
    call_item = first.output[0]
    assert isinstance(call_item, ResponseFunctionToolCall)
    history.append({"type": "function_call_output", "call_id": call_item.call_id,
                    "output": json.dumps({"celsius": 18})})
    second = client.responses.create(model="gpt-4o", input=history,
                                     tools=[WEATHER])  # type: ignore[list-item]
    assert second.output_text == "Héllo 🌍!"
    assert route.chat_requests[1]["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_w1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_w1", "content": '{"celsius": 18}'},
    ]


def test_incomplete_answers() -> None:
    route = ChatRoute(SCENARIOS["length"], SCENARIOS["length"])
    client = route.client()
    response = client.responses.create(model="gpt-4o", input="Long story", max_output_tokens=4)
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert route.chat_requests[0]["max_completion_tokens"] == 4
    events = list(client.responses.create(model="gpt-4o", input="Long story", stream=True))
    assert isinstance(events[-1], ResponseIncompleteEvent)
    assert events[-1].response.output_text == "Once upon"


def test_a_failed_stream_surfaces_and_has_no_final_response() -> None:
    cut = [ROLE, chunk({"content": "Hal"})]  # the provider's stream ends here
    route = ChatRoute(cut, cut)
    client = route.client()
    events = list(client.responses.create(model="gpt-4o", input="Hi", stream=True))
    assert isinstance(events[-2], ResponseErrorEvent) and events[-2].code == "stream_truncated"
    assert isinstance(events[-1], ResponseFailedEvent)
    assert events[-1].response.status == "failed"
    assert not any(isinstance(e, ResponseCompletedEvent) for e in events)
    with client.responses.stream(model="gpt-4o", input="Hi") as stream:
        for _ in stream:
            pass
        with pytest.raises(RuntimeError, match="response.completed"):
            stream.get_final_response()


def test_native_only_feature_is_an_sdk_bad_request_naming_feature_and_model() -> None:
    client = ChatRoute().client()
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-4o", input="Hi", previous_response_id="resp_0")
    assert info.value.status_code == 400
    assert info.value.code == "unsupported_parameter"
    assert info.value.param == "previous_response_id"
    assert "previous_response_id" in info.value.message and SERVED in info.value.message
    with pytest.raises(openai.BadRequestError, match="web_search tool"):
        client.responses.create(model="gpt-4o", input="Hi", tools=[{"type": "web_search"}])


async def test_async_client_parses_json_and_stream() -> None:
    route = ChatRoute(SCENARIOS["reasoning"], SCENARIOS["reasoning"])

    async def handler(request: httpx2.Request) -> httpx2.Response:
        response = route.handler(request)
        return httpx2.Response(response.status_code, headers=response.headers,
                               content=b"".join(response.iter_bytes()))

    client = openai.AsyncOpenAI(
        api_key="sk-app", base_url="https://api.openai.com/v1", max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
        _strict_response_validation=True)
    response = await client.responses.create(model="gpt-4o", input="2+2?")
    assert response.output_text == "4" and response.output[0].type == "reasoning"
    async with client.responses.stream(model="gpt-4o", input="2+2?") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert "response.reasoning_text.delta" in kinds
    assert final.output_text == "4"


def test_real_chat_bytes_from_the_loopback_fake_provider() -> None:
    """The chat leg over real HTTP: the fake OpenAI-compatible server's own SSE bytes."""
    with FakeOpenAI(name="chat-only", reply="Routed through chat completions",
                    stream_chunks=4) as fake, httpx.Client() as http:

        def handler(request: httpx2.Request) -> httpx2.Response:
            body = json.loads(request.content)
            chat = to_chat_request(body, model="gpt-4o-mini")
            if not chat.get("stream"):
                answer = http.post(f"{fake.base_url}/chat/completions", json=chat).json()
                return httpx2.Response(200, json=to_responses_object(
                    answer, request=body, response_id="resp_f", created_at=1700000000))
            translate = ChatSSEToResponsesSSE(ChatToResponsesStream(body, "resp_f", 1700000000))
            out: list[bytes] = []
            with http.stream("POST", f"{fake.base_url}/chat/completions", json=chat) as up:
                for data in up.iter_raw():
                    out += translate(data)
            return httpx2.Response(200, headers=SSE_HEADERS, content=b"".join(out + translate(b"")))

        client = openai.OpenAI(
            api_key="sk-app", base_url="https://api.openai.com/v1", max_retries=0,
            http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
            _strict_response_validation=True)
        plain = client.responses.create(model="gpt-4o", input="Hi")
        with client.responses.stream(model="gpt-4o", input="Hi") as stream:
            deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
            final = stream.get_final_response()
    assert plain.output_text == final.output_text == "Routed through chat completions"
    assert len(deltas) == 4 and final.model == "gpt-4o-mini"
    assert final.usage is not None and final.usage.output_tokens == 4
