"""to_converse_request / converse_path: golden pairs, every rejected parameter, the edge rules."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from sidecar.core.errors import UnsupportedParameterError
from sidecar.providers.bedrock.request import (
    DROPPED,
    MAPPED,
    REJECTED,
    converse_path,
    to_converse_request,
)
from sidecar.providers.bedrock.shapes import JSON_TOOL_NAME
from tests.fakes.bedrock import FakeBedrock

from .specs import model_spec

GOLDEN = Path(__file__).parent / "golden" / "request"
ALL = ("tools", "vision", "json_schema", "reasoning")
USER = [{"role": "user", "content": "Hi"}]
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object"}},
}


def _golden() -> list[Any]:
    return [pytest.param(p, id=p.stem) for p in sorted(GOLDEN.glob("*.json"))]


@pytest.mark.parametrize("path", _golden())
def test_golden(path: Path) -> None:
    case = json.loads(path.read_text())
    spec = model_spec(*case["supports"], max_output=case.get("max_output", 8192))
    body = copy.deepcopy(case["openai"])
    assert to_converse_request(body, spec) == case["converse"]
    assert body == case["openai"], "the translator must not mutate its input"


@pytest.mark.parametrize("path", _golden())
def test_golden_requests_pass_bedrock_validation(
    path: Path, fake: FakeBedrock, client: Any
) -> None:
    """Every golden request, sent by boto3, passes the fake's Bedrock-side checks."""
    case = json.loads(path.read_text())
    client.converse(modelId="anthropic.claude-test-v1:0", **_as_boto3_params(case["converse"]))
    assert fake.requests[-1].body == case["converse"]


def _as_boto3_params(request: dict[str, Any]) -> dict[str, Any]:
    """boto3 takes image bytes raw and base64-encodes them itself."""
    params = copy.deepcopy(request)
    for message in params["messages"]:
        for block in message["content"]:
            if "image" in block:
                block["image"]["source"]["bytes"] = base64.b64decode(
                    block["image"]["source"]["bytes"]
                )
    return params


REJECTIONS = [
    # (extra body fields, supports, param named in the error, message fragment)
    ({"n": 2}, (), "n", "one choice"),
    ({"logprobs": True}, (), "logprobs", "log probabilities"),
    ({"top_logprobs": 3}, (), "top_logprobs", "log probabilities"),
    ({"logit_bias": {"50256": -100}}, (), "logit_bias", "tokenizer"),
    ({"modalities": ["text", "audio"]}, (), "modalities", "audio"),
    ({"audio": {"voice": "alloy", "format": "mp3"}}, (), "audio", "audio"),
    ({"functions": [{"name": "f"}]}, ALL, "functions", "tools"),
    ({"function_call": "auto"}, ALL, "function_call", "tool_choice"),
    ({"web_search_options": {}}, ALL, "web_search_options", "web search"),
    ({"top_k": 5}, ALL, "top_k", "unrecognized"),
    ({"max_tokens": 0}, (), "max_tokens", "positive integer"),
    ({"max_completion_tokens": 1.5}, (), "max_completion_tokens", "positive integer"),
    ({"temperature": -0.1}, (), "temperature", "at least 0"),
    ({"temperature": "hot"}, (), "temperature", "number"),
    ({"top_p": 1.5}, (), "top_p", "between 0.0 and 1.0"),
    ({"stop": [1]}, (), "stop", "strings"),
    ({"tools": [WEATHER]}, (), "tools", "does not support tool calling"),
    ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, ALL, "tools[0]", "function"),
    (
        {"tools": [{"type": "function", "function": {"name": JSON_TOOL_NAME}}]},
        ALL,
        "tools[0].function.name",
        "reserved",
    ),
    ({"tool_choice": "required"}, ALL, "tool_choice", "needs 'tools'"),
    (
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        ALL,
        "tool_choice.function.name",
        "not in 'tools'",
    ),
    (
        {"tools": [WEATHER], "tool_choice": {"type": "custom", "custom": {"name": "x"}}},
        ALL,
        "tool_choice",
        "not supported",
    ),
    (
        {
            "tools": [WEATHER],
            "tool_choice": {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "auto", "tools": []},
            },
        },
        ALL,
        "tool_choice",
        "allowed_tools",
    ),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
        ALL,
        "response_format",
        "schema",
    ),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
        ("vision",),
        "response_format",
        "cannot guarantee",
    ),
    (
        {
            "tools": [WEATHER],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        },
        ("tools",),
        "response_format",
        "cannot guarantee",
    ),
    ({"response_format": {"type": "grammar"}}, ALL, "response_format", "not supported"),
    ({"reasoning_effort": "extreme"}, ALL, "reasoning_effort", "not one of"),
    ({"messages": []}, ALL, "messages", "non-empty"),
    (
        {"messages": [{"role": "function", "name": "f", "content": "x"}]},
        ALL,
        "messages[0].role",
        "not supported",
    ),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
                    ],
                }
            ]
        },
        ALL,
        "messages[0].content[0]",
        "remote image",
    ),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
                    ],
                }
            ]
        },
        ("tools",),
        "messages[0].content[0]",
        "image input",
    ),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}
                    ],
                }
            ]
        },
        ALL,
        "messages[0].content[0]",
        "png|jpeg",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
        ALL,
        "messages[0].content[0]",
        "input_audio",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]},
        ALL,
        "messages[0].content[0]",
        "file",
    ),
    (
        {"messages": [{"role": "system", "content": [{"type": "image_url"}]}, *USER]},
        ALL,
        "messages[0].content[0]",
        "text parts",
    ),
    (
        {
            "messages": [
                *USER,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{not json"},
                        }
                    ],
                },
            ]
        },
        ALL,
        "messages[1].tool_calls[0].function.arguments",
        "JSON object",
    ),
    (
        {
            "messages": [
                *USER,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
            ]
        },
        ALL,
        "messages[1].tool_calls[0].id",
        "id is required",
    ),
    (
        {"messages": [*USER, {"role": "tool", "content": "x"}]},
        ALL,
        "messages[1].tool_call_id",
        "id is required",
    ),
    ({"messages": [{"role": "user", "content": "  "}]}, ALL, "messages", "at least one"),
]


@pytest.mark.parametrize(("extra", "supports", "param", "fragment"), REJECTIONS)
def test_rejected(
    extra: dict[str, Any], supports: tuple[str, ...], param: str, fragment: str
) -> None:
    body = {"model": "m", "messages": USER, **extra}
    with pytest.raises(UnsupportedParameterError) as info:
        to_converse_request(body, model_spec(*supports))
    assert info.value.param == param
    assert fragment in info.value.message
    assert info.value.status_code == 400


def test_every_rejected_field_has_a_case() -> None:
    covered = {param.split("[")[0].split(".")[0] for _, _, param, _ in REJECTIONS}
    assert set(REJECTED) <= covered


@pytest.mark.parametrize("field", sorted(DROPPED))
def test_dropped_fields_change_nothing(field: str) -> None:
    values = {
        "stream_options": {"include_usage": True},
        "metadata": {"k": "v"},
        "store": True,
        "parallel_tool_calls": False,
        "service_tier": "priority",
        "prediction": {},
    }
    body = {"model": "m", "messages": USER, field: values.get(field, 0.5)}
    assert to_converse_request(body, model_spec()) == {
        "messages": [{"role": "user", "content": [{"text": "Hi"}]}]
    }


@pytest.mark.parametrize("field", ["n", "logprobs", "top_logprobs", "logit_bias", "modalities"])
def test_harmless_values_of_rejectable_fields_pass(field: str) -> None:
    harmless = {
        "n": 1,
        "logprobs": False,
        "top_logprobs": 0,
        "logit_bias": {},
        "modalities": ["text"],
    }
    body = {"model": "m", "messages": USER, field: harmless[field]}
    assert to_converse_request(body, model_spec())["messages"][0]["content"] == [{"text": "Hi"}]


def test_tables_are_disjoint() -> None:
    assert not (MAPPED & DROPPED) and not (MAPPED & set(REJECTED)) and not (DROPPED & set(REJECTED))


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        (0, 0.0),
        (0.3, 0.3),
        (1, 1.0),
        (1.0001, 1.0),
        (1.5, 1.0),
        (2, 1.0),
    ],
)
def test_temperature_is_clamped_to_bedrock_range(given: float, sent: float) -> None:
    body = {"model": "m", "messages": USER, "temperature": given}
    assert to_converse_request(body, model_spec())["inferenceConfig"] == {"temperature": sent}


@pytest.mark.parametrize(
    ("given", "max_output", "sent"),
    [
        ({"max_tokens": 100}, 8192, 100),
        ({"max_tokens": 100_000}, 8192, 8192),
        ({"max_completion_tokens": 7, "max_tokens": 9}, 8192, 7),
        ({"max_tokens": 100_000}, None, 100_000),
    ],
)
def test_max_tokens(given: dict[str, int], max_output: int | None, sent: int) -> None:
    body = {"model": "m", "messages": USER, **given}
    request = to_converse_request(body, model_spec(max_output=max_output))
    assert request["inferenceConfig"] == {"maxTokens": sent}


@pytest.mark.parametrize(
    ("effort", "sent"),
    [
        ("none", None),
        ("minimal", "low"),
        ("low", "low"),
        ("medium", "medium"),
        ("high", "high"),
        ("xhigh", "high"),
        ("max", "high"),
    ],
)
def test_reasoning_effort(effort: str, sent: str | None) -> None:
    body = {"model": "m", "messages": USER, "reasoning_effort": effort}
    request = to_converse_request(body, model_spec("reasoning"))
    assert request.get("outputConfig", {}).get("effort") == sent


ROLES = [  # OpenAI role sequence -> Converse role sequence after merging
    (["user", "user", "user"], ["user"]),
    (["user", "assistant", "assistant", "user"], ["user", "assistant", "user"]),
    (["system", "user", "system", "user"], ["user"]),
    (["assistant", "user"], ["user", "assistant", "user"]),
    (
        ["user", "assistant", "tool", "tool", "user", "assistant"],
        ["user", "assistant", "user", "assistant"],
    ),
]


@pytest.mark.parametrize(("roles", "merged"), ROLES)
def test_role_alternation(roles: list[str], merged: list[str]) -> None:
    messages: list[dict[str, Any]] = []
    for i, role in enumerate(roles):
        if role == "tool":
            messages.append({"role": "tool", "tool_call_id": "c1", "content": f"r{i}"})
        elif role == "assistant" and "tool" in roles[i + 1 : i + 2]:
            messages.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                }
            )
        else:
            messages.append({"role": role, "content": f"m{i}"})
    tools = [{"type": "function", "function": {"name": "f"}}]
    request = to_converse_request({"messages": messages, "tools": tools}, model_spec("tools"))
    assert [m["role"] for m in request["messages"]] == merged


def test_tool_results_lead_their_user_turn() -> None:
    messages = [
        *USER,
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "user", "content": "also this"},
        {"role": "tool", "tool_call_id": "a", "content": ""},
    ]
    body = {"messages": messages, "tools": [{"type": "function", "function": {"name": "f"}}]}
    last = to_converse_request(body, model_spec("tools"))["messages"][-1]
    assert last["content"] == [
        {"toolResult": {"toolUseId": "a", "content": [{"text": "(empty)"}]}},
        {"text": "also this"},
    ]


def test_tool_history_without_tools_is_sent_as_text() -> None:
    messages = [
        *USER,
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": "done"},
    ]
    request = to_converse_request({"messages": messages}, model_spec())
    assert "toolConfig" not in request
    blocks = [b for m in request["messages"] for b in m["content"]]
    assert all(set(b) == {"text"} for b in blocks)
    assert blocks[1] == {"text": '[tool call a: f({"x": 1})]'}


@pytest.mark.parametrize(
    ("model_id", "stream", "path"),
    [
        (
            "anthropic.claude-3-haiku-20240307-v1:0",
            False,
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
        ),
        (
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            True,
            "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse-stream",
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-3-70b-instruct-v1:0",
            False,
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2F"
            "us.meta.llama3-3-70b-instruct-v1%3A0/converse",
        ),
        ("qwen.qwen3-32b~v1 x", True, "/model/qwen.qwen3-32b~v1%20x/converse-stream"),
    ],
)
def test_converse_path(model_id: str, stream: bool, path: str) -> None:
    assert converse_path(model_spec(upstream_id=model_id), stream=stream) == path


@pytest.mark.parametrize(
    "model_id",
    [
        "anthropic.claude-3-haiku-20240307-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-3-70b-instruct-v1:0",
    ],
)
def test_converse_path_matches_boto3(model_id: str, fake: FakeBedrock, client: Any) -> None:
    client.converse(modelId=model_id, messages=[{"role": "user", "content": [{"text": "x"}]}])
    assert fake.requests[-1].path == converse_path(model_spec(upstream_id=model_id), stream=False)
