"""Chat streams as providers send them (chunk dicts and SSE bytes), and the chat.completion each
one adds up to, for the stream translator's tests."""

from __future__ import annotations

import json
from typing import Any

Chunk = dict[str, Any]
MODEL = "claude-haiku"
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
         "prompt_tokens_details": {"cached_tokens": 4}}


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> Chunk:
    choices = [] if delta is None else [
        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000,
            "model": MODEL, "system_fingerprint": None, "choices": choices, **extra}


def call(index: int, call_id: str | None = None, name: str | None = None,
         arguments: str = "") -> dict[str, Any]:
    tool: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        tool.update(id=call_id, type="function")
        tool["function"]["name"] = name
    return {"tool_calls": [tool]}


def ending(finish: str = "stop") -> list[Chunk]:
    return [chunk({}, finish), chunk(None, usage=USAGE)]


ROLE = chunk({"role": "assistant", "content": ""})

SCENARIOS: dict[str, list[Chunk]] = {
    "text": [ROLE, chunk({"content": "Hé"}), chunk({"content": "llo 🌍"}),
             chunk({"content": "!"}), *ending()],
    "tool_calls": [ROLE, chunk({"content": "Checking."}),
                   chunk(call(0, "call_a", "get_weather")), chunk(call(0, arguments='{"city"')),
                   chunk(call(0, arguments=':"Paris"}')),
                   chunk(call(1, "call_b", "get_time")), *ending("tool_calls")],
    "reasoning": [ROLE, chunk({"reasoning_content": "Two and "}),
                  chunk({"reasoning_content": "two."}), chunk({"content": "4"}), *ending()],
    "refusal": [ROLE, chunk({"refusal": "I can't"}), chunk({"refusal": " help."}), *ending()],
    "length": [ROLE, chunk({"content": "Once upon"}), *ending("length")],
    "empty": [ROLE, *ending()],
}
"""Streams whose order of output is the canonical one (reasoning, message, calls)."""

INTERLEAVED = [ROLE, chunk(call(0, "call_a", "f")), chunk(call(1, "call_b", "g")),
               chunk(call(0, arguments='{"x":')), chunk(call(1, arguments='{"y":')),
               chunk(call(0, arguments="1}")), chunk(call(1, arguments="2}")),
               *ending("tool_calls")]


def sse(chunks: list[Chunk], *, done: bool = True) -> bytes:
    events = [b"data: " + json.dumps(c, ensure_ascii=False).encode() + b"\n\n" for c in chunks]
    return b"".join(events) + (b"data: [DONE]\n\n" if done else b"")


def completion_of(chunks: list[Chunk]) -> dict[str, Any]:
    """The chat.completion a stream adds up to (what the same call answers without stream)."""
    message: dict[str, Any] = {"role": "assistant", "content": None}
    calls: dict[int, dict[str, Any]] = {}
    finish, usage = None, None
    for c in chunks:
        usage = c.get("usage") or usage
        for choice in c["choices"]:
            delta = choice["delta"]
            for key in ("content", "refusal", "reasoning_content"):
                if delta.get(key):
                    message[key] = (message.get(key) or "") + delta[key]
            for tool in delta.get("tool_calls", []):
                entry = calls.setdefault(tool["index"], {
                    "id": tool.get("id"), "type": "function",
                    "function": {"name": tool["function"].get("name"), "arguments": ""}})
                entry["function"]["arguments"] += tool["function"].get("arguments") or ""
            finish = choice["finish_reason"] or finish
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000,
            "model": MODEL, "choices": [{"index": 0, "message": message,
                                         "finish_reason": finish}], "usage": usage}
