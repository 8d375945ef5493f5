"""A fake OpenAI-compatible upstream speaking real HTTP/1.1 on loopback.

``FakeOpenAI`` reproduces what an app (or the sidecar) sees from ``api.openai.com``:

* ``POST .../chat/completions``: a ``chat.completion`` JSON body, or, with ``"stream": true``,
  a chunked ``text/event-stream`` of ``chat.completion.chunk`` events flushed one at a time
  (role chunk, content chunks, finish chunk, optional usage chunk, ``data: [DONE]``);
* ``GET .../models`` and ``GET .../models/{id}``: the model list / one model;
* ``POST .../embeddings``: float or base64 (little-endian float32) embeddings;
* anything else: 404 with an OpenAI error body;
* scripted answers (status, body, headers, delay, hang, reset, mid-stream reset, a JSON body
  cut mid-way) taken FIFO.

The server runs on its own thread with its own asyncio loop, bound to 127.0.0.1 port 0; it
parses HTTP/1.1 itself (request line, headers, Content-Length or chunked body, keep-alive,
``Expect: 100-continue``). ``LoopbackHTTPServer`` is the reusable part (``TLSHost`` builds on it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import http
import itertools
import json
import re
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

HeaderPairs = Sequence[tuple[str, str]]

LOOPBACK = "127.0.0.1"
MAX_HEAD_BYTES = 64 * 1024
START_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0


# --------------------------------------------------------------------------------------------
# Recorded requests
# --------------------------------------------------------------------------------------------


class Headers:
    """Header fields in wire order; lookups are case-insensitive (like a real HTTP stack)."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs = list(pairs)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        wanted = name.lower()
        for key, value in self._pairs:
            if key.lower() == wanted:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in wire order."""
        wanted = name.lower()
        return [value for key, value in self._pairs if key.lower() == wanted]

    def items(self) -> list[tuple[str, str]]:
        """The (name, value) pairs exactly as received."""
        return list(self._pairs)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it.

    ``path`` is the request-target as sent (query included, like mitmproxy's ``request.path``);
    ``url_path`` and ``query`` split it. ``received_at`` is ``time.monotonic()`` once the whole
    request was read; ``conn_id`` numbers TCP connections, so connection reuse is observable.
    """

    method: str
    path: str
    http_version: str
    headers: Headers
    body: bytes
    json: Any
    received_at: float
    conn_id: int

    @property
    def url_path(self) -> str:
        return urlsplit(self.path).path

    @property
    def query(self) -> str:
        return urlsplit(self.path).query


class BadRequest(Exception):
    """The bytes on the wire are not a request this parser accepts."""


def _parse_head(head: bytes) -> tuple[str, str, str, Headers]:
    lines = head.decode("latin-1").lstrip("\r\n").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"bad request line {lines[0]!r}")
    pairs: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(f"bad header line {line!r}")
        pairs.append((name, value.strip(" \t")))
    method, target, version = parts
    return method, target, version, Headers(pairs)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as err:
            raise BadRequest(f"bad chunk size {size_line!r}") from err
        if size == 0:
            break
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise BadRequest("chunk not followed by CRLF")
    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailer fields: ignored
        pass
    return b"".join(parts)


def _parse_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn_id: int
) -> RecordedRequest | None:
    """Read one request; ``None`` on a clean end of stream between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as err:
        if not err.partial.strip():
            return None
        raise BadRequest("connection closed inside the request head") from err
    except asyncio.LimitOverrunError as err:
        raise BadRequest("request head too large") from err
    method, target, version, headers = _parse_head(head)
    if (headers.get("expect") or "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
    if "chunked" in (headers.get("transfer-encoding") or "").lower():
        body = await _read_chunked(reader)
    else:
        try:
            length = int(headers.get("content-length") or "0")
        except ValueError as err:
            raise BadRequest("bad Content-Length") from err
        body = await reader.readexactly(length) if length else b""
    return RecordedRequest(
        method=method,
        path=target,
        http_version=version,
        headers=headers,
        body=body,
        json=_parse_json(body),
        received_at=time.monotonic(),
        conn_id=conn_id,
    )


def wants_keep_alive(request: RecordedRequest) -> bool:
    """HTTP/1.1 keeps the connection unless ``Connection: close``; HTTP/1.0 the reverse."""
    tokens = {t.strip().lower() for t in (request.headers.get("connection") or "").split(",")}
    if request.http_version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


# --------------------------------------------------------------------------------------------
# Responding
# --------------------------------------------------------------------------------------------


def merge_headers(
    defaults: HeaderPairs, overrides: Mapping[str, str] | None
) -> list[tuple[str, str]]:
    """``defaults`` with every field named in ``overrides`` replaced (case-insensitively)."""
    if not overrides:
        return list(defaults)
    replaced = {name.lower() for name in overrides}
    kept = [(k, v) for k, v in defaults if k.lower() not in replaced]
    return kept + list(overrides.items())


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class Responder:
    """Writes one HTTP/1.1 response: whole (Content-Length), streamed (chunked) or aborted."""

    def __init__(self, writer: asyncio.StreamWriter, keep_alive: bool) -> None:
        self._writer = writer
        self.keep_alive = keep_alive
        self.state = "idle"  # idle -> streaming -> done, or -> aborted, or -> cut

    @property
    def finished(self) -> bool:
        return self.state == "done"

    def _head(self, status: int, headers: HeaderPairs) -> bytes:
        lines = [f"HTTP/1.1 {status} {_reason(status)}", f"date: {formatdate(usegmt=True)}"]
        lines += [f"{name}: {value}" for name, value in headers]
        if not self.keep_alive:
            lines.append("connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def send(self, status: int, body: bytes, headers: HeaderPairs = ()) -> None:
        """A complete response with a Content-Length."""
        fields = [(k, v) for k, v in headers if k.lower() != "content-length"]
        fields.append(("content-length", str(len(body))))
        self._writer.write(self._head(status, fields) + body)
        await self._writer.drain()
        self.state = "done"

    async def start_stream(self, status: int, headers: HeaderPairs = ()) -> None:
        """Send the head of a ``Transfer-Encoding: chunked`` response."""
        framing = ("content-length", "transfer-encoding")
        fields = [(k, v) for k, v in headers if k.lower() not in framing]
        fields.append(("transfer-encoding", "chunked"))
        self._writer.write(self._head(status, fields))
        await self._writer.drain()
        self.state = "streaming"

    async def send_chunk(self, data: bytes) -> None:
        """One chunk, flushed to the socket before returning."""
        if data:
            self._writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await self._writer.drain()

    async def end_stream(self) -> None:
        """The zero-length last chunk."""
        self._writer.write(b"0\r\n\r\n")
        await self._writer.drain()
        self.state = "done"

    async def send_cut(self, status: int, body: bytes, headers: HeaderPairs = ()) -> None:
        """The head of a complete response (``Content-Length`` of all of ``body``), then only
        the first half of ``body``; the connection is then closed (FIN, not RST) by the server:
        a provider that dies mid-answer."""
        fields = [(k, v) for k, v in headers if k.lower() != "content-length"]
        fields.append(("content-length", str(len(body))))
        self._writer.write(self._head(status, fields) + body[: len(body) // 2])
        await self._writer.drain()
        self.state = "cut"

    def abort(self) -> None:
        """Drop the connection at once: SO_LINGER 0 makes the kernel send a TCP RST."""
        abort_transport(self._writer)
        self.state = "aborted"


def abort_transport(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def openai_error(
    message: str, type_: str, code: str | None, param: str | None = None
) -> dict[str, Any]:
    """The body OpenAI sends with every non-2xx answer."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# --------------------------------------------------------------------------------------------
# The threaded loopback server
# --------------------------------------------------------------------------------------------


class LoopbackHTTPServer:
    """An HTTP/1.1 (or HTTPS) server on 127.0.0.1:0 run by its own thread and event loop.

    Subclasses implement ``handle(request, responder)``. ``start()``/``stop()`` (or ``with``)
    bracket its life: ``stop()`` closes the listener, aborts every open connection (including
    handlers still sleeping or hanging), and joins the thread.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.host = LOOPBACK
        self.port = 0
        self.requests: list[RecordedRequest] = []
        self.errors: list[BaseException] = []  # bugs inside the fake's handlers
        # TLS only, best effort: handshakes that failed with an error the server could see
        # (a client that just closes the socket leaves no trace here).
        self.tls_failures: list[BaseException] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self._conn_tasks: set[asyncio.Task[Any]] = set()
        self._conn_ids = itertools.count(1)
        self._stopping = False

    # -- subclass hooks ------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server-side TLS context, or ``None`` for plain HTTP."""
        return None

    async def handle(self, request: RecordedRequest, responder: Responder) -> None:
        raise NotImplementedError

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Bind, start the thread, and return once the port is known."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._thread = threading.Thread(target=self._run, name=f"fake-{self.name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError(f"{self.name} did not start within {START_TIMEOUT}s")
        if self._startup_error is not None:
            self._thread.join(STOP_TIMEOUT)
            raise RuntimeError(f"{self.name} failed to start") from self._startup_error

    def stop(self) -> None:
        """Close the listener and all connections, then join the thread. Idempotent."""
        thread, loop, event = self._thread, self._loop, self._stop_event
        if thread is None or not thread.is_alive():
            return
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(event.set)
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"{self.name} did not stop within {STOP_TIMEOUT}s")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as err:  # noqa: BLE001 - surfaced through start()
            self._startup_error = err
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.set_exception_handler(self._on_loop_exception)
        self._stop_event = asyncio.Event()
        context = self.ssl_context()
        server = await asyncio.start_server(
            self._serve_connection,
            self.host,
            0,
            ssl=context,
            limit=MAX_HEAD_BYTES,
            ssl_handshake_timeout=5.0 if context else None,
            ssl_shutdown_timeout=1.0 if context else None,
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            await self._shutdown(server)

    def _on_loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Record failed TLS handshakes (a client rejecting our certificate is an expected test
        outcome, not an error to log); everything else goes to asyncio's default handler."""
        exc = context.get("exception")
        if isinstance(exc, ssl.SSLError | ConnectionError) and "transport creation" in str(
            context.get("message", "")
        ):
            self.tls_failures.append(exc)
            return
        loop.default_exception_handler(context)

    async def _shutdown(self, server: asyncio.Server) -> None:
        self._stopping = True
        server.close()
        await asyncio.sleep(0)  # let just-accepted connections register themselves
        while self._conn_tasks:
            tasks = list(self._conn_tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._conn_tasks.difference_update(tasks)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2.0)

    # -- connections ---------------------------------------------------------------------------

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conn_tasks.add(task)
        conn_id = next(self._conn_ids)
        aborted = self._stopping
        try:
            while not self._stopping:
                responder = await self._serve_one(reader, writer, conn_id)
                if responder is None or not responder.finished or not responder.keep_alive:
                    aborted = responder is not None and responder.state == "aborted"
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            aborted = True
        except asyncio.CancelledError:
            aborted = True  # stop(): the connection goes down with the server
        finally:
            self._conn_tasks.discard(task)
            await self._close(writer, aborted)

    async def _serve_one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn_id: int
    ) -> Responder | None:
        try:
            request = await read_request(reader, writer, conn_id)
        except BadRequest as err:
            responder = Responder(writer, keep_alive=False)
            body = openai_error(str(err), "invalid_request_error", "bad_request")
            await responder.send(400, json_bytes(body), [("content-type", "application/json")])
            return responder
        if request is None:
            return None
        responder = Responder(writer, keep_alive=wants_keep_alive(request))
        try:
            await self.handle(request, responder)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as err:  # a bug in the fake: make it visible, never hang the client
            self.errors.append(err)
            await self._fail(responder, err)
        return responder

    @staticmethod
    async def _fail(responder: Responder, err: Exception) -> None:
        if responder.state == "idle":
            body = openai_error(f"fake server bug: {err!r}", "server_error", "fake_bug")
            responder.keep_alive = False
            await responder.send(500, json_bytes(body), [("content-type", "application/json")])
        elif responder.state == "streaming":
            responder.abort()

    async def _close(self, writer: asyncio.StreamWriter, aborted: bool) -> None:
        if aborted or self._stopping:
            abort_transport(writer)
            return
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 1.0)
        except (OSError, TimeoutError, ssl.SSLError):
            abort_transport(writer)

    # -- helpers for tests ---------------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> int:
        """Append ``request``; returns its 1-based sequence number."""
        with self._lock:
            self.requests.append(request)
            return len(self.requests)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests arrived; returns a snapshot of them."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name}: {len(self.requests)}/{count} requests")
            time.sleep(0.005)


# --------------------------------------------------------------------------------------------
# FakeOpenAI
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScriptedAnswer:
    """What the next request gets instead of the default behaviour (see ``FakeOpenAI.script``)."""

    status: int = 200
    body: dict[str, Any] | list[Any] | bytes | str | None = None
    headers: Mapping[str, str] | None = None
    delay: float = 0.0
    hang: bool = False
    reset: bool = False
    stream_reset_after: int | None = None
    end_after: float = 0.0
    cut_body: bool = False


DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")

_ERROR_DEFAULTS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to sample from this model.", "invalid_request_error", None),
    404: ("The model does not exist.", "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request.", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


def default_error_body(status: int) -> dict[str, Any]:
    """The OpenAI error body a scripted ``status`` gets when no body is given."""
    fallback = ("server_error" if status >= 500 else "invalid_request_error", None)
    message, type_, code = _ERROR_DEFAULTS.get(status, (_reason(status), *fallback))
    return openai_error(message, type_, code)


def split_reply(text: str, chunks: int | None = None) -> list[str]:
    """Pieces whose concatenation is ``text``: one per word (leading space kept, like OpenAI
    tokens), or exactly ``chunks`` pieces (grouping words, or splitting characters when there
    are fewer words than ``chunks``)."""
    words = re.findall(r"\s*\S+", text)
    rest = text[len("".join(words)) :]  # trailing whitespace (or all of a blank text)
    if rest and words:
        words[-1] += rest
    elif rest:
        words = [rest]
    if chunks is None:
        return words
    units: Sequence[str] = words if chunks <= len(words) else text
    n = len(units)
    bounds = [i * n // chunks for i in range(chunks + 1)]
    return ["".join(units[bounds[i] : bounds[i + 1]]) for i in range(chunks)]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def prompt_tokens(messages: Sequence[Any]) -> int:
    """Deterministic stand-in for a tokenizer: characters of all message contents // 4 + 1."""
    chars = sum(len(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))
    return chars // 4 + 1


def completion_tokens(reply: str) -> int:
    return len(reply.split())


def fake_embedding(item: Any, dimensions: int) -> list[float]:
    """A deterministic unit-ish vector derived from sha256 of the input."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{item!r}".encode()).digest()
        values.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    return [round(v, 6) for v in values[:dimensions]]


class FakeOpenAI(LoopbackHTTPServer):
    """An OpenAI-compatible upstream on loopback; see the module docstring for what it mimics.

    ``reply`` is the assistant text, or a function of the request returning it; by default
    ``f"{name} says hi to {model}"``. Streams send one content chunk per word, or
    ``stream_chunks`` chunks, sleeping ``stream_delay`` seconds before each content chunk.
    """

    def __init__(
        self,
        name: str = "fake-openai",
        *,
        reply: str | Callable[[RecordedRequest], str] | None = None,
        stream_chunks: int | None = None,
        stream_delay: float = 0.0,
        prefix: str = "/v1",
        models: Sequence[str] = DEFAULT_MODELS,
        embedding_dimensions: int = 8,
    ) -> None:
        super().__init__(name)
        self.reply = reply
        self.stream_chunks = stream_chunks
        self.stream_delay = stream_delay
        self.prefix = prefix.rstrip("/")
        self.models = list(models)
        self.embedding_dimensions = embedding_dimensions
        self._script: deque[ScriptedAnswer] = deque()

    @property
    def base_url(self) -> str:
        """What an OpenAI client's ``base_url`` should be, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self.host}:{self.port}{self.prefix}"

    # -- scripting -----------------------------------------------------------------------------

    def script(
        self,
        status: int = 200,
        body: dict[str, Any] | list[Any] | bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        delay: float = 0.0,
        hang: bool = False,
        reset: bool = False,
        stream_reset_after: int | None = None,
        end_after: float = 0.0,
        cut_body: bool = False,
    ) -> None:
        """Queue the answer for the next unanswered request (FIFO).

        * ``status``/``body``: ``body`` dicts/lists are sent as JSON, bytes/str verbatim; with no
          body a non-200 status gets an OpenAI error body and a 200 the default behaviour;
        * ``headers`` are added to (and override) the response headers;
        * ``delay``: seconds to wait before answering;
        * ``hang``: never answer; the connection stays open until the client or ``stop()`` ends it;
        * ``reset``: drop the connection (TCP RST) without answering;
        * ``stream_reset_after=N``: default behaviour, but reset the connection after N SSE
          events (for a non-streaming request: right after the response head);
        * ``end_after``: a stream's ``[DONE]`` is sent, and the body ends this many seconds later;
        * ``cut_body``: a JSON answer (the default one or ``body``) is sent with the head and the
          ``Content-Length`` of the whole body, then half of the body, then the connection is
          closed (streams are not affected).
        """
        answer = ScriptedAnswer(status, body, headers, delay, hang, reset, stream_reset_after,
                                end_after, cut_body)
        with self._lock:
            self._script.append(answer)

    def clear(self) -> None:
        """Forget recorded requests and pending scripted answers."""
        with self._lock:
            self.requests.clear()
            self._script.clear()

    def _next_answer(self) -> ScriptedAnswer | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    # -- dispatch ------------------------------------------------------------------------------

    async def handle(self, request: RecordedRequest, responder: Responder) -> None:
        seq = self._record(request)
        answer = self._next_answer() or ScriptedAnswer()
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if answer.hang:
            await asyncio.Event().wait()  # cancelled by stop()
        if answer.reset:
            responder.abort()
            return
        if answer.body is not None or answer.status != 200:
            await self._send_scripted(responder, answer, seq)
            return
        await self._route(request, responder, seq, answer)

    async def _send_scripted(self, responder: Responder, answer: ScriptedAnswer, seq: int) -> None:
        body = answer.body if answer.body is not None else default_error_body(answer.status)
        raw = body.encode() if isinstance(body, str) else body
        payload = raw if isinstance(raw, bytes) else json_bytes(raw)
        headers = merge_headers(self._base_headers(seq, "application/json"), answer.headers)
        if answer.cut_body:
            await responder.send_cut(answer.status, payload, headers)
            return
        await responder.send(answer.status, payload, headers)

    async def _route(
        self, request: RecordedRequest, responder: Responder, seq: int, answer: ScriptedAnswer
    ) -> None:
        path, method = request.url_path.rstrip("/"), request.method
        model_match = re.search(r"/models/([^/]+)$", path)
        if method == "POST" and path.endswith("/chat/completions"):
            await self._chat(request, responder, seq, answer)
        elif method == "GET" and path.endswith("/models"):
            await self._json(responder, 200, self._model_list(), seq, answer)
        elif method == "GET" and model_match:
            await self._model(responder, model_match.group(1), seq, answer)
        elif method == "POST" and path.endswith("/embeddings"):
            await self._embeddings(request, responder, seq, answer)
        else:
            message = f"Unknown request URL: {method} {request.path}."
            body = openai_error(message, "invalid_request_error", "not_found")
            await self._json(responder, 404, body, seq, answer)

    def _base_headers(self, seq: int, content_type: str) -> list[tuple[str, str]]:
        return [
            ("content-type", content_type),
            ("x-request-id", f"req_{seq}"),
            ("openai-organization", "fake-org"),
            ("openai-processing-ms", "1"),
        ]

    async def _json(
        self, responder: Responder, status: int, body: Any, seq: int, answer: ScriptedAnswer
    ) -> None:
        headers = merge_headers(self._base_headers(seq, "application/json"), answer.headers)
        if answer.stream_reset_after is not None:
            await responder.start_stream(status, headers)
            responder.abort()
            return
        if answer.cut_body:
            await responder.send_cut(status, json_bytes(body), headers)
            return
        await responder.send(status, json_bytes(body), headers)

    # -- endpoints -----------------------------------------------------------------------------

    def _reply_text(self, request: RecordedRequest, model: str) -> str:
        if callable(self.reply):
            return self.reply(request)
        return self.reply if self.reply is not None else f"{self.name} says hi to {model}"

    async def _chat(
        self, request: RecordedRequest, responder: Responder, seq: int, answer: ScriptedAnswer
    ) -> None:
        body = request.json
        problem = _chat_request_problem(body)
        if problem is not None:
            await self._json(responder, 400, problem, seq, answer)
            return
        model = body["model"]
        text = self._reply_text(request, model)
        usage = {
            "prompt_tokens": prompt_tokens(body["messages"]),
            "completion_tokens": completion_tokens(text),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.get("stream") is True:
            await self._chat_stream(request, responder, seq, answer, model, text, usage)
        else:
            await self._json(responder, 200, _completion(seq, model, text, usage), seq, answer)

    async def _chat_stream(
        self,
        request: RecordedRequest,
        responder: Responder,
        seq: int,
        answer: ScriptedAnswer,
        model: str,
        text: str,
        usage: dict[str, int],
    ) -> None:
        options = request.json.get("stream_options") or {}
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        base = {
            "id": f"chatcmpl-{seq}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
        }
        if include_usage:
            base["usage"] = None
        headers = self._base_headers(seq, "text/event-stream; charset=utf-8")
        headers.append(("cache-control", "no-cache"))
        events = self._stream_events(base, text, usage if include_usage else None)
        await self._send_stream(responder, answer, headers, events)

    async def _send_stream(
        self, responder: Responder, answer: ScriptedAnswer, headers: list[tuple[str, str]],
        events: Iterable[tuple[float, bytes]],
    ) -> None:
        """An SSE stream of (seconds to sleep first, event) as the script says: cut by a reset
        after ``stream_reset_after`` events, its end held ``end_after`` seconds."""
        await responder.start_stream(200, merge_headers(headers, answer.headers))
        for sent, (delay, event) in enumerate(events):
            if answer.stream_reset_after is not None and sent >= answer.stream_reset_after:
                responder.abort()
                return
            if delay:
                await asyncio.sleep(delay)
            await responder.send_chunk(event)
        if answer.end_after:
            await asyncio.sleep(answer.end_after)
        await responder.end_stream()

    def _stream_events(
        self, base: dict[str, Any], text: str, usage: dict[str, int] | None
    ) -> Iterator[tuple[float, bytes]]:
        """(seconds to sleep first, SSE event bytes) for every event of a streamed completion."""

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return _sse({**base, "choices": [choice]})

        yield 0.0, chunk({"role": "assistant", "content": "", "refusal": None})
        for piece in split_reply(text, self.stream_chunks):
            yield self.stream_delay, chunk({"content": piece})
        yield 0.0, chunk({}, "stop")
        if usage is not None:
            yield 0.0, _sse({**base, "choices": [], "usage": usage})
        yield 0.0, b"data: [DONE]\n\n"

    def _model_list(self) -> dict[str, Any]:
        return {"object": "list", "data": [self._model_obj(m) for m in self.models]}

    def _model_obj(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": 0, "owned_by": self.name}

    async def _model(
        self, responder: Responder, model: str, seq: int, answer: ScriptedAnswer
    ) -> None:
        if model in self.models:
            await self._json(responder, 200, self._model_obj(model), seq, answer)
            return
        message = f"The model '{model}' does not exist"
        body = openai_error(message, "invalid_request_error", "model_not_found", "model")
        await self._json(responder, 404, body, seq, answer)

    async def _embeddings(
        self, request: RecordedRequest, responder: Responder, seq: int, answer: ScriptedAnswer
    ) -> None:
        body = request.json
        if not (isinstance(body, dict) and isinstance(body.get("model"), str) and "input" in body):
            problem = openai_error(
                "Missing required parameter: 'input' or 'model'.",
                "invalid_request_error",
                "missing_required_parameter",
            )
            await self._json(responder, 400, problem, seq, answer)
            return
        inputs = _embedding_inputs(body["input"])
        dimensions = body.get("dimensions") or self.embedding_dimensions
        as_base64 = body.get("encoding_format") == "base64"
        vectors = [_encode_vector(fake_embedding(x, dimensions), as_base64) for x in inputs]
        data = [
            {"object": "embedding", "index": i, "embedding": vector}
            for i, vector in enumerate(vectors)
        ]
        tokens = sum(len(str(item)) // 4 + 1 for item in inputs)
        result = {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        await self._json(responder, 200, result, seq, answer)


def _chat_request_problem(body: Any) -> dict[str, Any] | None:
    """The 400 body OpenAI would send for an unusable chat request, or ``None``."""
    if not isinstance(body, dict):
        return openai_error(
            "We could not parse the JSON body of your request.", "invalid_request_error", None
        )
    for param in ("model", "messages"):
        if param not in body:
            return openai_error(
                f"Missing required parameter: '{param}'.",
                "invalid_request_error",
                "missing_required_parameter",
                param,
            )
    if not isinstance(body["model"], str) or not isinstance(body["messages"], list):
        message = "Invalid type for 'model' or 'messages'."
        return openai_error(message, "invalid_request_error", "invalid_type")
    return None


def _completion(seq: int, model: str, text: str, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{seq}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
        "system_fingerprint": None,
    }


def _sse(obj: Any) -> bytes:
    return b"data: " + json_bytes(obj) + b"\n\n"


def _embedding_inputs(raw: Any) -> list[Any]:
    """OpenAI accepts a string, a list of strings, a token list, or a list of token lists."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        return [raw]
    return list(raw) if isinstance(raw, list) else [raw]


def _encode_vector(vector: list[float], as_base64: bool) -> list[float] | str:
    if not as_base64:
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
