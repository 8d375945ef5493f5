"""The mitmproxy addon: turn each intercepted call into facts, ask the policy, rewrite the flow.

Only this module and ``cli.py`` know mitmproxy. The addon fails closed: from ``requestheaders``
on, an intercepted flow points at a sentinel host that ``server_connect`` refuses, so nothing
reaches the original destination unless ``request`` routed it; every hook turns an exception
into an OpenAI-format error response instead of letting mitmproxy forward the flow unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import connection, ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import server_hooks

from sidecar.errors import (
    InternalError,
    UnknownModelError,
    SidecarError,
    UpstreamError,
    error_body,
    render_openai_error,
)
from sidecar.facts import RequestFacts, facts_from_chat, parse_chat_body
from sidecar.latency import LatencyTracker
from sidecar.policy import EXPLORE_RATE, Health, RouteDecision, Target, choose_route
from sidecar.providers import openai_compat
from sidecar.providers.bedrock.adapter import BedrockAdapter
from sidecar.providers.bedrock.signing import BedrockSigner
from sidecar.rules import RuleSet, load_rules, unavailable_providers
from sidecar.tasks import spawn

log = logging.getLogger("sidecar")

SENTINEL_HOST = "fail-closed.model-router.invalid"
ROUTED_SUFFIX = "/chat/completions"
CREDENTIALS_CHECK_SECONDS = 30.0
NO_AWS_CREDENTIALS = ("no AWS credentials found (environment, shared profile, SSO or "
                      "instance/task role)")
LISTENER_NAMES = {"regular": "proxy", "reverse": "reverse", "transparent": "transparent"}


@dataclass(slots=True)
class FlowState:
    """What the sidecar did with one flow: ``flow.metadata["sidecar"]``."""

    facts: RequestFacts | None = None
    decision: RouteDecision | None = None
    target: Target | None = None
    provider_type: str = "openai"
    started: float = 0.0
    overhead_ms: float = 0.0
    original: tuple[str, str, int, str] = ("", "", 0, "")  # scheme, host, port, path
    headers_added: bool = False
    forwarded: bool = False  # the flow was rewritten and sent upstream (vs. answered by us)
    extra: dict[str, Any] = field(default_factory=dict)


class Sidecar:
    def __init__(
        self, *, latency: LatencyTracker | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        explore_rate: float = EXPLORE_RATE,
    ) -> None:
        self.rules: RuleSet | None = None
        self.latency = latency or LatencyTracker()
        self.environ = os.environ if environ is None else environ
        self.clock = clock
        self.health = Health()
        self.rng = random.Random()
        self.explore_rate = explore_rate  # prefer=fast: share of calls trying a stale model
        self.endpoints: dict[str, openai_compat.Endpoint] = {}
        self.bedrock: dict[str, BedrockAdapter] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._proxy_users: weakref.WeakKeyDictionary[connection.Client, str] = (
            weakref.WeakKeyDictionary()
        )

    # -- configuration -------------------------------------------------------------------------

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "sidecar_rules", str, "rules.yaml",
            "Path of the routing rules (rules.yaml): intercepted hosts, providers, models, "
            "defaults and per-app routes.",
        )

    def running(self) -> None:
        install_openai_error_pages()
        self._refresher = spawn(self._refresh_credentials(), name="aws-credentials")

    def done(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()

    async def _refresh_credentials(self) -> None:
        """Refresh expiring AWS credentials off the event loop, and bring Bedrock providers
        up (or down) as credentials appear (or vanish); ``sign()`` then never blocks."""
        while True:
            await asyncio.sleep(CREDENTIALS_CHECK_SECONDS)
            for name, adapter in list(self.bedrock.items()):
                if adapter.signer.needs_refresh():
                    ok = await asyncio.to_thread(adapter.signer.resolve)
                    self._set_provider_down(name, None if ok else NO_AWS_CREDENTIALS)

    def _set_provider_down(self, name: str, reason: str | None) -> None:
        down = dict(self.health.providers_down)
        if reason is None:
            if down.pop(name, None) is not None:
                log.info("provider %s is available again", name)
        elif down.get(name) != reason:
            down[name] = reason
            log.warning("provider %s is unavailable: %s", name, reason)
        self.health = Health(providers_down=down, models_down=self.health.models_down)

    def configure(self, updated: set[str]) -> None:
        if "sidecar_rules" in updated:
            try:
                rules = load_rules(ctx.options.sidecar_rules)
            except SidecarError as e:
                raise exceptions.OptionsError(str(e)) from e
            self.use_rules(rules)

    def use_rules(self, rules: RuleSet) -> None:
        """Switch to ``rules``. Blocking: resolves AWS credentials for Bedrock providers."""
        down = unavailable_providers(rules, self.environ)
        bedrock = {}
        for p in rules.providers.values():
            if p.type == "bedrock":
                assert p.region is not None
                signer = BedrockSigner(p.region, endpoint_url=p.endpoint_url, profile=p.profile)
                if not signer.resolve():
                    down[p.name] = NO_AWS_CREDENTIALS
                bedrock[p.name] = BedrockAdapter(signer)
        self.health = Health(providers_down=down)
        self.endpoints = {p.name: openai_compat.parse_endpoint(p.base_url)
                          for p in rules.providers.values() if p.base_url}
        self.bedrock = bedrock
        self.rules = rules
        for name, reason in self.health.providers_down.items():
            log.warning("provider %s is unavailable: %s", name, reason)

    # -- hooks ---------------------------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        user = proxy_user(flow.request.headers.get("proxy-authorization", ""))
        if user:
            self._proxy_users[flow.client_conn] = user

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        try:
            if not self._intercepted(flow):
                return
            req = flow.request
            state = FlowState(started=self.clock(),
                              original=(req.scheme, req.pretty_host.lower(), req.port, req.path))
            flow.metadata["sidecar"] = state
            req.host = SENTINEL_HOST  # fail closed until `request` has routed the flow
        except Exception:  # noqa: BLE001 - never let mitmproxy forward an unexamined flow
            log.exception("requestheaders failed; answering 502 (fail closed)")
            respond_error(flow, InternalError("The model-router sidecar failed to examine this "
                                              "request; it was not forwarded."))

    async def request(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.get("sidecar")
        if not isinstance(state, FlowState) or flow.response or flow.error or not flow.live:
            return
        try:
            self._route(flow, state)
        except SidecarError as e:
            respond_error(flow, e)
        except Exception:  # noqa: BLE001 - a bug must answer the app, never forward the flow
            log.exception("routing failed; answering 502 (fail closed)")
            respond_error(flow, InternalError("The model-router sidecar failed to route this "
                                              "request; it was not forwarded."))
        state.overhead_ms = (self.clock() - state.started) * 1000

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        address = data.server.address
        if address is not None and address[0] == SENTINEL_HOST:
            data.server.error = "model-router: refusing to forward an unrouted request"

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.get("sidecar")
        if not isinstance(state, FlowState) or flow.response is None:
            return
        try:
            add_router_headers(flow.response.headers, state)
            if state.facts is None or not state.facts.stream or flow.response.status_code >= 300:
                return  # buffered: the response hook sees (and may translate) the whole body
            transform = None
            if state.provider_type == "bedrock" and state.target and state.target.spec:
                transform = BedrockAdapter.transcoder(
                    state.target.spec, request_id=_amzn_request_id(flow.response.headers),
                    include_usage=bool(state.extra.get("include_usage")))
                set_sse_headers(flow.response.headers)
            flow.response.stream = StreamTimer(self, state, transform)
        except Exception:  # noqa: BLE001 - the app gets an error, not a hang or a traceback
            log.exception("responseheaders failed")
            respond_error(flow, InternalError("The model-router sidecar failed while reading "
                                              "the provider's answer."))

    def response(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.get("sidecar")
        if not isinstance(state, FlowState) or flow.response is None:
            return
        add_router_headers(flow.response.headers, state)  # no-op if responseheaders did it
        if state.forwarded and state.provider_type == "bedrock" and not flow.response.stream:
            self._translate_bedrock(flow, state)
        if state.target is None or flow.response.stream or flow.response.status_code >= 300:
            return
        try:
            usage = (flow.response.json() or {}).get("usage") or {}
        except (ValueError, AttributeError):
            usage = {}
        self.latency.record(state.target.name, duration=self.clock() - state.started,
                            output_tokens=usage.get("completion_tokens"))

    def _translate_bedrock(self, flow: http.HTTPFlow, state: FlowState) -> None:
        response = flow.response
        assert response is not None and state.target is not None and state.target.spec
        try:
            status, body = BedrockAdapter.translate(
                response.status_code, LowerHeaders(response.headers), response.content or b"",
                spec=state.target.spec, request_id=_amzn_request_id(response.headers))
        except SidecarError as e:
            status, content, _ = render_openai_error(e)
            body = json.loads(content)
        keep = {k: v for k, v in response.headers.items()
                if k.lower().startswith(("x-model-router-", "x-request-id", "x-amzn-"))}
        flow.response = http.Response.make(status, json.dumps(body).encode(), {
            **keep, "content-type": "application/json"})

    def error(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.get("sidecar")
        if isinstance(state, FlowState) and state.target is not None and flow.error:
            log.warning("upstream %s failed: %s", state.target.provider, flow.error.msg)

    # -- routing -------------------------------------------------------------------------------

    def _intercepted(self, flow: http.HTTPFlow) -> bool:
        rules = self.rules
        if rules is None:
            return False
        if flow.client_conn.proxy_mode.type_name == "reverse":
            return True
        return rules.intercept_for(flow.request.pretty_host.lower(), flow.request.port) is not None

    def _route(self, flow: http.HTTPFlow, state: FlowState) -> None:
        rules = self.rules
        assert rules is not None
        req = flow.request
        scheme, host, port, path = state.original
        client = dict(
            listener=LISTENER_NAMES.get(flow.client_conn.proxy_mode.type_name, "proxy"),
            client_ip=flow.client_conn.peername[0] if flow.client_conn.peername else "",
            proxy_user=self._proxy_users.get(flow.client_conn)
            or proxy_user(req.headers.get("proxy-authorization", "")),
            headers=LowerHeaders(req.headers), host=host, port=port, path=path,
        )
        if req.method == "POST" and path.split("?")[0].endswith(ROUTED_SUFFIX):
            body = parse_chat_body(req.get_content(strict=False))
            facts = facts_from_chat(body, **client)
        else:
            body, facts = None, RequestFacts(model="", **client)
        decision = choose_route(facts, rules, self.latency, health=self.health, rng=self.rng,
                                explore_rate=self.explore_rate)
        state.facts, state.decision = facts, decision
        target = decision.target
        if decision.shadow and decision.kind != "passthrough":
            target = Target(rules.intercept_for(host, port).provider  # type: ignore[union-attr]
                            if rules.intercept_for(host, port) else rules.intercept[0].provider,
                            facts.model, rules.catalog.find(facts.model))
        self._send_to(flow, state, target, body)
        state.forwarded = True

    def _send_to(
        self, flow: http.HTTPFlow, state: FlowState, target: Target, body: dict[str, Any] | None
    ) -> None:
        rules = self.rules
        assert rules is not None
        provider = rules.providers[target.provider]
        state.target, state.provider_type = target, provider.type
        if provider.type == "bedrock":
            self._send_to_bedrock(flow, state, target, body)
            return
        endpoint = self.endpoints[provider.name]
        req = flow.request
        remove, add = openai_compat.upstream_headers(
            req.headers, provider, provider.resolve_key(self.environ)
        )
        for name in remove:
            del req.headers[name]
        req.headers.update(add)
        if body is not None and (target.upstream_model != body.get("model")
                                 or openai_compat.has_router_fields(body)):
            req.content = openai_compat.upstream_body(body, model=target.upstream_model)
        req.scheme, req.host, req.port = endpoint.scheme, endpoint.host, endpoint.port
        req.host_header = endpoint.host_header
        req.path = openai_compat.upstream_path(state.original[3], endpoint)

    def _send_to_bedrock(
        self, flow: http.HTTPFlow, state: FlowState, target: Target, body: dict[str, Any] | None
    ) -> None:
        if body is None or target.spec is None or state.facts is None:
            raise UnknownModelError(
                f"Bedrock provider {target.provider!r} serves only chat completions of catalog "
                f"models; {state.original[3]!r} for model {target.upstream_model!r} cannot go there.",
                param="model",
            )
        prepared = self.bedrock[target.provider].prepare(body, target.spec,
                                                         stream=state.facts.stream)
        flow.request.url = prepared.url
        flow.request.headers = http.Headers(**{k.replace("-", "_"): v for k, v in
                                               prepared.headers.items()})
        flow.request.content = prepared.body
        options = body.get("stream_options")
        state.extra["include_usage"] = isinstance(options, dict) and bool(
            options.get("include_usage"))


class LowerHeaders(Mapping[str, str]):
    """A read-only, lower-case-keyed view of mitmproxy headers for the pure core."""

    def __init__(self, headers: http.Headers) -> None:
        self._data = {k.lower(): v for k, v in headers.items()}

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def proxy_user(header: str) -> str | None:
    """The user name of a ``Proxy-Authorization: Basic`` header (the app's name), if any."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user = base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
    except (ValueError, UnicodeDecodeError):
        return None
    return user or None


def add_router_headers(headers: http.Headers, state: FlowState) -> None:
    if state.headers_added:
        return
    state.headers_added = True
    decision = state.decision
    if "x-request-id" not in headers:
        headers["x-request-id"] = f"req_{uuid.uuid4().hex}"
    if decision is None:
        return
    served = state.target or decision.target
    headers["x-model-router-app"] = decision.app
    headers["x-model-router-model"] = served.name
    headers["x-model-router-provider"] = served.provider
    headers["x-model-router-reason"] = "shadow" if served is not decision.target else (
        decision.reason)
    headers["x-model-router-overhead-ms"] = f"{state.overhead_ms:.2f}"
    if served is not decision.target:
        headers["x-model-router-shadow-model"] = decision.target.name
        headers["x-model-router-shadow-provider"] = decision.target.provider
        headers["x-model-router-shadow-reason"] = decision.reason


def respond_error(flow: http.HTTPFlow, exc: SidecarError) -> None:
    status, body, headers = render_openai_error(exc)
    flow.response = http.Response.make(status, body, headers)


class StreamTimer:
    """``flow.response.stream``: chunks go out as they arrive (through ``transform``, if any);
    the time to the first chunk and to the end are recorded as the model's latency."""

    def __init__(
        self, addon: Sidecar, state: FlowState,
        transform: Callable[[bytes], bytes | list[bytes]] | None = None,
    ) -> None:
        self.addon, self.state, self.transform = addon, state, transform
        self.first: float | None = None

    def __call__(self, data: bytes) -> bytes | Iterable[bytes]:
        out = data if self.transform is None else self.transform(data)
        now = self.addon.clock()
        if out and self.first is None:
            self.first = now - self.state.started
        if not data and self.state.target is not None:
            self.addon.latency.record(self.state.target.name, duration=now - self.state.started,
                                      ttft=self.first)
        return out or []  # never b"": mitmproxy would end the stream there


def set_sse_headers(headers: http.Headers) -> None:
    """The transcoded stream is OpenAI SSE of unknown length."""
    for name in ("content-length", "content-type", "transfer-encoding"):
        headers.pop(name, None)
    headers["content-type"] = "text/event-stream; charset=utf-8"
    headers["transfer-encoding"] = "chunked"


def _amzn_request_id(headers: http.Headers) -> str:
    return headers.get("x-amzn-requestid", "")


def openai_error_page(status: int, message: str) -> bytes:
    """mitmproxy's own error answers (connect failures, 413, protocol errors) as OpenAI JSON."""
    if status == 413:
        text, kind, code = f"The request body is too large: {message}", "invalid_request_error", (
            "request_too_large")
    elif status < 500:
        text, kind, code = f"Bad request: {message}", "invalid_request_error", "invalid_request"
    else:
        text, kind, code = (f"model-router could not reach the provider: {message}", "api_error",
                            "upstream_connect_error")
    return json.dumps(error_body(text, type=kind, code=code)).encode()


def _openai_error_response(status: int, message: str = "") -> bytes:
    from mitmproxy.net.http import http1

    resp = http.Response.make(status, openai_error_page(status, message), {
        "content-type": "application/json", "connection": "close",
        "x-request-id": f"req_{uuid.uuid4().hex}",
    })
    return http1.assemble_response(resp)


def install_openai_error_pages() -> None:
    """Replace mitmproxy's HTML error pages: apps behind the sidecar expect OpenAI errors."""
    from mitmproxy.proxy.layers.http import _http1, _http2, _http3

    _http1.make_error_response = _openai_error_response
    _http2.format_error = openai_error_page
    _http3.format_error = openai_error_page
