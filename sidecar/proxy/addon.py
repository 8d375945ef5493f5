"""The mitmproxy addon: turn each intercepted call into facts, ask the policy, rewrite the flow.

Only this module and ``cli.py`` know mitmproxy. The addon fails closed: from ``requestheaders``
on, an intercepted flow points at a sentinel host that ``server_connect`` refuses, so nothing
reaches the original destination unless ``request`` routed it; every hook turns an exception
into an OpenAI-format error response instead of letting mitmproxy forward the flow unchanged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from mitmproxy import connection, ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import server_hooks

from sidecar.apis.responses import needs_native, to_chat_request
from sidecar.core.accounting import Usage, call_record, usage_from_openai
from sidecar.core.config.rules import RuleSet, load_rules, unavailable_providers
from sidecar.core.errors import (
    InternalError,
    ProxyAuthRequiredError,
    SidecarError,
    UnsupportedParameterError,
    UpstreamError,
    render_openai_error,
)
from sidecar.core.facts import RequestFacts, facts_from_chat, facts_from_responses, parse_chat_body
from sidecar.core.live import LiveState
from sidecar.core.routing.cooldown import Cooldowns
from sidecar.core.routing.latency import LatencyTracker
from sidecar.core.routing.policy import EXPLORE_RATE, Health, RouteDecision, Target, choose_route
from sidecar.forward.call import Dispatcher, UpstreamCall
from sidecar.forward.relay import (
    SERVED_HEADER,
    Job,
    Outcome,
    Relay,
    json_object,
    stream_failed,
    stream_transform,
    stream_usage,
)
from sidecar.providers.bedrock.adapter import BedrockAdapter
from sidecar.providers.bedrock.signing import BedrockSigner
from sidecar.providers.openai_compat import Endpoint
from sidecar.proxy.metrics import Metrics
from sidecar.proxy.proxyauth import load_proxy_auth, proxy_authenticated, proxy_user
from sidecar.proxy.tasks import spawn

log = logging.getLogger("sidecar")
access_log = logging.getLogger("sidecar.access")  # one JSON line per call

SENTINEL_HOST = "fail-closed.model-router.invalid"
ROUTED_SUFFIX = "/chat/completions"
RESPONSES_SUFFIX = "/responses"
CREDENTIALS_CHECK_SECONDS = 30.0
RULES_POLL_SECONDS = 1.0
UPSTREAM_TIMEOUT = 120.0  # seconds without a byte from the provider before trying the next
CONNECT_TIMEOUT = 10.0
NO_AWS_CREDENTIALS = ("no AWS credentials found (environment, shared profile, SSO or "
                      "instance/task role)")
LISTENER_NAMES = {"regular": "proxy", "reverse": "reverse", "transparent": "transparent"}


@dataclass(slots=True)
class FlowState:
    """What the sidecar did with one flow: ``flow.metadata["sidecar"]``."""

    facts: RequestFacts | None = None
    decision: RouteDecision | None = None
    plan: tuple[Target, ...] = ()  # what will be tried, in order
    target: Target | None = None  # what served (known once the answer starts)
    provider_type: str = "openai"
    started: float = 0.0
    overhead_ms: float = 0.0
    original: tuple[str, str, int, str] = ("", "", 0, "")  # scheme, host, port, path
    headers_added: bool = False
    forwarded: bool = False  # the flow was rewritten and sent on (vs. answered by us)
    relayed: bool = False  # sent through the relay (fallbacks, Responses calls)
    shadow: bool = False  # decided, but forwarded unchanged
    include_usage: bool = False
    job: Job | None = None  # the relay's job (fallbacks, Responses calls)
    call: UpstreamCall | None = None  # what the fast path sent (a direct stream transcodes it)
    transform: Callable[[bytes], list[bytes]] | None = None  # a direct stream's (usage, errors)
    done: bool = False  # the app was sent a stream's last event (data: [DONE])
    ttft: float | None = None
    finished: bool = False
    request_id: str = ""
    api: str | None = None  # "chat" | "responses" for routed calls

    @property
    def stream(self) -> bool:
        return self.facts is not None and self.facts.stream

    @property
    def failures(self) -> list[tuple[Target, str]]:
        return self.job.failures if self.job is not None else []


class Sidecar:
    def __init__(
        self, *, latency: LatencyTracker | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        explore_rate: float = EXPLORE_RATE,
        upstream_timeout: float = UPSTREAM_TIMEOUT,
        cooldowns: Cooldowns | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.rules: RuleSet | None = None
        self.latency = latency or LatencyTracker()
        self.cooldowns = cooldowns or Cooldowns()
        self.metrics = metrics or Metrics()
        self.metrics_port: int | None = None  # set by the CLI once /metrics listens
        self.ready = False  # rules, CA and listeners up (/readyz)
        self.draining = False
        self.in_flight = 0
        self.metrics.watch(self.live_state)
        self.environ = os.environ if environ is None else environ
        self.clock = clock
        self.providers_down: dict[str, str] = {}
        self.rng = random.Random()
        self.explore_rate = explore_rate  # prefer=fast: share of calls trying a stale model
        self.upstream_timeout = upstream_timeout
        self.proxy_auth: dict[str, str] = {}  # user -> password, when proxy auth is required
        self.dispatcher: Dispatcher | None = None
        self.relay: Relay | None = None
        self._client: httpx.AsyncClient | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._rules_stamp: tuple[int, int, int] | None = None
        self._proxy_users: weakref.WeakKeyDictionary[connection.Client, str] = (
            weakref.WeakKeyDictionary()
        )

    def live_state(self) -> LiveState:
        providers = self.rules.providers if self.rules else {}
        return LiveState(latency=self.latency.snapshot(),
                         providers={p: self.providers_down.get(p) for p in providers},
                         cooling=dict(self.cooldowns.down()))

    @property
    def health(self) -> Health:
        return Health(providers_down=self.providers_down, models_down=self.cooldowns.down())

    # -- lifecycle and configuration -----------------------------------------------------------

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "sidecar_rules", str, "rules.yaml",
            "Path of the routing rules (rules.yaml): intercepted hosts, providers, models, "
            "defaults and per-app routes.",
        )
        loader.add_option(
            "sidecar_proxy_auth", str, "",
            "A file of 'user:password' lines; when set, explicit-proxy clients must authenticate "
            "(HTTPS_PROXY=http://user:password@host:port) or get 407.",
        )

    async def running(self) -> None:
        timeout = httpx.Timeout(self.upstream_timeout, connect=CONNECT_TIMEOUT)
        self._client = httpx.AsyncClient(
            timeout=timeout, trust_env=False,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=200))
        self.relay = Relay(client=self._client, on_outcome=self.record_outcome, clock=self.clock)
        await self.relay.start()
        self._refresher = spawn(self._refresh_credentials(), name="aws-credentials")
        self._watcher = spawn(self._watch_rules(), name="rules-watcher")
        self.ready = self.rules is not None

    async def done(self) -> None:
        for task in (self._refresher, self._watcher):
            if task is not None:
                task.cancel()
        if self.relay is not None:
            await self.relay.stop()
        if self._client is not None:
            await self._client.aclose()

    async def _refresh_credentials(self) -> None:
        """Refresh expiring AWS credentials off the event loop, and bring Bedrock providers
        up (or down) as credentials appear (or vanish); ``sign()`` then never blocks."""
        while True:
            await asyncio.sleep(CREDENTIALS_CHECK_SECONDS)
            bedrock = self.dispatcher.bedrock if self.dispatcher else {}
            for name, adapter in list(bedrock.items()):
                if adapter.signer.needs_refresh():
                    ok = await asyncio.to_thread(adapter.signer.resolve)
                    self._set_provider_down(name, None if ok else NO_AWS_CREDENTIALS)

    def _set_provider_down(self, name: str, reason: str | None) -> None:
        down = dict(self.providers_down)
        if reason is None:
            if down.pop(name, None) is not None:
                log.info("provider %s is available again", name)
        elif down.get(name) != reason:
            down[name] = reason
            log.warning("provider %s is unavailable: %s", name, reason)
        self.providers_down = down

    def configure(self, updated: set[str]) -> None:
        if "sidecar_rules" in updated:
            try:
                rules = load_rules(ctx.options.sidecar_rules)
            except SidecarError as e:
                raise exceptions.OptionsError(str(e)) from e
            self.use_rules(rules)
        if "sidecar_proxy_auth" in updated:
            try:
                self.proxy_auth = load_proxy_auth(ctx.options.sidecar_proxy_auth)
            except (OSError, ValueError) as e:
                raise exceptions.OptionsError(f"sidecar_proxy_auth: {e}") from e

    def use_rules(self, rules: RuleSet) -> None:
        """Switch to ``rules``. Blocking: resolves AWS credentials for Bedrock providers."""
        self._apply(self._prepare(rules))

    def _prepare(self, rules: RuleSet) -> tuple[RuleSet, Dispatcher, dict[str, str]]:
        """Everything a rules file needs before it can serve (blocking: AWS credentials)."""
        down = unavailable_providers(rules, self.environ)
        bedrock = {}
        for p in rules.providers.values():
            if p.type == "bedrock":
                assert p.region is not None
                signer = BedrockSigner(p.region, endpoint_url=p.endpoint_url, profile=p.profile)
                if not signer.resolve():
                    down[p.name] = NO_AWS_CREDENTIALS
                bedrock[p.name] = BedrockAdapter(signer)
        keys = {p.name: p.resolve_key(self.environ) for p in rules.providers.values()}
        return rules, Dispatcher(rules.providers, keys=keys, bedrock=bedrock), down

    def _apply(self, prepared: tuple[RuleSet, Dispatcher, dict[str, str]]) -> None:
        """Swap in new rules at once; calls in flight keep the dispatcher they started with."""
        self.rules, self.dispatcher, self.providers_down = prepared
        self.metrics.know(apps=[a.name for a in self.rules.apps],
                          models=[m.name for m in self.rules.catalog],
                          providers=self.rules.providers)
        self._rules_stamp = _stamp(self.rules.path)
        for name, reason in self.providers_down.items():
            log.warning("provider %s is unavailable: %s", name, reason)

    async def reload(self, why: str) -> bool:
        """Re-read the rules file off the event loop; a broken file keeps the old rules."""
        if self.rules is None:
            return False
        path = self.rules.path
        try:
            prepared = await asyncio.to_thread(lambda: self._prepare(load_rules(path)))
        except SidecarError as e:
            self._rules_stamp = _stamp(path)  # do not retry the same broken file every second
            log.error("rules reload (%s) failed; keeping the previous rules: %s", why, e)
            return False
        old = self.rules
        self._apply(prepared)
        if [s.address for s in old.intercept] != [s.address for s in prepared[0].intercept]:
            ctx.options.update(allow_hosts=intercept_patterns(prepared[0]))
        log.info("rules reloaded from %s (%s)", path, why)
        return True

    async def _watch_rules(self) -> None:
        """Reload when the file changes (mtime, size or inode: editors and ConfigMaps swap it)."""
        while True:
            await asyncio.sleep(RULES_POLL_SECONDS)
            if self.rules is not None and _stamp(self.rules.path) != self._rules_stamp:
                await self.reload("file changed")

    def record_outcome(self, outcome: Outcome) -> None:
        """Every attempt counts towards cooldowns; a failure also counts as slow."""
        name = outcome.target.name
        if outcome.ok:
            self.cooldowns.success(name)
            return
        self.latency.penalize(name)
        if self.cooldowns.failure(name):
            self.metrics.cooldowns.labels(self.metrics.model(name)).inc()
            log.warning("model %s is cooling down after repeated failures (%s)", name,
                        outcome.reason)

    # -- hooks ---------------------------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        header = flow.request.headers.get("proxy-authorization", "")
        if self.proxy_auth and not proxy_authenticated(header, self.proxy_auth):
            flow.response = proxy_auth_required()
            return
        user = proxy_user(header)
        if user:
            self._proxy_users[flow.client_conn] = user

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        try:
            if self.proxy_auth and flow.client_conn.proxy_mode.type_name == "regular" and (
                    flow.client_conn not in self._proxy_users) and not proxy_authenticated(
                    flow.request.headers.get("proxy-authorization", ""), self.proxy_auth):
                flow.response = proxy_auth_required()  # plain-HTTP requests to the proxy
                return
            req = flow.request
            host = req.pretty_host.lower()
            if not self._intercepted(flow, host):
                return
            state = FlowState(started=self.clock(),
                              original=(req.scheme, host, req.port, req.path))
            flow.metadata["sidecar"] = state
            self.metrics.in_flight.inc()
            self.in_flight += 1
            # Fail closed until `request` has routed the flow: mitmproxy connects to
            # (request.host, request.port); the Host header does not matter to it.
            req.data.host = SENTINEL_HOST
        except Exception:  # noqa: BLE001 - never let mitmproxy forward an unexamined flow
            log.exception("requestheaders failed; answering 502 (fail closed)")
            respond_error(flow, InternalError("The model-router sidecar failed to examine this "
                                              "request; it was not forwarded."))

    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        state = flow.metadata.get("sidecar")
        if not isinstance(state, FlowState) or flow.response or flow.error or not flow.live:
            return None
        pending = None
        try:
            pending = self._route(flow, state)
        except SidecarError as e:
            respond_error(flow, e)
        except Exception:  # noqa: BLE001 - a bug must answer the app, never forward the flow
            log.exception("routing failed; answering 502 (fail closed)")
            respond_error(flow, InternalError("The model-router sidecar failed to route this "
                                              "request; it was not forwarded."))
        state.overhead_ms = (self.clock() - state.started) * 1000
        return pending  # mitmproxy awaits it: a plan answered here (``_answer_here``)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        address = data.server.address
        if address is not None and address[0] == SENTINEL_HOST:
            data.server.error = "model-router: refusing to forward an unrouted request"

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.get("sidecar")
        if not isinstance(state, FlowState) or flow.response is None:
            return
        try:
            self._on_headers(flow, state, flow.response)
        except Exception:  # noqa: BLE001 - the app gets an error, not a hang or a traceback
            log.exception("responseheaders failed")
            respond_error(flow, InternalError("The model-router sidecar failed while reading "
                                              "the provider's answer."))

    def _on_headers(self, flow: http.HTTPFlow, state: FlowState, response: http.Response) -> None:
        served = response.headers.pop(SERVED_HEADER, None) if state.relayed else None
        if served is not None:  # (an answer made in the request hook has none left)
            state.target = state.plan[int(served)]
        add_router_headers(response.headers, state)
        if state.facts is None or not state.facts.stream or response.status_code >= 300:
            return  # buffered: the response hook sees (and may translate) the whole body
        if state.relayed or state.call is None:
            response.stream = StreamTimer(self, state)  # the relay already produced the SSE
        else:
            state.transform = direct_stream(state.call, flow, state.include_usage)
            response.stream = StreamTimer(self, state, state.transform)

    def response(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.get("sidecar")
        if not isinstance(state, FlowState) or flow.response is None:
            return
        try:
            self._on_response(flow, state, flow.response)
        except Exception:  # noqa: BLE001 - bookkeeping must never break an answer
            log.exception("response bookkeeping failed")

    def _on_response(self, flow: http.HTTPFlow, state: FlowState, response: http.Response
                     ) -> None:
        add_router_headers(response.headers, state)  # no-op if responseheaders did it
        usage, stream_ok = stream_result(state)  # a relayed answer's usage is read there too
        direct = state.forwarded and not state.relayed and state.target is not None
        if direct and not response.stream:  # what mitmproxy fetched itself, buffered
            status = response.status_code
            if state.provider_type == "bedrock":
                usage = self._translate_bedrock(flow, state)
                response = flow.response  # type: ignore[assignment]
            elif status < 300 and state.api is not None:
                answer = json_object(response.get_content(strict=False) or b"")
                if answer is None:
                    self._malformed_answer(flow, state)
                    response = flow.response  # type: ignore[assignment]
                else:
                    usage = usage_from_openai(answer)
            elif status < 300 and flow.request.method == "GET" and (
                    state.original[3].split("?")[0].endswith("/models")):
                list_intents(response)
        if direct:
            self._direct_outcome(state, response.status_code)
        self._finish(state, response.status_code, usage, stream_ok=stream_ok)

    def _direct_outcome(self, state: FlowState, status: int) -> None:
        """The fast path has no relay to count its attempt: count it here."""
        assert state.target is not None
        if status == 429 or status >= 500:
            self.record_outcome(Outcome(state.target, False, f"status {status}", 0.0))
        elif status < 300:
            self.cooldowns.success(state.target.name)

    def _finish(self, state: FlowState, status: int, usage: Usage | None, *,
                stream_ok: bool = True) -> None:
        """Once per call: latency, metrics and the access log line."""
        if state.finished:
            return
        state.finished = True
        self.metrics.in_flight.dec()
        self.in_flight -= 1
        record = call_record(state, status, usage, duration=self.clock() - state.started,
                             stream_ok=stream_ok, catalog=self.rules.catalog if self.rules
                             else None)
        if record.outcome == "ok" and state.target is not None and not state.shadow:
            name = state.target.name
            self.latency.record(name, duration=record.duration, ttft=record.ttft,
                                output_tokens=usage.completion if usage else None)
        self.metrics.observe(record)
        access_log.info(json.dumps(record.log_fields(), separators=(",", ":")))

    def _malformed_answer(self, flow: http.HTTPFlow, state: FlowState) -> None:
        assert state.target is not None
        self.record_outcome(Outcome(state.target, False, "malformed", 0.0))
        keep = {k: v for k, v in flow.response.headers.items()  # type: ignore[union-attr]
                if k.lower().startswith(("x-model-router-", "x-request-id"))}
        status, body, headers = render_openai_error(UpstreamError(
            f"{state.target.name} answered with a body that is not a JSON object",
            code="upstream_malformed_response"))
        flow.response = http.Response.make(status, body, {**keep, **headers})

    def _translate_bedrock(self, flow: http.HTTPFlow, state: FlowState) -> Usage | None:
        """The Converse answer (or Bedrock error) as OpenAI JSON; the usage of a success."""
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
        return usage_from_openai(body) if status < 300 else None

    def error(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.get("sidecar")
        if not isinstance(state, FlowState) or not flow.error:
            return
        if flow.response is not None and state.done:
            # The app read the stream's last event and hung up before the body's final bytes
            # arrived (the sync openai SDK closes at [DONE]): a complete answer.
            self.response(flow)
            return
        if state.forwarded:
            where = "the relay" if state.relayed else (
                state.target.provider if state.target else "?")
            log.warning("upstream %s failed: %s", where, flow.error.msg)
            if state.target is not None and not state.relayed:
                why = "stream" if flow.response is not None else "connect"
                self.record_outcome(Outcome(state.target, False, why, 0.0))
        started = flow.response is not None
        self._finish(state, flow.response.status_code if flow.response else 502, None,
                     stream_ok=not started)

    # -- routing -------------------------------------------------------------------------------

    def _intercepted(self, flow: http.HTTPFlow, host: str) -> bool:
        rules = self.rules
        if rules is None:
            return False
        if flow.client_conn.proxy_mode.type_name == "reverse":
            return True
        return rules.intercept_for(host, flow.request.port) is not None

    def _route(self, flow: http.HTTPFlow, state: FlowState) -> Awaitable[None] | None:
        """Decide, and point the flow where it goes; or, for a call with fallbacks whose answer
        is buffered anyway, return what serves it right in the hook."""
        rules, dispatcher = self.rules, self.dispatcher
        assert rules is not None and dispatcher is not None
        req = flow.request
        _, host, port, path = state.original
        headers = LowerHeaders(req.headers)
        client: dict[str, Any] = dict(
            listener=LISTENER_NAMES.get(flow.client_conn.proxy_mode.type_name, "proxy"),
            client_ip=flow.client_conn.peername[0] if flow.client_conn.peername else "",
            proxy_user=self._proxy_users.get(flow.client_conn)
            or proxy_user(headers.get("proxy-authorization", "")),
            headers=headers, host=host, port=port, path=path,
        )
        raw = (req.get_content(strict=False) if "content-encoding" in headers
               else req.raw_content) or b""
        body: dict[str, Any] | None = None
        api = state.api = routed_api(req.method, path)
        if api is not None:
            body = parse_chat_body(raw, content_type=headers.get("content-type", ""))
            read_facts = facts_from_chat if api == "chat" else facts_from_responses
            facts = read_facts(body, **client)
        else:
            facts = RequestFacts(model="", **client)
        decision = choose_route(facts, rules, self.latency, health=self.health, rng=self.rng,
                                explore_rate=self.explore_rate)
        state.facts, state.decision = facts, decision
        state.plan = decision.plan
        if decision.shadow and decision.kind != "passthrough":
            state.shadow = True
            spec = rules.intercept_for(host, port) or rules.intercept[0]
            state.plan = (Target(spec.provider, facts.model, rules.catalog.find(facts.model)),)
        if api == "responses" and body is not None:
            state.plan = native_first(state.plan, body, rules)
        options = body.get("stream_options") if body else None
        state.include_usage = isinstance(options, dict) and bool(options.get("include_usage"))

        def prepare(target: Target) -> UpstreamCall:
            return dispatcher.prepare(target, path=path, headers=headers, raw=raw, body=body,
                                      stream=facts.stream, api=api or "chat")

        # The relay only where mitmproxy cannot do it: falling back to the next model before
        # the app sees a byte, and Responses calls (translated, or sent natively with usage).
        relay = api == "responses" or len(state.plan) > 1
        if not (body is not None and relay and self.relay):
            self._send_direct(flow, state, prepare(state.plan[0]))
            state.forwarded = True
            return None
        state.relayed = state.forwarded = True
        state.job = Job(plan=state.plan, prepare=prepare, include_usage=state.include_usage)
        if not facts.stream:
            return self._answer_here(flow, state, state.job)
        # A stream: mitmproxy streams only what a server sends, so the relay serves it.
        point(flow.request, self.relay.endpoint, self.relay.submit(state.job), {}, b"")
        return None

    async def _answer_here(self, flow: http.HTTPFlow, state: FlowState, job: Job) -> None:
        """The plan served by the relay's attempts, in the ``request`` hook: the answer becomes
        the flow's response (the flow still points at the fail-closed sentinel)."""
        assert self.relay is not None
        try:
            status, headers, body = await self.relay.answer(job)
            served = headers.pop(SERVED_HEADER, None)
            state.target = state.plan[int(served)] if served is not None else None
            flow.response = http.Response.make(status, body, headers)
        except Exception:  # noqa: BLE001 - a bug must answer the app, never forward the flow
            log.exception("serving the plan failed; answering 502 (fail closed)")
            respond_error(flow, InternalError("The model-router sidecar failed while serving "
                                              "this request."))

    def _send_direct(self, flow: http.HTTPFlow, state: FlowState, call: UpstreamCall) -> None:
        """The fast path: mitmproxy itself sends the call to the one model in the plan (a
        stream is transcoded on its way back: see ``direct_stream``)."""
        state.target, state.provider_type, state.call = call.target, call.kind, call
        headers = call.headers
        if call.stream:  # read (usage, Bedrock frames) as it arrives: no compression
            headers = {**headers, "accept-encoding": "identity"}
        point(flow.request, call.endpoint, call.path, headers, call.body)


INTENT_MODELS = ("auto", "economy", "standard", "premium")


def list_intents(response: http.Response) -> None:
    """GET /v1/models: list ``auto`` and the tier names beside the provider's own models."""
    try:
        listing = response.json()
    except ValueError:
        return
    data = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(data, list):
        return
    known = {m.get("id") for m in data if isinstance(m, dict)}
    data.extend({"id": name, "object": "model", "created": 0, "owned_by": "model-router"}
                for name in INTENT_MODELS if name not in known)
    response.text = json.dumps(listing)


def routed_api(method: str, path: str) -> str | None:
    """"chat" or "responses" for the calls the sidecar routes; None for everything else."""
    if method != "POST":
        return None
    route = path.split("?")[0]
    if route.endswith(ROUTED_SUFFIX):
        return "chat"
    if route.endswith(RESPONSES_SUFFIX):
        return "responses"
    return None


def native_first(plan: tuple[Target, ...], body: dict[str, Any], rules: RuleSet
                 ) -> tuple[Target, ...]:
    """A Responses call that needs server-side state or hosted tools can only be served by a
    provider with the native Responses API: keep those, or refuse naming the feature."""
    feature = needs_native(body)
    if feature is None:
        return plan
    native = tuple(t for t in plan if rules.providers[t.provider].responses)
    if native:
        return native
    to_chat_request(body, model=plan[0].name)  # raises the 400 naming the feature and model
    raise UnsupportedParameterError(f"{feature} needs a provider with the native Responses API",
                                    param=feature)


def intercept_patterns(rules: RuleSet) -> list[str]:
    """mitmproxy ``allow_hosts``: only these destinations are decrypted; others are tunnelled."""
    return [f"^{re.escape(spec.host)}:{spec.port}$" for spec in rules.intercept]


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


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


def direct_stream(call: UpstreamCall, flow: http.HTTPFlow, include_usage: bool
                  ) -> Callable[[bytes], list[bytes]] | None:
    """A fast-path stream's transform (usage read, Bedrock event stream -> chat SSE), with the
    response headers made fit for a body whose length changes. None when the provider
    compressed the stream anyway (it is then passed through as it is, usage unread)."""
    assert flow.response is not None
    headers = flow.response.headers
    if headers.get("content-encoding", "identity").lower() != "identity":
        return None
    transform = stream_transform(call, request_id=_amzn_request_id(headers),
                                 include_usage=include_usage)
    headers.pop("content-length", None)
    if not (flow.request.is_http2 or flow.request.is_http3):  # the app's side; h2 frames itself
        headers["transfer-encoding"] = "chunked"  # whatever the provider spoke (h2 has no TE)
    if call.kind == "bedrock":
        headers["content-type"] = "text/event-stream; charset=utf-8"
    return transform


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


def proxy_auth_required() -> http.Response:
    status, body, headers = render_openai_error(ProxyAuthRequiredError(
        "model-router requires proxy authentication: HTTPS_PROXY=http://USER:PASSWORD@host:port"))
    return http.Response.make(status, body, {**headers,
                                             "proxy-authenticate": 'Basic realm="model-router"'})


def add_router_headers(headers: http.Headers, state: FlowState) -> None:
    """The x-request-id (the provider's, or a new one) and what the router did, as response
    headers, appended in one pass over the fields (each ``headers[k] = v`` would re-scan them)."""
    if state.headers_added:
        return
    state.headers_added = True
    fields = headers.fields
    request_id = fallbacks = None
    for name, value in fields:
        lower = name.lower()
        if lower == b"x-request-id" and request_id is None:
            request_id = value.decode("latin-1")
        elif lower == b"x-model-router-fallbacks":
            fallbacks = value
    new: list[tuple[bytes, bytes]] = []
    if request_id is None:
        request_id = f"req_{uuid.uuid4().hex}"
        new.append((b"x-request-id", request_id.encode()))
    state.request_id = request_id
    decision = state.decision
    if decision is None:
        headers.fields = fields + tuple(new)
        return
    served = state.target or state.plan[0] if state.plan else decision.target
    router = {
        "app": decision.app, "model": served.name, "provider": served.provider,
        "reason": "shadow" if state.shadow else decision.reason,
        "overhead-ms": f"{state.overhead_ms:.2f}",
    }
    if decision.auto is not None:
        router["auto-tier"] = decision.auto.tier
        router["auto-score"] = f"{decision.auto.score:g}"
    if state.shadow:
        router["shadow-model"] = decision.target.name
        router["shadow-provider"] = decision.target.provider
        router["shadow-reason"] = decision.reason
    new += [(b"x-model-router-" + k.encode(), v.encode("utf-8", "surrogateescape"))
            for k, v in router.items()]
    new.append((b"x-model-router-fallbacks", fallbacks or b"0"))
    headers.fields = tuple(f for f in fields if not f[0].lower().startswith(b"x-model-router-")
                           ) + tuple(new)


def respond_error(flow: http.HTTPFlow, exc: SidecarError) -> None:
    status, body, headers = render_openai_error(exc)
    flow.response = http.Response.make(status, body, headers)


class StreamTimer:
    """``flow.response.stream``: chunks go out as they arrive, through ``transform`` when
    given (a direct stream's: its usage is kept once the stream ends); the time to the first
    one is noted for the latency bookkeeping."""

    def __init__(self, addon: Sidecar, state: FlowState,
                 transform: Callable[[bytes], list[bytes]] | None = None) -> None:
        self.addon, self.state, self.transform = addon, state, transform
        self._tail = b""  # the end of what was sent so far (the end marker may come split)

    def __call__(self, data: bytes) -> bytes | Iterable[bytes]:
        out: bytes | list[bytes] = data
        if self.transform is not None:
            out = self.transform(data)
        if out:
            if self.state.ttft is None:
                self.state.ttft = self.addon.clock() - self.state.started
            last = out if isinstance(out, bytes) else out[-1]
            self.state.done = (self._tail + last)[-len(STREAM_END):] == STREAM_END
            self._tail = last[-len(STREAM_END):]
        return out or []  # never b"": mitmproxy would end the stream there


STREAM_END = b"data: [DONE]\n\n"


def stream_result(state: FlowState) -> tuple[Usage | None, bool]:
    """(usage, whether the stream went well) of a call: the provider's usage report, read from
    its stream as it passed (also when the app hung up before the body's last bytes)."""
    job = state.job
    transform = job.transform if job is not None else state.transform
    usage = job.usage if job is not None else None
    if usage is None and transform is not None:
        usage = stream_usage(transform)
    ok = (job is None or job.stream_ok) and not (transform is not None
                                                and stream_failed(transform))
    return usage, ok


def _amzn_request_id(headers: http.Headers) -> str:
    return str(headers.get("x-amzn-requestid", ""))
