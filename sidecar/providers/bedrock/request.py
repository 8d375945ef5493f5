"""OpenAI ``POST /v1/chat/completions`` body -> Bedrock Converse request body (one direction, pure).

API reference: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
(ConverseStream takes the same body). Every top-level OpenAI field is in exactly one of the
tables below: mapped, dropped (harmless, documented) or rejected with
``UnsupportedParameterError`` naming the field; an unknown field is rejected too. Model limits come
from ``ModelSpec`` fields only (``supports``, ``max_output``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from sidecar.core.config.catalog import ModelSpec
from sidecar.core.errors import UnsupportedParameterError
from sidecar.providers.bedrock.messages import to_converse_conversation
from sidecar.providers.bedrock.output import OutputFormat, to_output_format
from sidecar.providers.bedrock.shapes import (
    JSON_TOOL_NAME,
    ConverseRequest,
    InferenceConfig,
    OutputConfig,
    ToolConfig,
)

MAPPED = frozenset({
    "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "tools",
    "tool_choice", "response_format", "reasoning_effort",
})
DROPPED = frozenset({
    "model",  # the route decides the upstream model
    "stream", "stream_options",  # the caller picks /converse-stream and include_usage
    "seed",  # no determinism guarantee on Bedrock
    "user", "safety_identifier", "metadata", "store",  # log/retention hints for OpenAI only
    "parallel_tool_calls",  # Bedrock models decide; no portable switch
    "frequency_penalty", "presence_penalty",  # no Converse equivalent; sampling hints
    "prompt_cache_key", "prompt_cache_retention",  # OpenAI's implicit cache; Bedrock's is explicit
    "verbosity", "prediction",  # OpenAI-model features; answers stay valid without them
    "service_tier",  # OpenAI tiers do not map onto Bedrock's priced tiers
})
# Rejected when the predicate holds for the value (a false/default value is harmless).
REJECTED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "n": (lambda v: v not in (None, 1), "Bedrock returns one choice; n must be 1"),
    "logprobs": (bool, "Bedrock does not return log probabilities"),
    "top_logprobs": (bool, "Bedrock does not return log probabilities"),
    "logit_bias": (bool, "token ids are tokenizer-specific; logit_bias is not supported"),
    "modalities": (lambda v: bool(v) and "audio" in v, "audio output is not supported"),
    "audio": (lambda v: v is not None, "audio output is not supported"),
    "functions": (lambda v: v is not None, "use 'tools' instead of the deprecated 'functions'"),
    "function_call": (lambda v: v is not None, "use 'tool_choice' instead of 'function_call'"),
    "web_search_options": (lambda v: v is not None, "web search is not supported"),
}
REASONING_EFFORT = {
    # OpenAI effort -> outputConfig.effort. Without extended thinking Bedrock caps effort at
    # "high", so the two higher levels are capped; "none" sends nothing.
    "none": None, "minimal": "low", "low": "low", "medium": "medium", "high": "high",
    "xhigh": "high", "max": "high",
}


def to_converse_request(body: Mapping[str, Any], spec: ModelSpec) -> ConverseRequest:
    """The Converse HTTP body for ``body`` sent to ``spec`` (``modelId`` goes in the path)."""
    _check_fields(body)
    tool_config = _tool_config(body, spec)
    output = to_output_format(body.get("response_format"), spec, app_tools=tool_config is not None)
    conversation = to_converse_conversation(
        body.get("messages"),
        vision="vision" in spec.supports,
        keep_tool_blocks=tool_config is not None,
    )
    request: ConverseRequest = {"messages": conversation.messages}
    system = conversation.system + [{"text": t} for t in output.system]
    if system:
        request["system"] = system
    inference = _inference_config(body, spec)
    if inference:
        request["inferenceConfig"] = inference
    if output.tool is not None:
        tool_config = {"tools": [output.tool], "toolChoice": {"tool": {"name": JSON_TOOL_NAME}}}
    if tool_config is not None:
        request["toolConfig"] = tool_config
    output_config = _output_config(body, spec, output)
    if output_config:
        request["outputConfig"] = output_config
    return request


def converse_path(spec: ModelSpec, *, stream: bool) -> str:
    """``/model/{modelId}/converse[-stream]``, the id percent-encoded as botocore does it."""
    model_id = quote(spec.upstream_id, safe="-_.~")  # botocore.utils.percent_encode
    return f"/model/{model_id}/{'converse-stream' if stream else 'converse'}"


def _check_fields(body: Mapping[str, Any]) -> None:
    for name, value in body.items():
        if name in REJECTED:
            predicate, why = REJECTED[name]
            if predicate(value):
                raise UnsupportedParameterError(f"{name}: {why}", param=name)
        elif name not in MAPPED and name not in DROPPED:
            raise UnsupportedParameterError(f"unrecognized parameter {name!r}", param=name)


def _inference_config(body: Mapping[str, Any], spec: ModelSpec) -> InferenceConfig:
    config: InferenceConfig = {}
    max_tokens = _max_tokens(body, spec)
    if max_tokens is not None:
        config["maxTokens"] = max_tokens
    temperature = _number(body, "temperature", low=0.0)
    if temperature is not None:
        config["temperature"] = min(temperature, 1.0)  # OpenAI allows 0..2, Converse 0..1
    top_p = _number(body, "top_p", low=0.0, high=1.0)
    if top_p is not None:
        config["topP"] = top_p
    stop = _stop_sequences(body.get("stop"))
    if stop:
        config["stopSequences"] = stop
    return config


def _max_tokens(body: Mapping[str, Any], spec: ModelSpec) -> int | None:
    name = "max_tokens"
    if body.get("max_completion_tokens") is not None:
        name = "max_completion_tokens"  # the current name wins over the deprecated one
    value = body.get(name)
    if value is None:
        return None  # Bedrock uses the model's maximum
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UnsupportedParameterError(f"{name} must be a positive integer", param=name)
    # Past the model's limit Bedrock answers 400; the router may have picked a smaller model.
    return min(value, spec.max_output) if spec.max_output else value


def _number(
    body: Mapping[str, Any], name: str, *, low: float, high: float | None = None
) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise UnsupportedParameterError(f"{name} must be a number {bounds}", param=name)
    return float(value)


def _stop_sequences(stop: object) -> list[str]:
    values = [stop] if isinstance(stop, str) else stop
    if values is None:
        return []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise UnsupportedParameterError("stop must be a string or a list of strings", param="stop")
    return [v for v in values if v]  # Converse rejects empty stop sequences


def _tool_config(body: Mapping[str, Any], spec: ModelSpec) -> ToolConfig | None:
    """The app's tools and tool_choice; ``None`` when no tools are declared to Bedrock."""
    tools, choice = body.get("tools") or [], body.get("tool_choice")
    if not isinstance(tools, list):
        raise UnsupportedParameterError("tools must be a list", param="tools")
    specs = [_tool_spec(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    if choice in (None, "auto", "none") and (choice == "none" or not specs):
        return None  # "none": Converse has no such choice, so tools are not declared at all
    if not specs:
        raise UnsupportedParameterError("tool_choice needs 'tools'", param="tool_choice")
    if "tools" not in spec.supports:
        raise UnsupportedParameterError("this model does not support tool calling", param="tools")
    tool_choice, allowed = _tool_choice(choice, [s["toolSpec"]["name"] for s in specs])
    config: ToolConfig = {"tools": [s for s in specs if s["toolSpec"]["name"] in allowed]}
    if tool_choice is not None:
        config["toolChoice"] = tool_choice
    return config


def _tool_spec(tool: object, param: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise UnsupportedParameterError("only tools of type 'function' are supported", param=param)
    function = tool.get("function") or {}
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise UnsupportedParameterError("a tool needs a function name", param=f"{param}.function")
    if name == JSON_TOOL_NAME:
        raise UnsupportedParameterError(f"{name!r} is reserved", param=f"{param}.function.name")
    schema = function.get("parameters") or {"type": "object", "properties": {}}
    spec: dict[str, Any] = {"name": name, "inputSchema": {"json": schema}}
    if function.get("description"):  # Converse rejects an empty description
        spec["description"] = function["description"]
    # "strict" is dropped: ModelSpec has no flag for models that support strict tool use.
    return {"toolSpec": spec}


def _tool_choice(choice: object, names: list[str]) -> tuple[dict[str, Any] | None, set[str]]:
    """OpenAI tool_choice -> (Converse toolChoice or None for the default "auto", allowed names)."""
    if choice in (None, "auto"):
        return None, set(names)  # auto is Bedrock's default; omitting it suits every model
    if choice == "required":
        return {"any": {}}, set(names)
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "function" and isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        _check_known(name, names, "tool_choice.function.name")
        return {"tool": {"name": name}}, set(names)
    if kind == "allowed_tools" and isinstance(choice, dict):
        return _allowed_tools(choice.get("allowed_tools") or {}, names)
    raise UnsupportedParameterError(f"tool_choice {choice!r} is not supported", param="tool_choice")


def _allowed_tools(
    allowed: dict[str, Any], names: list[str]
) -> tuple[dict[str, Any] | None, set[str]]:
    picked = set()
    for i, tool in enumerate(allowed.get("tools") or []):
        name = (tool.get("function") or {}).get("name") if isinstance(tool, dict) else None
        _check_known(name, names, f"tool_choice.allowed_tools.tools[{i}]")
        picked.add(str(name))
    mode = allowed.get("mode", "auto")
    if not picked or mode not in ("auto", "required"):
        raise UnsupportedParameterError(
            "allowed_tools needs tools and mode 'auto' or 'required'", param="tool_choice"
        )
    return ({"any": {}} if mode == "required" else None), picked


def _check_known(name: object, names: list[str], param: str) -> None:
    if name not in names:
        raise UnsupportedParameterError(f"tool {name!r} is not in 'tools'", param=param)


def _output_config(body: Mapping[str, Any], spec: ModelSpec, output: OutputFormat) -> OutputConfig:
    config: OutputConfig = {}
    if output.text_format is not None:
        config["textFormat"] = output.text_format
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORT:
        raise UnsupportedParameterError(
            f"reasoning_effort {effort!r} is not one of {', '.join(REASONING_EFFORT)}",
            param="reasoning_effort",
        )
    # Dropped for models without reasoning: the answer is still valid, only less deliberate.
    mapped = REASONING_EFFORT.get(str(effort)) if "reasoning" in spec.supports else None
    if mapped is not None:
        config["effort"] = mapped
    return config
