"""Building blocks of Responses API objects, shared by the JSON and the streaming translators.

Direction: chat.completions answers -> Responses API objects. References:
https://platform.openai.com/docs/api-reference/responses/object (the ``response`` object and its
output items) and https://platform.openai.com/docs/api-reference/responses/object#usage.

* ``envelope``: the ``response`` object around the output, echoing the request as the real API
  does (its defaults filled in: temperature 1.0, tool_choice "auto", text format "text"...);
* item builders for ``message``, ``function_call`` and ``reasoning`` output items, with ids
  derived from the response id and the output index (stable, so tests can compare goldens);
* ``usage_from_chat``: chat ``usage`` -> Responses ``usage``; ``outcome``: ``finish_reason`` ->
  (status, incomplete_details); ``response_error``: an OpenAI error -> ``response.error``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

Obj = dict[str, Any]

INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
"""Chat finish reasons that make a Responses answer ``incomplete``, with the reason reported."""

_DEFAULTS: Obj = {
    # What the real API echoes when the request left the field out.
    "instructions": None, "max_output_tokens": None, "max_tool_calls": None, "metadata": {},
    "parallel_tool_calls": True, "prompt_cache_key": None, "safety_identifier": None,
    "temperature": 1.0, "tool_choice": "auto", "tools": [], "top_logprobs": 0, "top_p": 1.0,
    "user": None,
}
_RESPONSE_ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})


def new_response_id() -> str:
    """A fresh ``resp_...`` id, shaped like the real API's."""
    return f"resp_{uuid.uuid4().hex}"


def item_id(prefix: str, response_id: str, output_index: int) -> str:
    """``msg_``/``fc_``/``rs_`` id of an output item: unique within and across responses."""
    return f"{prefix}_{response_id.removeprefix('resp_')}_{output_index}"


def envelope(
    request: Mapping[str, Any], *, response_id: str, created_at: int, model: str, status: str
) -> Obj:
    """The ``response`` object with an empty ``output`` and no usage yet."""
    response: Obj = {
        "id": response_id, "object": "response", "created_at": created_at, "status": status,
        "background": False, "completed_at": None, "error": None, "incomplete_details": None,
    }
    for name, default in _DEFAULTS.items():
        value = request.get(name)
        response[name] = default if value is None else value
    response.update({
        "model": model,
        "output": [],
        "previous_response_id": None,
        "reasoning": _reasoning(request.get("reasoning")),
        "service_tier": request.get("service_tier") or "default",
        "store": False,  # a translated route never stores the response (request.py drops store)
        "truncation": "disabled",  # "auto" is dropped: an overflow is an error, not a cut
        "text": _text(request.get("text")),
        "usage": None,
    })
    response["tools"] = [_tool(t) for t in response["tools"] if isinstance(t, Mapping)]
    return response


def _reasoning(value: object) -> Obj:
    reasoning = value if isinstance(value, Mapping) else {}
    return {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")}


def _text(value: object) -> Obj:
    text = dict(value) if isinstance(value, Mapping) else {}
    text.setdefault("format", {"type": "text"})
    text.setdefault("verbosity", "medium")
    return text


def _tool(tool: Mapping[str, Any]) -> Obj:
    """A function tool as the API echoes it: every documented key present."""
    echoed = {"description": None, "parameters": None, "strict": None, **tool}
    return echoed


def finish(
    response: Obj, *, finish_reason: str | None, output: list[Obj], usage: Obj | None,
    completed_at: int,
) -> Obj:
    """``response`` made final: status from ``finish_reason``, output, usage."""
    status, details = outcome(finish_reason)
    response.update(status=status, output=output, usage=usage, incomplete_details=details,
                    completed_at=completed_at if status == "completed" else None)
    return response


def outcome(finish_reason: str | None) -> tuple[str, Obj | None]:
    """Chat ``finish_reason`` -> Responses (status, incomplete_details)."""
    reason = INCOMPLETE.get(str(finish_reason))
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def usage_from_chat(usage: object) -> Obj | None:
    """Chat ``usage`` -> Responses ``usage`` (``None`` when the provider reported none).

    input = prompt tokens (cached ones included, as both APIs count them); the cache-write count
    is the non-standard ``prompt_tokens_details.cache_write_tokens`` the Bedrock path reports.
    """
    if not isinstance(usage, Mapping):
        return None
    prompt, completion = _int(usage, "prompt_tokens"), _int(usage, "completion_tokens")
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    total = usage.get("total_tokens")
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": _int(prompt_details, "cached_tokens"),
            "cache_write_tokens": _int(prompt_details, "cache_write_tokens"),
        },
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": _int(completion_details, "reasoning_tokens")},
        "total_tokens": total if _is_count(total) else prompt + completion,
    }


def _int(obj: object, key: str) -> int:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, int) and _is_count(value) else 0


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def response_error(error: Mapping[str, Any]) -> Obj:
    """An OpenAI error object -> ``response.error`` (whose ``code`` is a closed set)."""
    code, kind = error.get("code"), error.get("type")
    if code not in _RESPONSE_ERROR_CODES:
        code = "rate_limit_exceeded" if kind == "rate_limit_error" else "server_error"
    return {"code": code, "message": str(error.get("message") or "The provider failed")}


# -- output items --------------------------------------------------------------------------


def message_item(item_id_: str, parts: list[Obj], status: str) -> Obj:
    return {"id": item_id_, "type": "message", "status": status, "role": "assistant",
            "content": parts}


def text_part(kind: str, text: str) -> Obj:
    """An ``output_text`` (annotations and logprobs empty) or a ``refusal`` content part."""
    if kind == "refusal":
        return {"type": "refusal", "refusal": text}
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(item_id_: str, *, call_id: str, name: str, arguments: str,
                       status: str) -> Obj:
    return {"id": item_id_, "type": "function_call", "status": status, "call_id": call_id,
            "name": name, "arguments": arguments}


def reasoning_item(item_id_: str, text: str | None, status: str) -> Obj:
    """Reasoning text as ``reasoning_text`` content (no summary, no encrypted content)."""
    content = [] if text is None else [{"type": "reasoning_text", "text": text}]
    return {"id": item_id_, "type": "reasoning", "status": status, "summary": [],
            "content": content}


def reasoning_of(message: Mapping[str, Any]) -> str | None:
    """The non-standard reasoning text of a chat message or delta (DeepSeek/vLLM names)."""
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return None
