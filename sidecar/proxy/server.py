"""Serving: one mitmproxy ``Master`` with the lean addons and the ``Sidecar`` addon, until it stops.

``serve(config)`` is ``model-router run`` without argparse (the e2e harness runs it too):

- the persistent CA (``ensure_ca``), created on first use, and the bundle apps trust;
- the listeners (``modes``: explicit proxy, base URL, transparent), reported once bound and
  given a deeper accept backlog (``deepen_backlog``);
- mitmproxy's own error answers as OpenAI error objects (``install_openai_error_pages``);
- the signals: SIGHUP re-reads the rules, SIGTERM/SIGINT ``drain``; and after ``run()``,
  listeners and live connections closed (``_close``);
- log lines written off the event loop (``logging_off_the_loop``).

This module reaches into mitmproxy internals (``_http1``/``_http2``/``_http3``, the proxyserver's
``servers``/``_servers``/``connections``, a handler's ``transports``);
``tests/proxy/test_server.py`` checks that each still exists with the shape used here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import logging.handlers
import os
import queue
import signal
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidecar.core.config.rules import RuleSet, load_rules
from sidecar.core.errors import SidecarError, error_body
from sidecar.proxy.addon import Sidecar
from sidecar.proxy.config import intercept_patterns
from sidecar.proxy.deadline import DEFAULT_READ_TIMEOUT, EarlyNextLayer, ReadDeadline
from sidecar.proxy.metrics import serve_metrics
from sidecar.proxy.tasks import spawn

log = logging.getLogger(__name__)

CA_BASENAME = "mitmproxy"
DEFAULT_BODY_LIMIT = "32m"  # vision payloads are large; everything above is refused (413)
DEFAULT_METRICS_PORT = 9464
DEFAULT_GRACE_PERIOD = 20.0
LISTEN_BACKLOG = 1024
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

Addresses = dict[str, list[tuple[str, int]]]  # listener mode -> bound (host, port)s


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
    read_timeout: float = DEFAULT_READ_TIMEOUT  # seconds to receive a request; 0: no deadline


class StartupError(SidecarError):
    """The sidecar could not start (a port in use, an unusable address)."""


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
    """mitmproxy mode specs of the listeners ``config`` asks for."""
    host = config.listen_host
    out = []
    if config.proxy_port is not None:
        out.append(f"regular@{host}:{config.proxy_port}")
    if config.reverse_port is not None:
        out.append(f"reverse:https://{rules.intercept[0].address}@{host}:{config.reverse_port}")
    if config.transparent_port is not None:
        out.append(f"transparent@{host}:{config.transparent_port}")
    return out


async def serve(
    config: RunConfig, *, addon: Sidecar | None = None,
    on_ready: Callable[[Addresses], None] | None = None,
    on_master: Callable[[Any], None] | None = None,
) -> None:
    """Run the sidecar until ``master.shutdown()``; one per process at a time."""
    from mitmproxy.addons import block, core, proxyserver, tlsconfig
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
    master.addons.add(core.Core(), proxyserver.Proxyserver(), EarlyNextLayer(),
                      tlsconfig.TlsConfig(), block.Block(), ReadDeadline(), addon)
    watcher = _Running(on_ready or (lambda addrs: None))
    master.addons.add(watcher)
    master.options.update(
        connection_strategy="lazy", allow_hosts=intercept_patterns(rules),
        body_size_limit=config.body_size_limit, sidecar_rules=str(config.rules),
        sidecar_proxy_auth=config.proxy_auth, sidecar_read_timeout=config.read_timeout,
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


class _Running:
    """An addon that reports the bound addresses once mitmproxy is up (or stops it when a
    listener failed)."""

    def __init__(self, on_ready: Callable[[Addresses], None]) -> None:
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


def deepen_backlog(server: Any) -> None:
    """mitmproxy listens with asyncio's default backlog of 100: a burst of new connections
    (hundreds of streams opening at once) overflows it and clients wait for SYN retries.
    ``listen()`` again on the same socket only changes its queue length."""
    for listener in getattr(server, "_servers", ()):
        for sock in getattr(listener, "sockets", ()) if isinstance(listener, asyncio.Server) else ():
            with socket.fromfd(sock.fileno(), sock.family, sock.type) as dup:
                dup.listen(LISTEN_BACKLOG)


def openai_error_page(status_code: int, message: str) -> bytes:
    """``_http2``/``_http3.format_error``'s replacement: mitmproxy's own error answers (connect
    failures, 413, protocol errors) as OpenAI JSON."""
    if status_code == 413:
        text, kind, code = f"The request body is too large: {message}", "invalid_request_error", (
            "request_too_large")
    elif status_code < 500:
        text, kind, code = f"Bad request: {message}", "invalid_request_error", "invalid_request"
    else:
        text, kind, code = (f"model-router could not reach the provider: {message}", "api_error",
                            "upstream_connect_error")
    return json.dumps(error_body(text, type=kind, code=code)).encode()


def openai_error_response(status_code: int, message: str = "") -> bytes:
    """``_http1.make_error_response``'s replacement: a whole HTTP/1 answer, as bytes."""
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

    _http1.make_error_response = openai_error_response
    for module in (_http2, _http3):  # their error bodies (the status line is the protocol's)
        setattr(module, "format_error", openai_error_page)  # noqa: B010 - not re-exported


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


def quiet_libraries() -> None:
    """No per-connection or per-request lines from the libraries on the hot path."""
    for name in ("mitmproxy", "httpx", "httpcore", "botocore", "boto3"):
        logging.getLogger(name).setLevel(logging.WARNING)


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
