"""Bedrock Converse response body -> OpenAI ``chat.completion`` (one direction, pure).

API reference: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
(response syntax) and .../API_runtime_TokenUsage.html. Also home of the two rules the stream
translator shares: ``to_finish_reason`` and ``to_openai_usage``.

Reasoning text is returned as the non-standard ``message.reasoning_content`` (the DeepSeek /
vLLM / LiteLLM convention); reasoning signatures and redacted reasoning are not representable in
OpenAI's format and are dropped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from sidecar.core.errors import TranslationError, UpstreamError
from sidecar.providers.bedrock.shapes import JSON_TOOL_NAME, ContentBlock, OpenAIObject

log = logging.getLogger(__name__)

FINISH_REASONS = {
    "end_turn": "stop",  # "tool_calls" when the message carries tool calls (see below)
    "stop_sequence": "stop",
    "tool_use": "tool_calls",  # "stop" when the only tool use was the synthetic JSON tool
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
MALFORMED = frozenset({"malformed_model_output", "malformed_tool_use"})
"""Stop reasons that mean the answer is broken: an upstream failure (502, retryable), never a
successful completion, so the router can retry or fall back."""


def from_converse_response(
    resp: Mapping[str, Any], *, model: str, created: int, response_id: str
) -> OpenAIObject:
    """The ``chat.completion`` for a Converse response body (``response_id`` e.g. chatcmpl-...)."""
    output = resp.get("output") if isinstance(resp, Mapping) else None
    message = output.get("message") if isinstance(output, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("content"), list) or not all(
            isinstance(b, dict) for b in message["content"]):
        raise TranslationError("Bedrock response has no output.message.content of objects")
    blocks: list[ContentBlock] = message["content"]
    tool_calls = [_tool_call(b["toolUse"]) for b in blocks if _is_client_tool(b)]
    finish = to_finish_reason(resp.get("stopReason"), has_tool_calls=bool(tool_calls))
    result: OpenAIObject = {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": _message(blocks, tool_calls), "logprobs": None,
             "finish_reason": finish}
        ],
        "usage": to_openai_usage(resp["usage"]) if isinstance(resp.get("usage"), dict) else None,
        "system_fingerprint": None,
    }
    service = resp.get("serviceTier")
    tier = service.get("type") if isinstance(service, dict) else None
    if tier:
        result["service_tier"] = tier
    return result


def to_finish_reason(stop_reason: object, *, has_tool_calls: bool) -> str:
    """Converse ``stopReason`` -> OpenAI ``finish_reason``; raises for the malformed_* reasons."""
    if stop_reason in MALFORMED:
        raise UpstreamError(f"Bedrock stopped with {stop_reason}", code=str(stop_reason))
    if has_tool_calls and stop_reason in ("end_turn", "tool_use"):
        return "tool_calls"  # some open models report end_turn next to tool calls
    if stop_reason == "tool_use":
        return "stop"  # the synthetic JSON tool (or a server tool): the answer is the content
    finish = FINISH_REASONS.get(str(stop_reason))
    if finish is None:
        log.warning("unknown Bedrock stopReason %r mapped to finish_reason 'stop'", stop_reason)
        return "stop"
    return finish


def to_openai_usage(usage: Mapping[str, Any]) -> OpenAIObject:
    """Converse ``TokenUsage`` -> OpenAI ``usage``.

    Bedrock's ``inputTokens`` counts only the uncached input, so the prompt is
    input + cache reads + cache writes; ``total_tokens`` is recomputed rather than trusted.
    """
    fresh, out = _count(usage, "inputTokens"), _count(usage, "outputTokens")
    cache_read, cache_write = _count(usage, "cacheReadInputTokens"), _count(
        usage, "cacheWriteInputTokens"
    )
    prompt = fresh + cache_read + cache_write
    return {
        "prompt_tokens": prompt,
        "completion_tokens": out,
        "total_tokens": prompt + out,
        "prompt_tokens_details": {"cached_tokens": cache_read, "cache_write_tokens": cache_write},
    }


def _count(usage: Mapping[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _is_client_tool(block: ContentBlock) -> bool:
    use = block.get("toolUse")
    return (
        isinstance(use, dict)
        and use.get("type") != "server_tool_use"  # run by Bedrock, not a call for the client
        and use.get("name") != JSON_TOOL_NAME
    )


def _tool_call(use: Mapping[str, Any]) -> OpenAIObject:
    arguments = json.dumps(use.get("input", {}), ensure_ascii=False)
    return {
        "id": use["toolUseId"],
        "type": "function",
        "function": {"name": use["name"], "arguments": arguments},
    }


def _message(blocks: list[ContentBlock], tool_calls: list[OpenAIObject]) -> OpenAIObject:
    texts = [_text(block) for block in blocks]
    text = "".join(t for t in texts if t is not None)
    content = text if any(t is not None for t in texts) else (None if tool_calls else "")
    message: OpenAIObject = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    reasoning = "".join(_reasoning(block) for block in blocks)
    if reasoning:
        message["reasoning_content"] = reasoning
    return message


def _text(block: ContentBlock) -> str | None:
    """The answer text a block carries: text, citations' generated text, the JSON tool's input."""
    if isinstance(block.get("text"), str):
        return str(block["text"])
    citations = block.get("citationsContent")
    if isinstance(citations, dict):
        return "".join(str(part.get("text", "")) for part in citations.get("content") or [])
    use = block.get("toolUse")
    if isinstance(use, dict) and use.get("name") == JSON_TOOL_NAME:
        return json.dumps(use.get("input", {}), ensure_ascii=False)
    return None


def _reasoning(block: ContentBlock) -> str:
    reasoning = block.get("reasoningContent")
    text = reasoning.get("reasoningText", {}).get("text") if isinstance(reasoning, dict) else None
    return text if isinstance(text, str) else ""
