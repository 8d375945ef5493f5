"""Bedrock ConverseStream events -> OpenAI ``chat.completion.chunk`` objects (one direction).

API reference (``ConverseStreamOutput``):
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html
One event in, zero or more chunks out:

* ``messageStart`` -> the first chunk, ``delta {"role": "assistant", "content": ""}``;
* ``contentBlockStart`` with ``toolUse`` -> ``tool_calls[{index k, id, type, function{name,
  arguments: ""}}]``, where k counts the client's tool blocks (not ``contentBlockIndex``);
* ``contentBlockDelta``: ``text`` -> ``{"content"}``; ``toolUse.input`` -> ``tool_calls[{index
  k, function{arguments}}]`` with the fragment verbatim; reasoning text ->
  ``{"reasoning_content"}`` (signatures and redacted reasoning dropped);
* ``messageStop`` -> held: the finish chunk waits for ``metadata``;
* ``metadata`` -> the finish chunk, then (``include_usage``) ``choices: []`` with the usage.

Bedrock sends ``metadata`` (with usage) right after ``messageStop``, so holding the finish chunk
costs nothing and the stream is only complete, and ``done``, once both arrived. ``finish()`` on an
incomplete stream raises ``UpstreamError``: a cut stream is never reported as a success.
Events this module does not know (the union grows) are ignored; exception events are the
transport's business (``transcode.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidecar.core.errors import TranslationError, UpstreamError
from sidecar.providers.bedrock.response import to_finish_reason, to_openai_usage
from sidecar.providers.bedrock.shapes import JSON_TOOL_NAME, OpenAIObject


class ConverseStreamTranslator:
    """Stateful: keeps the tool-call index of each content block between events."""

    def __init__(
        self, *, model: str, created: int, response_id: str, include_usage: bool = False
    ) -> None:
        self.model, self.created, self.response_id = model, created, response_id
        self.include_usage = include_usage
        self.stop_reason: str | None = None
        self.usage: OpenAIObject | None = None  # OpenAI usage, once metadata arrived
        self.finish_reason: str | None = None
        self.done = False
        self._started = False
        self._tool_index: dict[int, int] = {}  # contentBlockIndex -> OpenAI tool_calls index
        self._json_blocks: set[int] = set()  # blocks of the synthetic JSON tool: content
        self._ignored_blocks: set[int] = set()  # server tool use: not the client's call

    def feed(self, event: Mapping[str, Any]) -> list[OpenAIObject]:
        """Chunks for one decoded event such as ``{"contentBlockDelta": {...}}``."""
        chunks: list[OpenAIObject] = []
        for kind, payload in event.items():
            handler = _HANDLERS.get(kind)
            if handler is not None and isinstance(payload, Mapping):
                chunks += handler(self, payload)
        return chunks

    def finish(self) -> list[OpenAIObject]:
        """Call when the upstream stream ended; raises ``UpstreamError`` if it was cut short."""
        if self.done:
            return []
        if self.stop_reason is None:
            raise UpstreamError("Bedrock stream ended before messageStop", code="stream_truncated")
        raise UpstreamError("Bedrock stream ended before its metadata", code="stream_truncated")

    # -- event handlers ---------------------------------------------------------------------

    def _message_start(self, payload: Mapping[str, Any]) -> list[OpenAIObject]:
        return self._start()

    def _block_start(self, payload: Mapping[str, Any]) -> list[OpenAIObject]:
        use = (payload.get("start") or {}).get("toolUse")
        block = payload.get("contentBlockIndex", -1)
        if not isinstance(use, Mapping):
            return []
        if use.get("type") == "server_tool_use":
            self._ignored_blocks.add(block)
            return []
        if use.get("name") == JSON_TOOL_NAME:
            self._json_blocks.add(block)
            return self._start()
        index = self._tool_index[block] = len(self._tool_index)
        call = {"index": index, "id": use.get("toolUseId"), "type": "function",
                "function": {"name": use.get("name"), "arguments": ""}}
        return self._start() + [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, payload: Mapping[str, Any]) -> list[OpenAIObject]:
        delta, block = payload.get("delta") or {}, payload.get("contentBlockIndex", -1)
        if isinstance(delta.get("text"), str) and delta["text"]:
            return self._start() + [self._chunk({"content": delta["text"]})]
        if "toolUse" in delta:
            return self._tool_delta(block, (delta["toolUse"] or {}).get("input"))
        reasoning = (delta.get("reasoningContent") or {}).get("text")
        if isinstance(reasoning, str) and reasoning:
            return self._start() + [self._chunk({"reasoning_content": reasoning})]
        return []  # signatures, redacted reasoning, citations, images, server tool results

    def _tool_delta(self, block: int, fragment: object) -> list[OpenAIObject]:
        if not isinstance(fragment, str) or not fragment or block in self._ignored_blocks:
            return []
        if block in self._json_blocks:
            return [self._chunk({"content": fragment})]
        if block not in self._tool_index:
            raise TranslationError("Bedrock sent tool input for a block that never started")
        call = {"index": self._tool_index[block], "function": {"arguments": fragment}}
        return [self._chunk({"tool_calls": [call]})]

    def _message_stop(self, payload: Mapping[str, Any]) -> list[OpenAIObject]:
        stop = str(payload.get("stopReason"))
        self.finish_reason = to_finish_reason(stop, has_tool_calls=bool(self._tool_index))
        self.stop_reason = stop
        return self._start()

    def _metadata(self, payload: Mapping[str, Any]) -> list[OpenAIObject]:
        usage = payload.get("usage")
        self.usage = to_openai_usage(usage) if isinstance(usage, Mapping) else None
        if self.stop_reason is None or self.done:
            return []
        self.done = True
        chunks = [self._chunk({}, finish_reason=self.finish_reason)]
        if self.include_usage and self.usage is not None:
            chunks.append(self._envelope([], usage=self.usage))
        return chunks

    # -- chunk building ---------------------------------------------------------------------

    def _start(self) -> list[OpenAIObject]:
        if self._started:
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def _chunk(self, delta: OpenAIObject, *, finish_reason: str | None = None) -> OpenAIObject:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._envelope([choice])

    def _envelope(self, choices: list[Any], *, usage: OpenAIObject | None = None) -> OpenAIObject:
        chunk: OpenAIObject = {
            "id": self.response_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = usage  # null on every chunk but the last, as OpenAI does
        return chunk


_HANDLERS = {
    "messageStart": ConverseStreamTranslator._message_start,
    "contentBlockStart": ConverseStreamTranslator._block_start,
    "contentBlockDelta": ConverseStreamTranslator._block_delta,
    "messageStop": ConverseStreamTranslator._message_stop,
    "metadata": ConverseStreamTranslator._metadata,
}
