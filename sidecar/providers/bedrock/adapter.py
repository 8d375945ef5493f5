"""BedrockAdapter: what the addon needs to serve a chat.completions call from Bedrock Runtime.

``prepare`` turns the app's body into a signed Converse / ConverseStream HTTP request that
mitmproxy sends itself (no boto3 client, no thread); ``transcoder`` turns the streamed AWS
event-stream into OpenAI SSE as it arrives; ``translate`` turns a buffered answer (success or
error) into an OpenAI JSON body.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.core.config.catalog import ModelSpec
from sidecar.providers.bedrock.errors import from_http_error
from sidecar.providers.bedrock.request import converse_path, to_converse_request
from sidecar.providers.bedrock.response import from_converse_response
from sidecar.providers.bedrock.signing import BedrockSigner
from sidecar.providers.bedrock.stream import ConverseStreamTranslator
from sidecar.providers.bedrock.transcode import EventStreamToSSE


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    url: str
    path: str  # the Converse path under the endpoint's base URL (url = base URL + path)
    headers: dict[str, str]  # the complete header set to send
    body: bytes


class BedrockAdapter:
    def __init__(self, signer: BedrockSigner) -> None:
        self.signer = signer

    def prepare(self, body: Mapping[str, Any], spec: ModelSpec, *, stream: bool) -> PreparedRequest:
        payload = json.dumps(to_converse_request(body, spec), separators=(",", ":")).encode()
        path = converse_path(spec, stream=stream)
        url = self.signer.url(path)
        accept = "application/vnd.amazon.eventstream" if stream else "application/json"
        headers = self.signer.sign(method="POST", url=url, body=payload,
                                   headers={"content-type": "application/json", "accept": accept})
        return PreparedRequest(url=url, path=path, headers=headers, body=payload)

    @staticmethod
    def transcoder(spec: ModelSpec, *, request_id: str, include_usage: bool) -> EventStreamToSSE:
        return EventStreamToSSE(ConverseStreamTranslator(
            model=spec.upstream_id, created=int(time.time()), response_id=_completion_id(request_id),
            include_usage=include_usage,
        ))

    @staticmethod
    def translate(
        status: int, headers: Mapping[str, str], content: bytes, *, spec: ModelSpec,
        request_id: str,
    ) -> tuple[int, dict[str, Any]]:
        """(status, OpenAI JSON body) for a buffered Converse answer or Bedrock error."""
        if not 200 <= status < 300:
            mapped = from_http_error(status, headers, content)
            return mapped.status, mapped.body
        try:
            converse = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            mapped = from_http_error(502, headers, content)
            return 502, mapped.body
        return status, from_converse_response(
            converse, model=spec.upstream_id, created=int(time.time()),
            response_id=_completion_id(request_id),
        )


def _completion_id(request_id: str) -> str:
    return f"chatcmpl-{request_id}" if request_id else f"chatcmpl-{time.time_ns():x}"
