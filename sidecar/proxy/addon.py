"""The mitmproxy addon: hooks only. Each hook moves one call (``CallState``) a step on.

    requestheaders  intercepted? -> the flow points at the fail-closed sentinel ("examined")
    request         match the app, decide, send: direct, relayed, or answered here ("routed")
    responseheaders the router's headers; a stream gets its transform ("answering")
    response/error  a direct buffered answer shaped by its adapter; the books ("finished")

Only ``sidecar.proxy`` knows mitmproxy. The addon fails closed: from ``requestheaders`` on, an
intercepted flow points at a sentinel host that ``server_connect`` refuses, so nothing reaches
the original destination unless ``request`` routed it; every hook turns an exception into an
OpenAI-format error response instead of letting mitmproxy forward the flow unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import httpx
from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import server_hooks

from sidecar.core.accounting import Usage
from sidecar.core.budget import DegradeStep
from sidecar.core.config.rules import RuleSet, load_rules
from sidecar.core.errors import InternalError, SidecarError
from sidecar.core.live import LiveState, live_state
from sidecar.core.routing.cooldown import Cooldowns
from sidecar.core.routing.decision import Health
from sidecar.core.routing.latency import LatencyTracker
from sidecar.core.routing.policy import EXPLORE_RATE
from sidecar.forward import answer as answers
from sidecar.forward.relay import Outcome, Relay
from sidecar.proxy import direct, sending
from sidecar.proxy.admission import Admission
from sidecar.proxy.books import Books
from sidecar.proxy.catalog import CatalogRefresher
from sidecar.proxy.config import CREDENTIALS_CHECK_SECONDS, LiveConfig, intercept_patterns
from sidecar.proxy.flow import (
    SENTINEL_HOST,
    CallState,
    LowerHeaders,
    StreamTimer,
    add_router_headers,
    error_response,
    proxy_auth_required,
)
from sidecar.proxy.metrics import Metrics
from sidecar.proxy.proxyauth import ProxyUsers, load_proxy_auth
from sidecar.proxy.routing import Routed, match_app, plan_call, read_call
from sidecar.proxy.tasks import spawn

log = logging.getLogger("sidecar")

UPSTREAM_TIMEOUT = 120.0  # seconds without a byte from the provider before trying the next
CONNECT_TIMEOUT = 10.0
CLIENT_CLOSED = 499  # the app hung up before its answer (nginx's "client closed request")


class Sidecar:
    def __init__(
        self, *, latency: LatencyTracker | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        explore_rate: float = EXPLORE_RATE,
        upstream_timeout: float = UPSTREAM_TIMEOUT,
        cooldowns: Cooldowns | None = None,
        metrics: Metrics | None = None,
        credentials_check: float = CREDENTIALS_CHECK_SECONDS,
    ) -> None:
        self.books = Books(latency=latency or LatencyTracker(), cooldowns=cooldowns or Cooldowns(),
                           metrics=metrics or Metrics(), clock=clock)
        self.config = LiveConfig(environ=os.environ if environ is None else environ,
                                 on_swap=self._swapped, credentials_check=credentials_check)
        self.metrics_port: int | None = None  # set by the server once /metrics listens
        self.ready = False  # rules, CA and listeners up (/readyz)
        self.draining = False
        self.clock = clock
        self.rng = random.Random()
        self.explore_rate = explore_rate  # prefer=fast: share of calls trying a stale model
        self.upstream_timeout = upstream_timeout
        self.proxy_users = ProxyUsers()  # explicit-proxy users: the app's name, and auth
        self.relay: Relay | None = None
        self.admission = Admission(metrics=self.metrics)  # response cache and budgets
        self.catalog: CatalogRefresher | None = None  # once running
        self._client: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.metrics.watch(self.live_state)

    # -- what the rest of the program reads -----------------------------------------------------

    @property
    def rules(self) -> RuleSet | None:
        return self.config.loaded.rules if self.config.loaded else None

    @property
    def metrics(self) -> Metrics:
        return self.books.metrics

    @property
    def latency(self) -> LatencyTracker:
        return self.books.latency

    @property
    def cooldowns(self) -> Cooldowns:
        return self.books.cooldowns

    @property
    def in_flight(self) -> int:
        return self.books.in_flight

    @property
    def health(self) -> Health:
        return Health(providers_down=self.config.providers_down,
                      deployments_down=self.cooldowns.down())

    def live_state(self) -> LiveState:
        rules = self.rules
        if rules is None:
            return LiveState(latency={}, providers={}, cooling={})
        return live_state(catalog=rules.catalog, latency=self.latency,
                          cooling=self.cooldowns.down(), providers_down=self.config.providers_down,
                          providers=rules.providers)

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
        self.relay = Relay(client=self._client, on_outcome=self.books.attempt, clock=self.clock)
        await self.relay.start()
        confdir = Path(ctx.options.confdir).expanduser()
        self.admission.budgets.confdir = confdir
        self.catalog = CatalogRefresher(config=self.config, metrics=self.metrics, confdir=confdir)
        self._tasks = [spawn(self.config.refresh(), name="credentials"),
                       spawn(self.config.watch(), name="rules-watcher"),
                       spawn(self.catalog.run(), name="catalog")]
        self.ready = self.rules is not None

    async def done(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.relay is not None:
            await self.relay.stop()
        await self.admission.close()
        if self._client is not None:
            await self._client.aclose()

    def configure(self, updated: set[str]) -> None:
        if "sidecar_rules" in updated:
            try:
                rules = load_rules(ctx.options.sidecar_rules)
            except SidecarError as e:
                raise exceptions.OptionsError(str(e)) from e
            self.use_rules(rules)
        if "sidecar_proxy_auth" in updated:
            try:
                self.proxy_users.required = load_proxy_auth(ctx.options.sidecar_proxy_auth)
            except (OSError, ValueError) as e:
                raise exceptions.OptionsError(f"sidecar_proxy_auth: {e}") from e

    def use_rules(self, rules: RuleSet) -> None:
        """Switch to ``rules``. Blocking: resolves AWS credentials for Bedrock providers."""
        self.config.use(rules)

    async def reload(self, why: str) -> bool:
        return await self.config.reload(why)

    def _swapped(self, old: RuleSet | None, new: RuleSet) -> None:
        self.metrics.know(apps=[a.name for a in new.apps], models=[m.name for m in new.catalog],
                          providers=new.providers)
        self.metrics.catalog_models.set(len(new.catalog))
        if old is not None and [s.address for s in old.intercept] != [
                s.address for s in new.intercept]:
            ctx.options.update(allow_hosts=intercept_patterns(new))

    # -- hooks ---------------------------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if not self.proxy_users.connect(flow.client_conn,
                                        flow.request.headers.get("proxy-authorization", "")):
            flow.response = proxy_auth_required()

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        try:
            if flow.client_conn.proxy_mode.type_name == "regular" and not self.proxy_users.allows(
                    flow.client_conn, flow.request.headers.get("proxy-authorization", "")):
                flow.response = proxy_auth_required()  # plain-HTTP requests to the proxy
                return
            req = flow.request
            host = req.pretty_host.lower()
            if not self.should_intercept(flow, host):
                return
            flow.metadata["sidecar"] = CallState(started=self.clock(),
                                                 original=(req.scheme, host, req.port, req.path))
            self.books.opened()
            # Fail closed until `request` has routed the flow: mitmproxy connects to
            # (request.host, request.port); the Host header does not matter to it.
            req.data.host = SENTINEL_HOST
        except Exception:  # noqa: BLE001 - never let mitmproxy forward an unexamined flow
            log.exception("requestheaders failed; answering 502 (fail closed)")
            flow.response = error_response(InternalError(
                "The model-router sidecar failed to examine this request; it was not forwarded."))

    def should_intercept(self, flow: http.HTTPFlow, host: str) -> bool:
        rules = self.rules
        if rules is None:
            return False
        if flow.client_conn.proxy_mode.type_name == "reverse":
            return True
        return rules.intercept_for(host, flow.request.port) is not None

    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        state = flow.metadata.get("sidecar")
        if not isinstance(state, CallState) or flow.response or flow.error or not flow.live:
            return None
        pending = None
        try:
            pending = self._route(flow, state)
        except SidecarError as e:  # the app's request cannot be served: its access line says why
            state.way = "answered"
            flow.response = error_response(e)
        except Exception:  # noqa: BLE001 - a bug must answer the app, never forward the flow
            log.exception("routing failed; answering 502 (fail closed)")
            state.way = "answered"
            flow.response = error_response(InternalError(
                "The model-router sidecar failed to route this request; it was not forwarded."))
        state.phase = "routed"
        state.overhead_ms = (self.clock() - state.started) * 1000
        return pending  # mitmproxy awaits it: a plan answered here (``_answer_here``)

    def _route(self, flow: http.HTTPFlow, state: CallState) -> Awaitable[None] | None:
        """Decide, and point the flow where it goes; or return what serves it in the hook (a
        budgeted call, a call with fallbacks whose answer is buffered anyway)."""
        loaded = self.config.loaded
        assert loaded is not None
        call = read_call(flow, state, loaded, proxy_user=self._user(flow))

        def decide(degrade: DegradeStep | None = None) -> Routed:
            return plan_call(call, state, loaded, health=self.health, latency=self.latency,
                             rng=self.rng, explore_rate=self.explore_rate, degrade=degrade)

        if Admission.applies(call, loaded.rules):  # a cache to look in, a budget to draw on
            return self.admission.serve(flow, state, call, loaded, decide, self.relay)
        return sending.send(flow, state, decide(), loaded.dispatcher, self.relay)

    def _user(self, flow: http.HTTPFlow) -> str | None:
        return self.proxy_users.user(flow.client_conn,
                                     flow.request.headers.get("proxy-authorization", ""))

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        address = data.server.address
        if address is not None and address[0] == SENTINEL_HOST:
            data.server.error = "model-router: refusing to forward an unrouted request"

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.get("sidecar")
        if not isinstance(state, CallState) or flow.response is None:
            return
        try:
            self._on_headers(flow, state, flow.response)
        except Exception:  # noqa: BLE001 - the app gets an error, not a hang or a traceback
            log.exception("responseheaders failed")
            flow.response = error_response(InternalError(
                "The model-router sidecar failed while reading the provider's answer."))

    def _on_headers(self, flow: http.HTTPFlow, state: CallState, response: http.Response) -> None:
        add_router_headers(response.headers, state)
        if not state.stream or response.status_code >= 300:
            return  # buffered: the response hook sees (and may translate) the whole body
        transform = None
        if state.way == "direct" and state.call is not None:
            transform = state.transform = direct.stream(state.call, flow, state.include_usage)
        assembler = state.lookup.assembler if state.lookup is not None else None
        state.timer = StreamTimer(state, self.clock, transform,
                                  recorder=assembler.feed if assembler is not None else None)
        response.stream = state.timer  # the relay's output is already the app's SSE

    def response(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.get("sidecar")
        if not isinstance(state, CallState) or flow.response is None:
            return
        try:
            self._on_response(flow, state)
        except Exception:  # noqa: BLE001 - bookkeeping must never break an answer
            log.exception("response bookkeeping failed")

    def _on_response(self, flow: http.HTTPFlow, state: CallState) -> None:
        assert flow.response is not None
        add_router_headers(flow.response.headers, state)  # no-op if responseheaders did it
        usage, stream_ok = None, True
        call = state.call
        if state.way == "direct" and call is not None:
            if flow.response.stream:  # the stream went through its transform
                stream_ok = state.transform is None or not state.transform.failed
                usage = state.transform.usage if state.transform is not None else None
            else:  # what mitmproxy fetched itself, buffered: shaped by the provider's adapter
                answer = direct.shape(flow, call, app_path=state.original[3])
                usage = answer.usage
                health = answers.health(answer.verdict)
                if health is not None:  # the fast path has no relay to count its attempt
                    self.books.attempt(Outcome(call.target, health, answer.reason, 0.0))
        elif state.job is not None:  # a stream's usage is known at its end, before the body's
            job = state.job
            usage = job.transform.usage if job.transform is not None else job.usage
            stream_ok = job.stream_ok
        elif state.way == "cached":
            usage = state.cached_usage
        self._finish(state, flow.response.status_code, usage, stream_ok=stream_ok)
        self.admission.remember(flow, state, self.rules, stream_ok=stream_ok, usage=usage)

    def error(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.get("sidecar")
        if not isinstance(state, CallState) or not flow.error:
            return
        if flow.response is not None and state.done:
            # The app read the stream's last event and hung up before the body's final bytes
            # arrived (the sync openai SDK closes at [DONE]): a complete answer.
            self.response(flow)
            return
        if state.relay_path is not None and self.relay is not None:
            self.relay.discard(state.relay_path)  # the flow died before reaching the relay
        status = flow.response.status_code if flow.response else 502
        why = direct.failure(flow) if state.way == "direct" else None
        if state.way == "direct" and state.call is not None and why is not None:
            log.warning("upstream %s failed: %s", state.call.target.provider, flow.error.msg)
            self.books.attempt(Outcome(state.call.target, False, why, 0.0))
        elif state.way == "relayed":
            log.warning("relayed call failed: %s", flow.error.msg)
        elif state.phase == "examined":  # died before routing: the app left, or its body was
            status = refused_status(flow.error.msg)  # refused by mitmproxy (too large)
            self._name_app(flow, state)
        if state.way == "direct" and why is None and flow.response is None:
            status = CLIENT_CLOSED
        self._finish(state, status, None, stream_ok=flow.response is None)

    def _finish(self, state: CallState, status: int, usage: Usage | None, *,
                stream_ok: bool) -> None:
        """The books, once per call; a budget reservation settled with what it really cost."""
        record = self.books.finish(state, status, usage, stream_ok=stream_ok,
                                   catalog=self.rules.catalog if self.rules else None)
        if record is not None:
            self.admission.settle(state, record.cost)

    def _name_app(self, flow: http.HTTPFlow, state: CallState) -> None:
        """The app of a call that died before routing (for its record)."""
        loaded = self.config.loaded
        if loaded is not None:
            match_app(flow, state, loaded, proxy_user=self._user(flow),
                      headers=LowerHeaders(flow.request.headers))


def refused_status(error: str) -> int:
    """The status the app got for a request that died before routing."""
    return 413 if "body_size_limit" in error else CLIENT_CLOSED
