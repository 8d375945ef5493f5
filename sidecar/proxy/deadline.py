"""A deadline for reading a request: its headers and body must arrive within
``sidecar_read_timeout`` seconds of its first byte, else the app gets a 408 OpenAI error and the
connection is closed.

mitmproxy has no hook while a request is being read (slow headers come before ``requestheaders``,
a slow body between it and ``request``), and its own ``tcp_timeout`` only counts silence, so a
client that trickles bytes, or stops half-way, holds a connection and (once the headers are in) a
flow for as long as it likes. The deadline therefore lives in mitmproxy's HTTP/1 server layer,
the one place that sees a request's bytes: ``ReadDeadline`` (the addon) declares the option and
has ``HttpLayer`` build ``DeadlineHttp1Server`` (a subclass of mitmproxy's ``Http1Server``) for
every HTTP/1 client connection -- plain (the base-URL listener, the explicit proxy's plain HTTP)
and decrypted (a CONNECT tunnel, a TLS client of the reverse listener), since its answer goes out
through the layers above it. The timer is mitmproxy's own (``RequestWakeup``).

The clock starts at the first byte of a request, so keep-alive idle time between requests is not
counted. When it runs out while the request is still being read: the 408 is sent, the connection
closed, and, when the headers were in (a flow exists), the flow fails with the 408's message
(its ``error`` hook runs, as for a client that hangs up). A response that has started is never
interrupted. HTTP/2 streams are not covered (``Http2Server``); see the module's test file.

The clock can only start once mitmproxy has chosen the HTTP layer, and with ``allow_hosts`` set
its ``NextLayer`` addon waits for a request's whole ``Host`` header before choosing (it may
name an allowed host). ``EarlyNextLayer`` replaces that addon: when the destination address or
the TLS SNI already is an allowed host, the ``Host`` header cannot change the outcome, so the
layer is chosen on the first bytes and a request line that stops half-way meets the deadline.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Generator, Sequence
from typing import Any

import mitmproxy.proxy.layers.http as http_layers
from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader
from mitmproxy.addons import next_layer
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands, context, events
from mitmproxy.proxy.layers.http import _http1
from mitmproxy.proxy.layers.http._base import ReceiveHttp
from mitmproxy.proxy.layers.http._events import ErrorCode, RequestProtocolError
from mitmproxy.utils import human

from sidecar.core.errors import error_body

log = logging.getLogger("sidecar")

OPTION = "sidecar_read_timeout"
DEFAULT_READ_TIMEOUT = 10.0  # seconds from a request's first byte to its last
STATUS = 408
SERVER_CLASS = "Http1Server"  # the name HttpLayer builds a client's HTTP/1 layer from

CommandGenerator = Generator[commands.Command, Any, None]


class DeadlineHttp1Server(_http1.Http1Server):
    """mitmproxy's HTTP/1 server layer, with a deadline on reading each request."""

    _timer: commands.RequestWakeup | None = None  # the deadline of the request being read
    _timed_stream: int = 0  # the stream id that timer is for (mitmproxy's start at 1)

    def _handle_event(self, event: events.Event) -> CommandGenerator:
        if isinstance(event, events.Wakeup):
            if event.command is self._timer:
                self._timer = None
                if self._reading() and self.response is None:
                    yield from self._time_out()
            return  # a deadline of an earlier request: it was read in time
        yield from super()._handle_event(event)
        if self._timed_stream != self.stream_id and self._reading():
            timeout = read_timeout(self.context.options)
            if timeout:
                self._timed_stream = self.stream_id
                self._timer = commands.RequestWakeup(timeout)
                yield self._timer

    def _reading(self) -> bool:
        """Whether a request has begun and is not yet complete (bound methods compare equal)."""
        return self.state == self.read_body or (self.state == self.read_headers and bool(self.buf))

    def _time_out(self) -> CommandGenerator:
        timeout = read_timeout(self.context.options)
        part = "body" if self.state == self.read_body else "headers"
        message = (f"The request was not received in time: its {part} did not arrive within "
                   f"{timeout:g} s of its first byte (sidecar_read_timeout).")
        log.warning("%s: request %s not received within %g s; answered %d and closed",
                    human.format_address(self.conn.peername), part, timeout, STATUS)
        yield commands.SendData(self.conn, timeout_response(message))
        yield commands.CloseConnection(self.conn)
        if self.state == self.read_body:  # the headers are in: a flow waits for its body
            yield ReceiveHttp(RequestProtocolError(
                self.stream_id, message, ErrorCode.GENERIC_CLIENT_ERROR))
        self.state = self.done


def read_timeout(options: Any) -> float:
    """The option's value; 0 (or the option missing: the addon is not loaded) turns it off."""
    return float(getattr(options, OPTION, 0) or 0)


def timeout_response(message: str) -> bytes:
    """The 408 as HTTP/1 bytes: an OpenAI error object, and ``connection: close``."""
    body = error_body(message, type="invalid_request_error", code="request_timeout")
    response = http.Response.make(STATUS, json.dumps(body).encode(), {
        "content-type": "application/json", "connection": "close",
        "x-request-id": f"req_{uuid.uuid4().hex}", "x-should-retry": "false",
    })
    return bytes(http1.assemble_response(response))


class ReadDeadline:
    """The addon: declares ``sidecar_read_timeout`` and puts ``DeadlineHttp1Server`` where
    mitmproxy's ``HttpLayer`` looks up its HTTP/1 server class (undone in ``done``)."""

    def __init__(self) -> None:
        self._replaced: type[_http1.Http1Server] | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option(
            OPTION, float, DEFAULT_READ_TIMEOUT,
            "Seconds a client has to send a whole request (headers and body), counted from its "
            "first byte; then it is answered 408 and its connection closed. 0: no deadline.",
        )
        self.install()

    def configure(self, updated: set[str]) -> None:
        from mitmproxy import ctx, exceptions

        if OPTION in updated and read_timeout(ctx.options) < 0:
            raise exceptions.OptionsError(f"{OPTION} must be 0 (off) or a number of seconds")

    def install(self) -> None:
        current = getattr(http_layers, SERVER_CLASS)  # not re-exported: no attribute for mypy
        if current is not DeadlineHttp1Server:
            self._replaced = current
            setattr(http_layers, SERVER_CLASS, DeadlineHttp1Server)

    def done(self) -> None:
        if self._replaced is not None:
            setattr(http_layers, SERVER_CLASS, self._replaced)
            self._replaced = None


class EarlyNextLayer(next_layer.NextLayer):
    """mitmproxy's ``NextLayer`` addon, deciding without the ``Host`` header when the
    destination (address or SNI) is allowed already: ``allow_hosts`` only ever admits more
    names, and the sidecar sets no ``ignore_hosts``."""

    def _ignore_connection(self, context: context.Context, data_client: bytes,
                           data_server: bytes) -> bool | None:
        if ctx.options.allow_hosts and not ctx.options.ignore_hosts and (
                allowed_without_host_header(context, self.allow_hosts)):
            return False
        return super()._ignore_connection(context, data_client, data_server)


def allowed_without_host_header(context: context.Context, allow: Sequence[re.Pattern[str]]
                                ) -> bool:
    address = context.server.address
    if address is None:
        return False
    host, port, *_ = address
    names = [f"{host}:{port}"] + ([f"{context.client.sni}:{port}"] if context.client.sni else [])
    return any(rex.search(name) for name in names for rex in allow)
