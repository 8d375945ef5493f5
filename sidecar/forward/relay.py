"""The sidecar's own attempts: a call served from its plan, falling back before the app sees a byte.

mitmproxy cannot re-send a flow to another server once one has answered, and it cannot let an
addon produce a streamed response (``reference/mitmproxy-findings.md`` §4–5). So the calls that
may need a fallback (a plan with more than one model) and Responses calls are served here, on
mitmproxy's own event loop: for each target in the plan the relay sends the ``UpstreamCall``
with a shared, pooled httpx client; a 429, a 5xx, a connection error, a timeout, a body cut off
or malformed, or a stream that dies before its first chunk moves on to the next target. A model
the sidecar cannot send this request to (its adapter refuses it) is skipped without a call.

A call that does not stream is answered in the addon's ``request`` hook (``Relay.answer``: the
answer becomes the flow's response). A stream is pointed at this small HTTP/1.1 server on
127.0.0.1 (``submit``), which relays the first answer not worth retrying as it arrives
(chunked); if the stream breaks later, it ends with an OpenAI error event. A job whose flow ends
before mitmproxy connected here is dropped with ``discard``.
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
from typing import TypeAlias

import httpx

from sidecar.core.accounting import Usage
from sidecar.core.errors import SidecarError, UpstreamError, UpstreamTimeoutError, render_openai_error
from sidecar.core.routing.decision import Target
from sidecar.forward import answer as answers
from sidecar.providers import Answer, Endpoint, StreamTransform, UpstreamCall

Out: TypeAlias = "_Writer | _Collected"  # an answer to mitmproxy (streamed) or the addon

log = logging.getLogger("sidecar")

RELAY_PATH = "/_model_router_relay/"
FALLBACKS_HEADER = "x-model-router-fallbacks"


@dataclass(slots=True)
class Job:
    """One call served from its plan; what happened is read back once it is answered."""

    plan: tuple[Target, ...]
    prepare: Callable[[Target], UpstreamCall]
    include_usage: bool = False  # the app asked for the usage chunk
    served: Target | None = None  # the target that answered (None: every attempt failed)
    usage: Usage | None = None  # the provider's report, once the answer is complete
    stream_ok: bool = True  # False when the stream broke
    transform: StreamTransform | None = None  # a stream's (its usage and errors, read as they pass)
    failures: list[tuple[Target, str]] = field(default_factory=list)  # attempts before the answer
    skipped: list[tuple[Target, str]] = field(default_factory=list)  # targets never called


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt, as the cooldown and latency bookkeeping need it."""

    target: Target
    ok: bool
    reason: str  # "ok", "status 503", "timeout", "connect", "read", "malformed", "stream"
    seconds: float


class _Failed(Exception):
    """An attempt that failed before the app saw a byte: worth the next model."""

    def __init__(self, reason: str, answer: Answer) -> None:
        super().__init__(reason)
        self.reason, self.answer = reason, answer


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

    async def answer(self, job: Job) -> tuple[int, dict[str, str], bytes]:
        """Serve a job whose answer is buffered anyway (a call that does not stream) right
        here, for the addon to set as the flow's response: no second HTTP exchange."""
        out = _Collected()
        await self._run(job, out)
        assert out.status is not None
        return out.status, out.headers, out.body

    def submit(self, job: Job) -> str:
        """Register a job; the returned path is where the flow must be sent."""
        job_id = f"{next(self._ids)}"
        self.jobs[job_id] = job
        return RELAY_PATH + job_id

    def discard(self, path: str) -> None:
        """Forget a submitted job whose flow ended before it reached the relay."""
        self.jobs.pop(path.removeprefix(RELAY_PATH), None)

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
                    await out.answer(*_rendered(UpstreamError("relay job not found",
                                                              code="relay_error")))
                else:
                    await self._run(job, out)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()

    # -- the plan ----------------------------------------------------------------------------

    async def _run(self, job: Job, out: Out) -> None:
        last: Answer | None = None
        for index, target in enumerate(job.plan):
            try:
                call = job.prepare(target)
            except SidecarError as e:  # this model cannot take this request: skip it, uncalled
                last = _error_answer(e, "refused")
                job.skipped.append((target, f"refused: {e.message}"))
                continue
            started = self.clock()
            try:
                await self._attempt(call, job, out)
                return
            except _Failed as failed:
                last = failed.answer
                job.failures.append((target, failed.reason))
                log.warning("model %s on %s failed (%s); %s", target.name, target.provider,
                            failed.reason, "trying the next in the plan"
                            if index + 1 < len(job.plan) else "no fallback left")
                self.on_outcome(Outcome(target, False, failed.reason, self.clock() - started))
        assert last is not None
        await out.answer(last.status, {**last.headers, FALLBACKS_HEADER: str(len(job.failures))},
                         last.body)

    async def _attempt(self, call: UpstreamCall, job: Job, out: Out) -> None:
        """Answers the app through ``out``, or raises ``_Failed`` before it sent a byte."""
        started = self.clock()
        name = call.target.name
        headers = {**call.headers, "accept-encoding": "identity"}  # relayed as it arrives
        timeout = (httpx.Timeout(call.timeout, connect=self.client.timeout.connect)
                   if call.timeout is not None else httpx.USE_CLIENT_DEFAULT)
        request = self.client.build_request("POST", call.url, headers=headers,
                                            content=call.body, timeout=timeout)
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException:
            raise _Failed("timeout", _error_answer(UpstreamTimeoutError(
                f"{name} did not answer in time"))) from None
        except httpx.HTTPError as e:
            raise _Failed("connect", _error_answer(UpstreamError(
                f"could not reach {call.target.provider}: {type(e).__name__}",
                code="upstream_connect_error"))) from None
        try:
            if response.status_code >= 300 or not call.stream:
                health = await self._relay_buffered(call, job, response, out)
            else:
                health = await self._relay_stream(call, job, response, out)
        finally:
            await response.aclose()
        if health is not None:  # a 4xx is this request's fault, not the deployment's
            self.on_outcome(Outcome(call.target, health, "ok" if health else "stream",
                                    self.clock() - started))

    async def _relay_buffered(self, call: UpstreamCall, job: Job, response: httpx.Response,
                              out: Out) -> bool | None:
        try:
            body = await response.aread()
        except httpx.HTTPError as e:  # the provider cut the body: a failed attempt
            raise _Failed("read", _error_answer(UpstreamError(
                f"{call.target.name}'s answer broke off: {type(e).__name__}",
                code="upstream_read_error"))) from None
        answer = answers.buffered(call, response.status_code, _lower(response.headers), body)
        health = answers.health(answer.verdict)
        if health is False:
            raise _Failed(answer.reason, answer)
        job.served, job.usage = call.target, answer.usage
        await out.answer(answer.status, {**answer.headers,
                                         FALLBACKS_HEADER: str(len(job.failures))}, answer.body)
        return health

    async def _relay_stream(self, call: UpstreamCall, job: Job, response: httpx.Response,
                            out: Out) -> bool:
        transform = job.transform = answers.stream_transform(
            call, request_id=response.headers.get("x-amzn-requestid", ""),
            include_usage=job.include_usage)
        chunks = response.aiter_raw()
        try:
            first = await _first_output(chunks, transform)
        except (httpx.HTTPError, StopAsyncIteration):
            raise _Failed("stream", _error_answer(UpstreamError(
                f"{call.target.name}'s stream broke before its first chunk"))) from None
        job.served = call.target
        headers = answers.stream_headers(call, response.headers)
        await out.start(response.status_code, {**headers,
                                               FALLBACKS_HEADER: str(len(job.failures))})
        await out.chunks(first)
        await asyncio.sleep(0)  # let mitmproxy forward the first event before we read on
        await self._pump(chunks, transform, out, job)
        return job.stream_ok

    async def _pump(self, chunks: AsyncIterator[bytes], transform: StreamTransform, out: Out,
                    job: Job) -> None:
        try:
            async for data in chunks:
                await out.chunks(transform(data))
            await out.chunks(transform(b""))
        except httpx.HTTPError as e:
            log.warning("upstream stream broke mid-way: %s", type(e).__name__)
            end = transform(b"")  # a transcoder ends in its own error event
            await out.chunks(end if transform.failed else [_error_event(e)])
            job.stream_ok = False
        job.usage = transform.usage  # before the end: the addon reads it there
        job.stream_ok = job.stream_ok and not transform.failed
        await out.end()


async def _first_output(chunks: AsyncIterator[bytes], transform: StreamTransform) -> list[bytes]:
    """Read until the transform has something to send (or the stream ends)."""
    async for data in chunks:
        out = transform(data)
        if out:
            return out
    return transform(b"")


def _error_event(exc: Exception) -> bytes:
    body = {"error": {"message": f"The provider's stream broke: {type(exc).__name__}",
                      "type": "api_error", "param": None, "code": "upstream_stream_error"}}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _rendered(exc: SidecarError) -> tuple[int, dict[str, str], bytes]:
    status, body, headers = render_openai_error(exc)
    return status, headers, body


def _error_answer(exc: SidecarError, reason: str = "error") -> Answer:
    status, headers, body = _rendered(exc)
    return Answer(status, headers, body, "retry", reason=reason)


def _lower(headers: httpx.Headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


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
