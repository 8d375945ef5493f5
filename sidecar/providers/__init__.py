"""Providers behind one seam: an ``Adapter`` per provider kind (``ADAPTERS``).

The shell never asks which kind of provider it talks to; it asks the provider's adapter:

* ``unavailable()``: why it cannot serve right now (no key, no AWS credentials), or None;
* ``prepare(target, request)``: the exact HTTP request (``UpstreamCall``) for one attempt;
* ``answer(call, status, headers, body)``: a buffered answer as the app must get it
  (``Answer``: status, headers, body, usage, and a verdict for the attempt);
* ``stream(call, ...)``: the transform a streamed answer passes through on its way to the app
  (``StreamTransform``: exposes the usage it read and whether it sent the app an error);
* ``discover(timeout=)``: which model ids this account can call right now (``Listing``), None
  when the provider cannot be asked, ``DiscoveryError`` when asking failed (blocking).

Both forwarding paths -- mitmproxy's own (a plan of one model) and the sidecar's attempts
(``sidecar.forward.relay``) -- call the same adapter methods through ``sidecar.forward.answer``;
the Responses-as-chat wrapping is generic on top of them (``sidecar.forward.call``).

    Adapter (Protocol)
      OpenAICompatAdapter   any OpenAI-compatible HTTP API (openai_compat.py)
      BedrockAdapter        Bedrock Runtime's Converse API, SigV4-signed (bedrock/adapter.py)

``registry.ADAPTERS`` maps a provider ``type`` of rules.yaml to its adapter class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sidecar.core.accounting import Usage
from sidecar.core.config.offers import Listing
from sidecar.core.config.rules import ProviderSpec
from sidecar.core.errors import UpstreamError, render_openai_error
from sidecar.core.routing.decision import Target

Api = Literal["chat", "responses", "other"]
# ok: serve it. retry: a failure worth the next model (429, 5xx, a provider's retryable error).
# malformed: a success that is not what the API promises (worth the next model too).
# final: the provider's answer to this request (a 4xx): the app gets it, no other model is tried.
Verdict = Literal["ok", "retry", "malformed", "final"]
RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
# Never forwarded: they describe the app's connection to the sidecar, not the call. The body is
# sent decoded (as it was read), so its content-encoding does not go either.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length", "content-encoding",
})


@dataclass(frozen=True, slots=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    path_prefix: str  # "" or "/v1" or "/v1beta/openai"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class AppRequest:
    """The app's call as every attempt starts from it. The router's own fields (``prefer``,
    ``tier``) are already gone from ``body`` and ``raw`` (``sidecar.forward.call.app_request``)."""

    api: Api
    path: str  # the app's request target (path and query)
    headers: Mapping[str, str]  # the app's headers, lower-case names
    raw: bytes  # the body as it goes on when nothing needs changing
    body: Mapping[str, Any] | None  # the parsed chat or Responses body; None for other endpoints
    stream: bool


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """One attempt: the exact HTTP request a provider gets, and the adapter that reads its
    answer."""

    target: Target
    adapter: Adapter = field(repr=False, compare=False)
    endpoint: Endpoint  # scheme, host and port, parsed once per rules load
    path: str  # the request target on that host
    headers: dict[str, str]  # every header to send (lower-case names), Host excluded
    body: bytes
    stream: bool
    api: Api = "chat"
    responses: Mapping[str, Any] | None = None  # a Responses request served via chat
    timeout: float | None = None  # the provider's read timeout (None: the sidecar's default)

    @property
    def url(self) -> str:
        return f"{self.endpoint.scheme}://{self.endpoint.host_header}{self.path}"


@dataclass(frozen=True, slots=True)
class Answer:
    """A buffered answer as the app gets it, and what the attempt was worth."""

    status: int
    headers: dict[str, str]
    body: bytes
    verdict: Verdict
    usage: Usage | None = None
    reason: str = "ok"  # why the attempt failed: "status 503", "malformed"
    parsed: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)  # the
    #                                 chat.completion of a success (read once, for translating)


class StreamTransform(Protocol):
    """Bytes from the provider -> bytes for the app (never ``b""``; ``[]`` for nothing yet);
    called once with ``b""`` at the end."""

    def __call__(self, data: bytes) -> list[bytes]: ...

    @property
    def usage(self) -> Usage | None: ...  # the provider's usage report, once seen

    @property
    def failed(self) -> bool: ...  # the app was sent an error event


class DiscoveryError(Exception):
    """Asking a provider which models this account can call failed; the message names the
    provider and why (an HTTP status, a timeout, a malformed answer)."""


class Adapter(Protocol):
    @property
    def spec(self) -> ProviderSpec: ...

    @property
    def native_responses(self) -> bool: ...  # serves /v1/responses itself (else: via chat)

    @property
    def stream_content_type(self) -> str | None: ...  # set when its streams become SSE here

    def unavailable(self) -> str | None: ...  # blocking (credentials); None: can serve

    def needs_refresh(self) -> bool: ...  # unavailable() should run again (off the loop)

    def prepare(self, target: Target, request: AppRequest) -> UpstreamCall: ...

    def answer(self, call: UpstreamCall, status: int, headers: Mapping[str, str],
               body: bytes) -> Answer: ...

    def stream(self, call: UpstreamCall, *, request_id: str,
               include_usage: bool) -> StreamTransform: ...

    def discover(self, *, timeout: float) -> Listing | None: ...  # blocking (run it in a
    #   thread); None: cannot be asked (no key of its own); raises DiscoveryError when it failed


def status_verdict(status: int) -> Verdict:
    if status < 300:
        return "ok"
    return "retry" if status in RETRYABLE_STATUS else "final"


def pass_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A provider's response headers as the app may see them (lower-case, no hop-by-hop)."""
    return {k.lower(): v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}


def malformed(call: UpstreamCall, status: int, headers: Mapping[str, str], *, what: str
              ) -> Answer:
    """The 502 for a success that is not what the API promises (``what`` it was instead)."""
    code, body, error_headers = render_openai_error(UpstreamError(
        f"{call.target.name} answered {status} with {what}", code="upstream_malformed_response"))
    kept = {k: v for k, v in headers.items() if k.startswith(("x-request-id", "x-model-router-"))}
    return Answer(code, {**kept, **error_headers}, body, "malformed", reason="malformed")
