"""From an intercepted flow to a routed call: who calls (the app), what it asks, and the plan.

The app is matched from the connection alone, before the body is read, so a call refused for
its body (an unknown ``prefer``, no eligible model) is still counted under the app that made
it. The decision itself is the pure core's (``choose_route``); the shell only narrows it for
what the pure core cannot know: a shadow app's call goes unchanged to the intercepted host, and
a Responses call that needs server-side state goes only to providers with the native API.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mitmproxy import http

from sidecar.apis.responses import as_scored_chat, needs_native, to_chat_request
from sidecar.core.budget import DegradeStep
from sidecar.core.config.apps import AppSpec
from sidecar.core.errors import UnsupportedParameterError
from sidecar.core.facts import RequestFacts, facts_from_chat, facts_from_responses, parse_chat_body
from sidecar.core.routing import policy
from sidecar.core.routing.decision import Health, RouteDecision, Target
from sidecar.core.routing.latency import LatencyTracker
from sidecar.core.routing.policy import choose_route
from sidecar.forward.call import app_request
from sidecar.providers import Adapter, Api, AppRequest
from sidecar.proxy.config import Loaded
from sidecar.proxy.flow import CallState, LowerHeaders

LISTENER_NAMES = {"regular": "proxy", "reverse": "reverse", "transparent": "transparent"}
ROUTED_SUFFIXES: Mapping[str, Api] = {"/chat/completions": "chat", "/responses": "responses"}


@dataclass(frozen=True, slots=True)
class Routed:
    decision: RouteDecision
    plan: tuple[Target, ...]
    request: AppRequest
    include_usage: bool


def routed_api(method: str, path: str) -> Api:
    """"chat" or "responses" for the calls the sidecar routes; "other" for everything else."""
    if method == "POST":
        route = path.split("?")[0]
        for suffix, api in ROUTED_SUFFIXES.items():
            if route.endswith(suffix):
                return api
    return "other"


def match_app(flow: http.HTTPFlow, state: CallState, loaded: Loaded, *, proxy_user: str | None,
              headers: LowerHeaders) -> tuple[AppSpec, RequestFacts]:
    """The app making this call, from the connection alone (and the facts that matched it)."""
    _, host, port, path = state.original
    client = flow.client_conn
    facts = RequestFacts(
        model="", listener=LISTENER_NAMES.get(client.proxy_mode.type_name, "proxy"),
        client_ip=client.peername[0] if client.peername else "", proxy_user=proxy_user,
        headers=headers, host=host, port=port, path=path)
    app = loaded.rules.app_matcher.choose(facts)
    state.app = app.name
    return app, facts


@dataclass(frozen=True, slots=True)
class Call:
    """A call as read from the flow, before any decision."""

    app: AppSpec
    facts: RequestFacts
    api: Api
    raw: bytes
    body: dict[str, Any] | None
    headers: LowerHeaders


def read_call(flow: http.HTTPFlow, state: CallState, loaded: Loaded, *,
              proxy_user: str | None) -> Call:
    """Who calls and what it asks (raises a ``SidecarError`` for a body it cannot read)."""
    req = flow.request
    headers = LowerHeaders(req.headers)
    app, client = match_app(flow, state, loaded, proxy_user=proxy_user, headers=headers)
    raw = (req.get_content(strict=False) if "content-encoding" in headers
           else req.raw_content) or b""
    api = routed_api(req.method, client.path)
    body: dict[str, Any] | None = None
    facts = client
    if api != "other":
        body = parse_chat_body(raw, content_type=headers.get("content-type", ""))
        where = dict(listener=client.listener, client_ip=client.client_ip,
                     proxy_user=client.proxy_user, headers=headers, host=client.host,
                     port=client.port, path=client.path)
        facts = (facts_from_chat(body, **where) if api == "chat" else
                 facts_from_responses(body, scored=as_scored_chat(body), **where))
    state.facts = facts
    return Call(app=app, facts=facts, api=api, raw=raw, body=body, headers=headers)


def plan_call(call: Call, state: CallState, loaded: Loaded, *, health: Health,
              latency: LatencyTracker, rng: random.Random, explore_rate: float,
              degrade: DegradeStep | None = None) -> Routed:
    """Decide, and say what will be tried (raises a ``SidecarError`` to refuse)."""
    rules, facts, body = loaded.rules, call.facts, call.body
    decision = choose_route(facts, rules, latency, health=health, rng=rng,
                            explore_rate=explore_rate, app=call.app, degrade=degrade)
    state.decision = decision
    plan = decision.plan
    if decision.shadow and decision.kind != "passthrough":
        plan = (policy._passthrough(facts, rules, health),)  # unchanged, as if no rule applied
    if call.api == "responses" and body is not None:
        plan = native_first(plan, body, loaded.dispatcher.adapters)
    options = body.get("stream_options") if body else None
    request = app_request(api=call.api, path=facts.path, headers=call.headers, raw=call.raw,
                          body=body, stream=facts.stream)
    return Routed(decision, plan, request,
                  include_usage=isinstance(options, dict) and bool(options.get("include_usage")))


def native_first(plan: tuple[Target, ...], body: Mapping[str, Any],
                 adapters: Mapping[str, Adapter]) -> tuple[Target, ...]:
    """A Responses call that needs server-side state or hosted tools can only be served by a
    provider with the native Responses API: keep those, or refuse naming the feature."""
    feature = needs_native(body)
    if feature is None:
        return plan
    native = tuple(t for t in plan if adapters[t.provider].native_responses)
    if native:
        return native
    to_chat_request(body, model=plan[0].name)  # raises the 400 naming the feature and model
    raise UnsupportedParameterError(f"{feature} needs a provider with the native Responses API",
                                    param=feature)
