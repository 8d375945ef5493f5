"""The in-process relay: serves a call from its plan, falling back before the app sees a byte.

mitmproxy cannot re-send a flow to another server once one has answered, and it cannot let an
addon produce a streamed response (``reference/mitmproxy-findings.md`` §4–5). So the calls that
may need a fallback (a plan with more than one model) and Responses calls are served here, on
mitmproxy's own event loop: for each target in the plan the relay sends the ``UpstreamCall``
with a shared, pooled httpx client; a 429, a 5xx, a connection error, a timeout or a stream
that dies before its first chunk moves on to the next target. A call that does not stream is
answered in the addon's ``request`` hook (``Relay.answer``: the answer becomes the flow's
response). A stream is pointed at this small HTTP/1.1 server on 127.0.0.1, which relays the
first answer not worth retrying as it arrives (chunked), Bedrock event streams transcoded on the
way; if the stream breaks later, it ends with an OpenAI error event.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeAlias

import httpx

from sidecar.apis.responses import (
    ChatSSEToResponsesSSE,
    ChatToResponsesStream,
    new_response_id,
    to_responses_object,
)
from sidecar.apis.sse import UsageTap
from sidecar.core.accounting import Usage, usage_from_openai
from sidecar.core.errors import SidecarError, UpstreamError, UpstreamTimeoutError, render_openai_error
from sidecar.core.routing.policy import Target
from sidecar.forward.call import HOP_BY_HOP, UpstreamCall
from sidecar.providers.bedrock.adapter import BedrockAdapter
from sidecar.providers.bedrock.errors import from_http_error
from sidecar.providers.bedrock.transcode import EventStreamToSSE
from sidecar.providers.openai_compat import Endpoint

Transform = Callable[[bytes], list[bytes]]
Answer = tuple[int, dict[str, str], bytes]  # status, headers, body
Out: TypeAlias = "_Writer | _Collected"  # an answer to mitmproxy (streamed) or the addon

log = logging.getLogger("sidecar")

RELAY_PATH = "/_model_router_relay/"
SERVED_HEADER = "x-model-router-served"  # which plan index served; read and removed by the addon
FALLBACKS_HEADER = "x-model-router-fallbacks"
RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
MAX_ERROR_BODY = 64 * 1024


@dataclass(slots=True)
class Job:
    plan: tuple[Target, ...]
    prepare: Callable[[Target], UpstreamCall]
    include_usage: bool = False  # the app asked for the usage chunk
    usage: Usage | None = None  # the provider's report, once the answer is complete
    stream_ok: bool = True  # False when the stream broke
    transform: Transform | None = None  # a stream's (its usage and errors, read as they pass)
    failures: list[tuple[Target, str]] = field(default_factory=list)  # attempts before the answer


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt, as the cooldown and latency bookkeeping need it."""

    target: Target
    ok: bool
    reason: str  # "ok", "status 503", "timeout", "connect", "stream"
    seconds: float


class Relay:
    def __init__(
        self, *, client: httpx.AsyncClient, on_outcome: Callable[[Outcome], None],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.client = client
        self.on_outcome = on_outcome
        self.clock = clock
        self.jobs: dict[str, Job] = {}
        self.port = 0
        self.endpoint = Endpoint("http", "127.0.0.1", 0, "")  # where flows are pointed, once started
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    async def start(self, host: str = "127.0.0.1") -> int:
        self._server = await asyncio.start_server(self._serve, host, 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        self.endpoint = Endpoint("http", host, self.port, "")
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._connections):
                writer.transport.abort()
            await self._server.wait_closed()

    async def answer(self, job: Job) -> Answer:
        """Serve a job whose answer is buffered anyway (a call that does not stream) right
        here, for the addon to set as the flow's response: no second HTTP exchange through
        mitmproxy. The headers carry SERVED_HEADER as the relayed ones do."""
        out = _Collected()
        await self._run(job, out)
        assert out.status is not None
        return out.status, out.headers, out.body

    def submit(self, job: Job) -> str:
        """Register a job; the returned path is where the flow must be sent."""
        job_id = f"{next(self._ids)}"
        self.jobs[job_id] = job
        return RELAY_PATH + job_id

    # -- the HTTP/1.1 side facing mitmproxy --------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target, length = _parse_head(head)
                if length:
                    await reader.readexactly(length)
                job = self.jobs.pop(target.removeprefix(RELAY_PATH), None)
                out = _Writer(writer)
                if job is None:
                    await out.error(UpstreamError("relay job not found", code="relay_error"))
                else:
                    await self._run(job, out)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()

    # -- the plan ----------------------------------------------------------------------------

    async def _run(self, job: Job, out: Out) -> None:
        answer: Answer | None = None
        for index, target in enumerate(job.plan):
            started = self.clock()
            try:
                failure = await self._attempt(index, job.prepare(target), job, out)
            except SidecarError as e:  # this model cannot take this request: try the next
                answer = render_upstream(e)
                job.failures.append((target, f"refused: {e.message}"))
                continue
            if failure is None:
                return  # answered
            reason, answer = failure
            job.failures.append((target, reason))
            log.warning("model %s on %s failed (%s); %s", target.name, target.provider, reason,
                        "trying the next in the plan" if index + 1 < len(job.plan)
                        else "no fallback left")
            self.on_outcome(Outcome(target, False, reason, self.clock() - started))
        assert answer is not None
        status, headers, body = answer
        await out.answer(status, {**headers, FALLBACKS_HEADER: str(len(job.failures))}, body)

    async def _attempt(
        self, index: int, call: UpstreamCall, job: Job, out: Out
    ) -> tuple[str, Answer] | None:
        """None when the call was answered; else (why it failed, what to answer if nothing
        else works)."""
        started = self.clock()
        name = call.target.name
        try:
            headers = {**call.headers, "accept-encoding": "identity"}  # relayed as it arrives
            timeout = (httpx.Timeout(call.timeout, connect=self.client.timeout.connect)
                       if call.timeout is not None else httpx.USE_CLIENT_DEFAULT)
            request = self.client.build_request("POST", call.url, headers=headers,
                                                content=call.body, timeout=timeout)
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException:
            return "timeout", render_upstream(UpstreamTimeoutError(f"{name} did not answer in "
                                                                   "time"))
        except httpx.HTTPError as e:
            return "connect", render_upstream(UpstreamError(
                f"could not reach {call.target.provider}: {e}", code="upstream_connect_error"))
        try:
            if response.status_code >= 300 or not call.stream:
                return await self._relay_buffered(index, call, job, response, out, started)
            return await self._relay_stream(index, call, job, response, out, started)
        finally:
            await response.aclose()

    async def _relay_buffered(
        self, index: int, call: UpstreamCall, job: Job, response: httpx.Response, out: Out,
        started: float,
    ) -> tuple[str, Answer] | None:
        status, name = response.status_code, call.target.name
        body = await _read(response)
        answer = None
        if call.kind == "openai" and status < 300 and not call.stream:
            answer = json_object(body)  # the one parse of the answer
            if answer is None:  # a success that is not a JSON object: worth a fallback
                return "malformed", render_upstream(UpstreamError(
                    f"{name} answered {status} with a body that is not a JSON object",
                    code="upstream_malformed_response"))
        status, headers, body = _finish_buffered(call, response, body, answer, job)
        if _retryable(call, response.status_code, body):
            return f"status {response.status_code}", (status, headers, body)
        await out.answer(status, {**headers, SERVED_HEADER: str(index),
                                  FALLBACKS_HEADER: str(len(job.failures))}, body)
        self.on_outcome(Outcome(call.target, status < 400, f"status {status}",
                                self.clock() - started))
        return None

    async def _relay_stream(
        self, index: int, call: UpstreamCall, job: Job, response: httpx.Response, out: Out,
        started: float,
    ) -> tuple[str, Answer] | None:
        transform = job.transform = stream_transform(
            call, request_id=response.headers.get("x-amzn-requestid", ""),
            include_usage=job.include_usage)
        chunks = response.aiter_raw()
        try:
            first = await _first_output(chunks, transform)
        except (httpx.HTTPError, StopAsyncIteration):
            return "stream", render_upstream(UpstreamError(
                f"{call.target.name}'s stream broke before its first chunk"))
        headers = _pass_headers(response.headers)
        if call.kind == "bedrock" or call.responses is not None:
            headers["content-type"] = "text/event-stream; charset=utf-8"
        await out.start(response.status_code, {**headers, SERVED_HEADER: str(index),
                                               FALLBACKS_HEADER: str(len(job.failures))})
        await out.chunks(first)
        await asyncio.sleep(0)  # let mitmproxy forward the first event before we read on
        ok = await self._pump(chunks, transform, out, job)
        self.on_outcome(Outcome(call.target, ok, "ok" if ok else "stream",
                                self.clock() - started))
        return None

    async def _pump(
        self, chunks: AsyncIterator[bytes], transform: Transform, out: Out, job: Job
    ) -> bool:
        try:
            async for data in chunks:
                await out.chunks(transform(data))
            await out.chunks(transform(b""))
            ok = True
        except httpx.HTTPError as e:
            log.warning("upstream stream broke mid-way: %s", type(e).__name__)
            await out.chunks(transform(b"") if _is_transcoder(transform) else [_error_event(e)])
            ok = False
        job.usage = stream_usage(transform)  # before the end: the addon reads it there
        job.stream_ok = ok
        await out.end()
        return ok


async def _first_output(chunks: AsyncIterator[bytes], transform: Transform) -> list[bytes]:
    """Read until the transform has something to send (or the stream ends)."""
    async for data in chunks:
        out = transform(data)
        if out:
            return out
    return transform(b"")


def stream_transform(call: UpstreamCall, *, request_id: str, include_usage: bool) -> Transform:
    """Bytes from the provider -> bytes for the app: Bedrock's event stream transcoded to
    chat SSE, usage read (and hidden if the app did not ask), and chat SSE turned into
    Responses events when a Responses call was served through chat. Used by the relay and by
    the fast path (as mitmproxy's ``response.stream``)."""
    translate = call.responses is not None
    keep_usage = include_usage or translate  # the Responses translator needs the usage
    if call.kind == "bedrock" and call.target.spec is not None:
        base: UsageTap | EventStreamToSSE = BedrockAdapter.transcoder(
            call.target.spec, request_id=request_id, include_usage=keep_usage)
    else:
        base = UsageTap(strip=not keep_usage)
    if not translate:
        return base
    assert call.responses is not None
    to_responses = ChatSSEToResponsesSSE(ChatToResponsesStream(
        call.responses, new_response_id(), int(time.time())))
    return _Chained(base, to_responses)


class _Chained:
    """Two stream transforms in a row (the first one's output feeds the second)."""

    def __init__(self, first: UsageTap | EventStreamToSSE, second: ChatSSEToResponsesSSE) -> None:
        self.first, self.second = first, second

    def __call__(self, data: bytes) -> list[bytes]:
        out = [piece for chunk in self.first(data) for piece in self.second(chunk)]
        return out + self.second(b"") if not data else out


def stream_usage(transform: Transform) -> Usage | None:
    """The provider's usage report, read by a finished ``stream_transform``."""
    if isinstance(transform, _Chained):
        return usage_from_openai({"usage": transform.second.translator.usage})
    if isinstance(transform, UsageTap):
        return transform.usage
    if isinstance(transform, EventStreamToSSE):
        return usage_from_openai({"usage": transform.translator.usage})
    return None


def stream_failed(transform: Transform) -> bool:
    """Whether a finished ``stream_transform`` sent the app an error event (the provider's, or
    one made of a Bedrock exception or a cut-off event stream)."""
    base = transform.first if isinstance(transform, _Chained) else transform
    return bool(getattr(base, "error", None))  # UsageTap and EventStreamToSSE both keep it


def _is_transcoder(transform: Transform) -> bool:
    return not isinstance(transform, UsageTap)


def _error_event(exc: Exception) -> bytes:
    body = {"error": {"message": f"The provider's stream broke: {type(exc).__name__}",
                      "type": "api_error", "param": None, "code": "upstream_stream_error"}}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def _read(response: httpx.Response) -> bytes:
    body = b""
    async for data in response.aiter_raw():
        body += data
    return body


def _finish_buffered(
    call: UpstreamCall, response: httpx.Response, body: bytes, answer: dict[str, Any] | None,
    job: Job,
) -> tuple[int, dict[str, str], bytes]:
    """The answer for the app, and its usage in ``job``. ``answer``: the body of an
    OpenAI-compatible success, already parsed (each answer is parsed once)."""
    headers = _pass_headers(response.headers)
    status = response.status_code
    if call.kind == "bedrock" and call.target.spec is not None:
        status, answer = BedrockAdapter.translate(
            status, {k.lower(): v for k, v in response.headers.items()}, body,
            spec=call.target.spec, request_id=response.headers.get("x-amzn-requestid", ""))
        headers["content-type"] = "application/json"
        body = json.dumps(answer).encode()
    if status < 300 and answer is not None:
        job.usage = usage_from_openai(answer)
        if call.responses is not None:
            translated = to_responses_object(answer, request=call.responses,
                                             response_id=new_response_id(),
                                             created_at=int(time.time()))
            headers["content-type"] = "application/json"
            body = json.dumps(translated).encode()
    return status, headers, body


def json_object(body: bytes) -> dict[str, Any] | None:
    """``body`` parsed, when it is a JSON object."""
    try:
        parsed = json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        return None
    return parsed if isinstance(parsed, dict) else None


def _retryable(call: UpstreamCall, status: int, body: bytes) -> bool:
    if call.kind == "bedrock" and status >= 300:
        return from_http_error(status, {}, body).retryable or status in RETRYABLE_STATUS
    return status in RETRYABLE_STATUS


def render_upstream(exc: SidecarError) -> tuple[int, dict[str, str], bytes]:
    status, body, headers = render_openai_error(exc)
    return status, headers, body


def _pass_headers(headers: httpx.Headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-encoding"}


def _parse_head(head: bytes) -> tuple[str, int]:
    lines = head.decode("latin-1").split("\r\n")
    target = lines[0].split(" ")[1]
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return target, length


class _Collected:
    """An answer kept in memory (``Relay.answer``), with the interface of ``_Writer``."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = b""

    async def start(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.headers = status, dict(headers)

    async def chunks(self, parts: list[bytes]) -> None:
        self.body += b"".join(parts)

    async def end(self) -> None:
        pass

    async def answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        await self.start(status, headers)
        await self.chunks([body])


class _Writer:
    """A chunked HTTP/1.1 response to mitmproxy."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    async def start(self, status: int, headers: dict[str, str]) -> None:
        reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "OK"
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append("transfer-encoding: chunked")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await self.writer.drain()

    async def chunks(self, parts: list[bytes]) -> None:
        for part in parts:
            if part:
                self.writer.write(b"%x\r\n%s\r\n" % (len(part), part))
        await self.writer.drain()

    async def end(self) -> None:
        self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()

    async def answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        await self.start(status, headers)
        await self.chunks([body])
        await self.end()

    async def error(self, exc: SidecarError) -> None:
        status, headers, body = render_upstream(exc)
        await self.answer(status, headers, body)


