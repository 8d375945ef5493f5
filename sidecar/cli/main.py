"""``model-router``: run the sidecar, check rules, explain a decision, list models, print env.

    model-router run      [--rules rules.yaml] [--proxy-port 8080] [--reverse-port 8081]
                          [--transparent-port N] [--listen-host 127.0.0.1] [--confdir DIR]
    model-router check    [--rules rules.yaml]
    model-router explain  [--rules rules.yaml] [--app NAME] [--model auto] [--prefer P] ...
    model-router models   [--rules rules.yaml]
    model-router env      [--app NAME] [--format bash|fish|dotenv]

argparse and the commands only: serving (mitmproxy, the CA, signals, drain) is
``sidecar.proxy.server``, the routing itself the pure core, the text ``report``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sidecar.cli import autotier_eval, catalog, check, report
from sidecar.core.config.rules import RuleSet, load_rules
from sidecar.core.errors import SidecarError
from sidecar.core.live import View, view_of
from sidecar.proxy.deadline import DEFAULT_READ_TIMEOUT
from sidecar.proxy.metrics import parse_live_state
from sidecar.proxy.server import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_METRICS_PORT,
    Addresses,
    RunConfig,
    default_confdir,
    ensure_ca,
    logging_off_the_loop,
    quiet_libraries,
    serve,
)

log = logging.getLogger("sidecar")


def cmd_run(args: argparse.Namespace) -> int:
    with logging_off_the_loop():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    quiet_libraries()
    config = RunConfig(
        rules=Path(args.rules), listen_host=args.listen_host, proxy_port=args.proxy_port,
        reverse_port=args.reverse_port, transparent_port=args.transparent_port,
        confdir=Path(args.confdir), proxy_auth=args.proxy_auth or "",
        metrics_host=args.metrics_host, metrics_port=args.metrics_port,
        grace_period=args.grace_period, read_timeout=args.read_timeout,
    )

    def ready(addrs: Addresses) -> None:
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
    warnings = check.setup_warnings(rules)
    if warnings:
        print("\nWarnings:\n" + "\n".join(f"  WARNING: {w}" for w in warnings))
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
    return view_of(local_down(rules), live, source=metrics_url, catalog=rules.catalog)


def local_down(rules: RuleSet) -> dict[str, str]:
    """Providers this environment cannot serve: missing key variables, no AWS credentials."""
    from sidecar.providers.registry import make_adapters

    adapters = make_adapters(rules.providers, os.environ)
    return {name: why for name, adapter in adapters.items()
            if (why := adapter.unavailable()) is not None}


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
    run.add_argument("--read-timeout", type=float, default=DEFAULT_READ_TIMEOUT,
                     help="seconds an app has to send a whole request (headers and body) from "
                          "its first byte, else 408; 0: no deadline (default "
                          f"{DEFAULT_READ_TIMEOUT:g})")
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

    catalog.add_parser(sub)

    # listed here for --help; main() hands its arguments to autotier_eval.main untouched
    sub.add_parser("eval-tiers", help="evaluate tier auto on the labelled set: accuracy, "
                   "confusion matrix, tier shares, cost vs all-premium", add_help=False)

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
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["eval-tiers"]:  # its own parser (a REMAINDER subparser drops a leading --flag)
        sys.exit(autotier_eval.main(argv[1:]))
    args = parser().parse_args(argv)
    try:
        code = args.func(args)
    except SidecarError as e:
        print(f"model-router: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
