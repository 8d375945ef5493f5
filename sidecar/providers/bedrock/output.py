"""OpenAI ``response_format`` -> Converse structured output (one direction, pure).

API reference: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_OutputConfig.html

* ``json_schema`` on a model with ``"json_schema"`` in ``supports``: native
  ``outputConfig.textFormat`` (the schema travels as a JSON *string*; every object schema gets
  ``additionalProperties: false``, which Bedrock requires).
* ``json_schema`` elsewhere, on a model with ``"tools"`` and no tools of the app's own: one
  synthetic tool (``JSON_TOOL_NAME``) whose input schema is the schema, forced with
  ``toolChoice.tool``; the response translators return its input as ``message.content`` with
  ``finish_reason: "stop"``. Otherwise 400 (param ``response_format``).
* ``json_object``: the same synthetic tool with schema ``{"type": "object"}`` where possible,
  else a system instruction (Converse has no JSON mode).
* ``text`` or absent: nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sidecar.core.config.catalog import ModelSpec
from sidecar.core.errors import UnsupportedParameterError
from sidecar.providers.bedrock.shapes import JSON_TOOL_NAME

JSON_OBJECT_INSTRUCTION = (
    "Answer with one JSON object only: no prose and no code fences before or after it."
)


@dataclass(frozen=True, slots=True)
class OutputFormat:
    text_format: dict[str, Any] | None = None  # outputConfig.textFormat
    tool: dict[str, Any] | None = None  # the synthetic tool to declare and force
    system: tuple[str, ...] = field(default_factory=tuple)  # extra system text


def to_output_format(response_format: object, spec: ModelSpec, *, app_tools: bool) -> OutputFormat:
    """How to ask ``spec`` for ``response_format``; ``app_tools``: the app declared tools."""
    kind = response_format.get("type") if isinstance(response_format, dict) else response_format
    if kind in (None, "text"):
        return OutputFormat()
    can_force_tool = "tools" in spec.supports and not app_tools
    if kind == "json_object":
        if can_force_tool:
            return OutputFormat(tool=_json_tool({"type": "object"}, "The answer as a JSON object."))
        return OutputFormat(system=(JSON_OBJECT_INSTRUCTION,))
    if kind == "json_schema" and isinstance(response_format, dict):
        definition = response_format.get("json_schema")
        if not isinstance(definition, dict) or not isinstance(definition.get("schema"), dict):
            raise _bad("response_format.json_schema needs a 'schema' object")
        if "json_schema" in spec.supports:
            return OutputFormat(text_format=_text_format(definition))
        if can_force_tool:
            description = definition.get("description") or "The answer, matching the schema."
            return OutputFormat(tool=_json_tool(definition["schema"], description))
        raise _bad("this model cannot guarantee a JSON schema answer (with these tools)")
    raise _bad(f"response_format type {kind!r} is not supported")


def _bad(message: str) -> UnsupportedParameterError:
    return UnsupportedParameterError(message, param="response_format")


def _text_format(definition: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"schema": json.dumps(closed_objects(definition["schema"]))}
    schema["name"] = str(definition.get("name") or "response")
    if definition.get("description"):
        schema["description"] = definition["description"]
    return {"type": "json_schema", "structure": {"jsonSchema": schema}}


def _json_tool(schema: dict[str, Any], description: str) -> dict[str, Any]:
    spec = {"name": JSON_TOOL_NAME, "description": description, "inputSchema": {"json": schema}}
    return {"toolSpec": spec}


_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_VALUES = ("items", "additionalProperties", "not", "contains")


def closed_objects(schema: Any) -> Any:
    """A copy of ``schema`` where every object schema has ``additionalProperties`` (default false).

    Walks only the keywords that hold subschemas, so a property *named* ``properties`` or
    ``type`` is left alone.
    """
    if not isinstance(schema, dict):
        return schema
    copy = dict(schema)
    for key in _SCHEMA_MAPS:
        if isinstance(copy.get(key), dict):
            copy[key] = {name: closed_objects(sub) for name, sub in copy[key].items()}
    for key in _SCHEMA_LISTS:
        if isinstance(copy.get(key), list):
            copy[key] = [closed_objects(sub) for sub in copy[key]]
    for key in _SCHEMA_VALUES:
        if isinstance(copy.get(key), dict):
            copy[key] = closed_objects(copy[key])
    types = copy.get("type")
    if types == "object" or (isinstance(types, list) and "object" in types):
        copy.setdefault("additionalProperties", False)
    return copy
