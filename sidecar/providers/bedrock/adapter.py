"""BedrockAdapter: a chat.completions call served by Bedrock Runtime's Converse API.

``prepare`` turns the app's body into a signed Converse / ConverseStream HTTP request (no boto3
client, no thread: the credentials are resolved off the event loop beforehand); ``answer`` turns
a buffered Converse answer or Bedrock error into OpenAI JSON; ``stream`` transcodes the AWS
event stream into OpenAI SSE as it arrives. ``discover`` asks the control plane which models
the account can call (``discovery.py``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from sidecar.core.accounting import usage_from_openai
from sidecar.core.config.catalog import ModelSpec
from sidecar.core.config.offers import Listing
from sidecar.core.config.rules import ProviderSpec
from sidecar.core.errors import SidecarError, UnknownModelError, render_openai_error
from sidecar.core.routing.decision import Target
from sidecar.providers import (
    RETRYABLE_STATUS,
    SSE_CONTENT_TYPE,
    Answer,
    AppRequest,
    StreamTransform,
    UpstreamCall,
    Verdict,
)
from sidecar.providers.bedrock.discovery import list_models
from sidecar.providers.bedrock.errors import from_http_error
from sidecar.providers.bedrock.request import converse_path, to_converse_request
from sidecar.providers.bedrock.response import from_converse_response
from sidecar.providers.bedrock.signing import BedrockSigner
from sidecar.providers.bedrock.stream import ConverseStreamTranslator
from sidecar.providers.bedrock.transcode import EventStreamToSSE
from sidecar.providers.openai_compat import parse_endpoint

NO_AWS_CREDENTIALS = ("no AWS credentials found (environment, shared profile, SSO or "
                      "instance/task role)")
KEPT_HEADERS = ("x-request-id", "x-amzn-", "x-model-router-")


class BedrockAdapter:
    native_responses = False  # /v1/responses is translated to chat, then to Converse
    stream_content_type: str | None = SSE_CONTENT_TYPE

    def __init__(self, spec: ProviderSpec, environ: Mapping[str, str]) -> None:
        assert spec.region is not None  # rules.parse_provider requires it
        self.spec = spec
        self.signer = BedrockSigner(spec.region, endpoint_url=spec.endpoint_url,
                                    profile=spec.profile)
        self.endpoint = parse_endpoint(self.signer.base_url)

    def unavailable(self) -> str | None:
        """Blocking: finds (or refreshes) credentials through the AWS chain."""
        return None if self.signer.resolve() else NO_AWS_CREDENTIALS

    def needs_refresh(self) -> bool:
        return self.signer.needs_refresh()

    def discover(self, *, timeout: float) -> Listing | None:
        """Blocking: the control plane's foundation models and inference profiles (None
        without AWS credentials)."""
        return list_models(self.spec, timeout=timeout)

    def prepare(self, target: Target, request: AppRequest) -> UpstreamCall:
        spec = target.spec
        if request.api != "chat" or request.body is None or spec is None:
            raise UnknownModelError(
                f"Bedrock provider {target.provider!r} serves only chat completions of catalog "
                f"models; {request.path!r} for model {target.upstream_model!r} cannot go there.",
                param="model")
        payload = json.dumps(to_converse_request(request.body, spec),
                             separators=(",", ":")).encode()
        path = converse_path(spec, stream=request.stream)
        accept = "application/vnd.amazon.eventstream" if request.stream else "application/json"
        signed = self.signer.sign(method="POST", url=self.signer.url(path), body=payload,
                                  headers={"content-type": "application/json", "accept": accept})
        headers = {k.lower(): v for k, v in signed.items() if k.lower() != "host"}
        return UpstreamCall(
            target=target, adapter=self, endpoint=self.endpoint,
            path=self.endpoint.path_prefix + path, headers=headers, body=payload,
            stream=request.stream, api="chat", timeout=self.spec.timeout)

    def answer(self, call: UpstreamCall, status: int, headers: Mapping[str, str],
               body: bytes) -> Answer:
        """The Converse answer (or Bedrock error) as OpenAI JSON."""
        kept = {k.lower(): v for k, v in headers.items() if k.lower().startswith(KEPT_HEADERS)}
        kept["content-type"] = "application/json"
        if not 200 <= status < 300:
            mapped = from_http_error(status, _lower(headers), body)
            verdict: Verdict = ("retry" if mapped.retryable or status in RETRYABLE_STATUS
                                else "final")
            return Answer(mapped.status, kept, json.dumps(mapped.body).encode(), verdict,
                          reason=f"status {status}")
        try:
            converse = json.loads(body)
        except (ValueError, RecursionError):
            mapped = from_http_error(502, _lower(headers), body)
            return Answer(502, kept, json.dumps(mapped.body).encode(), "malformed",
                          reason="malformed")
        assert call.target.spec is not None  # prepare() refuses targets without one
        try:
            answer = from_converse_response(
                converse, model=call.target.spec.upstream_id, created=int(time.time()),
                response_id=_completion_id(headers.get("x-amzn-requestid", "")))
        except SidecarError as e:  # e.g. stopped with malformed model output: worth a fallback
            code, error, _ = render_openai_error(e)
            return Answer(code, kept, error, "malformed", reason="malformed")
        return Answer(status, kept, json.dumps(answer).encode(), "ok",
                      usage=usage_from_openai(answer), parsed=answer)

    def stream(self, call: UpstreamCall, *, request_id: str,
               include_usage: bool) -> StreamTransform:
        spec: ModelSpec | None = call.target.spec
        assert spec is not None
        return EventStreamToSSE(ConverseStreamTranslator(
            model=spec.upstream_id, created=int(time.time()),
            response_id=_completion_id(request_id), include_usage=include_usage))


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _completion_id(request_id: str) -> str:
    return f"chatcmpl-{request_id}" if request_id else f"chatcmpl-{time.time_ns():x}"
