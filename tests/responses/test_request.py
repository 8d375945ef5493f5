"""to_chat_request / needs_native: golden pairs, every rejected feature names itself and the
model, every dropped field is harmless, and the chat body is valid on every chat route."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from sidecar.apis.responses import NativeOnlyError, needs_native, to_chat_request
from sidecar.apis.responses.request import DROPPED, INCLUDE_DROPPED, MAPPED, NATIVE_ONLY
from sidecar.core.errors import (
    BadRequestBodyError,
    UnsupportedParameterError,
    render_openai_error,
)
from sidecar.providers.bedrock.request import DROPPED as BEDROCK_DROPPED
from sidecar.providers.bedrock.request import MAPPED as BEDROCK_MAPPED

GOLDEN = Path(__file__).parent / "golden" / "request"
MODEL = "claude-haiku"


def _golden() -> list[Any]:
    return [pytest.param(p, id=p.stem) for p in sorted(GOLDEN.glob("*.json"))]


def _body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "input": "Hi", **fields}


@pytest.mark.parametrize("path", _golden())
def test_golden(path: Path) -> None:
    case = json.loads(path.read_text())
    body = copy.deepcopy(case["responses"])
    assert to_chat_request(body, model=case["model"]) == case["chat"]
    assert body == case["responses"], "the translator must not mutate its input"
    assert needs_native(body) is None


@pytest.mark.parametrize("path", _golden())
def test_chat_body_is_valid_on_the_bedrock_route(path: Path) -> None:
    """Bedrock's translator rejects unknown fields: only ones it maps or drops may be sent."""
    chat = to_chat_request(json.loads(path.read_text())["responses"], model=MODEL)
    assert set(chat) <= BEDROCK_MAPPED | BEDROCK_DROPPED


def test_the_tables_do_not_overlap() -> None:
    assert not MAPPED & set(DROPPED)
    assert not MAPPED & set(NATIVE_ONLY)
    assert not set(DROPPED) & set(NATIVE_ONLY)


# -- what needs a native Responses provider --------------------------------------------------

HOSTED_TOOLS = [
    {"type": "web_search"}, {"type": "web_search_preview"}, {"type": "file_search",
                                                              "vector_store_ids": ["vs_1"]},
    {"type": "computer_use_preview", "display_width": 1, "display_height": 1,
     "environment": "linux"},
    {"type": "computer"}, {"type": "code_interpreter", "container": {"type": "auto"}},
    {"type": "image_generation"}, {"type": "mcp", "server_label": "x", "server_url": "https://x"},
    {"type": "local_shell"}, {"type": "shell"}, {"type": "apply_patch"},
    {"type": "custom", "name": "grammar_tool"}, {"type": "namespace", "name": "ns", "tools": []},
    {"type": "tool_search"},
]

NATIVE_CASES = [
    # (fields added to a minimal body, feature named, param)
    ({"previous_response_id": "resp_1"}, "previous_response_id", "previous_response_id"),
    ({"conversation": "conv_1"}, "conversation", "conversation"),
    ({"conversation": {"id": "conv_1"}}, "conversation", "conversation"),
    ({"prompt": {"id": "pmpt_1", "version": "2"}}, "prompt", "prompt"),
    ({"background": True}, "background", "background"),
    ({"context_management": [{"type": "compaction", "compact_threshold": 1000}]},
     "context_management", "context_management"),
    ({"moderation": {"model": "omni-moderation-latest"}}, "moderation", "moderation"),
    ({"top_logprobs": 5}, "top_logprobs", "top_logprobs"),
    ({"access_programs": {"cyber": "daybreak_red"}}, "access_programs", "access_programs"),
    ({"include": ["message.output_text.logprobs"]}, "include 'message.output_text.logprobs'",
     "include[0]"),
    ({"include": ["reasoning.encrypted_content", "some.future_value"]},
     "include 'some.future_value'", "include[1]"),
    ({"reasoning": {"effort": "high", "mode": "pro"}}, "reasoning mode 'pro'", "reasoning.mode"),
    ({"tool_choice": {"type": "file_search"}}, "tool_choice file_search", "tool_choice"),
    ({"tool_choice": {"type": "mcp", "server_label": "x"}}, "tool_choice mcp", "tool_choice"),
    ({"tool_choice": {"type": "allowed_tools", "mode": "auto",
                      "tools": [{"type": "image_generation"}]}},
     "allowed image_generation tool", "tool_choice.tools[0]"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "item_reference", "input[0]"),
    ({"input": [{"type": "web_search_call", "id": "ws_1", "status": "completed"}]},
     "web_search_call input item", "input[0].type"),
    ({"input": [{"type": "mcp_approval_response", "approval_request_id": "a",
                 "approve": True}]}, "mcp_approval_response input item", "input[0].type"),
    ({"input": [{"type": "computer_call_output", "call_id": "c", "output": {}}]},
     "computer_call_output input item", "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1",
                                              "detail": "auto"}]}]},
     "input_image file_id", "input[0].content[0].file_id"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}]},
     "input_file file_id", "input[0].content[0].file_id"),
    ({"input": [{"role": "user", "content": [{"type": "input_file",
                                              "file_url": "https://x/a.pdf"}]}]},
     "input_file file_url", "input[0].content[0].file_url"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": [
        {"type": "input_image", "image_url": "data:image/png;base64,AA=="}]}]},
     "input_image in function_call_output", "input[0].output[0].type"),
] + [({"tools": [tool]}, f"{tool['type']} tool", "tools[0].type") for tool in HOSTED_TOOLS]


@pytest.mark.parametrize(("fields", "feature", "param"), NATIVE_CASES,
                         ids=[c[1] for c in NATIVE_CASES])
def test_native_only_features_name_themselves_and_the_model(
    fields: dict[str, Any], feature: str, param: str
) -> None:
    body = _body(**fields)
    with pytest.raises(NativeOnlyError) as info:
        to_chat_request(body, model=MODEL)
    err = info.value
    assert (err.feature, err.param) == (feature, param)
    assert err.message.startswith(feature) and f"'{MODEL}'" in err.message
    assert "native Responses API" in err.message
    assert needs_native(body) == feature
    status, raw, _ = render_openai_error(err)
    error = json.loads(raw)["error"]
    assert status == 400
    assert error["type"] == "invalid_request_error"
    assert (error["code"], error["param"]) == ("unsupported_parameter", param)


def test_every_native_only_field_is_tested() -> None:
    tested = {next(iter(fields)) for fields, _, _ in NATIVE_CASES}
    assert set(NATIVE_ONLY) <= tested


@pytest.mark.parametrize("fields", [
    {"previous_response_id": None}, {"conversation": None}, {"prompt": None},
    {"background": False}, {"background": None}, {"context_management": []},
    {"moderation": None}, {"top_logprobs": 0}, {"access_programs": {"cyber": "standard"}},
    {"reasoning": {"mode": "standard"}},
], ids=str)
def test_native_only_fields_at_their_default_are_fine(fields: dict[str, Any]) -> None:
    assert to_chat_request(_body(**fields), model=MODEL)["messages"]
    assert needs_native(_body(**fields)) is None


@pytest.mark.parametrize("name", sorted(DROPPED))
def test_dropped_fields_change_nothing(name: str) -> None:
    value = {"truncation": "auto", "store": True, "stream_options": {"include_obfuscation": True},
             "max_tool_calls": 4, "prompt_cache_options": {"mode": "implicit"},
             "image": {"context_compression": "enabled"},
             "background_options": {"completion_window": "2h"}}.get(name, "x")
    assert to_chat_request(_body(**{name: value}), model=MODEL) == to_chat_request(
        _body(), model=MODEL)


@pytest.mark.parametrize("value", sorted(INCLUDE_DROPPED))
def test_dropped_include_values(value: str) -> None:
    assert to_chat_request(_body(include=[value]), model=MODEL) == to_chat_request(
        _body(), model=MODEL)


def test_function_tool_extras_are_dropped() -> None:
    tool = {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True,
            "defer_loading": False, "allowed_callers": ["direct"], "output_schema": {}}
    chat = to_chat_request(_body(tools=[tool]), model=MODEL)
    assert chat["tools"] == [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object"}, "strict": True}}]


def test_stream_asks_for_usage_and_model_is_the_argument() -> None:
    chat = to_chat_request(_body(stream=True), model=MODEL)
    assert chat["model"] == MODEL
    assert (chat["stream"], chat["stream_options"]) == (True, {"include_usage": True})
    assert "stream" not in to_chat_request(_body(stream=False), model=MODEL)


def test_consecutive_function_calls_share_one_assistant_message() -> None:
    calls = [{"type": "function_call", "call_id": f"c{i}", "name": "f", "arguments": "{}"}
             for i in range(3)]
    chat = to_chat_request(_body(input=[{"role": "user", "content": "go"}, *calls]), model=MODEL)
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant"]
    assert [c["id"] for c in chat["messages"][1]["tool_calls"]] == ["c0", "c1", "c2"]


MALFORMED = [
    ({"input": 5}, "input"),
    ({"input": ["text"]}, "input[0]"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": [{"type": "video"}]}]}, "input[0].content[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
     "input[0].content[0]"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
     "input[0].call_id"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": 3}]},
     "input[0].output"),
    ({"input": [{"role": "assistant", "content": [{"type": "input_image"}]}]},
     "input[0].content[0].type"),
    ({"instructions": 3}, "instructions"),
    ({"tools": {"type": "function"}}, "tools"),
    ({"tools": [{"type": "function"}]}, "tools[0].name"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": {"type": "function"}}, "tool_choice.name"),
    ({"text": {"format": {"type": "grammar"}}}, "text.format.type"),
    ({"include": "reasoning.encrypted_content"}, "include"),
]


@pytest.mark.parametrize(("fields", "param"), MALFORMED, ids=[p for _, p in MALFORMED])
def test_malformed_requests_are_400_and_not_a_reason_to_go_native(
    fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(BadRequestBodyError) as info:
        to_chat_request(_body(**fields), model=MODEL)
    assert info.value.param == param
    assert needs_native(_body(**fields)) is None


def test_unknown_field_is_rejected_like_the_real_api() -> None:
    with pytest.raises(UnsupportedParameterError) as info:
        to_chat_request(_body(frobnicate=True), model=MODEL)
    assert not isinstance(info.value, NativeOnlyError)
    assert info.value.param == "frobnicate"
    assert needs_native(_body(frobnicate=True)) is None
