"""What the app gets from one attempt, on both forwarding paths (mitmproxy's own and the relay).

* ``buffered(call, status, headers, body)``: the provider's whole answer through its adapter
  (``Adapter.answer``), then back into a Responses object when a Responses call was served by
  chat; the ``Answer``'s verdict says whether the attempt served, failed worth a fallback, or is
  the final word for this request.
* ``stream_transform(call, ...)``: the adapter's stream transform, followed by the chat ->
  Responses translator when needed; ``stream_headers`` fixes the headers for its output.
* ``health(verdict)``: what an attempt means for its deployment's health.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import replace

from sidecar.apis.responses import (
    AfterChat,
    ChatSSEToResponsesSSE,
    ChatToResponsesStream,
    new_response_id,
    to_responses_object,
)
from sidecar.core.errors import SidecarError
from sidecar.providers import (
    SSE_CONTENT_TYPE,
    Answer,
    StreamTransform,
    UpstreamCall,
    Verdict,
    malformed,
    pass_headers,
)


def buffered(call: UpstreamCall, status: int, headers: Mapping[str, str], body: bytes) -> Answer:
    """``headers``: the provider's, lower-case names."""
    answer = call.adapter.answer(call, status, headers, body)
    if call.responses is None or answer.verdict != "ok" or answer.parsed is None:
        return answer
    try:
        translated = to_responses_object(answer.parsed, request=call.responses,
                                         response_id=new_response_id(),
                                         created_at=int(time.time()))
    except SidecarError:  # a "success" without what a chat.completion promises (no choices)
        return malformed(call, answer.status, answer.headers,
                         what="no chat.completion a Responses object can be made of")
    return replace(answer, body=json.dumps(translated).encode(),
                   headers={**answer.headers, "content-type": "application/json"})


def stream_transform(call: UpstreamCall, *, request_id: str, include_usage: bool
                     ) -> StreamTransform:
    """Bytes from the provider -> bytes for the app, the usage read on the way (and hidden
    when the app did not ask for it)."""
    translate = call.responses is not None
    base = call.adapter.stream(call, request_id=request_id,
                               include_usage=include_usage or translate)
    if not translate:
        return base
    assert call.responses is not None
    return AfterChat(base, ChatSSEToResponsesSSE(ChatToResponsesStream(
        call.responses, new_response_id(), int(time.time()))))


def stream_content_type(call: UpstreamCall) -> str | None:
    """The content type of a stream the sidecar rewrites into SSE (None: the provider's)."""
    return SSE_CONTENT_TYPE if call.responses is not None else call.adapter.stream_content_type


def stream_headers(call: UpstreamCall, headers: Mapping[str, str]) -> dict[str, str]:
    """A streamed answer's headers as the app gets them (relayed as it arrives)."""
    out = pass_headers(headers)
    content_type = stream_content_type(call)
    if content_type is not None:
        out["content-type"] = content_type
    return out


def health(verdict: Verdict) -> bool | None:
    """True: the deployment served; False: it failed; None: the answer says nothing of its
    health (a 4xx: this request's fault)."""
    if verdict == "ok":
        return True
    return None if verdict == "final" else False
