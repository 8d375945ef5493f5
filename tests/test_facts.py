"""sidecar/facts.py: request bodies -> RequestFacts, with OpenAI-style 400s for bad input."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pytest

from sidecar.core.errors import BadRequestBodyError, ClientRequestError, UnsupportedParameterError
from sidecar.core.facts import (
    IMAGE_TOKENS,
    MAX_JSON_DEPTH,
    RequestFacts,
    estimate_prompt_tokens,
    facts_from_chat,
    facts_from_responses,
    key_sha256,
    parse_chat_body,
    read_intent,
)

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def chat(**body: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [user("hi")], **body}


def responses(**body: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "input": "hi", **body}


@pytest.mark.parametrize("content, message", [
    (None, "The request body is empty"),
    (b"", "The request body is empty"),
    (b"{", "The request body is not valid JSON"),
    (b"model=gpt-4o", "The request body is not valid JSON"),
    (b'{"model": "gpt-4o", "x": "\xff\xfe"}', "The request body is not valid JSON"),
    (b"[1, 2]", "The request body must be a JSON object."),
    (b'"gpt-4o"', "The request body must be a JSON object."),
    (b"null", "The request body must be a JSON object."),
])
def test_parse_chat_body_errors(content: bytes | None, message: str) -> None:
    with pytest.raises(BadRequestBodyError) as info:
        parse_chat_body(content)
    assert info.value.message.startswith(message)
    assert (info.value.status_code, info.value.code) == (400, "invalid_json")


def test_parse_chat_body() -> None:
    body = {"model": "gpt-4o", "messages": [user("héllo")]}
    assert parse_chat_body(json.dumps(body, ensure_ascii=False).encode()) == body


@pytest.mark.parametrize("body", [{}, {"model": None}, {"model": ""}, {"model": "   "},
                                  {"model": 4}, {"model": ["gpt-4o"]}])
def test_a_missing_model(body: dict[str, Any]) -> None:
    with pytest.raises(BadRequestBodyError) as info:
        read_intent(body)
    assert (info.value.message, info.value.param, info.value.code) == (
        "You must provide a model parameter.", "model", "missing_model")


@pytest.mark.parametrize("body, param, message", [
    ({"model": "auto", "prefer": "cheapest"}, "prefer",
     "Invalid value for 'prefer': 'cheapest'. Allowed values: cheap, fast, balanced, quality, "
     "coding."),
    ({"model": "auto", "prefer": ""}, "prefer", "Invalid value for 'prefer': ''."),
    ({"model": "auto", "prefer": ["cheap"]}, "prefer", "Invalid value for 'prefer': ['cheap']."),
    ({"model": "auto", "tier": "gold"}, "tier",
     "Invalid value for 'tier': 'gold'. Allowed values: economy, standard, premium, auto."),
    ({"model": "auto", "tier": "Auto"}, "tier", "Invalid value for 'tier': 'Auto'."),
])
def test_bad_intent(body: dict[str, Any], param: str, message: str) -> None:
    with pytest.raises(UnsupportedParameterError) as info:
        read_intent(body)
    assert info.value.message.startswith(message)
    assert (info.value.status_code, info.value.param, info.value.code) == (400, param,
                                                                           "invalid_value")


@pytest.mark.parametrize("body, intent", [
    ({"model": "gpt-4o"}, ("gpt-4o", None, None)),
    ({"model": " auto\n", "prefer": "cheap"}, ("auto", "cheap", None)),
    ({"model": "auto", "prefer": None, "tier": "economy"}, ("auto", None, "economy")),
    ({"model": "premium", "prefer": "coding", "tier": "premium"}, ("premium", "coding", "premium")),
])
def test_read_intent(body: dict[str, Any], intent: tuple[str, str | None, str | None]) -> None:
    assert read_intent(body) == intent


@pytest.mark.parametrize("stream, expected", [(True, True), (False, False), (None, False)])
def test_stream_flag(stream: Any, expected: bool) -> None:
    assert facts_from_chat(chat(stream=stream)).stream is expected
    assert facts_from_responses(responses(stream=stream)).stream is expected


@pytest.mark.parametrize("extra, needs", [
    ({}, set()),
    ({"stream": True}, set()),
    ({"tools": [TOOL]}, {"tools"}),
    ({"tools": []}, set()),
    ({"functions": [{"name": "lookup", "parameters": {}}]}, {"tools"}),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
     {"json_schema"}),
    ({"response_format": {"type": "json_object"}}, set()),
    ({"response_format": "json_schema"}, set()),
    ({"messages": [user([{"type": "text", "text": "what is it?"}, IMAGE])]}, {"vision"}),
    ({"messages": [user("look"), {"role": "assistant", "content": "ok"}, user([IMAGE])]},
     {"vision"}),
    ({"messages": [user([IMAGE])], "tools": [TOOL],
      "response_format": {"type": "json_schema", "json_schema": {}}},
     {"vision", "tools", "json_schema"}),
])
def test_needs(extra: dict[str, Any], needs: set[str]) -> None:
    assert facts_from_chat(chat(**extra)).needs == frozenset(needs)


@pytest.mark.parametrize("extra, max_tokens", [
    ({}, None),
    ({"max_tokens": 256}, 256),
    ({"max_completion_tokens": 1024}, 1024),
    ({"max_completion_tokens": 1024, "max_tokens": 256}, 1024),
    ({"max_tokens": None}, None),
])
def test_max_tokens(extra: dict[str, Any], max_tokens: int | None) -> None:
    assert facts_from_chat(chat(**extra)).max_tokens == max_tokens


@pytest.mark.parametrize("extra", [
    {"max_tokens": 0}, {"max_tokens": -5}, {"max_tokens": True}, {"max_tokens": False},
    {"max_tokens": 1.5}, {"max_tokens": "100"}, {"max_completion_tokens": -1},
    {"max_completion_tokens": "1024", "max_tokens": 256},
])
def test_bad_max_tokens(extra: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedParameterError) as info:
        facts_from_chat(chat(**extra))
    assert "expected a positive integer" in info.value.message
    assert info.value.status_code == 400


@pytest.mark.parametrize("extra", [{"max_completion_tokens": 0},
                                   {"max_completion_tokens": False, "max_tokens": 100}])
def test_a_falsy_max_completion_tokens_is_refused(extra: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedParameterError):
        facts_from_chat(chat(**extra))


def test_the_error_names_the_field_that_was_sent() -> None:
    with pytest.raises(UnsupportedParameterError) as info:
        facts_from_chat(chat(max_completion_tokens=-1))
    assert info.value.param == "max_completion_tokens"


@pytest.mark.parametrize("extra, name", [
    ({"max_completion_tokens": 0, "max_tokens": 100}, "max_completion_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
])
def test_the_error_message_names_the_field_that_was_sent(extra: dict[str, Any],
                                                          name: str) -> None:
    with pytest.raises(UnsupportedParameterError) as info:
        facts_from_chat(chat(**extra))
    assert (info.value.param, info.value.message) == (
        name, f"Invalid '{name}': 0; expected a positive integer.")


def test_connection_facts_pass_through() -> None:
    facts = facts_from_chat(chat(prefer="fast"), listener="reverse", client_ip="10.1.2.3",
                            proxy_user="app", headers={"user-agent": "curl/8"})
    assert facts == RequestFacts(
        model="gpt-4o", listener="reverse", client_ip="10.1.2.3", proxy_user="app",
        headers={"user-agent": "curl/8"}, prefer="fast", stream=False,
        prompt_tokens=facts.prompt_tokens, max_tokens=None,
    )
    assert facts.user_agent == "curl/8"


def tokens(**body: Any) -> int:
    return estimate_prompt_tokens(body)


def test_the_prompt_estimate_grows_with_what_is_sent() -> None:
    short = tokens(messages=[user("x" * 40)])
    long = tokens(messages=[user("x" * 4000)])
    assert short == 10 + 4 and long == 1000 + 4  # chars / 4 plus a per-message overhead
    assert tokens(messages=[user("x" * 40), user("x" * 40)]) == 2 * short
    parts = tokens(messages=[user([{"type": "text", "text": "x" * 40}])])
    assert parts == short
    assert tokens(messages=[user([{"type": "text", "text": "x" * 40}, IMAGE])]) == (
        short + IMAGE_TOKENS)
    assert tokens(messages=[user([IMAGE, IMAGE])]) == 2 * IMAGE_TOKENS + 4
    assert tokens(messages=[user("x" * 40)], tools=[TOOL]) > short
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}" * 50}}]}
    assert tokens(messages=[call]) > tokens(messages=[{"role": "assistant", "content": None}])


@pytest.mark.parametrize("body", [{}, {"messages": "hi"}, {"messages": [None, 3, "x"]}])
def test_the_estimate_tolerates_odd_bodies(body: dict[str, Any]) -> None:
    assert estimate_prompt_tokens(body) == 0


@pytest.mark.parametrize("authorization, key", [
    ("Bearer sk-test", "sk-test"),
    ("bearer sk-test", "sk-test"),
    ("BEARER  sk-test ", "sk-test"),
    ("Basic dXNlcjpwYXNz", None),
    ("sk-test", None),
    ("Bearer ", None),
    ("", None),
])
def test_key_sha256(authorization: str, key: str | None) -> None:
    expected = None if key is None else hashlib.sha256(key.encode()).hexdigest()
    assert key_sha256(authorization) == expected
    facts = RequestFacts(model="x", headers={"authorization": authorization})
    assert facts.api_key_sha256 == expected


def nested(depth: int) -> bytes:
    """A request body whose deepest array sits ``depth`` levels down (the body is level 1)."""
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    return f'{{"model": "gpt-4o", "messages": [], "x": {inner}}}'.encode()


@pytest.mark.parametrize("content, message", [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),  # the decoder's RecursionError
    (nested(2_000), "nested too deeply"),  # also past the decoder's own limit
    (nested(MAX_JSON_DEPTH + 1), "nested too deeply"),  # parsed, then refused
    (b'{"model": "gpt-4o", "max_tokens": ' + b"7" * 5_000 + b"}", "a number has more than"),
    (b'{"model": "gpt-4o", "temperature": NaN}', "NaN is not a JSON number"),
    (b'{"model": "gpt-4o", "temperature": -Infinity}', "-Infinity is not a JSON number"),
])
def test_bodies_python_cannot_take_are_the_apps_400(content: bytes, message: str) -> None:
    with pytest.raises(BadRequestBodyError) as info:
        parse_chat_body(content)
    assert message in info.value.message
    assert (info.value.status_code, info.value.code, info.value.param) == (
        400, "invalid_json", None)


def test_nesting_up_to_the_limit_is_taken() -> None:
    body = parse_chat_body(nested(MAX_JSON_DEPTH))
    assert body["model"] == "gpt-4o"
    wide = {"model": "gpt-4o", "tools": [{"a": [{"b": {}}]}] * 200}  # many brackets, shallow
    assert parse_chat_body(json.dumps(wide).encode()) == wide


def test_a_long_number_within_pythons_limit_is_still_judged_by_its_field() -> None:
    content = b'{"model": "gpt-4o", "max_tokens": ' + b"7" * 4_000 + b"}"
    with pytest.raises(UnsupportedParameterError) as info:
        facts_from_chat(parse_chat_body(content))
    assert info.value.param == "max_tokens"


@pytest.mark.parametrize("read", [facts_from_chat, facts_from_responses])
@pytest.mark.parametrize("extra, param, message", [
    ({"stream": "yes"}, "stream", "expected a boolean, but got a string instead"),
    ({"stream": 1}, "stream", "expected a boolean, but got an integer instead"),
    ({"stream": "true"}, "stream", "expected a boolean, but got a string instead"),
    ({"stream": [True]}, "stream", "expected a boolean, but got an array instead"),
    ({"stream": True, "stream_options": "usage"}, "stream_options",
     "expected an object, but got a string instead"),
    ({"stream": True, "stream_options": [{"include_usage": True}]}, "stream_options",
     "expected an object, but got an array instead"),
    ({"stream": True, "stream_options": {"include_usage": "yes"}},
     "stream_options.include_usage", "expected a boolean, but got a string instead"),
    ({"stream": True, "stream_options": {"include_obfuscation": 0}},
     "stream_options.include_obfuscation", "expected a boolean, but got an integer instead"),
])
def test_stream_fields_have_their_types(read: Any, extra: dict[str, Any], param: str,
                                        message: str) -> None:
    body = chat(**extra) if read is facts_from_chat else responses(**extra)
    with pytest.raises(BadRequestBodyError) as info:
        read(body)
    assert (info.value.status_code, info.value.param, info.value.code) == (
        400, param, "invalid_type")
    assert info.value.message == f"Invalid type for '{param}': {message}."


@pytest.mark.parametrize("extra", [
    {"stream_options": None}, {"stream": True, "stream_options": {}},
    {"stream": True, "stream_options": {"include_usage": True, "other": "kept"}},
    {"stream": True, "stream_options": {"include_usage": None}},
])
def test_good_stream_options(extra: dict[str, Any]) -> None:
    assert facts_from_chat(chat(**extra)).stream is bool(extra.get("stream"))


@pytest.mark.parametrize("extra, param, expected, got", [
    ({"messages": "hi"}, "messages", "an array of objects", "a string"),
    ({"messages": {"role": "user", "content": "hi"}}, "messages", "an array of objects",
     "an object"),
    ({"messages": [user("hi"), "again"]}, "messages[1]", "an object", "a string"),
    ({"messages": [None]}, "messages[0]", "an object", "null"),
    ({"messages": [[user("hi")]]}, "messages[0]", "an object", "an array"),
    ({"n": "2"}, "n", "an integer", "a string"),
    ({"n": 2.0}, "n", "an integer", "a decimal number"),
    ({"n": True}, "n", "an integer", "a boolean"),
])
def test_the_chat_shape_the_sidecar_reads(extra: dict[str, Any], param: str, expected: str,
                                          got: str) -> None:
    with pytest.raises(BadRequestBodyError) as info:
        facts_from_chat(chat(**extra))
    assert (info.value.param, info.value.code) == (param, "invalid_type")
    assert info.value.message == (
        f"Invalid type for '{param}': expected {expected}, but got {got} instead.")


@pytest.mark.parametrize("n", [0, -1])
def test_n_is_at_least_one(n: int) -> None:
    with pytest.raises(UnsupportedParameterError) as info:
        facts_from_chat(chat(n=n))
    assert (info.value.param, info.value.code) == ("n", "invalid_value")


@pytest.mark.parametrize("extra", [{"n": 1}, {"n": 3}, {"n": None}, {"messages": None},
                                   {"messages": []}])
def test_a_good_chat_shape(extra: dict[str, Any]) -> None:
    assert facts_from_chat(chat(**extra)).model == "gpt-4o"


@pytest.mark.parametrize("body", [
    chat(messages=[user([{"type": "text", "text": 5}, {"type": "text", "text": None}])]),
    chat(messages=[user([{"type": "text"}, "loose", 3])]),
    chat(tools="lookup", functions=7, response_format=[1]),
    responses(tools=5), responses(tools="lookup"), responses(tools=[None, "x"]),
    responses(text="json"), responses(text={"format": "json_schema"}),
    responses(input=[{"type": "message", "content": 5}], instructions=["x"]),
])
def test_odd_values_the_sidecar_does_not_judge_are_left_to_the_provider(
        body: dict[str, Any]) -> None:
    read = facts_from_chat if "messages" in body else facts_from_responses
    assert read(body).model == "gpt-4o"


def test_no_chat_body_breaks_the_facts() -> None:
    """Random JSON values under the fields the sidecar reads: every body gives facts or a 400
    (``ClientRequestError``), never another exception (the app would get a 502)."""
    rng = random.Random(13)
    scalars = [None, True, False, 0, 5, -1, 1.5, "", "x", "text", "image_url", "json_schema",
               "function", "user"]
    keys = ["role", "content", "type", "text", "image_url", "url", "tool_calls", "function",
            "name", "arguments", "json_schema", "schema", "include_usage"]

    def value(depth: int = 0) -> Any:
        pick = rng.random()
        if depth >= 4 or pick < 0.4:
            return rng.choice(scalars)
        if pick < 0.65:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        return {rng.choice(keys): value(depth + 1) for _ in range(rng.randrange(5))}

    fields = ["messages", "tools", "functions", "response_format", "stream", "stream_options",
              "n", "max_tokens", "max_completion_tokens", "prefer", "tier"]
    outcomes = set()
    for _ in range(3_000):
        body = {"model": "gpt-4o"} | {k: value() for k in rng.sample(fields, rng.randrange(1, 4))}
        if rng.random() < 0.5:  # messages the right shape, their contents random
            body["messages"] = [{"role": "user", "content": value(1)} for _ in range(2)]
        try:
            facts_from_chat(parse_chat_body(json.dumps(body).encode()))
            outcomes.add("facts")
        except ClientRequestError:
            outcomes.add("400")
    assert outcomes == {"facts", "400"}
