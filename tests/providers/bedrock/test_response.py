"""from_converse_response: golden pairs, every stop reason, usage with cache tokens, failures."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from openai.types.chat import ChatCompletion

from sidecar.core.errors import TranslationError, UpstreamError
from sidecar.providers.bedrock.response import (
    FINISH_REASONS,
    MALFORMED,
    from_converse_response,
    to_finish_reason,
    to_openai_usage,
)
from tests.fakes.bedrock import FakeBedrock, response, text_response, tool_use, usage

GOLDEN = Path(__file__).parent / "golden" / "response"
IDS = {"model": "claude-haiku", "created": 1700000000, "response_id": "chatcmpl-req-123"}


def _golden() -> list[Any]:
    return [pytest.param(p, id=p.stem) for p in sorted(GOLDEN.glob("*.json"))]


@pytest.mark.parametrize("path", _golden())
def test_golden(path: Path) -> None:
    case = json.loads(path.read_text())
    result = from_converse_response(case["converse"], **IDS)
    assert result == case["openai"]
    ChatCompletion.model_validate(result)  # the openai SDK accepts it


def test_every_stop_reason_of_the_service_model_is_handled() -> None:
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    assert set(model.shape_for("StopReason").enum) == set(FINISH_REASONS) | MALFORMED


STOP_REASONS = [
    # (stopReason, the message has client tool calls, finish_reason)
    ("end_turn", False, "stop"),
    ("end_turn", True, "tool_calls"),
    ("tool_use", True, "tool_calls"),
    ("tool_use", False, "stop"),  # only the synthetic JSON tool / a server tool
    ("stop_sequence", False, "stop"),
    ("max_tokens", False, "length"),
    ("max_tokens", True, "length"),
    ("model_context_window_exceeded", False, "length"),
    ("guardrail_intervened", False, "content_filter"),
    ("content_filtered", False, "content_filter"),
    ("a_future_reason", False, "stop"),
]


@pytest.mark.parametrize(("stop_reason", "tools", "finish"), STOP_REASONS)
def test_stop_reason(stop_reason: str, tools: bool, finish: str) -> None:
    content = [tool_use("f", {"a": 1})] if tools else [{"text": "x"}]
    result = from_converse_response(response(content, stop_reason=stop_reason), **IDS)
    assert result["choices"][0]["finish_reason"] == finish
    ChatCompletion.model_validate(result)


def test_unknown_stop_reason_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert to_finish_reason("brand_new", has_tool_calls=False) == "stop"
    assert "brand_new" in caplog.text


@pytest.mark.parametrize("stop_reason", sorted(MALFORMED))
def test_malformed_output_is_an_upstream_failure(stop_reason: str) -> None:
    with pytest.raises(UpstreamError) as info:
        from_converse_response(text_response("{broken", stop_reason=stop_reason), **IDS)
    assert info.value.code == stop_reason
    assert info.value.retryable and info.value.status_code == 502


@pytest.mark.parametrize(
    "resp",
    [
        {},
        {"output": {}},
        {"output": {"message": {"role": "assistant"}}},
        {"output": {"message": {"role": "assistant", "content": "text"}}},
    ],
)
def test_untranslatable_response(resp: dict[str, Any]) -> None:
    with pytest.raises(TranslationError):
        from_converse_response(resp, **IDS)


USAGES = [
    (usage(10, 5), (10, 5, 15, 0, 0)),
    (usage(5, 7, cache_read=1000), (1005, 7, 1012, 1000, 0)),
    (usage(5, 7, cache_write=300), (305, 7, 312, 0, 300)),
    (usage(3, 2, cache_read=40, cache_write=60), (103, 2, 105, 40, 60)),
    ({"inputTokens": 4, "outputTokens": 1, "totalTokens": 999}, (4, 1, 5, 0, 0)),  # recomputed
    ({}, (0, 0, 0, 0, 0)),
]


@pytest.mark.parametrize(("given", "expected"), USAGES)
def test_usage(given: dict[str, int], expected: tuple[int, int, int, int, int]) -> None:
    result = to_openai_usage(given)
    details = result["prompt_tokens_details"]
    assert (
        result["prompt_tokens"],
        result["completion_tokens"],
        result["total_tokens"],
        details["cached_tokens"],
        details["cache_write_tokens"],
    ) == expected


def test_tool_arguments_round_trip_as_json_strings() -> None:
    arguments = {"query": 'naïve "quotes"', "n": [1, 2.5, None], "nested": {"ok": True}}
    result = from_converse_response(
        response([tool_use("search", arguments, "t1")], stop_reason="tool_use"), **IDS
    )
    call = result["choices"][0]["message"]["tool_calls"][0]
    assert isinstance(call["function"]["arguments"], str)
    assert json.loads(call["function"]["arguments"]) == arguments
    assert call["id"] == "t1" and call["type"] == "function"


def test_real_wire_response_from_the_fake(fake: FakeBedrock, client: Any) -> None:
    """A Converse body as the fake serves it over HTTP, translated."""
    fake.push(
        response(
            [{"text": "Calling."}, tool_use("f", {"x": 1}, "tu1")],
            stop_reason="tool_use",
            token_usage=usage(9, 4, cache_read=3),
        )
    )
    raw = client.converse(modelId="m", messages=[{"role": "user", "content": [{"text": "go"}]}])
    raw.pop("ResponseMetadata")
    result = from_converse_response(raw, **IDS)
    message = result["choices"][0]["message"]
    assert message["content"] == "Calling." and message["tool_calls"][0]["id"] == "tu1"
    assert result["usage"]["prompt_tokens_details"]["cached_tokens"] == 3
    assert result["usage"]["prompt_tokens"] == 12
