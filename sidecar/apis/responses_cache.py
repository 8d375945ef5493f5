"""Cached Responses API answers: one canonical form, the completed ``response`` object, served as
JSON or as a stream (pure; the Responses counterpart of ``sidecar.apis.chat_cache``).

* ``ResponsesStreamAssembler`` reads a Responses stream (the SSE bytes the app received, split
  anywhere); ``result()`` is the ``response`` of its ``response.completed`` event, or None
  unless the stream is complete and replayable: a ``response.completed`` event arrived, whole,
  with ``status: "completed"``, before any ``error`` / ``response.failed`` /
  ``response.incomplete`` event or data that is not JSON, and its output items are ones
  ``replay_responses_stream`` can replay.
* ``replay_responses_stream(response)`` makes the SSE events a provider would have sent for it
  (each ``event: <type>\\ndata: <json>\\n\\n``, ``sequence_number`` from 0); assembling them
  gives the object back.

Replayable output items: ``message`` (``output_text`` and ``refusal`` parts), ``function_call``
and ``reasoning`` (replayed as ``output_item.added`` / ``output_item.done`` only). Other items
(hosted tool calls, custom tool calls, ...) are refused: their streams carry events of their own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from sidecar.apis.sse import SSEReader

_FAILED = frozenset({"error", "response.failed", "response.incomplete"})
_PART_TEXT = {"output_text": "text", "refusal": "refusal"}  # part type -> its text field


class ResponsesStreamAssembler:
    """Feed it the bytes of a Responses stream (``feed``), in pieces of any size; ``result()``.
    With ``max_chars``, it gives up (``failed``, what it held let go) once more than that many
    bytes of stream data arrived, so a stream too big to cache costs no memory."""

    def __init__(self, *, max_chars: int | None = None) -> None:
        self.max_chars = max_chars  # more stream data than this (bytes): give up
        self._size = 0
        self._sse = SSEReader()
        self.failed = False
        self.done = False
        self._response: dict[str, Any] | None = None

    def feed(self, data: bytes) -> None:
        if self.failed or self.done:
            return
        self._size += len(data)
        if self.max_chars is not None and self._size > self.max_chars:
            self._give_up()
            return
        for event, payload in self._sse.feed(data):
            self._dispatch(event, payload)
            if self.failed or self.done:
                self._sse.clear()
                return

    def _dispatch(self, event: str, data: bytes) -> None:
        if event in _FAILED:
            self.failed = True
            return
        if not data or data.strip() == b"[DONE]":
            return
        try:
            payload = json.loads(data)
        except ValueError:
            self.failed = True
            return
        if not isinstance(payload, dict) or ("error" in payload and "type" not in payload):
            self.failed = True  # a bare ``{"error": ...}`` event
            return
        kind = payload.get("type")
        kind = kind if isinstance(kind, str) and kind else event
        if kind in _FAILED:
            self.failed = True
        elif kind == "response.completed":
            response = payload.get("response")
            try:
                check_completed(response)
            except ValueError:
                self.failed = True
                return
            self._response, self.done = dict(response or {}), True

    def _give_up(self) -> None:
        """Too big to keep: fail, and let go of what was gathered."""
        self.failed = True
        self._sse.clear()
        self._response = None

    def result(self) -> dict[str, Any] | None:
        """The ``response`` of a complete, replayable stream's ``response.completed``; else None."""
        if self.failed or not self.done:
            return None
        return self._response


def check_completed(response: object) -> None:
    """Raises ValueError unless ``response`` is a completed Responses object whose output
    ``replay_responses_stream`` can replay."""
    if not isinstance(response, Mapping) or response.get("object", "response") != "response":
        raise ValueError("not a Responses object")
    if not isinstance(response.get("id"), str) or response.get("status") != "completed":
        raise ValueError("not a completed response")
    output = response.get("output")
    if not isinstance(output, list):
        raise ValueError("the response's output is not a list")
    for item in output:
        _check_item(item)


def _check_item(item: object) -> None:
    if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
        raise ValueError("an output item without an id")
    kind = item.get("type")
    if kind == "message":
        parts = item.get("content")
        if not isinstance(parts, list) or not all(
                isinstance(p, Mapping) and p.get("type") in _PART_TEXT
                and isinstance(p.get(_PART_TEXT[p["type"]]), str) for p in parts):
            raise ValueError("a message with content other than output_text and refusal parts")
    elif kind == "function_call":
        if not all(isinstance(item.get(k), str) for k in ("call_id", "name", "arguments")):
            raise ValueError("a function_call without call_id, name or arguments")
    elif kind != "reasoning":
        raise ValueError(f"output items of type {kind!r} cannot be replayed")


def replay_responses_stream(response: Mapping[str, Any], *,
                            chunk_chars: int = 64) -> list[bytes]:
    """The SSE events of the completed ``response``: ``response.created`` and
    ``response.in_progress`` (status in_progress, no output, no usage), each output item in
    order (text and arguments in deltas of ``chunk_chars`` characters), ``response.completed``
    with the whole object. Raises ValueError for anything ``check_completed`` refuses."""
    if chunk_chars < 1:
        raise ValueError("chunk_chars must be at least 1")
    check_completed(response)
    out: list[bytes] = []

    def event(kind: str, **fields: Any) -> None:
        out.append(_sse({"type": kind, **fields, "sequence_number": len(out)}))

    start = {**response, "status": "in_progress", "output": []}
    for key in ("usage", "completed_at", "incomplete_details", "error"):
        if key in start:
            start[key] = None
    event("response.created", response=start)
    event("response.in_progress", response=start)
    for index, item in enumerate(response["output"]):
        at = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            event("response.output_item.added", output_index=index,
                  item=_in_progress(item, content=[]))
            for part_index, part in enumerate(item["content"]):
                _replay_part(event, {**at, "content_index": part_index}, part, chunk_chars)
        elif item["type"] == "function_call":
            event("response.output_item.added", output_index=index,
                  item=_in_progress(item, arguments=""))
            for piece in _pieces(item["arguments"], chunk_chars):
                event("response.function_call_arguments.delta", **at, delta=piece)
            event("response.function_call_arguments.done", **at, arguments=item["arguments"])
        else:  # reasoning: its summary and text arrive with output_item.done
            emptied: dict[str, list[Any]] = {k: [] for k in ("summary", "content") if k in item}
            event("response.output_item.added", output_index=index,
                  item=_in_progress(item, **emptied))
        event("response.output_item.done", output_index=index, item=item)
    event("response.completed", response=response)
    return out


def _replay_part(event: Callable[..., None], at: dict[str, Any], part: Mapping[str, Any],
                 chunk_chars: int) -> None:
    kind = part["type"]
    key = _PART_TEXT[kind]
    text: str = part[key]
    empty: dict[str, Any] = {**part, key: ""}
    for listed in ("annotations", "logprobs"):
        if listed in empty:
            empty[listed] = []
    event("response.content_part.added", **at, part=empty)
    if kind == "output_text":
        for piece in _pieces(text, chunk_chars):
            event("response.output_text.delta", **at, delta=piece, logprobs=[])
        event("response.output_text.done", **at, text=text, logprobs=part.get("logprobs") or [])
    else:
        for piece in _pieces(text, chunk_chars):
            event("response.refusal.delta", **at, delta=piece)
        event("response.refusal.done", **at, refusal=text)
    event("response.content_part.done", **at, part=part)


def _in_progress(item: Mapping[str, Any], **empty: Any) -> dict[str, Any]:
    """``item`` as ``output_item.added`` shows it: no text yet, in progress."""
    started = {**item, **empty}
    if "status" in started:
        started["status"] = "in_progress"
    return started


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def _sse(payload: Mapping[str, Any]) -> bytes:
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"event: {payload['type']}\ndata: {data}\n".encode("utf-8", "surrogatepass") + b"\n"
