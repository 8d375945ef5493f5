"""The books: what every attempt means for its deployment's health, and one record per call.

* ``attempt(outcome)``: a success forgets the deployment's failures; a failure counts towards
  its cooldown and as a slow call for ``prefer: fast``. Health belongs to the deployment that
  was tried (provider + upstream model id), never to a model name.
* ``finish(state, ...)``: once per call, when its answer is complete (or the call died): the
  metrics, the observed latency of the deployment that served, and one JSON access-log line
  naming the app that matched and the deployment really tried.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from sidecar.core.accounting import CallRecord, Usage, call_record
from sidecar.core.config.catalog import Catalog
from sidecar.core.routing.cooldown import Cooldowns
from sidecar.core.routing.latency import LatencyTracker
from sidecar.forward.relay import Outcome
from sidecar.proxy.flow import CallState
from sidecar.proxy.metrics import Metrics

log = logging.getLogger("sidecar")
access_log = logging.getLogger("sidecar.access")  # one JSON line per call


class Books:
    def __init__(self, *, latency: LatencyTracker, cooldowns: Cooldowns, metrics: Metrics,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.latency, self.cooldowns, self.metrics, self.clock = latency, cooldowns, metrics, clock
        self.in_flight = 0

    def opened(self) -> None:
        self.in_flight += 1
        self.metrics.in_flight.inc()

    def attempt(self, outcome: Outcome) -> None:
        """Every attempt counts towards its deployment's health; a failure also counts as slow."""
        deployment = outcome.target.deployment
        if outcome.ok:
            self.cooldowns.success(deployment)
            return
        self.metrics.failed_attempt(outcome.target.provider, outcome.reason)
        self.latency.penalize(deployment)
        if self.cooldowns.failure(deployment):
            self.metrics.cooldowns.labels(self.metrics.model(outcome.target.name)).inc()
            log.warning("%s is cooling down after repeated failures (%s)", deployment,
                        outcome.reason)

    def finish(self, state: CallState, status: int, usage: Usage | None, *, stream_ok: bool,
               catalog: Catalog | None) -> CallRecord | None:
        """Once per call: metrics, latency and the access log line (None: it was done)."""
        if state.phase == "finished":
            return None
        state.phase = "finished"
        self.in_flight -= 1
        self.metrics.in_flight.dec()
        record = call_record(state, status, usage, duration=self.clock() - state.started,
                             stream_ok=stream_ok, catalog=catalog)
        target = state.target
        if record.outcome == "ok" and target is not None and not state.shadow:
            self.latency.record(target.deployment, duration=record.duration, ttft=record.ttft,
                                output_tokens=usage.completion if usage else None)
        self.metrics.observe(record)
        access_log.info(json.dumps(record.log_fields(), separators=(",", ":")))
        return record
