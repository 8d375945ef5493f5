"""Responses ``POST /v1/responses`` body -> chat.completions body (one direction, pure).

Direction: Responses request -> chat request, for providers without a native Responses API; the
chat path (OpenAI-compatible, or Bedrock via Converse) does the rest. References:
https://platform.openai.com/docs/api-reference/responses/create and
https://platform.openai.com/docs/api-reference/chat/create. ``input`` items: ``items.py``.

Every top-level Responses field is in exactly one table: MAPPED (below, ``_map``), DROPPED
(harmless, with the reason), NATIVE_ONLY (a 400 naming the feature and the model when the value
asks for it; ``needs_native`` tells the router to prefer a native-Responses candidate). An
unknown field is a 400, as the real API answers.

The chat body only uses fields that the Bedrock translator maps or drops, so it is valid on
every chat route.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sidecar.apis.responses.errors import NativeOnlyError, malformed
from sidecar.apis.responses.items import to_messages
from sidecar.core.errors import SidecarError, UnsupportedParameterError
from sidecar.core.facts import input_as_chat

Obj = dict[str, Any]

COPIED = ("temperature", "top_p", "parallel_tool_calls", "user", "safety_identifier",
          "prompt_cache_key", "prompt_cache_retention", "metadata", "service_tier")
"""Same name and meaning in both APIs: copied when not null."""
MAPPED = frozenset({"model", "input", "instructions", "tools", "tool_choice", "text",
                    "max_output_tokens", "reasoning", "stream", "include", *COPIED})
DROPPED = {
    "store": "nothing is stored on a translated route; the answer says store: false",
    "stream_options": "include_obfuscation pads OpenAI's own stream deltas",
    "max_tool_calls": "caps calls to built-in tools, which a translated route rejects",
    "truncation": "'auto' acts only when the context overflows; then the provider's "
                  "context-length error comes back instead of a silently shortened context",
    "prompt_cache_options": "a prompt-cache hint for OpenAI's cache",
    "image": "an image token-saving hint",
    "background_options": "options of background mode, which is rejected when on",
    "prefer": "the sidecar's own routing field", "tier": "the sidecar's own routing field",
}
NATIVE_ONLY: dict[str, tuple[Callable[[Any], bool], str]] = {
    "previous_response_id": (bool, "conversation state stored by OpenAI"),
    "conversation": (bool, "a conversation stored by OpenAI"),
    "prompt": (bool, "a prompt template stored by OpenAI"),
    "background": (lambda v: v is True, "runs and stores the response on OpenAI's servers"),
    "context_management": (bool, "server-side context compaction"),
    "moderation": (bool, "moderated completions"),
    "top_logprobs": (bool, "log probabilities are not translated"),
    "access_programs": (lambda v: v not in (None, {}, {"cyber": "standard"}),
                        "an OpenAI access program"),
}
INCLUDE_DROPPED = {
    "reasoning.encrypted_content": "a translated route is stateless; reasoning comes back as "
                                   "plain reasoning_text",
    "message.input_image.image_url": "echoes stored input images; nothing is stored",
    "computer_call_output.output.image_url": "echoes stored screenshots; nothing is stored",
    "file_search_call.results": "output of a hosted tool, itself rejected",
    "web_search_call.results": "output of a hosted tool, itself rejected",
    "web_search_call.action.sources": "output of a hosted tool, itself rejected",
    "code_interpreter_call.outputs": "output of a hosted tool, itself rejected",
}
TOOL_CHOICES = frozenset({"auto", "none", "required"})
_NOT_FUNCTION_TOOL = {"custom": "free-form custom tools are not translated",
                      "namespace": "tool namespaces are not translated",
                      "tool_search": "deferred tool loading runs on OpenAI's servers"}


def as_scored_chat(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """A Responses body as the chat body the auto-tier scorer reads (best effort: a body that
    cannot be translated is scored by its input text alone)."""
    try:
        return to_chat_request(body, model=str(body.get("model")))
    except SidecarError:  # e.g. a native-only feature
        return input_as_chat(body)


def to_chat_request(body: Mapping[str, Any], *, model: str) -> Obj:
    """The chat.completions body for the Responses request ``body``, to be sent as ``model``.

    Raises ``NativeOnlyError`` (400, names the feature and ``model``) or another 400.
    """
    try:
        return _translate(body, model)
    except NativeOnlyError as exc:
        raise exc.for_model(model) from None


def needs_native(body: Mapping[str, Any]) -> str | None:
    """The first feature of ``body`` only a native Responses provider can serve, else None.

    A request that is wrong for every provider is not a reason to prefer one: None.
    """
    try:
        _translate(body, "")
    except NativeOnlyError as exc:
        return exc.feature
    except SidecarError:
        return None
    return None


def _translate(body: Mapping[str, Any], model: str) -> Obj:
    if not isinstance(body, Mapping):
        raise malformed("body", "must be a JSON object")
    _check_fields(body)
    chat: Obj = {"model": model, "messages": []}
    tools = _tools(body.get("tools"))
    if tools:
        chat["tools"] = tools
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    _include(body.get("include"))
    chat["messages"] = to_messages(body.get("input"), body.get("instructions"))
    _text(body.get("text"), chat)
    _reasoning(body.get("reasoning"), chat)
    if body.get("max_output_tokens") is not None:
        chat["max_completion_tokens"] = body["max_output_tokens"]
    chat.update({name: body[name] for name in COPIED if body.get(name) is not None})
    if body.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # the usage of response.completed
    return chat


def _check_fields(body: Mapping[str, Any]) -> None:
    for name, value in body.items():
        if name in NATIVE_ONLY:
            predicate, why = NATIVE_ONLY[name]
            if predicate(value):
                raise NativeOnlyError(name, why, param=name)
        elif name not in MAPPED and name not in DROPPED:
            raise UnsupportedParameterError(f"unrecognized parameter {name!r}", param=name)


def _tools(tools: object) -> list[Obj]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise malformed("tools", "must be a list")
    return [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]


def _tool(tool: object, param: str) -> Obj:
    """A flat Responses function tool -> chat's nested one; any other type needs native."""
    if not isinstance(tool, Mapping):
        raise malformed(param, "a tool must be an object")
    kind = tool.get("type")
    if kind != "function":
        why = _NOT_FUNCTION_TOOL.get(str(kind), "a tool hosted by OpenAI")
        raise NativeOnlyError(f"{kind} tool", why, param=f"{param}.type")
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise malformed(f"{param}.name", "a function tool needs a name")
    function: Obj = {"name": name}
    if tool.get("description") is not None:
        function["description"] = tool["description"]
    if tool.get("parameters") is not None:
        function["parameters"] = tool["parameters"]
    if tool.get("strict") is not None:
        function["strict"] = tool["strict"]
    # defer_loading, allowed_callers, output_schema, async: only tool search and programmatic
    # tool calling (both rejected) act on them.
    return {"type": "function", "function": function}


def _tool_choice(choice: object) -> object:
    if isinstance(choice, str) and choice in TOOL_CHOICES:
        return choice
    kind = choice.get("type") if isinstance(choice, Mapping) else None
    if kind == "function" and isinstance(choice, Mapping):
        if not isinstance(choice.get("name"), str):
            raise malformed("tool_choice.name", "a function tool choice needs a name")
        return {"type": "function", "function": {"name": choice["name"]}}
    if kind == "allowed_tools" and isinstance(choice, Mapping):
        tools = [_allowed(t, f"tool_choice.tools[{i}]")
                 for i, t in enumerate(choice.get("tools") or [])]
        return {"type": "allowed_tools",
                "allowed_tools": {"mode": choice.get("mode", "auto"), "tools": tools}}
    if kind is not None:
        raise NativeOnlyError(f"tool_choice {kind}", "chooses a tool hosted by OpenAI",
                              param="tool_choice")
    raise malformed("tool_choice", "must be auto, none, required or a tool choice object")


def _allowed(tool: object, param: str) -> Obj:
    kind = tool.get("type") if isinstance(tool, Mapping) else None
    if kind != "function" or not isinstance(tool, Mapping):
        raise NativeOnlyError(f"allowed {kind} tool", "a tool hosted by OpenAI", param=param)
    return {"type": "function", "function": {"name": tool.get("name")}}


def _include(include: object) -> None:
    if include is None:
        return
    if not isinstance(include, list):
        raise malformed("include", "must be a list")
    for i, value in enumerate(include):
        if value not in INCLUDE_DROPPED:
            why = ("log probabilities are not translated" if value == "message.output_text.logprobs"
                   else "output only the Responses API produces")
            raise NativeOnlyError(f"include {value!r}", why, param=f"include[{i}]")


def _text(text: object, chat: Obj) -> None:
    """``text.format`` -> ``response_format``; ``text.verbosity`` -> ``verbosity``."""
    if text is None:
        return
    if not isinstance(text, Mapping):
        raise malformed("text", "must be an object")
    fmt = text.get("format")
    kind = fmt.get("type") if isinstance(fmt, Mapping) else None
    if kind == "json_schema" and isinstance(fmt, Mapping):
        schema = {key: fmt[key] for key in ("name", "description", "schema", "strict")
                  if fmt.get(key) is not None}
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif fmt is not None and kind != "text":
        raise malformed("text.format.type", "must be text, json_schema or json_object")
    if text.get("verbosity") is not None:
        chat["verbosity"] = text["verbosity"]


def _reasoning(reasoning: object, chat: Obj) -> None:
    """``reasoning.effort`` -> ``reasoning_effort``. ``summary``/``generate_summary`` and
    ``context`` are dropped: reasoning comes back as reasoning_text, never as a summary."""
    if reasoning is None:
        return
    if not isinstance(reasoning, Mapping):
        raise malformed("reasoning", "must be an object")
    if reasoning.get("mode") not in (None, "standard"):
        raise NativeOnlyError(f"reasoning mode {reasoning['mode']!r}", "an OpenAI reasoning mode",
                              param="reasoning.mode")
    if reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]
