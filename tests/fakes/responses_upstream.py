"""A fake provider with a native Responses API, on loopback: ``POST .../responses``.

``FakeResponses`` is a ``FakeOpenAI`` (so chat completions, models, embeddings and scripted
answers work the same) that also answers the Responses API the way ``api.openai.com`` does:

* JSON: a ``response`` object with a ``message`` output item (one ``output_text`` part) and
  usage; or, when ``tool_call=(name, arguments)`` is set, the request declares that function
  tool and its ``input`` does not end with a ``function_call_output``, a ``function_call`` item;
* ``"stream": true``: chunked ``text/event-stream`` of ``event: <type>`` / ``data: <json>``
  events with ``sequence_number``: ``response.created``, ``response.in_progress``, the item's
  ``added`` / part / deltas (one per word, or ``stream_chunks``, ``stream_delay`` apart) /
  ``done`` events, ``response.completed`` - no ``[DONE]``, as OpenAI sends it;
* a body without ``model`` or ``input`` (and no ``previous_response_id``) gets OpenAI's 400.

Written from the API reference, independently of ``sidecar.responses`` (the code under test):
https://platform.openai.com/docs/api-reference/responses-streaming
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from tests.fakes.openai_upstream import (
    FakeOpenAI,
    RecordedRequest,
    Responder,
    ScriptedAnswer,
    json_bytes,
    openai_error,
    split_reply,
)

Obj = dict[str, Any]


class FakeResponses(FakeOpenAI):
    """``FakeOpenAI`` plus ``POST /v1/responses``; see the module docstring."""

    def __init__(self, name: str = "fake-responses", *,
                 tool_call: tuple[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.tool_call = tool_call

    async def _route(self, request: RecordedRequest, responder: Responder, seq: int,
                     answer: ScriptedAnswer) -> None:
        path = request.url_path.rstrip("/")
        if request.method == "POST" and path == f"{self.prefix}/responses":
            await self._responses(request, responder, seq, answer)
        else:
            await super()._route(request, responder, seq, answer)

    async def _responses(self, request: RecordedRequest, responder: Responder, seq: int,
                         answer: ScriptedAnswer) -> None:
        body = request.json
        problem = _problem(body)
        if problem is not None:
            await self._json(responder, 400, problem, seq, answer)
            return
        reply = _Reply(self, request, seq)
        if body.get("stream") is not True:
            await self._json(responder, 200, reply.response("completed", final=True), seq, answer)
            return
        headers = self._base_headers(seq, "text/event-stream; charset=utf-8")
        await self._send_stream(responder, answer, headers, reply.events())


def _problem(body: Any) -> Obj | None:
    if not isinstance(body, dict):
        return openai_error("We could not parse the JSON body of your request.",
                            "invalid_request_error", None)
    for param in ("model", "input"):
        if param not in body and not (param == "input" and body.get("previous_response_id")):
            return openai_error(f"Missing required parameter: '{param}'.",
                                "invalid_request_error", "missing_required_parameter", param)
    return None


class _Reply:
    """One answer: its items, the ``response`` object around them, and its SSE events."""

    def __init__(self, fake: FakeResponses, request: RecordedRequest, seq: int) -> None:
        self.body: Obj = request.json
        self.seq, self.fake = seq, fake
        self.created = int(time.time())
        self.call = _wanted_call(self.body, fake.tool_call)
        self.text = "" if self.call else fake._reply_text(request, self.body["model"])
        self.pieces = split_reply(self.text, fake.stream_chunks) if self.text else []
        self._sequence = 0

    def item(self, status: str, *, full: bool) -> Obj:
        if self.call:
            name, arguments = self.call
            return {"id": f"fc_fake{self.seq}", "type": "function_call", "status": status,
                    "call_id": f"call_fake{self.seq}", "name": name,
                    "arguments": arguments if full else ""}
        content = [self.part(self.text)] if full else []
        return {"id": f"msg_fake{self.seq}", "type": "message", "status": status,
                "role": "assistant", "content": content}

    @staticmethod
    def part(text: str) -> Obj:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def response(self, status: str, *, final: bool) -> Obj:
        body = self.body
        output_tokens = len(self.text.split()) or 1
        input_tokens = len(json.dumps(body.get("input", ""))) // 4 + 1
        return {
            "id": f"resp_fake{self.seq}", "object": "response", "created_at": self.created,
            "status": status, "completed_at": self.created if final else None, "error": None,
            "incomplete_details": None, "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"), "model": body["model"],
            "output": [self.item("completed", full=True)] if final else [],
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None}, "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0), "text": {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools", []),
            "top_p": body.get("top_p", 1.0), "truncation": "disabled", "metadata": {},
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + output_tokens,
            } if final else None,
        }

    def events(self) -> Iterator[tuple[float, bytes]]:
        """(seconds to sleep first, SSE event bytes) for the whole streamed answer."""
        at = {"output_index": 0}
        item_at = {"item_id": self.item("", full=False)["id"], **at}
        yield 0.0, self.event("response.created", response=self.response("in_progress",
                                                                          final=False))
        yield 0.0, self.event("response.in_progress", response=self.response("in_progress",
                                                                              final=False))
        yield 0.0, self.event("response.output_item.added", **at,
                              item=self.item("in_progress", full=False))
        if self.call:
            yield self.fake.stream_delay, self.event(
                "response.function_call_arguments.delta", **item_at, delta=self.call[1])
            yield 0.0, self.event("response.function_call_arguments.done", **item_at,
                                  arguments=self.call[1])
        else:
            text_at = {**item_at, "content_index": 0}
            yield 0.0, self.event("response.content_part.added", **text_at, part=self.part(""))
            for piece in self.pieces:
                yield self.fake.stream_delay, self.event(
                    "response.output_text.delta", **text_at, delta=piece, logprobs=[])
            yield 0.0, self.event("response.output_text.done", **text_at, text=self.text,
                                  logprobs=[])
            yield 0.0, self.event("response.content_part.done", **text_at,
                                  part=self.part(self.text))
        yield 0.0, self.event("response.output_item.done", **at,
                              item=self.item("completed", full=True))
        yield 0.0, self.event("response.completed", response=self.response("completed",
                                                                            final=True))

    def event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return f"event: {kind}\ndata: ".encode() + json_bytes(payload) + b"\n\n"


def _wanted_call(body: Obj, tool_call: tuple[str, str] | None) -> tuple[str, str] | None:
    """The scripted call, if the request declares that tool and is not answering a call."""
    if tool_call is None:
        return None
    names = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
    items = body.get("input")
    last = items[-1] if isinstance(items, list) and items else None
    answered = isinstance(last, dict) and last.get("type") == "function_call_output"
    return tool_call if tool_call[0] in names and not answered else None

