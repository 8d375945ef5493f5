"""What the rules and the policy may know about a call: ``RequestFacts``, built from plain data.

The addon reads the flow (listener, client address, proxy user, headers, body) and calls
``parse_chat_body`` then ``facts_from_chat``; nothing here knows about mitmproxy.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.core.config.catalog import REQUESTABLE_TIERS
from sidecar.core.errors import BadRequestBodyError, UnsupportedParameterError

PREFERS = ("cheap", "fast", "balanced", "quality", "coding")
LISTENERS = ("proxy", "reverse", "transparent")
# Fields the sidecar understands and removes before a request leaves it.
ROUTER_FIELDS = ("prefer", "tier")

CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text and JSON
IMAGE_TOKENS = 765  # OpenAI's cost of one 512x512 "high" detail image tile set
MESSAGE_OVERHEAD_TOKENS = 4
MAX_OUTPUT_TOKENS = 1_000_000  # more than any model can write: a bug in the app, not a request
STREAM_OPTION_FLAGS = ("include_usage", "include_obfuscation")  # chat's and Responses'
MAX_JSON_DEPTH = 100  # levels of arrays/objects; real bodies (JSON schemas included) stay < 20


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """One call as rules and policy see it. ``headers`` has lower-case names."""

    model: str
    listener: str = "proxy"
    client_ip: str = "127.0.0.1"
    proxy_user: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    host: str = "api.openai.com"
    port: int = 443
    path: str = "/v1/chat/completions"
    prefer: str | None = None
    tier: str | None = None
    stream: bool = False
    needs: frozenset[str] = frozenset()  # capabilities: tools, vision, json_schema
    body: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)  # for tier auto
    prompt_tokens: int = 0  # an estimate
    max_tokens: int | None = None

    @property
    def user_agent(self) -> str:
        return self.headers.get("user-agent", "")

    @property
    def api_key_sha256(self) -> str | None:
        return key_sha256(self.headers.get("authorization", ""))


def key_sha256(authorization: str) -> str | None:
    """Hex SHA-256 of a bearer key: how rules recognise an app without ever holding its key."""
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return hashlib.sha256(key.strip().encode()).hexdigest()


def parse_chat_body(content: bytes | None, *, content_type: str = "") -> dict[str, Any]:
    """The JSON object of a chat.completions or Responses request, or a 400 that says what is
    wrong: not JSON, not an object, nested deeper than ``MAX_JSON_DEPTH``, a number too long to
    convert, or a non-standard ``NaN``/``Infinity``. Nothing the app sends raises anything else."""
    if not content:
        raise BadRequestBodyError(
            "The request body is empty; send a JSON object with 'model' and 'messages'.",
            code="invalid_json",
        )
    try:
        body = json.loads(content, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        hint = ""
        media = content_type.split(";")[0].strip().lower()
        if media and media != "application/json" and not media.endswith("+json"):
            hint = f" It was sent as {media!r}; send 'Content-Type: application/json'."
        raise BadRequestBodyError(
            f"The request body is not valid JSON ({e}).{hint}", code="invalid_json"
        ) from None
    except RecursionError:  # the decoder's own nesting limit (about 1,500 levels)
        raise _too_deep() from None
    except ValueError:  # an integer longer than Python converts (sys.get_int_max_str_digits)
        raise BadRequestBodyError(
            f"The request body is not valid JSON: a number has more than "
            f"{sys.get_int_max_str_digits()} digits.", code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise BadRequestBodyError("The request body must be a JSON object.", code="invalid_json")
    # Fewer brackets than the limit cannot nest deeper than it: most bodies skip the walk.
    if content.count(b"[") + content.count(b"{") > MAX_JSON_DEPTH and _nested_deeper(body):
        raise _too_deep()
    return body


def _refuse_constant(name: str) -> Any:
    raise BadRequestBodyError(
        f"The request body is not valid JSON: {name} is not a JSON number.", code="invalid_json")


def _too_deep() -> BadRequestBodyError:
    return BadRequestBodyError(
        f"The request body is nested too deeply: more than {MAX_JSON_DEPTH} levels of arrays "
        "and objects.", code="invalid_json")


def _nested_deeper(body: dict[str, Any]) -> bool:
    """Whether some array or object sits more than ``MAX_JSON_DEPTH`` levels deep, walked level
    by level (no recursion): what the translators walk recursively stays far from Python's
    limit. Only containers are visited."""
    level: list[Any] = [body]
    for _ in range(MAX_JSON_DEPTH):
        level = [child for value in level
                 for child in (value.values() if type(value) is dict else value)
                 if type(child) in (dict, list)]
        if not level:
            return False
    return True


def read_intent(body: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """(model, prefer, tier) from a request body, each validated."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise BadRequestBodyError(
            "You must provide a model parameter.", param="model", code="missing_model"
        )
    prefer, tier = body.get("prefer"), body.get("tier")
    if prefer is not None and prefer not in PREFERS:
        raise UnsupportedParameterError(
            f"Invalid value for 'prefer': {prefer!r}. Allowed values: {', '.join(PREFERS)}.",
            param="prefer", code="invalid_value",
        )
    if tier is not None and tier not in REQUESTABLE_TIERS:
        raise UnsupportedParameterError(
            f"Invalid value for 'tier': {tier!r}. Allowed values: {', '.join(REQUESTABLE_TIERS)}.",
            param="tier", code="invalid_value",
        )
    return model.strip(), prefer, tier


def facts_from_chat(body: Mapping[str, Any], **client: Any) -> RequestFacts:
    """RequestFacts for a chat.completions body; ``client`` holds the connection facts."""
    model, prefer, tier = read_intent(body)
    max_tokens = read_max_tokens(body)
    stream = read_stream(body)
    _check_chat_shape(body)
    return RequestFacts(
        model=model, prefer=prefer, tier=tier, stream=stream,
        needs=chat_needs(body), prompt_tokens=estimate_prompt_tokens(body), body=body,
        max_tokens=max_tokens, **client,
    )


def read_max_tokens(body: Mapping[str, Any]) -> int | None:
    """The output limit: ``max_completion_tokens`` when present (even 0 or false, which are
    refused), else ``max_tokens``. A bad value is a 400 naming the field that was sent."""
    name = "max_tokens"
    if body.get("max_completion_tokens") is not None:
        name = "max_completion_tokens"  # the current name wins over the deprecated one
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UnsupportedParameterError(
            f"Invalid '{name}': {value!r}; expected a positive integer.",
            param=name, code="invalid_value",
        )
    if value > MAX_OUTPUT_TOKENS:
        raise UnsupportedParameterError(
            f"Invalid '{name}': {value}; no model generates more than {MAX_OUTPUT_TOKENS} tokens.",
            param=name, code="invalid_value",
        )
    return value


def read_stream(body: Mapping[str, Any]) -> bool:
    """``stream``, a boolean when present (and ``stream_options`` an object of booleans): the
    sidecar decides from them how to serve the call, so a provider never sees "yes"."""
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid_type("stream", "a boolean", stream)
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _invalid_type("stream_options", "an object", options)
        for flag in STREAM_OPTION_FLAGS:
            value = options.get(flag)
            if value is not None and not isinstance(value, bool):
                raise _invalid_type(f"stream_options.{flag}", "a boolean", value)
    return stream is True


def _check_chat_shape(body: Mapping[str, Any]) -> None:
    """What the sidecar itself reads of a chat body has the API's types: ``messages`` an array
    of objects, ``n`` a positive integer. Everything else is the provider's to judge."""
    messages = body.get("messages")
    if messages is not None:
        if not isinstance(messages, list):
            raise _invalid_type("messages", "an array of objects", messages)
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                raise _invalid_type(f"messages[{i}]", "an object", message)
    n = body.get("n")
    if n is not None:
        if not isinstance(n, int) or isinstance(n, bool):
            raise _invalid_type("n", "an integer", n)
        if n < 1:
            raise UnsupportedParameterError(
                f"Invalid 'n': {n}; expected an integer of at least 1.", param="n",
                code="invalid_value")


def _invalid_type(param: str, expected: str, value: object) -> BadRequestBodyError:
    return BadRequestBodyError(
        f"Invalid type for '{param}': expected {expected}, but got {_json_kind(value)} instead.",
        param=param, code="invalid_type")


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"


def chat_needs(body: Mapping[str, Any]) -> frozenset[str]:
    needs = set()
    if body.get("tools") or body.get("functions"):
        needs.add("tools")
    fmt = body.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        needs.add("json_schema")
    if any(_image_parts(m) for m in _messages(body)):
        needs.add("vision")
    return frozenset(needs)


def estimate_prompt_tokens(body: Mapping[str, Any]) -> int:
    """A fast, deliberately simple estimate: characters / 4, plus images and per-message cost."""
    chars, images = 0, 0
    messages = _messages(body)
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p["text"]) for p in content
                         if isinstance(p, Mapping) and isinstance(p.get("text"), str))
            images += _image_parts(message)
        if message.get("tool_calls"):
            chars += len(json.dumps(message["tool_calls"]))
    if body.get("tools"):
        chars += len(json.dumps(body["tools"]))
    return chars // CHARS_PER_TOKEN + images * IMAGE_TOKENS + len(messages) * MESSAGE_OVERHEAD_TOKENS


def _messages(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, Mapping)]


def _image_parts(message: Mapping[str, Any]) -> int:
    content = message.get("content")
    if not isinstance(content, list):
        return 0
    return sum(1 for p in content if isinstance(p, Mapping) and p.get("type") == "image_url")


def facts_from_responses(body: Mapping[str, Any], *, scored: Mapping[str, Any] | None = None,
                         **client: Any) -> RequestFacts:
    """RequestFacts for a Responses API body (``/v1/responses``). ``scored``: the same call as a
    chat body, for the auto-tier scorer (``sidecar.apis.responses.as_scored_chat``); None:
    its input text alone."""
    model, prefer, tier = read_intent(body)
    limit = body.get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
                              or limit > MAX_OUTPUT_TOKENS):
        raise UnsupportedParameterError(
            f"Invalid 'max_output_tokens': {limit!r}; expected a positive integer.",
            param="max_output_tokens", code="invalid_value")
    stream = read_stream(body)
    text = json.dumps(body.get("input", ""), ensure_ascii=False)
    text += str(body.get("instructions") or "")
    needs = set()
    tools = body.get("tools")
    if isinstance(tools, list) and any(isinstance(t, Mapping) and t.get("type") == "function"
                                       for t in tools):
        needs.add("tools")
    if '"input_image"' in text:
        needs.add("vision")
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), Mapping) else None
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        needs.add("json_schema")
    return RequestFacts(
        model=model, prefer=prefer, tier=tier, stream=stream,
        needs=frozenset(needs), prompt_tokens=len(text) // CHARS_PER_TOKEN, max_tokens=limit,
        body=scored if scored is not None else input_as_chat(body), **client,
    )


def input_as_chat(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """A Responses body's input text as a one-message chat body."""
    return {"messages": [{"role": "user", "content": str(body.get("input", ""))}]}
