"""Micro-benchmarks, in one thread (one core): Bedrock transcoding and the routing decision.

Each figure is the best of ``ROUNDS`` rounds.

* transcode: ``EventStreamToSSE`` fed a captured ConverseStream byte stream (frames encoded by the
  project's fake Bedrock), split as the network delivers it: one frame per chunk (as Bedrock and
  the fake send them) and 16 KiB reads. Reported in events (frames) per second.
* route: ``sidecar.policy.choose_route`` with a 200-model catalog (3 tiers, 4 providers) and 50
  apps whose match keys mix proxy_user, header, api_key_sha256, user_agent and client CIDR; the
  call matches the LAST app (every match is tried). Per scenario: p50/p99 microseconds. The
  same caller calling again is answered from the rules' caller-identity cache
  (``sidecar.apps.AppMatcher``); the "new caller" scenario comes from a different client
  address of app 49's network on every call, so every call matches all 50 apps. ``prefer:
  fast`` is measured with no latency observed yet (catalog priors) and with every model
  observed (as a sidecar that has served traffic for a while).
"""

from __future__ import annotations

import gc
import random
import time
from typing import Any

from bench.client import percentile
from tests.fakes.bedrock import encode_events, stream_events, text_response

DELTAS = 1000  # text deltas per captured stream (plus 4 framing events)
ROUNDS = 5  # each figure is the best of this many rounds (as timeit does): other processes on
#             the machine only ever make a round slower


def transcode(seconds: float) -> dict[str, Any]:
    from sidecar.providers.bedrock.stream import ConverseStreamTranslator
    from sidecar.providers.bedrock.transcode import DONE, EventStreamToSSE

    events = stream_events(text_response("abcd" * DELTAS), piece=4)
    frames = [encode_events([e]) for e in events]
    captured = b"".join(frames)
    splits = {"frame_chunks": frames,
              "16k_chunks": [captured[i:i + 16384] for i in range(0, len(captured), 16384)]}
    out: dict[str, Any] = {"events_per_stream": len(events), "bytes_per_stream": len(captured)}
    for name, chunks in splits.items():
        rates = []
        for _ in range(ROUNDS):
            count, started = 0, time.perf_counter()
            while True:
                t = EventStreamToSSE(ConverseStreamTranslator(
                    model="bench", created=1767225600, response_id="chatcmpl-bench"))
                sent = [part for chunk in chunks for part in t(chunk)] + t(b"")
                if sent[-1] != DONE or t.error is not None:
                    raise AssertionError(f"the transcoder did not finish cleanly: {t.error}")
                count += len(events)
                elapsed = time.perf_counter() - started
                if elapsed >= seconds / ROUNDS:
                    break
            rates.append(count / elapsed)
        out[f"{name}_events_per_s"] = max(rates)  # the least disturbed round
        out[f"{name}_rounds"] = [round(r) for r in rates]
    out["events_per_s"] = min(out["frame_chunks_events_per_s"], out["16k_chunks_events_per_s"])
    return out


def _catalog_yaml(n: int = 200) -> str:
    tiers = ("economy", "standard", "premium")
    caps = ("[tools]", "[tools, vision]", "[tools, json_schema]", "[tools, vision, json_schema]",
            "[]")
    rnd = random.Random(6)
    lines = ["models:"]
    for i in range(n):
        price = round(rnd.uniform(0.05, 15), 3)
        lines.append(
            f"  - {{name: m{i:03d}, provider: p{i % 4}, id: vendor/m{i:03d}-v1, "
            f"tier: {tiers[i % 3]}, price: {{input: {price}, output: {price * 4:.3f}}}, "
            f"context: {rnd.choice((32000, 128000, 200000, 1000000))}, "
            f"quality: {rnd.uniform(10, 70):.1f}, coding: {rnd.uniform(10, 80):.1f}, "
            f"latency: {{ttft: {rnd.uniform(0.1, 3):.2f}, tokens_per_second: "
            f"{rnd.uniform(20, 300):.0f}}}, supports: {caps[i % 5]}}}")
    return "\n".join(lines) + "\n"


def _rules_yaml(apps: int = 50) -> str:
    out = ["version: 1", "intercept: [{host: api.openai.com, provider: p0}]", "providers:"]
    out += [f"  p{i}: {{type: openai, base_url: 'https://p{i}.example/v1'}}" for i in range(4)]
    out.append("apps:")
    for i in range(apps):
        match = [f"{{proxy_user: app{i}}}", f"{{header: {{x-app: 'team-{i}*'}}}}",
                 f"{{api_key_sha256: '{i:02x}{i:02x}{i:02x}'}}",
                 f"{{user_agent: 'agent-{i}/*'}}", f"{{client: 10.{i}.0.0/16}}"][i % 5]
        out += [f"  - name: app{i}", f"    match: {match}", "    routes:",
                "      gpt-4o: {model: auto, prefer: cheap}",
                f"      gpt-4o-mini: m{(i * 7) % 200:03d}",
                f"      gpt-4.1: {{model: m{i:03d}, fallbacks: [m{i + 1:03d}, m{i + 2:03d}]}}",
                "      '*': passthrough"]
    return "\n".join(out) + "\n"


NEW_CALLER = "new caller"  # every call from another client address (app 49: 10.49.0.0/16)
OBSERVED = "observed"  # prefer fast: the latency tracker has observed every model
SCENARIOS = {  # name -> (the request's model, its intent, options); app 49 of 50 always matches
    "pin": ("gpt-4o-mini", {}, ()),
    "pin, a new caller every call (match cache miss)": ("gpt-4o-mini", {}, (NEW_CALLER,)),
    "pin+2 fallbacks": ("gpt-4.1", {}, ()),
    "passthrough": ("gpt-3.5-turbo", {}, ()),
    "auto cheap, all 200 models": ("gpt-4o", {}, ()),
    "auto (defaults: standard, balanced)": ("auto", {}, ()),
    "auto fast, premium tier": ("auto", {"prefer": "fast", "tier": "premium"}, ()),
    "auto fast, premium tier, every model observed": (
        "auto", {"prefer": "fast", "tier": "premium"}, (OBSERVED,)),
}


HEADERS = {"authorization": "Bearer sk-bench-app", "content-type": "application/json",
           "user-agent": "agent-49/1.0", "x-app": "team-49-prod"}


def _facts(model: str, intent: dict[str, Any], client_ip: str) -> Any:
    from sidecar.core.facts import RequestFacts

    return RequestFacts(model=model, headers=HEADERS, client_ip=client_ip, prompt_tokens=120,
                        max_tokens=256, **intent)


def route(samples: int) -> dict[str, Any]:
    from sidecar.core.config.catalog import Catalog, parse_models
    from sidecar.core.config.rules import parse_rules_text
    from sidecar.core.config.yamlfile import load_yaml
    from sidecar.core.routing.latency import LatencyTracker
    from sidecar.core.routing.policy import choose_route

    catalog = Catalog.of(parse_models(load_yaml(_catalog_yaml())["models"]))
    rules = parse_rules_text(_rules_yaml(), path="bench-rules.yaml", catalog=catalog)
    observed = LatencyTracker()
    seen = random.Random(2)
    for spec in rules.catalog:  # as ~10 calls per model leave it
        for _ in range(10):
            observed.record(spec.name, duration=seen.uniform(0.5, 8), ttft=seen.uniform(0.1, 2),
                            output_tokens=seen.randint(50, 800))
    rng = random.Random(1)
    out: dict[str, Any] = {"models": len(list(rules.catalog)), "apps": len(rules.apps)}
    per_round = max(1, samples // ROUNDS)
    for name, (model, intent, options) in SCENARIOS.items():
        latency = observed if OBSERVED in options else LatencyTracker()
        same = _facts(model, intent, "10.49.1.2")
        decision = choose_route(same, rules, latency, rng=rng)
        assert decision.app == "app49", decision.app
        rounds = []
        for i in range(ROUNDS):
            calls = [same] * per_round
            if NEW_CALLER in options:  # each address once over all rounds (65,536 of them)
                calls = [_facts(model, intent, f"10.49.{k // 256 % 256}.{k % 256}")
                         for k in range(i * per_round, (i + 1) * per_round)]
            times = []
            gc.collect()
            for call in calls:
                t0 = time.perf_counter_ns()
                choose_route(call, rules, latency, rng=rng)
                times.append((time.perf_counter_ns() - t0) / 1000)
            rounds.append((percentile(times, 99), percentile(times, 50)))
        p99, p50 = min(rounds)  # type: ignore[type-var]
        out[name] = {"kind": decision.kind, "plan": len(decision.plan), "p50_us": p50,
                     "p99_us": p99, "p99_us_rounds": [round(r[0] or 0, 1) for r in rounds]}
    out["worst_p99_us"] = max(v["p99_us"] for v in out.values() if isinstance(v, dict))
    return out


def run(seconds: float, samples: int) -> dict[str, Any]:
    return {"transcode": transcode(seconds), "route": route(samples)}
