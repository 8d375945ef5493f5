"""Responses ``input`` (a string or a list of items) -> chat.completions ``messages``.

Direction: Responses request -> chat request. References:
https://platform.openai.com/docs/api-reference/responses/create#responses-create-input and
https://platform.openai.com/docs/api-reference/chat/create#chat-create-messages.

| Responses input item                         | chat message                                  |
|----------------------------------------------|-----------------------------------------------|
| a string                                     | one ``user`` message                          |
| ``message`` user/system/developer            | same role; parts: input_text -> text,         |
|                                              | input_image -> image_url, input_file (data)   |
|                                              | -> file, input_audio -> input_audio           |
| ``message`` assistant (output_text, refusal) | ``assistant`` text content                    |
| ``function_call``                            | ``tool_calls`` of an assistant message: joins |
|                                              | the assistant message just before it          |
| ``function_call_output``                     | ``tool`` message (text output)                |
| ``reasoning``                                | dropped: chat takes no reasoning input, and   |
|                                              | encrypted reasoning is OpenAI's own           |
| ``item_reference``, hosted-tool items        | ``NativeOnlyError``                           |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidecar.apis.responses.errors import NativeOnlyError, malformed

Obj = dict[str, Any]
ROLES = frozenset({"user", "system", "developer", "assistant"})


def to_messages(input_: object, instructions: object) -> list[Obj]:
    """The chat ``messages`` for ``input`` with ``instructions`` as a leading system message."""
    messages: list[Obj] = []
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    elif isinstance(instructions, list):  # the API echoes instructions as items; accept them
        _add_items(messages, instructions, "instructions")
    elif instructions is not None and not isinstance(instructions, str):
        raise malformed("instructions", "must be a string")
    if isinstance(input_, str):
        messages.append({"role": "user", "content": input_})
    elif isinstance(input_, list):
        _add_items(messages, input_, "input")
    elif input_ is not None:
        raise malformed("input", "must be a string or a list of input items")
    return messages


def _add_items(messages: list[Obj], items: list[Any], where: str) -> None:
    for i, item in enumerate(items):
        param = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            raise malformed(param, "an input item must be an object")
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            messages.append(_message(item, param))
        elif kind == "function_call":
            _add_tool_call(messages, item, param)
        elif kind == "function_call_output":
            messages.append(_tool_result(item, param))
        elif kind == "reasoning":
            continue  # see the table above
        elif kind == "item_reference":
            raise NativeOnlyError("item_reference", "it refers to an item stored by OpenAI",
                                  param=param)
        else:
            raise NativeOnlyError(f"{kind} input item", "an item of a hosted tool",
                                  param=f"{param}.type")


def _message(item: Mapping[str, Any], param: str) -> Obj:
    role, content = item.get("role"), item.get("content")
    if role not in ROLES:
        raise malformed(f"{param}.role", f"must be one of {', '.join(sorted(ROLES))}")
    if role == "assistant":
        return _assistant(content, param)
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise malformed(f"{param}.content", "must be a string or a list of content parts")
    parts = [_part(p, f"{param}.content[{j}]") for j, p in enumerate(content)]
    if len(parts) == 1 and parts[0]["type"] == "text":
        return {"role": role, "content": parts[0]["text"]}
    return {"role": role, "content": parts}


def _part(part: object, param: str) -> Obj:
    if not isinstance(part, Mapping):
        raise malformed(param, "a content part must be an object")
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": _string(part, "text", param)}
    if kind == "input_image":
        return _image(part, param)
    if kind == "input_file":
        return _file(part, param)
    if kind == "input_audio":
        return {"type": "input_audio", "input_audio": part.get("input_audio")}
    raise malformed(f"{param}.type", f"unsupported content part type {kind!r}")


def _image(part: Mapping[str, Any], param: str) -> Obj:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        if part.get("file_id"):
            raise NativeOnlyError("input_image file_id", "a file uploaded to OpenAI",
                                  param=f"{param}.file_id")
        raise malformed(param, "input_image needs image_url")
    image: Obj = {"url": url}
    if part.get("detail"):
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _file(part: Mapping[str, Any], param: str) -> Obj:
    for key, why in (("file_id", "a file uploaded to OpenAI"),
                     ("file_url", "a file OpenAI fetches by URL")):
        if part.get(key):
            raise NativeOnlyError(f"input_file {key}", why, param=f"{param}.{key}")
    data = part.get("file_data")
    if not isinstance(data, str) or not data:
        raise malformed(param, "input_file needs file_data")
    file: Obj = {"file_data": data}
    if part.get("filename"):
        file["filename"] = part["filename"]
    return {"type": "file", "file": file}


def _assistant(content: object, param: str) -> Obj:
    """Earlier model output as text; a refusal too (chat providers other than OpenAI have no
    ``refusal`` field, and the model reads its own refusal just as well as text)."""
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise malformed(f"{param}.content", "must be a string or a list of content parts")
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        key = {"output_text": "text", "input_text": "text", "refusal": "refusal"}.get(str(kind))
        if key is None or not isinstance(part, Mapping):
            raise malformed(f"{param}.content[{j}].type",
                            "assistant content must be output_text or refusal")
        texts.append(_string(part, key, f"{param}.content[{j}]"))
    return {"role": "assistant", "content": "".join(texts)}


def _add_tool_call(messages: list[Obj], item: Mapping[str, Any], param: str) -> None:
    """One more ``tool_calls`` entry on the preceding assistant message, or a new one."""
    call = {
        "id": _string(item, "call_id", param),
        "type": "function",
        "function": {"name": _string(item, "name", param),
                     "arguments": _string(item, "arguments", param)},
    }
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _tool_result(item: Mapping[str, Any], param: str) -> Obj:
    output = item.get("output")
    if isinstance(output, list):
        output = [_tool_output_part(p, f"{param}.output[{j}]") for j, p in enumerate(output)]
    elif not isinstance(output, str):
        raise malformed(f"{param}.output", "must be a string or a list of content parts")
    return {"role": "tool", "tool_call_id": _string(item, "call_id", param), "content": output}


def _tool_output_part(part: object, param: str) -> Obj:
    kind = part.get("type") if isinstance(part, Mapping) else None
    if kind in ("input_text", "output_text") and isinstance(part, Mapping):
        return {"type": "text", "text": _string(part, "text", param)}
    if kind in ("input_image", "input_file"):
        raise NativeOnlyError(f"{kind} in function_call_output",
                              "chat tool results carry text only", param=f"{param}.type")
    raise malformed(f"{param}.type", f"unsupported output part type {kind!r}")


def _string(obj: Mapping[str, Any], key: str, param: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise malformed(f"{param}.{key}", "must be a string")
    return value
