"""One intercepted flow's call: ``CallState`` in ``flow.metadata["sidecar"]``, and the mitmproxy
side of serving it (pointing the request, the router's response headers, the stream callable).

A call's lifecycle, one phase after another (``CallState.phase``):

    examined   requestheaders: intercepted; the request points at the fail-closed sentinel
    routed     request: the decision is made and the call is sent ``direct`` (mitmproxy sends the
               one model of the plan), ``relayed`` (the sidecar's attempts serve the plan), or
               ``answered`` (the sidecar answered itself: an error, a plan served in the hook)
    answering  the answer's headers are known: the router's headers are on it
    finished   bookkeeping done (metrics, latency, access log): exactly once per call
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mitmproxy import http

from sidecar.core.accounting import Usage
from sidecar.core.errors import ProxyAuthRequiredError, SidecarError, render_openai_error
from sidecar.core.facts import RequestFacts
from sidecar.core.routing.decision import RouteDecision, Target
from sidecar.forward.relay import FALLBACKS_HEADER, Job
from sidecar.providers import Endpoint, StreamTransform, UpstreamCall
from sidecar.state import Reservation

if TYPE_CHECKING:
    from sidecar.proxy.cache import Lookup

SENTINEL_HOST = "fail-closed.model-router.invalid"
STREAM_END = b"data: [DONE]\n\n"
ROUTER_PREFIX = b"x-model-router-"

Phase = Literal["examined", "routed", "answering", "finished"]
Way = Literal["direct", "relayed", "answered", "cached"]
CacheOutcome = Literal["hit", "miss", "bypass"]


@dataclass(slots=True)
class CallState:
    """What the sidecar knows and did about one call (module docstring: its lifecycle)."""

    started: float
    original: tuple[str, str, int, str]  # scheme, host, port, path as the app sent them
    phase: Phase = "examined"
    app: str = "other"  # the app that matched, once known (before any decision)
    facts: RequestFacts | None = None
    decision: RouteDecision | None = None
    plan: tuple[Target, ...] = ()  # what will be tried, in order
    way: Way | None = None
    call: UpstreamCall | None = None  # direct: what mitmproxy sends
    job: Job | None = None  # relayed: the attempts
    relay_path: str | None = None  # relayed stream: the job's path on the relay server
    transform: StreamTransform | None = None  # a direct stream's (usage, errors)
    timer: StreamTimer | None = None
    include_usage: bool = False  # the app asked for a stream's usage chunk
    ttft: float | None = None
    overhead_ms: float = 0.0
    request_id: str = ""
    reservation: Reservation | None = None  # the budget reservation, settled when finished
    cache: CacheOutcome | None = None  # the app has a cache: what it did for this call
    lookup: Lookup | None = None  # a miss that may be stored once the answer is complete
    cached_usage: Usage | None = None  # a hit: the usage of the stored answer
    budget_remaining: float | None = None  # USD left in the app's budget after reserving

    @property
    def stream(self) -> bool:
        return self.facts is not None and self.facts.stream

    @property
    def shadow(self) -> bool:
        """Decided, but forwarded unchanged."""
        return self.decision is not None and self.decision.shadow and (
            self.decision.kind != "passthrough")

    @property
    def target(self) -> Target | None:
        """What served (or is serving) the call, once known."""
        if self.job is not None:
            return self.job.served
        if self.way == "cached" and self.plan:
            return self.plan[0]  # the deployment whose stored answer it was
        return self.call.target if self.call is not None else None

    @property
    def failures(self) -> list[tuple[Target, str]]:
        return self.job.failures if self.job is not None else []

    @property
    def skipped(self) -> list[tuple[Target, str]]:
        return self.job.skipped if self.job is not None else []

    @property
    def done(self) -> bool:
        """The app was sent a stream's last event (``data: [DONE]``)."""
        return self.timer is not None and self.timer.done


def point(req: http.Request, endpoint: Endpoint, path: str, headers: Mapping[str, str],
          body: bytes) -> None:
    """Send ``req`` to ``endpoint`` + ``path`` with exactly these headers and body.

    The hot path's version of ``req.url = ...; req.headers = ...; req.content = ...``: the
    endpoint is parsed once per rules load, and the fields are set once (mitmproxy's setters
    would re-parse the URL and rewrite Host and Content-Length through case-insensitive
    lookups)."""
    host_header = endpoint.host_header
    req.scheme = endpoint.scheme
    req.data.host, req.data.port = endpoint.host, endpoint.port
    if req.data.authority:  # HTTP/2 and absolute-form requests carry it
        req.data.authority = host_header.encode("idna")
    req.path = path
    req.headers = http.Headers(
        [(b"host", host_header.encode("idna"))]
        + [(k.encode("latin-1"), v.encode("utf-8", "surrogateescape")) for k, v in headers.items()]
        + [(b"content-length", b"%d" % len(body))])
    req.raw_content = body


class LowerHeaders(Mapping[str, str]):
    """A read-only, lower-case-keyed view of mitmproxy headers for the pure core."""

    def __init__(self, headers: http.Headers) -> None:
        # From the raw fields: headers.items() re-scans every field per name (quadratic).
        self._data = {k.decode("latin-1").lower(): v.decode("utf-8", "surrogateescape")
                      for k, v in headers.fields}

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    # The Mapping mixins answer these by catching KeyError: slow for the absent names (most).
    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def add_router_headers(headers: http.Headers, state: CallState) -> None:
    """The x-request-id (the provider's, or a new one) and what the router did, as response
    headers, appended in one pass over the fields (each ``headers[k] = v`` would re-scan
    them). Moves the call to ``answering``; a second call does nothing."""
    if state.phase in ("answering", "finished"):
        return
    state.phase = "answering"
    fields = headers.fields
    request_id = fallbacks = None
    for name, value in fields:
        lower = name.lower()
        if lower == b"x-request-id" and request_id is None:
            request_id = value.decode("latin-1")
        elif lower == FALLBACKS_HEADER.encode():
            fallbacks = value
    new: list[tuple[bytes, bytes]] = []
    if request_id is None:
        request_id = f"req_{uuid.uuid4().hex}"
        new.append((b"x-request-id", request_id.encode()))
    state.request_id = request_id
    decision = state.decision
    if decision is None:
        headers.fields = fields + tuple(new) + ((b"x-model-router-app", state.app.encode()),)
        return
    served = state.target or (state.plan[0] if state.plan else decision.target)
    router = {
        "app": decision.app, "model": served.name, "provider": served.provider,
        "reason": "shadow" if state.shadow else decision.reason,
        "overhead-ms": f"{state.overhead_ms:.2f}",
    }
    if decision.auto is not None:
        router["auto-tier"] = decision.auto.tier
        router["auto-score"] = f"{decision.auto.score:g}"
    if state.cache is not None:
        router["cache"] = state.cache
    if state.budget_remaining is not None:
        router["budget-remaining"] = f"{state.budget_remaining:.6f}"
    if state.shadow:
        router["shadow-model"] = decision.target.name
        router["shadow-provider"] = decision.target.provider
        router["shadow-reason"] = decision.reason
    new += [(ROUTER_PREFIX + k.encode(), v.encode("utf-8", "surrogateescape"))
            for k, v in router.items()]
    new.append((FALLBACKS_HEADER.encode(), fallbacks or b"0"))
    headers.fields = tuple(f for f in fields if not f[0].lower().startswith(ROUTER_PREFIX)
                           ) + tuple(new)


def error_response(exc: SidecarError) -> http.Response:
    status, body, headers = render_openai_error(exc)
    return http.Response.make(status, body, headers)


def proxy_auth_required() -> http.Response:
    response = error_response(ProxyAuthRequiredError(
        "model-router requires proxy authentication: HTTPS_PROXY=http://USER:PASSWORD@host:port"))
    response.headers["proxy-authenticate"] = 'Basic realm="model-router"'
    return response


class StreamTimer:
    """``flow.response.stream``: chunks go out as they arrive, through ``transform`` when given
    (a direct stream's); notes the time to the first one, and whether the last event sent was
    the stream's end."""

    def __init__(self, state: CallState, clock: Any,
                 transform: StreamTransform | None = None,
                 recorder: Callable[[bytes], None] | None = None) -> None:
        self.state, self.clock, self.transform = state, clock, transform
        self.recorder = recorder  # sees every byte the app is sent (the cache's assembler)
        self.done = False
        self._tail = b""  # the end of what was sent so far (the end marker may come split)

    def __call__(self, data: bytes) -> bytes | Iterable[bytes]:
        out: bytes | list[bytes] = data
        if self.transform is not None:
            out = self.transform(data)
        if out:
            if self.state.ttft is None:
                self.state.ttft = self.clock() - self.state.started
            if self.recorder is not None:
                for part in [out] if isinstance(out, bytes) else out:
                    self.recorder(part)
            last = out if isinstance(out, bytes) else out[-1]
            self.done = (self._tail + last)[-len(STREAM_END):] == STREAM_END
            self._tail = last[-len(STREAM_END):]
        return out or []  # never b"": mitmproxy would end the stream there
