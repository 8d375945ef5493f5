"""OpenAI chat ``messages`` -> Converse ``system`` + ``messages`` (one direction, pure).

API reference: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Message.html
and .../API_runtime_ContentBlock.html. Rules (see the mapping notes, section 1.2):

* ``system``/``developer`` messages, wherever they are, are hoisted into ``system`` in order.
* ``tool`` messages become ``toolResult`` blocks in a **user** turn; consecutive same-role turns
  are merged (Bedrock rejects non-alternating roles) and tool results lead their user turn.
* A conversation that starts with an assistant turn gets a placeholder user turn first; one that
  has only system text sends that text as the user turn.
* Blank text is skipped (Bedrock rejects blank text blocks); assistant ``reasoning_content``
  sent back by clients is dropped (without its signature it cannot be replayed).
* When the request will not declare tools, tool history is rewritten as plain text, because
  Bedrock refuses toolUse/toolResult blocks without a ``toolConfig``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.core.errors import UnsupportedParameterError
from sidecar.providers.bedrock.shapes import ContentBlock, Message, SystemBlock

START_PLACEHOLDER = "(conversation start)"
EMPTY_TOOL_RESULT = "(empty)"
_TOOL_USE_ID = re.compile(r"[a-zA-Z0-9_.:-]{1,64}")
_DATA_URL = re.compile(r"data:image/([a-zA-Z0-9.+-]+);base64,(.*)", re.DOTALL)
_IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}

Turn = tuple[str, list[ContentBlock]]


@dataclass(frozen=True, slots=True)
class Conversation:
    system: list[SystemBlock]
    messages: list[Message]


def to_converse_conversation(
    messages: object, *, vision: bool, keep_tool_blocks: bool
) -> Conversation:
    """Split, convert and merge OpenAI ``messages``. Raises ``UnsupportedParameterError``."""
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "'messages' must be a non-empty list")
    system: list[SystemBlock] = []
    turns: list[Turn] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _bad(f"messages[{i}]", "each message must be an object")
        role = message.get("role")
        if role in ("system", "developer"):
            system += [{"text": t} for t in _texts(message.get("content"), f"messages[{i}]")]
            continue
        convert = _CONVERTERS.get(str(role))
        if convert is None:
            raise _bad(f"messages[{i}].role", f"role {role!r} is not supported")
        turns.append(convert(message, i, vision))
    if not keep_tool_blocks:
        turns = [(role, [_as_text(block) for block in blocks]) for role, blocks in turns]
    merged = _merge([t for t in turns if t[1]])
    if not merged and system:
        merged, system = [("user", [{"text": b["text"]} for b in system])], []
    if not merged:
        raise _bad("messages", "at least one user or assistant message with content is required")
    if merged[0][0] == "assistant":
        merged.insert(0, ("user", [{"text": START_PLACEHOLDER}]))
    return Conversation(system, [_message(role, blocks) for role, blocks in merged])


def _bad(param: str, message: str) -> UnsupportedParameterError:
    return UnsupportedParameterError(message, param=param)


def _message(role: str, blocks: list[ContentBlock]) -> Message:
    return {"role": "user" if role == "user" else "assistant", "content": blocks}


def _user(message: dict[str, Any], i: int, vision: bool) -> Turn:
    content = message.get("content")
    if isinstance(content, str):
        return "user", _text_blocks([content])
    if not isinstance(content, list):
        raise _bad(f"messages[{i}].content", "content must be a string or a list of parts")
    blocks: list[ContentBlock] = []
    for j, part in enumerate(content):
        blocks += _user_part(part, f"messages[{i}].content[{j}]", vision)
    return "user", blocks


def _user_part(part: object, param: str, vision: bool) -> list[ContentBlock]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part, dict):
        return _text_blocks([part.get("text")])
    if kind == "image_url" and isinstance(part, dict):
        if not vision:
            raise _bad(param, "this model does not accept image input")
        return [_image(part.get("image_url"), param)]
    raise _bad(param, f"content part type {kind!r} is not supported for this provider")


def _image(image_url: object, param: str) -> ContentBlock:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str):
        raise _bad(param, "image_url.url must be a string")
    if url.startswith(("http://", "https://")):
        raise _bad(param, "remote image URLs are not supported here; send a data: URL (base64)")
    match = _DATA_URL.fullmatch(url)
    image_format = _IMAGE_FORMATS.get(match.group(1).lower()) if match else None
    if match is None or image_format is None:
        raise _bad(param, "images must be data:image/(png|jpeg|gif|webp);base64,... URLs")
    # The Converse JSON wire carries image bytes as base64 text: the payload passes through as is.
    data = "".join(match.group(2).split())
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _assistant(message: dict[str, Any], i: int, vision: bool) -> Turn:
    content = message.get("content")
    blocks = _text_blocks(_texts(content, f"messages[{i}]") if content is not None else [])
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise _bad(f"messages[{i}].tool_calls", "tool_calls must be a list")
    blocks += [_tool_use(call, f"messages[{i}].tool_calls[{j}]") for j, call in enumerate(calls)]
    return "assistant", blocks


def _tool_use(call: object, param: str) -> ContentBlock:
    if not isinstance(call, dict) or call.get("type", "function") != "function":
        raise _bad(f"{param}.type", "only function tool calls are supported")
    function = call.get("function") or {}
    arguments = function.get("arguments") or "{}"
    try:
        parsed = json.loads(arguments)
    except (TypeError, ValueError):
        parsed = None
    if not isinstance(parsed, dict):
        raise _bad(f"{param}.function.arguments", "arguments must be a JSON object string")
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"{param}.function.name", "a tool call needs a function name")
    call_id = tool_use_id(call.get("id"), param=f"{param}.id")
    return {"toolUse": {"toolUseId": call_id, "name": name, "input": parsed}}


def _tool(message: dict[str, Any], i: int, vision: bool) -> Turn:
    call_id = tool_use_id(message.get("tool_call_id"), param=f"messages[{i}].tool_call_id")
    texts = [t for t in _texts(message.get("content"), f"messages[{i}]") if t.strip()]
    content = [{"text": t} for t in texts] or [{"text": EMPTY_TOOL_RESULT}]
    return "user", [{"toolResult": {"toolUseId": call_id, "content": content}}]


_CONVERTERS: dict[str, Callable[[dict[str, Any], int, bool], Turn]] = {
    "user": _user,
    "assistant": _assistant,
    "tool": _tool,
}


def tool_use_id(raw: object, *, param: str) -> str:
    """An OpenAI tool-call id as a valid ``toolUseId`` (``[a-zA-Z0-9_.:-]{1,64}``).

    Ids from other providers that break the pattern are rewritten deterministically, so a
    toolUse and its toolResult still match.
    """
    if not isinstance(raw, str) or not raw:
        raise _bad(param, "a tool call id is required")
    if _TOOL_USE_ID.fullmatch(raw):
        return raw
    return "call_" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def _texts(content: object, param: str) -> list[str]:
    """Text of a string or a list of text/refusal parts (system, assistant and tool messages)."""
    if isinstance(content, str):
        return [content]
    if content is None:
        return []
    if not isinstance(content, list):
        raise _bad(f"{param}.content", "content must be a string or a list of text parts")
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        value = part.get(kind) if isinstance(part, dict) and kind in ("text", "refusal") else None
        if not isinstance(value, str):
            raise _bad(f"{param}.content[{j}]", "only text parts are supported in this message")
        texts.append(value)
    return texts


def _text_blocks(texts: Sequence[object]) -> list[ContentBlock]:
    return [{"text": t} for t in texts if isinstance(t, str) and t.strip()]


def _as_text(block: ContentBlock) -> ContentBlock:
    """Tool history as plain text, for requests that declare no tools."""
    if "toolUse" in block:
        use = block["toolUse"]
        arguments = json.dumps(use["input"], ensure_ascii=False)
        return {"text": f"[tool call {use['toolUseId']}: {use['name']}({arguments})]"}
    if "toolResult" in block:
        result = block["toolResult"]
        text = "\n".join(part["text"] for part in result["content"])
        return {"text": f"[tool result {result['toolUseId']}]: {text}"}
    return block


def _merge(turns: list[Turn]) -> list[Turn]:
    """Merge consecutive same-role turns; tool results lead each user turn."""
    merged: list[Turn] = []
    for role, blocks in turns:
        if merged and merged[-1][0] == role:
            merged[-1] = (role, merged[-1][1] + blocks)
        else:
            merged.append((role, list(blocks)))
    return [(role, _results_first(blocks) if role == "user" else blocks) for role, blocks in merged]


def _results_first(blocks: list[ContentBlock]) -> list[ContentBlock]:
    results = [b for b in blocks if "toolResult" in b]
    return results + [b for b in blocks if "toolResult" not in b]
