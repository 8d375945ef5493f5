"""chat.completion -> Responses ``response`` object (one direction, pure).

Direction: chat answer -> Responses answer, for a Responses call served by a chat route.
References: https://platform.openai.com/docs/api-reference/chat/object (input) and
https://platform.openai.com/docs/api-reference/responses/object (output).

Output items, in this order: a ``reasoning`` item when the message has (non-standard)
``reasoning_content``; a ``message`` with one ``output_text`` part (and a ``refusal`` part when the
model refused), left out only when the answer is tool calls alone; one ``function_call`` per tool
call. ``finish_reason`` ``length`` / ``content_filter`` make the response ``incomplete`` (reason
``max_output_tokens`` / ``content_filter``) and its last item ``incomplete``.

Errors need no translation: the Responses API's HTTP errors are the same OpenAI error objects
``{"error": {...}}`` as chat's (``sidecar.errors.render_openai_error``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidecar.apis.responses.objects import (
    Obj,
    envelope,
    finish,
    function_call_item,
    item_id,
    message_item,
    new_response_id,
    reasoning_item,
    reasoning_of,
    text_part,
    usage_from_chat,
)
from sidecar.core.errors import TranslationError

__all__ = ["new_response_id", "to_responses_object"]


def to_responses_object(
    completion: Mapping[str, Any], *, request: Mapping[str, Any], response_id: str,
    created_at: int, completed_at: int | None = None,
) -> Obj:
    """The Responses object for ``completion``, answering the Responses ``request``.

    ``model`` is the completion's (the model that served), else the request's; ``completed_at``
    defaults to ``created_at``. Raises ``TranslationError`` when there is no choice to translate.
    """
    choice = _first_choice(completion)
    message = choice.get("message")
    if not isinstance(message, Mapping):
        raise TranslationError("the provider's chat.completion has no message")
    model = str(completion.get("model") or request.get("model") or "")
    response = envelope(request, response_id=response_id, created_at=created_at, model=model,
                        status="in_progress")
    if completion.get("service_tier"):
        response["service_tier"] = completion["service_tier"]
    finish_reason = choice.get("finish_reason")
    output = _output(message, response_id)
    result = finish(response, finish_reason=finish_reason, output=output,
                    usage=usage_from_chat(completion.get("usage")),
                    completed_at=created_at if completed_at is None else completed_at)
    if result["status"] == "incomplete" and output:
        output[-1]["status"] = "incomplete"
    return result


def _first_choice(completion: Mapping[str, Any]) -> Mapping[str, Any]:
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise TranslationError("the provider's chat.completion has no choices")
    return next((c for c in choices if isinstance(c, Mapping) and c.get("index", 0) == 0),
                choices[0])


def _output(message: Mapping[str, Any], response_id: str) -> list[Obj]:
    output: list[Obj] = []
    reasoning = reasoning_of(message)
    if reasoning is not None:
        output.append(reasoning_item(item_id("rs", response_id, 0), reasoning, "completed"))
    calls = message.get("tool_calls") or []
    parts = _parts(message)
    if parts or not calls:
        parts = parts or [text_part("output_text", "")]
        output.append(message_item(item_id("msg", response_id, len(output)), parts, "completed"))
    for call in calls:
        output.append(_function_call(call, item_id("fc", response_id, len(output))))
    return output


def _parts(message: Mapping[str, Any]) -> list[Obj]:
    parts = []
    text = _content_text(message.get("content"))
    if text:
        parts.append(text_part("output_text", text))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append(text_part("refusal", refusal))
    return parts


def _content_text(content: object) -> str:
    """A string, or the text of a list of text parts (some providers answer with parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    return ""


def _function_call(call: object, item_id_: str) -> Obj:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(call, Mapping) or not isinstance(function, Mapping):
        raise TranslationError("the provider sent a tool call without a function")
    arguments = function.get("arguments")
    return function_call_item(
        item_id_,
        call_id=str(call.get("id") or f"call_{item_id_}"),
        name=str(function.get("name") or ""),
        arguments=arguments if isinstance(arguments, str) and arguments else "{}",
        status="completed",
    )
