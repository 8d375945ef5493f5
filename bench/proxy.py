"""Bare mitmproxy, the baseline, alone in its own process (its CPU and RSS are read from /proc).

    python -m bench.proxy --upstream PORT --confdir D [--lean]

mitmproxy 12 with its DEFAULT addon set (``mitmproxy.addons.default_addons()``, as mitmdump has
it minus the terminal log), ``connection_strategy=lazy`` (the eager default dials api.openai.com
on CONNECT, and there is no such host here), and the smallest addon that makes the comparison
possible: it points every request at the fake upstream over plain HTTP (as the sidecar does) and
streams ``text/event-stream`` answers instead of buffering them. This is the "regular + HTTPS
interception, route addon" row of mitmproxy-findings.md section 6. ``--lean``: the same with the
sidecar's own addon set (core, proxyserver, next_layer, tlsconfig, block, as ``sidecar.proxy.server.serve``
loads them), i.e. mitmproxy's floor. The sidecar itself is run as ``python -m sidecar run``.

Intercepts HTTPS with the CA in ``--confdir``. Prints one JSON line
``{"pid": PID, "ports": {"regular": P}}`` once listening; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import signal
import sys
from typing import Any


class Reroute:
    """The bare proxy's only addition: send to the fake upstream, stream SSE through."""

    def __init__(self, port: int) -> None:
        self.port = port

    def request(self, flow: Any) -> None:
        flow.request.scheme, flow.request.host, flow.request.port = "http", "127.0.0.1", self.port

    def responseheaders(self, flow: Any) -> None:
        if "text/event-stream" in flow.response.headers.get("content-type", ""):
            flow.response.stream = True


class Ready:
    def running(self) -> None:
        from mitmproxy import ctx

        servers = ctx.master.addons.get("proxyserver").servers
        ports = {s.mode.type_name: s.listen_addrs[0][1] for s in servers}
        print(json.dumps({"pid": os.getpid(), "ports": ports}), flush=True)


async def serve(args: argparse.Namespace) -> None:
    from mitmproxy import addons
    from mitmproxy.addons import block, core, next_layer, proxyserver, tlsconfig
    from mitmproxy.master import Master
    from mitmproxy.options import Options

    opts = Options(confdir=args.confdir, mode=["regular@127.0.0.1:0"])
    master = Master(opts)
    if args.lean:
        master.addons.add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(),
                          tlsconfig.TlsConfig(), block.Block())
    else:
        master.addons.add(*addons.default_addons())
    master.addons.add(Reroute(args.upstream), Ready())
    opts.update(connection_strategy="lazy")
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, master.shutdown)
    await master.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--confdir", required=True)
    parser.add_argument("--lean", action="store_true", help="the sidecar's addon set")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
