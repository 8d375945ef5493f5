"""Wire shapes of the Bedrock Runtime Converse API, and the names shared by the translators.

Only the parts the translators read or write are spelled out. Source of truth: botocore 1.44.8's
bundled service model ``bedrock-runtime/2023-09-30`` and the API reference,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html and
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html.

OpenAI-side objects (``chat.completion``, ``chat.completion.chunk``) are plain ``dict[str, Any]``
here; they follow ``openai.types.chat`` of openai 3.57.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

JSON_TOOL_NAME = "sidecar_json_response"
"""The synthetic tool that carries ``response_format`` on models without native structured output.

``request.py`` declares and forces it; ``response.py`` and ``stream.py`` turn its input back into
``message.content``. Apps may not declare a tool of this name (400).
"""

ContentBlock = dict[str, Any]
"""One member of the ``ContentBlock`` union: ``{"text": ...}``, ``{"toolUse": {...}}``, ..."""

OpenAIObject = dict[str, Any]


class Message(TypedDict):
    role: Literal["user", "assistant"]
    content: list[ContentBlock]


class SystemBlock(TypedDict):
    text: str


class InferenceConfig(TypedDict, total=False):
    maxTokens: int
    temperature: float
    topP: float
    stopSequences: list[str]


class ToolConfig(TypedDict, total=False):
    tools: list[dict[str, Any]]
    toolChoice: dict[str, Any]


class OutputConfig(TypedDict, total=False):
    textFormat: dict[str, Any]
    effort: str


class ConverseRequest(TypedDict):
    """The HTTP body of ``POST /model/{modelId}/converse[-stream]`` (``modelId`` is in the path)."""

    messages: list[Message]
    system: NotRequired[list[SystemBlock]]
    inferenceConfig: NotRequired[InferenceConfig]
    toolConfig: NotRequired[ToolConfig]
    outputConfig: NotRequired[OutputConfig]


class TokenUsage(TypedDict, total=False):
    inputTokens: int
    outputTokens: int
    totalTokens: int
    cacheReadInputTokens: int
    cacheWriteInputTokens: int
