"""chat.completion.chunk stream -> Responses API SSE events (one direction, stateful, pure).

Direction: chat stream -> Responses stream. References:
https://platform.openai.com/docs/api-reference/chat-streaming (input) and
https://platform.openai.com/docs/api-reference/responses-streaming (output).

``ChatToResponsesStream`` takes parsed chunks (``sse.ChatSSEToResponsesSSE`` wraps it for raw SSE
bytes). Events, each ``event: <type>\\ndata: <json>\\n\\n`` with a ``sequence_number``:

* ``response.created``, ``response.in_progress`` (on the first chunk);
* per output item, in order of appearance: ``response.output_item.added``; for a message or
  reasoning item ``response.content_part.added``, ``response.output_text.delta`` (or
  ``refusal`` / ``reasoning_text``) ..., ``....done``, ``response.content_part.done``; for a
  function call ``response.function_call_arguments.delta`` ..., ``.done``; then
  ``response.output_item.done``. Starting a new item closes the open message/reasoning item;
  tool calls stay open until a non-tool item starts or the finish chunk (chat streams may
  interleave parallel calls' deltas);
* ``response.completed`` / ``response.incomplete`` (with usage from the usage chunk) at
  ``[DONE]`` or the end of input, once a ``finish_reason`` arrived;
* otherwise (an ``{"error": ...}`` event, a stream cut before its ``finish_reason``, a chunk
  that cannot be translated): ``error`` then ``response.failed``, never a made-up completion.
  After the terminal event everything is swallowed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.apis.responses.objects import (
    Obj,
    envelope,
    finish,
    function_call_item,
    item_id,
    message_item,
    outcome,
    reasoning_item,
    reasoning_of,
    response_error,
    text_part,
    usage_from_chat,
)
from sidecar.core.errors import TranslationError

SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
"""Response headers for the translated stream (drop the upstream content-length)."""
TRUNCATED = {"message": "The provider's stream ended before the answer was complete",
             "type": "api_error", "param": None, "code": "stream_truncated"}
_PART_EVENTS = {"output_text": ("response.output_text", "text"),
                "refusal": ("response.refusal", "refusal"),
                "reasoning_text": ("response.reasoning_text", "text")}
_ID_PREFIX = {"message": "msg", "reasoning": "rs", "function_call": "fc"}


@dataclass
class _Item:
    kind: str  # message | reasoning | function_call
    id: str
    index: int
    parts: list[list[str]] = field(default_factory=list)  # [part kind, text so far]
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    status: str = "in_progress"

    def snapshot(self) -> Obj:
        if self.kind == "function_call":
            return function_call_item(self.id, call_id=self.call_id, name=self.name,
                                      arguments=self.arguments, status=self.status)
        if self.kind == "reasoning":
            return reasoning_item(self.id, "".join(t for _, t in self.parts), self.status)
        return message_item(self.id, [_part(k, t) for k, t in self.parts], self.status)


def _part(kind: str, text: str) -> Obj:
    return {"type": kind, "text": text} if kind == "reasoning_text" else text_part(kind, text)


class ChatToResponsesStream:
    """Parsed chat chunks in, Responses SSE event bytes out. ``usage`` keeps the chat-format
    usage (for accounting), ``status`` the final status, ``error`` the OpenAI error on failure."""

    def __init__(self, request: Mapping[str, Any], response_id: str, created_at: int, *,
                 model: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.request, self.response_id, self.created_at = request, response_id, created_at
        self.model = model
        self.clock = clock
        self.usage: Obj | None = None
        self.finish_reason: str | None = None
        self.status: str | None = None
        self.error: Obj | None = None
        self.closed = False
        self._seq = 0
        self._started = False
        self._items: list[_Item] = []
        self._tools: dict[int, _Item] = {}  # chat tool_calls index -> item
        self._text: _Item | None = None  # the open message or reasoning item
        self._service_tier: str | None = None

    # -- public --------------------------------------------------------------------------------

    def start(self, model: str | None = None) -> list[bytes]:
        """``response.created`` and ``response.in_progress``, once."""
        if self._started:
            return []
        self._started = True
        self.model = self.model or model or str(self.request.get("model") or "")
        return [self._event("response.created", response=self._envelope("in_progress")),
                self._event("response.in_progress", response=self._envelope("in_progress"))]

    def feed(self, chunk: Mapping[str, Any]) -> list[bytes]:
        """The events for one ``chat.completion.chunk``."""
        if self.closed:
            return []
        out = self.start(chunk.get("model") if isinstance(chunk, Mapping) else None)
        try:
            return out + self._chunk(chunk)
        except TranslationError as exc:
            return out + self.fail({"message": exc.message, "type": exc.type,
                                    "param": exc.param, "code": exc.code})

    def finish(self) -> list[bytes]:
        """The terminal events at ``[DONE]`` or the end of input."""
        if self.closed:
            return []
        if self.finish_reason is None:
            return self.fail(TRUNCATED)
        status, _ = outcome(self.finish_reason)
        response = finish(self._envelope(status), finish_reason=self.finish_reason,
                          output=[i.snapshot() for i in self._items],
                          usage=usage_from_chat(self.usage), completed_at=int(self.clock()))
        self.closed, self.status = True, status
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return [self._event(kind, response=response)]

    def fail(self, error: Mapping[str, Any]) -> list[bytes]:
        """``error`` and ``response.failed`` for the OpenAI error object ``error``."""
        if self.closed:
            return []
        out = self.start()
        self.closed, self.status, self.error = True, "failed", dict(error)
        message = str(error.get("message") or "The provider failed")
        out.append(self._event("error", code=error.get("code"), message=message,
                               param=error.get("param")))
        response = self._envelope("failed")
        response.update(output=[i.snapshot() for i in self._items], error=response_error(error))
        out.append(self._event("response.failed", response=response))
        return out

    # -- chunks --------------------------------------------------------------------------------

    def _chunk(self, chunk: object) -> list[bytes]:
        if not isinstance(chunk, Mapping):
            raise TranslationError("the provider sent a stream chunk that is not an object")
        if isinstance(chunk.get("usage"), Mapping):
            self.usage = dict(chunk["usage"])
        if chunk.get("service_tier"):
            self._service_tier = str(chunk["service_tier"])
        out: list[bytes] = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue  # n is 1 on a translated route
            delta = choice.get("delta")
            out += self._delta(delta if isinstance(delta, Mapping) else {})
            if choice.get("finish_reason"):
                out += self._finish_reason(str(choice["finish_reason"]))
        return out

    def _delta(self, delta: Mapping[str, Any]) -> list[bytes]:
        reasoning, content, refusal = reasoning_of(delta), delta.get("content"), delta.get("refusal")
        calls = delta.get("tool_calls") or []
        if self.finish_reason is not None:
            if reasoning or content or refusal or calls:
                raise TranslationError("the provider sent output after its finish_reason")
            return []
        out = self._add_text("reasoning", "reasoning_text", reasoning) if reasoning else []
        if isinstance(content, str) and content:
            out += self._add_text("message", "output_text", content)
        if isinstance(refusal, str) and refusal:
            out += self._add_text("message", "refusal", refusal)
        for call in calls if isinstance(calls, list) else []:
            out += self._add_tool(call)
        return out

    def _finish_reason(self, reason: str) -> list[bytes]:
        self.finish_reason = reason
        out = [] if self._items else self._add_text("message", "output_text", "")
        incomplete = outcome(reason)[0] == "incomplete"
        for item in [i for i in self._items if i.status == "in_progress"]:
            last = incomplete and item is self._items[-1]
            out += self._close(item, "incomplete" if last else "completed")
        self._text = None
        return out

    # -- items ---------------------------------------------------------------------------------

    def _add_text(self, kind: str, part_kind: str, text: str) -> list[bytes]:
        out: list[bytes] = []
        item = self._text
        if item is None or item.kind != kind:
            out += self._close_open()
            item = self._text = self._open(kind)
            out.append(self._added(item))
        if not item.parts or item.parts[-1][0] != part_kind:
            if item.parts:
                out += self._close_part(item)
            item.parts.append([part_kind, ""])
            out.append(self._event("response.content_part.added", **self._at(item),
                                   part=_part(part_kind, "")))
        if text:
            item.parts[-1][1] += text
            extra: Obj = {"logprobs": []} if part_kind == "output_text" else {}
            out.append(self._event(f"{_PART_EVENTS[part_kind][0]}.delta", **self._at(item),
                                   delta=text, **extra))
        return out

    def _add_tool(self, call: object) -> list[bytes]:
        if not isinstance(call, Mapping):
            raise TranslationError("the provider sent a tool call that is not an object")
        raw = call.get("function")
        function: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        index = self._tool_index(call)
        item, out = self._tools.get(index), []
        if item is None:
            out += self._close_text()
            item = self._tools[index] = self._open("function_call")
            item.call_id = str(call.get("id") or f"call_{item.id}")
            item.name = str(function.get("name") or "")
            out.append(self._added(item))
        elif item.status != "in_progress":
            raise TranslationError("the provider continued a tool call after other output")
        elif function.get("name") and not item.name:
            item.name = str(function["name"])
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            out += self._add_arguments(item, arguments)
        return out

    def _tool_index(self, call: Mapping[str, Any]) -> int:
        """The chat ``index``; providers that omit it send an id with each new call."""
        index = call.get("index")
        if isinstance(index, int) and not isinstance(index, bool):
            return index
        if not call.get("id"):
            return max(self._tools, default=0)
        known = [i for i, item in self._tools.items() if item.call_id == call["id"]]
        return known[0] if known else max(self._tools, default=-1) + 1

    def _open(self, kind: str) -> _Item:
        index = len(self._items)
        item = _Item(kind, item_id(_ID_PREFIX[kind], self.response_id, index), index)
        self._items.append(item)
        return item

    def _added(self, item: _Item) -> bytes:
        return self._event("response.output_item.added", output_index=item.index,
                           item=item.snapshot())

    def _close_open(self) -> list[bytes]:
        out = self._close_text()
        for item in self._tools.values():
            if item.status == "in_progress":
                out += self._close(item, "completed")
        return out

    def _close_text(self) -> list[bytes]:
        item, self._text = self._text, None
        return self._close(item, "completed") if item is not None else []

    def _close(self, item: _Item, status: str) -> list[bytes]:
        out = []
        if item.kind == "function_call":
            if not item.arguments:  # a call without arguments: "{}", as the API sends it
                out += self._add_arguments(item, "{}")
            out.append(self._event("response.function_call_arguments.done", item_id=item.id,
                                   output_index=item.index, arguments=item.arguments))
        elif item.parts:
            out += self._close_part(item)
        item.status = status
        out.append(self._event("response.output_item.done", output_index=item.index,
                               item=item.snapshot()))
        return out

    def _add_arguments(self, item: _Item, arguments: str) -> list[bytes]:
        item.arguments += arguments
        return [self._event("response.function_call_arguments.delta", item_id=item.id,
                            output_index=item.index, delta=arguments)]

    def _close_part(self, item: _Item) -> list[bytes]:
        kind, text = item.parts[-1]
        name, key = _PART_EVENTS[kind]
        extra: Obj = {"logprobs": []} if kind == "output_text" else {}
        return [self._event(f"{name}.done", **self._at(item), **{key: text}, **extra),
                self._event("response.content_part.done", **self._at(item),
                            part=_part(kind, text))]

    def _at(self, item: _Item) -> Obj:
        return {"item_id": item.id, "output_index": item.index,
                "content_index": len(item.parts) - 1}

    # -- output --------------------------------------------------------------------------------

    def _envelope(self, status: str) -> Obj:
        response = envelope(self.request, response_id=self.response_id,
                            created_at=self.created_at, model=self.model or "", status=status)
        if self._service_tier:
            response["service_tier"] = self._service_tier
        return response

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, **fields, "sequence_number": self._seq}
        self._seq += 1
        data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        return f"event: {kind}\ndata: {data}\n\n".encode()
