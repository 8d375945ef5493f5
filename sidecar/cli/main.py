"""``model-router``: run the sidecar, check rules, explain a decision, list models, print env.

    model-router run      [--rules rules.yaml] [--proxy-port 8080] [--reverse-port 8081]
                          [--transparent-port N] [--listen-host 127.0.0.1] [--confdir DIR]
    model-router check    [--rules rules.yaml]
    model-router explain  [--rules rules.yaml] [--app NAME] [--model auto] [--prefer P] ...
    model-router models   [--rules rules.yaml]
    model-router env      [--app NAME] [--format bash|fish|dotenv]

Only this module and ``addon.py`` import mitmproxy; the routing itself lives in the pure core.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import logging.handlers
import os
import queue
import signal
import socket
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sidecar.cli import autotier_eval, report
from sidecar.core.config.catalog_import import import_litellm
from sidecar.core.config.rules import RuleSet, load_rules, unavailable_providers
from sidecar.core.errors import SidecarError, error_body
from sidecar.core.live import View, view_of
from sidecar.proxy.addon import Sidecar, intercept_patterns
from sidecar.proxy.metrics import parse_live_state, serve_metrics
from sidecar.proxy.tasks import spawn

log = logging.getLogger("sidecar")

CA_BASENAME = "mitmproxy"
DEFAULT_BODY_LIMIT = "32m"
DEFAULT_METRICS_PORT = 9464
DEFAULT_GRACE_PERIOD = 20.0  # vision payloads are large; everything above is refused (413)


def default_confdir() -> Path:
    return Path(os.environ.get("MODEL_ROUTER_HOME") or Path.home() / ".model-router")


@dataclass(frozen=True, slots=True)
class RunConfig:
    rules: Path = Path("rules.yaml")
    listen_host: str = "127.0.0.1"
    proxy_port: int | None = 8080
    reverse_port: int | None = 8081
    transparent_port: int | None = None
    confdir: Path = field(default_factory=default_confdir)
    body_size_limit: str = DEFAULT_BODY_LIMIT
    proxy_auth: str = ""  # a file of user:password lines; "" = no proxy authentication
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = DEFAULT_METRICS_PORT  # Prometheus /metrics; None: off
    grace_period: float = DEFAULT_GRACE_PERIOD  # seconds calls in flight get on SIGTERM


@dataclass(frozen=True, slots=True)
class CaFiles:
    cert: Path  # the sidecar's CA certificate alone (NODE_EXTRA_CA_CERTS)
    bundle: Path  # public roots + the sidecar's CA (SSL_CERT_FILE, REQUESTS_CA_BUNDLE, ...)


def ensure_ca(confdir: Path) -> CaFiles:
    """Create the persistent CA on first use (private key 0600) and the combined bundle."""
    import certifi
    from mitmproxy.certs import CertStore

    confdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = CertStore.from_store(confdir, CA_BASENAME, 2048)
    cert = confdir / f"{CA_BASENAME}-ca-cert.pem"
    if not cert.exists():  # an operator's own CA: mitmproxy only writes this file for a new one
        cert.write_bytes(store.default_ca.to_pem())
    for private in (f"{CA_BASENAME}-ca.pem", f"{CA_BASENAME}-ca.p12"):
        if (confdir / private).exists():
            os.chmod(confdir / private, 0o600)
    bundle = confdir / "ca-bundle.pem"
    roots = Path(certifi.where()).read_text("ascii")
    text = f"{roots.rstrip()}\n\n# model-router sidecar CA\n{cert.read_text('ascii')}"
    if not bundle.exists() or bundle.read_text("ascii") != text:
        bundle.write_text(text, "ascii")
    return CaFiles(cert=cert, bundle=bundle)


def modes(config: RunConfig, rules: RuleSet) -> list[str]:
    host = config.listen_host
    out = []
    if config.proxy_port is not None:
        out.append(f"regular@{host}:{config.proxy_port}")
    if config.reverse_port is not None:
        out.append(f"reverse:https://{rules.intercept[0].address}@{host}:{config.reverse_port}")
    if config.transparent_port is not None:
        out.append(f"transparent@{host}:{config.transparent_port}")
    return out


class _Running:
    """Reports the bound addresses once mitmproxy is up."""

    def __init__(self, on_ready: Callable[[dict[str, list[tuple[str, int]]]], None]) -> None:
        self.on_ready = on_ready
        self.failed = ""

    def running(self) -> None:
        from mitmproxy import ctx

        servers = list(ctx.master.addons.get("proxyserver").servers)
        failed = [f"{s.mode.full_spec}: {s.last_exception}" for s in servers if not s.is_running]
        if failed:
            self.failed = "cannot listen: " + "; ".join(failed)
            ctx.master.shutdown()
            return
        for server in servers:
            deepen_backlog(server)
        addrs = {s.mode.type_name: [tuple(a[:2]) for a in s.listen_addrs] for s in servers}
        self.on_ready(addrs)


LISTEN_BACKLOG = 1024


def deepen_backlog(server: Any) -> None:
    """mitmproxy listens with asyncio's default backlog of 100: a burst of new connections
    (hundreds of streams opening at once) overflows it and clients wait for SYN retries.
    ``listen()`` again on the same socket only changes its queue length."""
    for listener in getattr(server, "_servers", ()):
        for sock in getattr(listener, "sockets", ()) if isinstance(listener, asyncio.Server) else ():
            with socket.fromfd(sock.fileno(), sock.family, sock.type) as dup:
                dup.listen(LISTEN_BACKLOG)


async def serve(
    config: RunConfig, *, addon: Sidecar | None = None,
    on_ready: Callable[[dict[str, list[tuple[str, int]]]], None] | None = None,
    on_master: Callable[[Any], None] | None = None,
) -> None:
    """Run the sidecar until ``master.shutdown()``; one per process at a time."""
    from mitmproxy.addons import block, core, next_layer, proxyserver, tlsconfig
    from mitmproxy.master import Master
    from mitmproxy.options import Options

    rules = load_rules(config.rules)
    ensure_ca(config.confdir)
    install_openai_error_pages()
    addon = addon or Sidecar()
    metrics_server = None
    if config.metrics_port is not None:
        ready = addon
        metrics_server, bound = serve_metrics(addon.metrics, config.metrics_host,
                                              config.metrics_port, ready=lambda: ready.ready)
        addon.metrics_port = bound
    master = Master(Options(confdir=str(config.confdir), mode=modes(config, rules)))
    master.addons.add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(),
                      tlsconfig.TlsConfig(), block.Block(), addon)
    watcher = _Running(on_ready or (lambda addrs: None))
    master.addons.add(watcher)
    master.options.update(
        connection_strategy="lazy", allow_hosts=intercept_patterns(rules),
        body_size_limit=config.body_size_limit, sidecar_rules=str(config.rules),
        sidecar_proxy_auth=config.proxy_auth,
    )
    if on_master is not None:
        on_master(master)
    _handle_signals(master, addon, config.grace_period)
    try:
        await master.run()
    finally:
        await _close(master)
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
    if watcher.failed:
        raise StartupError(watcher.failed)


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


def _openai_error_response(status_code: int, message: str = "") -> bytes:
    from mitmproxy import http
    from mitmproxy.net.http import http1

    resp = http.Response.make(status_code, openai_error_page(status_code, message), {
        "content-type": "application/json", "connection": "close",
        "x-request-id": f"req_{uuid.uuid4().hex}",
    })
    return bytes(http1.assemble_response(resp))


def install_openai_error_pages() -> None:
    """Replace mitmproxy's HTML error pages: apps behind the sidecar expect OpenAI errors."""
    from mitmproxy.proxy.layers.http import _http1, _http2, _http3

    _http1.make_error_response = _openai_error_response
    for module in (_http2, _http3):  # their error bodies (the status line is the protocol's)
        setattr(module, "format_error", openai_error_page)  # noqa: B010 - not re-exported


class StartupError(SidecarError):
    """The sidecar could not start (a port in use, an unusable address)."""


def _handle_signals(master: Any, addon: Sidecar, grace: float) -> None:
    """SIGHUP re-reads rules.yaml; SIGTERM/SIGINT drain: stop accepting, let calls in flight
    (streams included) finish for up to ``grace`` seconds, then stop."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: spawn(addon.reload("SIGHUP"),
                                                             name="reload"))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: spawn(drain(master, addon, grace),
                                                       name="drain"))
    except (RuntimeError, ValueError, NotImplementedError):
        log.debug("signal handlers not available here (not the main thread)")


async def drain(master: Any, addon: Sidecar, grace: float) -> None:
    """Graceful shutdown: not ready, listeners closed, in-flight calls finish, then stop."""
    if not addon.ready and addon.draining:
        master.shutdown()  # a second signal: stop now
        return
    addon.ready, addon.draining = False, True
    log.info("shutting down: waiting up to %.0f s for %d call(s) in flight", grace,
             addon.in_flight)
    await master.addons.get("proxyserver").servers.update([])
    deadline = asyncio.get_running_loop().time() + grace
    while addon.in_flight > 0 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    if addon.in_flight:
        log.warning("grace period over: %d call(s) cut", addon.in_flight)
    master.shutdown()


async def _close(master: Any) -> None:
    """mitmproxy leaves listeners and live connections open after run(); close both."""
    ps = master.addons.get("proxyserver")
    await ps.servers.update([])
    for handler in list(ps.connections.values()):
        for transport in list(handler.transports.values()):
            if transport.handler is not None:
                transport.handler.cancel()
    for _ in range(100):
        if not ps.connections:
            break
        await asyncio.sleep(0.01)


def _quiet_mitmproxy() -> None:
    """No per-connection or per-request lines from the libraries on the hot path."""
    for name in ("mitmproxy", "httpx", "httpcore", "botocore", "boto3"):
        logging.getLogger(name).setLevel(logging.WARNING)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def logging_off_the_loop() -> Iterator[None]:
    """Log lines (the access line of every call among them) are formatted where they are logged
    and written to stderr by a thread (logging's QueueHandler and QueueListener): a slow stderr
    -- a full pipe to a log collector -- never stalls the event loop that serves the calls."""
    lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    stderr = logging.StreamHandler()
    stderr.setFormatter(logging.Formatter(LOG_FORMAT))
    listener = logging.handlers.QueueListener(lines, stderr)
    queued = logging.handlers.QueueHandler(lines)  # merges the message (and any traceback)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(queued)
    listener.start()
    try:
        yield
    finally:
        listener.stop()  # writes what is queued
        root.removeHandler(queued)


def cmd_run(args: argparse.Namespace) -> int:
    with logging_off_the_loop():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    _quiet_mitmproxy()
    config = RunConfig(
        rules=Path(args.rules), listen_host=args.listen_host, proxy_port=args.proxy_port,
        reverse_port=args.reverse_port, transparent_port=args.transparent_port,
        confdir=Path(args.confdir), proxy_auth=args.proxy_auth or "",
        metrics_host=args.metrics_host, metrics_port=args.metrics_port,
        grace_period=args.grace_period,
    )

    def ready(addrs: dict[str, list[tuple[str, int]]]) -> None:
        for mode, bound in addrs.items():
            unique = dict.fromkeys(f"{h}:{p}" for h, p in bound)  # reverse https: TCP + UDP
            log.info("listening (%s) on %s", mode, ", ".join(unique))
        if config.metrics_port is not None:
            log.info("metrics on http://%s:%s/metrics", config.metrics_host, config.metrics_port)
        log.info("app-side settings: model-router env --confdir %s", config.confdir)

    asyncio.run(serve(config, on_ready=ready))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    rules = load_rules(args.rules)
    print(report.render_check(rules, local_down(rules)))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    rules = load_rules(args.rules)
    print(report.render_models(rules, _view(rules, args.metrics_url)))
    return 0


def _view(rules: RuleSet, metrics_url: str) -> View:
    """Local checks, plus a running sidecar's live state when its /metrics answers."""
    live = None
    try:
        with urllib.request.urlopen(metrics_url, timeout=1) as resp:  # noqa: S310 - operator URL
            live = parse_live_state(resp.read().decode("utf-8"))
    except (OSError, ValueError):
        pass
    return view_of(local_down(rules), live, source=metrics_url)


def local_down(rules: RuleSet) -> dict[str, str]:
    """Providers this environment cannot serve: missing key variables, no AWS credentials."""
    from sidecar.providers.bedrock.signing import BedrockSigner
    from sidecar.proxy.addon import NO_AWS_CREDENTIALS

    down = unavailable_providers(rules, os.environ)
    for p in rules.providers.values():
        if p.type == "bedrock" and p.region:
            signer = BedrockSigner(p.region, endpoint_url=p.endpoint_url, profile=p.profile)
            if not signer.resolve():
                down[p.name] = NO_AWS_CREDENTIALS
    return down


def cmd_explain(args: argparse.Namespace) -> int:
    rules = load_rules(args.rules)
    problem = report.unknown_app(rules, args.app)
    if problem is not None:
        print(problem)
        return 1
    body = read_request(args.request) if args.request else {}
    for key in ("model", "prefer", "tier"):
        if getattr(args, key):
            body[key] = getattr(args, key)
    body.setdefault("model", "auto")
    body.setdefault("messages", [{"role": "user", "content": "x" * (args.prompt_tokens * 4)}])
    if args.stream:
        body["stream"] = True
    if args.max_tokens:
        body["max_tokens"] = args.max_tokens
    print(report.render_explain(rules, body, app=args.app, view=_view(rules, args.metrics_url)))
    return 0


class RequestFileError(SidecarError):
    """``explain --request FILE``: the file cannot be read or is not a JSON object."""


def read_request(path: str) -> dict[str, Any]:
    """The chat.completions body in ``path``, or a ``RequestFileError`` naming the file."""
    try:
        text = Path(path).read_text("utf-8")
    except OSError as e:
        raise RequestFileError(f"{path}: cannot read the request file: {e.strerror}") from None
    except UnicodeDecodeError:
        raise RequestFileError(f"{path}: the request file is not UTF-8 text") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as e:
        raise RequestFileError(f"{path}: the request file is not valid JSON ({e})") from None
    if not isinstance(body, dict):
        raise RequestFileError(f"{path}: the request file must hold a JSON object")
    return body


def cmd_catalog_import(args: argparse.Namespace) -> int:
    """Write a catalog file with prices and limits refreshed from a LiteLLM price map."""
    try:
        price_map = json.loads(Path(args.file).read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise RequestFileError(f"{args.file}: {e}") from None
    if not isinstance(price_map, dict):
        raise RequestFileError(f"{args.file}: not a JSON object of model keys")
    rules = load_rules(args.rules)
    as_of = time.strftime("%Y-%m-%d", time.gmtime(Path(args.file).stat().st_mtime))
    result = import_litellm(price_map, rules.catalog, source=f"LiteLLM map {Path(args.file).name}",
                            as_of=as_of)
    header = (f"# Generated by `model-router catalog import {args.file}` on "
              f"{time.strftime('%Y-%m-%d')}.\n# Use it from rules.yaml: catalog: "
              f"{Path(args.output).name}\n")
    Path(args.output).write_text(header + yaml.safe_dump({"models": result.entries},
                                                        sort_keys=False), "utf-8")
    print(f"{len(result.entries)} models refreshed into {args.output} "
          f"({len(result.changed)} changes; {len(result.unmatched)} not in the map)")
    for line in result.changed:
        print(f"  {line}")
    if result.unmatched:
        print("not in the map: " + ", ".join(result.unmatched))
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    """The app side of each way in: proxy (HTTPS_PROXY + CA), base-url, or transparent (CA)."""
    base_url = f"http://{args.host}:{args.reverse_port}/v1"
    if args.way == "base-url":
        print(report.render_env({"OPENAI_BASE_URL": base_url}, fmt=args.format))
        return 0
    ca = ensure_ca(Path(args.confdir))
    trust = {"SSL_CERT_FILE": str(ca.bundle), "REQUESTS_CA_BUNDLE": str(ca.bundle),
             "CURL_CA_BUNDLE": str(ca.bundle), "NODE_EXTRA_CA_CERTS": str(ca.cert)}
    if args.way == "transparent":
        print(report.render_env(trust, fmt=args.format))
        return 0
    user = f"{args.app}:@" if args.app else ""  # the colon: requests ignores a bare user
    values = {"HTTPS_PROXY": f"http://{user}{args.host}:{args.proxy_port}", **trust}
    print(report.render_env(values, fmt=args.format, base_url=base_url))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="model-router", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def with_rules(name: str, help: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help)
        cmd.add_argument("--rules", default=os.environ.get("MODEL_ROUTER_RULES", "rules.yaml"),
                         help="the rules file (default: rules.yaml, or $MODEL_ROUTER_RULES)")
        return cmd

    run = with_rules("run", "run the sidecar")
    run.add_argument("--listen-host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes it)")
    run.add_argument("--proxy-port", type=_port_or_off, default=8080,
                     help="explicit proxy (HTTPS_PROXY) port, 'off' to disable (default 8080)")
    run.add_argument("--reverse-port", type=_port_or_off, default=8081,
                     help="base-URL (OPENAI_BASE_URL) port, 'off' to disable (default 8081)")
    run.add_argument("--transparent-port", type=_port_or_off, default=None,
                     help="transparent-mode port for iptables REDIRECT (default: off)")
    run.add_argument("--confdir", default=str(default_confdir()),
                     help="where the CA lives (default ~/.model-router or $MODEL_ROUTER_HOME)")
    run.add_argument("--metrics-port", type=_port_or_off, default=DEFAULT_METRICS_PORT,
                     help=f"Prometheus /metrics port, 'off' to disable (default "
                          f"{DEFAULT_METRICS_PORT})")
    run.add_argument("--metrics-host", default="127.0.0.1",
                     help="address of the metrics listener (default 127.0.0.1)")
    run.add_argument("--grace-period", type=float, default=DEFAULT_GRACE_PERIOD,
                     help="on SIGTERM, seconds calls in flight (streams too) get to finish "
                          f"(default {DEFAULT_GRACE_PERIOD:g})")
    run.add_argument("--proxy-auth", metavar="FILE",
                     help="require explicit-proxy clients to authenticate with a user:password "
                          "from FILE (one per line)")
    run.set_defaults(func=cmd_run)

    with_rules("check", "validate the rules and print the resolved setup").set_defaults(
        func=cmd_check)
    models = with_rules("models", "list the catalog: prices, scores, availability, observed "
                                  "latency")
    models.set_defaults(func=cmd_models)

    explain = with_rules("explain", "show the routing decision for an app and a request")
    explain.add_argument("--app", help="the app's name in rules.yaml (default: 'default')")
    explain.add_argument("--model", help="the request's model (default: auto)")
    explain.add_argument("--prefer", help="cheap | fast | balanced | quality | coding")
    explain.add_argument("--tier", help="economy | standard | premium")
    explain.add_argument("--request", help="a JSON file with a chat.completions request body")
    explain.add_argument("--prompt-tokens", type=int, default=500,
                         help="size of a synthetic prompt when no --request is given")
    explain.add_argument("--max-tokens", type=int)
    explain.add_argument("--stream", action="store_true")
    explain.set_defaults(func=cmd_explain)
    for cmd in (models, explain):
        cmd.add_argument("--metrics-url", default=f"http://127.0.0.1:{DEFAULT_METRICS_PORT}/metrics",
                         help="a running sidecar's /metrics, for its observed latency, cooldowns "
                              "and provider state (ignored when unreachable)")

    catalog = sub.add_parser("catalog", help="maintain the model catalog")
    catalog_sub = catalog.add_subparsers(dest="catalog_command", required=True)
    imp = catalog_sub.add_parser("import", help="refresh prices and context windows from a "
                                 "LiteLLM model_prices_and_context_window.json")
    imp.add_argument("file", help="the LiteLLM-format price map (JSON)")
    imp.add_argument("-o", "--output", default="catalog.prices.yaml",
                     help="the catalog file to write (default catalog.prices.yaml); name it in "
                          "rules.yaml as `catalog: FILE`")
    imp.add_argument("--rules", default=os.environ.get("MODEL_ROUTER_RULES", "rules.yaml"))
    imp.set_defaults(func=cmd_catalog_import)

    evaluate = sub.add_parser("eval-tiers", help="evaluate tier auto on the labelled set: "
                              "accuracy, confusion matrix, tier shares, cost vs all-premium",
                              add_help=False)
    evaluate.add_argument("args", nargs=argparse.REMAINDER)
    evaluate.set_defaults(func=lambda a: autotier_eval.main(a.args))

    env = sub.add_parser("env", help="print the variables an app needs to use the sidecar")
    env.add_argument("--app", help="the app name to put in the proxy URL (match: proxy_user)")
    env.add_argument("--host", default="127.0.0.1")
    env.add_argument("--proxy-port", type=int, default=8080)
    env.add_argument("--reverse-port", type=int, default=8081)
    env.add_argument("--confdir", default=str(default_confdir()))
    env.add_argument("--format", choices=("bash", "fish", "dotenv"), default="bash")
    env.add_argument("--way", choices=("proxy", "base-url", "transparent"), default="proxy",
                     help="proxy: HTTPS_PROXY + CA (default); base-url: OPENAI_BASE_URL (Node "
                          "apps); transparent: the CA only (iptables does the rest)")
    env.set_defaults(func=cmd_env)
    return p


def _port_or_off(value: str) -> int | None:
    if value.lower() in ("off", "none", "-"):
        return None
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port")
    return port


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        code = args.func(args)
    except SidecarError as e:
        print(f"model-router: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
