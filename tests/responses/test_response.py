"""to_responses_object: golden pairs, each answer validated by the official SDK's model."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from openai.types.responses import Response

from sidecar.apis.responses import new_response_id, to_responses_object
from sidecar.core.errors import TranslationError

GOLDEN = Path(__file__).parent / "golden" / "response"
CREATED, COMPLETED = 1700000000, 1700000002


def _golden() -> list[Any]:
    return [pytest.param(p, id=p.stem) for p in sorted(GOLDEN.glob("*.json"))]


def _translate(case: dict[str, Any]) -> dict[str, Any]:
    return to_responses_object(case["completion"], request=case["request"],
                               response_id="resp_test", created_at=CREATED,
                               completed_at=COMPLETED)


@pytest.mark.parametrize("path", _golden())
def test_golden(path: Path) -> None:
    case = json.loads(path.read_text())
    before = copy.deepcopy(case)
    assert _translate(case) == case["response"]
    assert case == before, "the translator must not mutate its inputs"


@pytest.mark.parametrize("path", _golden())
def test_the_sdk_validates_every_golden_answer(path: Path) -> None:
    """Strict pydantic validation of the SDK's own ``Response`` model, not its lenient parse."""
    case = json.loads(path.read_text())
    response = Response.model_validate(_translate(case))
    message = case["completion"]["choices"][0]["message"]
    assert response.output_text == (message.get("content") or "")
    assert response.id == "resp_test" and response.object == "response"


def _case(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / f"{name}.json").read_text())


def test_function_calls_parse_and_usage_maps() -> None:
    response = Response.model_validate(_translate(_case("tool_calls_only")))
    calls = [item for item in response.output if item.type == "function_call"]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("call_1", "get_weather", {"city": "Paris"}), ("call_2", "get_weather", {})]
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens,
            response.usage.total_tokens) == (50, 20, 70)


def test_cached_and_reasoning_tokens() -> None:
    usage = Response.model_validate(_translate(_case("text"))).usage
    assert usage is not None
    assert usage.input_tokens_details.cached_tokens == 100
    assert usage.output_tokens_details.reasoning_tokens == 12


@pytest.mark.parametrize(("finish", "status", "reason"), [
    ("stop", "completed", None), ("tool_calls", "completed", None),
    ("function_call", "completed", None), ("length", "incomplete", "max_output_tokens"),
    ("content_filter", "incomplete", "content_filter"), (None, "completed", None),
])
def test_status_from_finish_reason(finish: str | None, status: str, reason: str | None) -> None:
    case = _case("text")
    case["completion"]["choices"][0]["finish_reason"] = finish
    out = _translate(case)
    assert out["status"] == status
    assert out["incomplete_details"] == (reason and {"reason": reason})
    assert out["completed_at"] == (COMPLETED if status == "completed" else None)
    assert out["output"][-1]["status"] == ("incomplete" if reason else "completed")


def test_only_the_last_item_of_an_incomplete_answer_is_incomplete() -> None:
    case = _case("text_and_tool_call")
    case["completion"]["choices"][0]["finish_reason"] = "length"
    assert [i["status"] for i in _translate(case)["output"]] == ["completed", "incomplete"]


def test_content_as_parts_and_reasoning_under_its_other_name() -> None:
    case = _case("text")
    case["completion"]["choices"][0]["message"] = {
        "role": "assistant", "reasoning": "hmm",
        "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]}
    out = _translate(case)
    assert [i["type"] for i in out["output"]] == ["reasoning", "message"]
    assert Response.model_validate(out).output_text == "Hello"


def test_model_defaults_to_the_request_and_ids_are_fresh() -> None:
    case = _case("text")
    del case["completion"]["model"]
    assert _translate(case)["model"] == "gpt-4o"
    assert new_response_id() != new_response_id()
    assert new_response_id().startswith("resp_")


@pytest.mark.parametrize("completion", [
    {}, {"choices": []}, {"choices": [{"index": 0}]},
    {"choices": [{"index": 0, "message": {"tool_calls": [{"id": "x"}]}}]},
], ids=["no-choices", "empty", "no-message", "bad-tool-call"])
def test_untranslatable_answers_are_translation_errors(completion: dict[str, Any]) -> None:
    with pytest.raises(TranslationError):
        to_responses_object(completion, request={"model": "m"}, response_id="resp_x",
                            created_at=CREATED)
