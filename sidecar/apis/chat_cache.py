"""Cached chat answers: one canonical form, the ``chat.completion`` object, served as JSON or as
a stream (pure).

* ``StreamAssembler`` adds up a chat stream (the SSE bytes the app received, split anywhere)
  into the ``chat.completion`` the same call answers without ``stream``; ``result()`` is None
  unless the stream is complete and replayable: it ended with ``data: [DONE]``, carried no error
  event, one choice (index 0) with a ``finish_reason``, no log probabilities and no delta field
  this module cannot replay (``audio``, ``annotations``, ``function_call``, ...).
* ``replay_stream(completion, include_usage=...)`` makes the SSE events a provider would have
  sent for it; assembling them gives the completion back.

The canonical message: ``role``, ``content`` (None unless a content delta carried a string),
``refusal`` (likewise), ``reasoning_content`` (the non-standard reasoning text, only when
there is some) and ``tool_calls`` (only when there are some: ``id``, ``type: function``,
``function: {name, arguments}``, in index order). The completion carries ``id``, ``created``,
``model``, ``system_fingerprint`` (and ``service_tier`` when the provider sent one), and
``usage`` when the stream had a usage chunk.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from sidecar.apis.sse import SSEReader

DONE = b"data: [DONE]\n\n"
TEXT_FIELDS = ("reasoning_content", "content", "refusal")  # in the order they are replayed
_KNOWN_DELTA = {"role", "tool_calls", *TEXT_FIELDS}


class StreamAssembler:
    """Feed it the bytes of a chat stream (``feed``), in pieces of any size; ``result()``.
    With ``max_chars``, it gives up (``failed``, its text let go) once the answer's text (content,
    refusal, reasoning, tool call names and arguments together) grows beyond that many
    characters, so a stream too big to cache costs no memory."""

    def __init__(self, *, max_chars: int | None = None) -> None:
        self.max_chars = max_chars  # more text than this (all fields together): give up
        self._chars = 0
        self._sse = SSEReader()
        self.failed = False
        self.done = False
        self._head: dict[str, Any] = {}
        self._role: str | None = None
        self._text: dict[str, list[str] | None] = dict.fromkeys(TEXT_FIELDS)  # None: not sent
        self._calls: dict[int, dict[str, Any]] = {}
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None
        self._chunks = 0

    def feed(self, data: bytes) -> None:
        if self.failed or self.done:
            return
        for event, payload in self._sse.feed(data):
            self._dispatch(event, payload)
            if self.failed or self.done:
                return
        if self.max_chars is not None and self._sse.pending > 12 * self.max_chars + 65536:
            self._give_up()  # one line longer than any event of an answer this size

    def _dispatch(self, event: str, data: bytes) -> None:
        if event == "error":
            self.failed = True
        elif data.strip() == b"[DONE]":
            self.done = True
        elif data:
            try:
                chunk = json.loads(data)
            except ValueError:
                self.failed = True
                return
            self._chunk(chunk)

    def _chunk(self, chunk: Any) -> None:
        if not isinstance(chunk, dict) or "error" in chunk:
            self.failed = True
            return
        if chunk.get("object", "chat.completion.chunk") != "chat.completion.chunk":
            return  # not a chunk (Azure's content-filter events); the SDK skips them too
        self._chunks += 1
        for key in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if self._head.get(key) is None and chunk.get(key) is not None:
                self._head[key] = chunk[key]
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            self.failed = True
            return
        for choice in choices:
            self._choice(choice)

    def _choice(self, choice: Any) -> None:
        if (not isinstance(choice, dict) or choice.get("index", 0) != 0
                or choice.get("logprobs") is not None):
            self.failed = True  # n > 1, or log probabilities: not replayable
            return
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict) or any(
                v not in (None, [], {}, "") for k, v in delta.items() if k not in _KNOWN_DELTA):
            self.failed = True
            return
        if isinstance(delta.get("role"), str):
            self._role = self._role or delta["role"]
        for key in TEXT_FIELDS:
            value = delta.get(key)
            if isinstance(value, str):
                pieces = self._text[key]
                if pieces is None:
                    pieces = self._text[key] = []
                pieces.append(value)
                self._count(value)
            elif value is not None:
                self.failed = True
        for call in delta.get("tool_calls") or []:
            self._tool_call(call)
        if choice.get("finish_reason") is not None:
            self._finish = choice["finish_reason"]

    def _tool_call(self, call: Any) -> None:
        function = call.get("function") if isinstance(call, dict) else None
        if (not isinstance(call, dict) or not isinstance(call.get("index"), int)
                or call.get("type") not in (None, "function")
                or not isinstance(function or {}, dict)):
            self.failed = True
            return
        entry = self._calls.setdefault(call["index"], {"id": None, "name": "", "arguments": []})
        if entry["id"] is None and isinstance(call.get("id"), str) and call["id"]:
            entry["id"] = call["id"]
        function = function or {}
        if isinstance(function.get("name"), str):
            entry["name"] += function["name"]
            self._count(function["name"])
        if isinstance(function.get("arguments"), str):
            entry["arguments"].append(function["arguments"])
            self._count(function["arguments"])

    def _count(self, text: str) -> None:
        self._chars += len(text)
        if self.max_chars is not None and self._chars > self.max_chars:
            self._give_up()

    def _give_up(self) -> None:
        """Too big to keep: fail, and let go of what was gathered."""
        self.failed = True
        self._sse.clear()
        self._text, self._calls = dict.fromkeys(TEXT_FIELDS), {}

    def result(self) -> dict[str, Any] | None:
        """The ``chat.completion`` of a complete, replayable stream; else None."""
        if self.failed or not self.done or self._finish is None or not self._chunks:
            return None
        message: dict[str, Any] = {"role": self._role or "assistant"}
        for key in ("content", "refusal"):
            pieces = self._text[key]
            message[key] = "".join(pieces) if pieces is not None else None
        reasoning = "".join(self._text["reasoning_content"] or [])
        if reasoning:
            message["reasoning_content"] = reasoning
        if self._calls:
            message["tool_calls"] = [
                {"id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": "".join(c["arguments"])}}
                for _, c in sorted(self._calls.items())]
        head = self._head
        out: dict[str, Any] = {"id": head.get("id"), "object": "chat.completion",
                               "created": head.get("created"), "model": head.get("model")}
        if "service_tier" in head:
            out["service_tier"] = head["service_tier"]
        out["system_fingerprint"] = head.get("system_fingerprint")
        out["choices"] = [{"index": 0, "message": message, "logprobs": None,
                           "finish_reason": self._finish}]
        if self._usage is not None:
            out["usage"] = self._usage
        return out


def replay_stream(completion: Mapping[str, Any], *, include_usage: bool,
                  chunk_chars: int = 64) -> list[bytes]:
    """The SSE events (each ``data: ...\\n\\n``, then ``data: [DONE]``) of ``completion``: a role
    chunk, text pieces of ``chunk_chars`` characters, each tool call (id, type and name, then
    argument pieces), the finish chunk, and the usage chunk (``choices: []``) when
    ``include_usage`` and the completion has usage. Raises ValueError for a completion with
    other than one choice or a message that is not text and function calls."""
    if chunk_chars < 1:
        raise ValueError("chunk_chars must be at least 1")
    choices = completion.get("choices")
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], Mapping):
        raise ValueError("a cached completion has exactly one choice")
    choice = choices[0]
    message = choice.get("message") or {}
    if not isinstance(message, Mapping):
        raise ValueError("the choice's message is not an object")
    head: dict[str, Any] = {"id": completion.get("id"), "object": "chat.completion.chunk",
                            "created": completion.get("created"),
                            "model": completion.get("model")}
    if "service_tier" in completion:
        head["service_tier"] = completion["service_tier"]
    head["system_fingerprint"] = completion.get("system_fingerprint")

    def event(delta: dict[str, Any], finish: Any = None) -> bytes:
        chunk = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                      "finish_reason": finish}]}
        if include_usage:
            chunk["usage"] = None  # as OpenAI sends it on every chunk but the last
        return _sse(chunk)

    texts = {key: message.get(key) for key in TEXT_FIELDS}
    for key, text in texts.items():
        if text is not None and not isinstance(text, str):
            raise ValueError(f"message.{key} is not a string")
    out = [event({"role": message.get("role") or "assistant",
                  "content": "" if isinstance(texts["content"], str) else None,
                  "refusal": None})]
    if texts["refusal"] == "":
        out.append(event({"refusal": ""}))  # an empty refusal is still one
    for key, text in texts.items():
        out += [event({key: piece}) for piece in _pieces(text or "", chunk_chars)]
    for index, call in enumerate(message.get("tool_calls") or []):
        out += _call_events(event, index, call, chunk_chars)
    out.append(event({}, choice.get("finish_reason")))
    usage = completion.get("usage")
    if include_usage and usage is not None:
        out.append(_sse({**head, "choices": [], "usage": usage}))
    out.append(DONE)
    return out


def _call_events(event: Callable[[dict[str, Any]], bytes], index: int, call: Any,
                 chunk_chars: int) -> list[bytes]:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping) or call.get("type", "function") != "function":
        raise ValueError("only function tool calls can be replayed")
    arguments = function.get("arguments") or ""
    first = event({"tool_calls": [{"index": index, "id": call.get("id"), "type": "function",
                                   "function": {"name": function.get("name"), "arguments": ""}}]})
    return [first, *(event({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                     for piece in _pieces(str(arguments), chunk_chars))]


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def _sse(chunk: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass") + b"\n\n"
