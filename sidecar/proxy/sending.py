"""Sending a routed call on its way: which forwarding path serves it.

* **direct** (a plan of one model, not a Responses call): mitmproxy itself sends it
  (``sidecar.proxy.direct``), streams included;
* **answered here** (a plan with fallbacks, or a Responses call, that does not stream): the
  relay's attempts serve it inside the ``request`` hook and the answer becomes the flow's
  response -- no second HTTP exchange;
* **relayed** (the same, streaming): the flow is pointed at the in-process relay server, which
  streams the first answer worth relaying (mitmproxy streams only what a server sends).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from mitmproxy import http

from sidecar.core.errors import InternalError
from sidecar.core.routing.decision import Target
from sidecar.forward.call import Dispatcher
from sidecar.forward.relay import Job, Relay
from sidecar.providers import UpstreamCall
from sidecar.proxy import direct
from sidecar.proxy.flow import CallState, error_response, point
from sidecar.proxy.routing import Routed

log = logging.getLogger("sidecar")


def send(flow: http.HTTPFlow, state: CallState, routed: Routed, dispatcher: Dispatcher,
         relay: Relay | None) -> Awaitable[None] | None:
    """Point the flow where it goes; or return what serves it right in the hook."""
    state.plan, state.include_usage = routed.plan, routed.include_usage

    def prepare(target: Target) -> UpstreamCall:
        return dispatcher.prepare(target, routed.request)

    if relay is None or not should_relay(routed):
        state.way, state.call = "direct", prepare(routed.plan[0])
        direct.send(flow, state.call)
        return None
    state.way = "relayed"
    state.job = Job(plan=routed.plan, prepare=prepare, include_usage=routed.include_usage)
    if not routed.request.stream:
        return answer_here(flow, relay, state.job)
    state.relay_path = relay.submit(state.job)
    point(flow.request, relay.endpoint, state.relay_path, {}, b"")
    return None


def should_relay(routed: Routed) -> bool:
    """The sidecar's own attempts only where mitmproxy cannot do it: falling back to the next
    model before the app sees a byte, and Responses calls (translated, or native)."""
    return routed.request.body is not None and (
        routed.request.api == "responses" or len(routed.plan) > 1)


async def answer_here(flow: http.HTTPFlow, relay: Relay, job: Job) -> None:
    """The plan served by the relay's attempts, in the ``request`` hook: the answer becomes the
    flow's response (the flow still points at the fail-closed sentinel)."""
    try:
        status, headers, body = await relay.answer(job)
        flow.response = http.Response.make(status, body, headers)
    except Exception:  # noqa: BLE001 - a bug must answer the app, never forward the flow
        log.exception("serving the plan failed; answering 502 (fail closed)")
        flow.response = error_response(InternalError(
            "The model-router sidecar failed while serving this request."))
