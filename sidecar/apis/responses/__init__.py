"""The Responses API (``POST /v1/responses``) on routes that only speak chat.completions.

Pure translators, one direction each (https://platform.openai.com/docs/api-reference/responses):

* ``request.to_chat_request`` / ``request.needs_native``: Responses request -> chat body, or the
  feature that needs a native Responses provider;
* ``response.to_responses_object``: chat.completion -> Responses object;
* ``stream.ChatToResponsesStream`` (parsed chunks) and ``sse.ChatSSEToResponsesSSE`` (raw bytes):
  chat.completion.chunk SSE -> Responses SSE events; ``sse.AfterChat`` puts it after another stream
  transform (the Bedrock transcoder, the usage tap).
"""

from __future__ import annotations

from sidecar.apis.responses.errors import NativeOnlyError
from sidecar.apis.responses.objects import new_response_id
from sidecar.apis.responses.request import as_scored_chat, needs_native, to_chat_request
from sidecar.apis.responses.response import to_responses_object
from sidecar.apis.responses.sse import AfterChat, ChatSSEToResponsesSSE
from sidecar.apis.responses.stream import SSE_HEADERS, ChatToResponsesStream

__all__ = [
    "AfterChat",
    "SSE_HEADERS",
    "ChatSSEToResponsesSSE",
    "ChatToResponsesStream",
    "NativeOnlyError",
    "as_scored_chat",
    "needs_native",
    "new_response_id",
    "to_chat_request",
    "to_responses_object",
]
