"""What a call goes through before it is sent, when its app has a cache or a budget.

``Admission.serve`` (awaited by mitmproxy in the ``request`` hook):

1. decide as usual; for an app with a cache, look the call up (``sidecar.proxy.cache``): a hit is
   the answer, and nothing else happens -- no provider, no budget;
2. for a budgeted app, reserve the call's expected cost (``sidecar.proxy.budgets``: maybe
   degraded, maybe refused);
3. send it (``sidecar.proxy.sending``).

``remember`` stores a complete answer of a miss once the flow is done; ``settle`` closes the
budget reservation with what the call really cost.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from mitmproxy import http

from sidecar.apis.chat_cache import StreamAssembler
from sidecar.apis.responses_cache import ResponsesStreamAssembler
from sidecar.core.accounting import Usage, usage_from_openai
from sidecar.core.budget import DegradeStep
from sidecar.core.config.rules import RuleSet
from sidecar.core.errors import InternalError, SidecarError
from sidecar.forward.relay import Relay
from sidecar.proxy import sending
from sidecar.proxy.budgets import Budgets
from sidecar.proxy.cache import ResponseCache
from sidecar.proxy.config import Loaded
from sidecar.proxy.flow import CallState, error_response
from sidecar.proxy.metrics import Metrics
from sidecar.proxy.routing import Call, Routed
from sidecar.proxy.tasks import spawn

log = logging.getLogger("sidecar")


class Admission:
    def __init__(self, *, metrics: Metrics) -> None:
        self.budgets = Budgets(metrics=metrics, confdir=None)
        self.cache = ResponseCache(metrics=metrics)

    @staticmethod
    def applies(call: Call, rules: RuleSet) -> bool:
        return call.app.cache is not None or Budgets.applies(call.app, rules)

    async def serve(self, flow: http.HTTPFlow, state: CallState, call: Call, loaded: Loaded,
                    decide: Callable[[DegradeStep | None], Routed], relay: Relay | None) -> None:
        try:
            await self._serve(flow, state, call, loaded, decide, relay)
        except SidecarError as e:
            state.way = "answered"
            flow.response = error_response(e)
        except Exception:  # noqa: BLE001 - a bug must answer the app, never forward the flow
            log.exception("admitting the call failed; answering 502 (fail closed)")
            state.way = "answered"
            flow.response = error_response(InternalError(
                "The model-router sidecar failed to check this request's cache or budget; it "
                "was not forwarded."))

    async def _serve(self, flow: http.HTTPFlow, state: CallState, call: Call, loaded: Loaded,
                     decide: Callable[[DegradeStep | None], Routed], relay: Relay | None) -> None:
        rules = loaded.rules
        routed = decide(None)
        lookup = None
        if call.app.cache is not None:
            lookup, _why = self.cache.plan(call, routed, call.headers)
            state.cache = "bypass" if lookup is None else "miss"
            hit = await self.cache.get(rules, lookup) if lookup is not None else None
            if hit is not None:
                self._answer(flow, state, routed, hit)
                return
        if Budgets.applies(call.app, rules):
            planned = routed.plan[0]
            routed = await self.budgets.admit(state, call.app, rules, call.facts, decide)
            if routed.plan[0] != planned:  # degraded to another model: another cache entry
                lookup = self.cache.plan(call, routed, call.headers)[0]
        if lookup is not None:
            state.lookup = lookup
            if lookup.stream:
                lookup.assembler = (ResponsesStreamAssembler(max_chars=4 * lookup.max_bytes)
                                    if lookup.api == "responses"  # it carries the text twice
                                    else StreamAssembler(max_chars=lookup.max_bytes))
        pending = sending.send(flow, state, routed, loaded.dispatcher, relay)
        if pending is not None:
            await pending

    @staticmethod
    def _answer(flow: http.HTTPFlow, state: CallState, routed: Routed,
                hit: tuple[int, dict[str, str], bytes, dict[str, Any]]) -> None:
        status, headers, body, stored = hit
        state.way, state.cache = "cached", "hit"
        state.plan, state.cached_usage = routed.plan, usage_from_openai(stored)
        flow.response = http.Response.make(status, body, headers)

    def remember(self, flow: http.HTTPFlow, state: CallState, rules: RuleSet | None,
                 *, stream_ok: bool, usage: Usage | None) -> None:
        """Store a miss's answer when it is complete, successful and the planned model's."""
        lookup, response = state.lookup, flow.response
        if lookup is None or rules is None or response is None or response.status_code != 200:
            return
        if not stream_ok or state.target is None or state.target != state.plan[0]:
            return  # a broken stream, or a fallback's answer: not this entry's
        answer: Any
        if lookup.assembler is not None:
            answer = lookup.assembler.result()
        else:
            try:
                answer = json.loads(response.get_content(strict=False) or b"")
            except ValueError:
                return
        if isinstance(answer, dict):
            if answer.get("usage") is None and usage is not None:  # the app's stream had none
                answer["usage"] = usage.as_openai()
            spawn(self.cache.put(rules, lookup, answer), name="cache-put")

    def settle(self, state: CallState, cost: float | None) -> None:
        if state.reservation is not None:
            spawn(self.budgets.settle(state.reservation, cost), name="budget-settle")

    async def close(self) -> None:
        await self.budgets.close()
        await self.cache.close()
