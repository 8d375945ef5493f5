"""The benchmark run: start the fakes, the load generator and each proxy in turn; measure.

Process placement on this 2-core machine (``bench.procs.pin``): the proxy under test (bare
mitmproxy or the sidecar) owns core 1; the load generator and the fake providers share core 0
(they need a small fraction of it at the proxies' rates; the JSON records their CPU use). For the
direct rows there is no proxy, so the fakes move to core 1 and the client keeps core 0.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.procs import (
    QUIET,
    Child,
    free_port,
    listen_overflows,
    memory_mb,
    open_fds,
    pin,
    wait_quiet,
)

SNI = "api.openai.com"
PROXY_VARS = ("https_proxy", "http_proxy", "all_proxy", "no_proxy")
BEDROCK_MODEL_ID = "us.bench.chat-v1:0"
MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Write one sentence about the sea, please."}]

RULES = """\
version: 1
intercept: [{{host: api.openai.com, provider: up}}]
providers:
  up: {{type: openai, base_url: "http://127.0.0.1:{openai}/v1", api_key: from-request}}
  aws: {{type: bedrock, region: us-east-1, endpoint_url: "http://127.0.0.1:{bedrock}"}}
models:
  - {{name: bench-main, provider: up, id: bench-main-v1, tier: standard,
      price: {{input: 0.1, output: 0.2}}, context: 128000, quality: 30}}
  - {{name: bench-backup, provider: up, id: bench-backup-v1, tier: standard,
      price: {{input: 1.0, output: 2.0}}, context: 128000, quality: 30}}
  - {{name: bench-bedrock, provider: aws, id: "{model_id}", tier: standard,
      price: {{input: 2.0, output: 4.0}}, context: 128000, quality: 30}}
apps:
  - name: pinned
    match: {{proxy_user: pin}}
    routes: {{"*": bench-main}}
  - name: auto
    match: {{proxy_user: auto}}
    routes: {{"*": {{model: auto, prefer: cheap}}}}
  - name: bedrock
    match: {{proxy_user: bedrock}}
    routes: {{"*": bench-bedrock}}
  - name: cached
    match: {{proxy_user: cached}}
    cache: {{ttl: 1h}}
    routes: {{"*": bench-main}}
  - name: cachemiss
    match: {{proxy_user: cachemiss}}
    cache: {{ttl: 1h, max_entry_bytes: 16}}
    routes: {{"*": bench-main}}
"""
CACHED_APPS = ("cached", "cachemiss")  # their calls ask for temperature 0: safe to replay


@dataclass(frozen=True)
class Plan:
    """How much of everything; ``smoke`` is tiny (the test suite runs it)."""

    c1_seconds: float = 3.0
    c32_seconds: float = 4.0
    warmup: float = 0.5
    streams: int = 300
    stream_seconds: float = 3.0
    stream_warmup: int = 20
    paced_streams: int = 50  # streams whose events come 1 ms apart (as a model paces tokens)
    paced_gap_ms: float = 1.0
    tries: int = 3  # per cell, until one ran while other processes were quiet; the quietest wins
    hold: int = 1000
    micro_seconds: float = 2.0
    route_samples: int = 20000
    smoke: bool = False
    only: tuple[str, ...] = ()  # config keys to measure (all when empty)
    sidecar_module: str = "sidecar"  # `python -m MODULE run ...`: A/B a patched sidecar
    wait_quiet: float = 0.0  # before each row: wait up to this long for a quiet machine


SMOKE = Plan(c1_seconds=0.3, c32_seconds=0.4, warmup=0.1, streams=5, stream_seconds=1.0,
             stream_warmup=1, paced_streams=3, tries=1, hold=20, micro_seconds=0.05,
             route_samples=200, smoke=True)


@dataclass(frozen=True)
class Config:
    key: str
    label: str
    via: str  # "direct" | "bare" | "bare-lean" | "sidecar"
    provider: str  # "openai" | "bedrock"
    user: str | None = None  # the app's name as the proxy user
    hold: bool = False  # measure RSS with `plan.hold` open streams


CONFIGS = (
    Config("direct", "direct -> fake OpenAI", "direct", "openai"),
    Config("direct-bedrock", "direct -> fake Bedrock", "direct", "bedrock"),
    Config("bare", "bare mitmproxy, default addons", "bare", "openai", hold=True),
    Config("bare-lean", "bare mitmproxy, lean addons", "bare-lean", "openai"),
    Config("sidecar-pin", "sidecar: pin (fast path)", "sidecar", "openai", "pin", hold=True),
    Config("sidecar-auto", "sidecar: auto+fallbacks (relay)", "sidecar", "openai", "auto"),
    Config("sidecar-bedrock", "sidecar: pin -> Bedrock", "sidecar", "bedrock", "bedrock"),
    # The same pin through the response cache: every call a hit (identical, temperature 0), or
    # every call a miss (an entry limit no answer fits: looked up, assembled, never stored).
    Config("sidecar-cache-hit", "sidecar: pin, cache hit", "sidecar", "openai", "cached"),
    Config("sidecar-cache-miss", "sidecar: pin, cache miss", "sidecar", "openai", "cachemiss"),
)


def body(cfg: Config, *, stream: bool, hold: bool = False) -> dict[str, Any]:
    if cfg.via == "direct" and cfg.provider == "bedrock":
        return {"messages": [{"role": "user", "content": [{"text": MESSAGES[1]["content"]}]}],
                "system": [{"text": MESSAGES[0]["content"]}],
                "inferenceConfig": {"maxTokens": 64}}
    out: dict[str, Any] = {"model": "gpt-4o", "messages": MESSAGES, "max_tokens": 64}
    if cfg.user in CACHED_APPS:
        out["temperature"] = 0
    if stream:
        out["stream"] = True
    if hold:
        out["user"] = "bench-hold"
    return out


def target(cfg: Config, ports: dict[str, int], ca: Path, *, stream: bool,
           hold: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"body": json.dumps(body(cfg, stream=stream, hold=hold),
                                               separators=(",", ":"))}
    if cfg.via == "direct" and cfg.provider == "bedrock":
        op = "converse-stream" if stream else "converse"
        spec.update(host="127.0.0.1", port=ports["bedrock"], host_header="127.0.0.1",
                    path=f"/model/{BEDROCK_MODEL_ID.replace(':', '%3A')}/{op}",
                    expect="metadata" if stream else '"output"')
        return spec
    spec.update(path="/v1/chat/completions", expect="[DONE]" if stream else '"choices"')
    if cfg.via == "direct":
        spec.update(host="127.0.0.1", port=ports["openai"], host_header="127.0.0.1")
    else:
        spec.update(host="127.0.0.1", port=ports["proxy"], host_header=SNI,
                    tunnel={"sni": SNI, "user": cfg.user, "ca": str(ca)})
    return spec


def pace(port: int, gap_ms: float) -> None:
    """Tell the fake providers how far apart to send stream events."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/_bench/pace?ms={gap_ms:g}", timeout=10) as r:
        r.read()


class Runner:
    def __init__(self, plan: Plan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self.confdir = workdir / "confdir"
        self.rows: dict[str, dict[str, Any]] = {}
        self.others: list[int] = []  # the bench's own processes besides the proxy and client

    def cells(self, cfg: Config, load: Child, ports: dict[str, int], ca: Path,
              proxy_pid: int | None) -> None:
        p = self.plan
        row: dict[str, Any] = {"label": cfg.label}
        if p.wait_quiet:
            row["others_busy_cores_before"] = round(wait_quiet(p.wait_quiet), 2)
        for conc, seconds in ((1, p.c1_seconds), (32, p.c32_seconds)):
            row[f"c{conc}"] = self.quietest(load, {
                "op": "load", "target": target(cfg, ports, ca, stream=False), "conc": conc,
                "seconds": seconds, "warmup": p.warmup, "cpu_pid": proxy_pid,
            }, timeout=seconds + p.warmup + 60)
        for cell, count, gap in (("stream", p.streams, 0.0),
                                 ("stream_paced", p.paced_streams, p.paced_gap_ms)):
            pace(ports["openai"], gap)
            row[cell] = self.quietest(load, {
                "op": "stream", "target": target(cfg, ports, ca, stream=True), "count": count,
                "seconds": p.stream_seconds, "warmup": p.stream_warmup, "cpu_pid": proxy_pid,
            }, timeout=p.stream_seconds + 120)
        pace(ports["openai"], 0.0)
        if cfg.hold and proxy_pid and self.plan.hold:
            row["hold"] = self.hold(cfg, load, ports, ca, proxy_pid)
        self.rows[cfg.key] = row
        print(f"  measured {cfg.label}", flush=True)

    def quietest(self, load: Child, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Run a cell until one try ran while other processes left the machine quiet (up to
        ``plan.tries``); the quietest try counts, every try's disturbance is kept."""
        tries = []
        for _ in range(self.plan.tries):
            tries.append(load.call({**cmd, "others": self.others}, timeout=timeout))
            if (tries[-1]["foreign_cpu_util"] or 0) <= QUIET:
                break
        best = min(tries, key=lambda t: t["foreign_cpu_util"] or 0)
        return {**best, "tries_foreign_cpu": [round(t["foreign_cpu_util"] or 0, 2) for t in tries]}

    def hold(self, cfg: Config, load: Child, ports: dict[str, int], ca: Path,
             pid: int) -> dict[str, Any]:
        before = memory_mb(pid)
        overflows = listen_overflows()
        load.send({"op": "hold", "target": target(cfg, ports, ca, stream=True, hold=True),
                   "count": self.plan.hold, "batch": 50, "interval": 0.1, "timeout": 90,
                   "release": ["127.0.0.1", ports["openai"]]})
        opened = load.read(timeout=150)
        time.sleep(0.5)  # let the proxy settle before reading its memory
        during = memory_mb(pid)
        fds = open_fds(pid)
        load.send({"op": "release"})
        done = load.read(timeout=120)
        return {**opened, **done, "requested": self.plan.hold, "fds": fds,
                "rss_before_mb": before["rss_mb"], "rss_mb": during["rss_mb"],
                "peak_rss_mb": during["peak_rss_mb"],
                "listen_overflows": listen_overflows() - overflows}

    def proxy(self, kind: str, ports: dict[str, int]) -> Child:
        env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS}
        if kind.startswith("bare"):
            args = ["bench.proxy", "--confdir", str(self.confdir), "--upstream",
                    str(ports["openai"])] + (["--lean"] if kind == "bare-lean" else [])
            return Child(kind, args, logdir=self.workdir, cpu=1, env=env)
        rules = self.workdir / "rules.yaml"
        rules.write_text(RULES.format(model_id=BEDROCK_MODEL_ID, **ports))
        env.update(AWS_ACCESS_KEY_ID="AKIDBENCHFAKE0001", AWS_SECRET_ACCESS_KEY="bench-secret",
                   AWS_CONFIG_FILE=str(self.workdir / "none"),
                   AWS_SHARED_CREDENTIALS_FILE=str(self.workdir / "none"),
                   AWS_EC2_METADATA_DISABLED="true")
        env.pop("AWS_SESSION_TOKEN", None)
        env.pop("AWS_PROFILE", None)
        port = free_port()
        args = [self.plan.sidecar_module, "run", "--rules", str(rules), "--confdir", str(self.confdir),
                "--proxy-port", str(port), "--reverse-port", str(free_port()),
                "--metrics-port", str(free_port())]
        return Child(kind, args, logdir=self.workdir, cpu=1, env=env, wait_port=port)

    def run(self) -> dict[str, Any]:
        from sidecar.proxy.server import ensure_ca

        ca = ensure_ca(self.confdir).cert
        upstream = Child("upstream", ["bench.upstream"], logdir=self.workdir, cpu=0)
        load = Child("load", ["bench.load"], logdir=self.workdir, cpu=0)
        ports = {"openai": upstream.hello["openai"], "bedrock": upstream.hello["bedrock"]}
        self.others = [upstream.pid, os.getpid()]
        placement = {"load generator": 0, "fake providers": 0, "proxy under test": 1,
                     "fake providers (direct rows)": 1}
        chosen = [c for c in CONFIGS if not self.plan.only or c.key in self.plan.only]
        try:
            pin(upstream.pid, 1)
            for cfg in (c for c in chosen if c.via == "direct"):
                self.cells(cfg, load, ports, ca, None)
            pin(upstream.pid, 0)
            for kind in dict.fromkeys(c.via for c in chosen if c.via != "direct"):
                proxy = self.proxy(kind, ports)
                try:
                    idle = memory_mb(proxy.pid)["rss_mb"]
                    proxy_ports = {**ports, "proxy": proxy.hello["ports"]["regular"]}
                    for cfg in (c for c in chosen if c.via == kind):
                        self.cells(cfg, load, proxy_ports, ca, proxy.pid)
                        self.rows[cfg.key]["idle_rss_mb"] = idle
                finally:
                    proxy.stop()
        finally:
            load.send({"op": "quit"})
            load.stop()
            upstream.stop()
        return {"rows": self.rows, "placement": placement, "plan": asdict(self.plan)}


def measure(plan: Plan, workdir: Path | None = None) -> dict[str, Any]:
    """Everything but the micro-benchmarks; logs and the CA go to a fresh temporary folder."""
    work = workdir or Path(tempfile.mkdtemp(prefix="model-router-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    result = Runner(plan, work).run()
    result["workdir"] = str(work)
    return result
