"""The benchmark's fake providers: a FAST OpenAI-compatible upstream and a fake Bedrock Runtime.

    python -m bench.upstream

One process, plain ``asyncio.Protocol`` (no streams layer, no uvloop), two loopback listeners:

* OpenAI: ``POST /v1/chat/completions`` -> a ``chat.completion`` JSON body, or with
  ``"stream":true`` a chunked ``text/event-stream`` of 53 events (role, 50 content chunks,
  finish, ``[DONE]``), one HTTP chunk per event. A body containing ``bench-hold`` sends the role
  and first content chunk, then waits for ``GET /_bench/release`` (at most ``HOLD_MAX`` s).
* Bedrock: ``POST /model/{id}/converse`` -> Converse JSON; ``/converse-stream`` ->
  ``application/vnd.amazon.eventstream`` with 54 frames (messageStart, 50 text deltas,
  contentBlockStop, messageStop, metadata), one frame per HTTP chunk, encoded by the project's
  own fake (``tests.fakes.bedrock``). Signatures are NOT verified here (the test fake does that;
  this one must not be the bottleneck).
* ``GET /_bench/stats``: requests served and streams currently held.
* ``GET /_bench/pace?ms=N``: wait N ms between stream events from now on (0: a burst, where
  the events only yield to the event loop in between; real models pace their tokens).

Every answer is pre-encoded at start-up, so a request costs a header scan and one write.
Prints one JSON line ``{"openai": PORT, "bedrock": PORT, "pid": PID}`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Coroutine
from typing import Any

from tests.fakes.bedrock import encode_event, stream_events, text_response

CHUNKS = 50
HOLD_MAX = 120.0
WORDS = [f" w{i:02d}" for i in range(CHUNKS)]  # 4 characters each
TEXT = "".join(WORDS)


def _head(status: int, ctype: str, extra: str = "") -> bytes:
    reason = {200: "OK", 404: "Not Found"}.get(status, "OK")
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: {ctype}\r\n"
            f"x-request-id: req_bench\r\n{extra}").encode()


def _whole(status: int, ctype: str, body: bytes, extra: str = "") -> bytes:
    return _head(status, ctype, extra) + b"content-length: %d\r\n\r\n" % len(body) + body


def _sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def openai_chunks(model: str = "bench-upstream") -> list[bytes]:
    def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
        return _sse({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                     "created": 1767225600, "model": model, "system_fingerprint": None,
                     "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                  "finish_reason": finish}]})

    return ([chunk({"role": "assistant", "content": ""})]
            + [chunk({"content": w}) for w in WORDS]
            + [chunk({}, "stop"), b"data: [DONE]\n\n"])


COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1767225600,
    "model": "bench-upstream", "system_fingerprint": None,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT.strip(),
                                         "refusal": None},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 24, "completion_tokens": CHUNKS, "total_tokens": 24 + CHUNKS},
}, separators=(",", ":")).encode()
CONVERSE = json.dumps(text_response(TEXT.strip())).encode()
BEDROCK_FRAMES = [encode_event(e) for e in stream_events(text_response(TEXT), piece=4)]

OPENAI_JSON = _whole(200, "application/json", COMPLETION)
OPENAI_STREAM_HEAD = _head(200, "text/event-stream; charset=utf-8",
                           "transfer-encoding: chunked\r\n") + b"\r\n"
BEDROCK_JSON = _whole(200, "application/json", CONVERSE, "x-amzn-requestid: bench-req-1\r\n")
BEDROCK_STREAM_HEAD = _head(200, "application/vnd.amazon.eventstream",
                            "x-amzn-requestid: bench-req-1\r\ntransfer-encoding: chunked\r\n"
                            ) + b"\r\n"
NOT_FOUND = _whole(404, "application/json",
                   b'{"error":{"message":"no such route","type":"invalid_request_error",'
                   b'"param":null,"code":"not_found"}}')


def _content_length(head: bytes) -> int:
    """The Content-Length of a lower-cased request head (0 when absent)."""
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    stop = head.find(b"\r\n", at + 2)
    return int(head[at + 17:stop if stop > 0 else None])


def chunked(frames: list[bytes]) -> list[bytes]:
    return [b"%x\r\n%s\r\n" % (len(f), f) for f in frames]


class State:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.requests = 0
        self.held = 0
        self.gap = 0.0  # seconds between stream events
        self.openai_frames = chunked(openai_chunks())
        self.bedrock_frames = chunked(BEDROCK_FRAMES)

    def stats(self) -> bytes:
        body = json.dumps({"requests": self.requests, "held": self.held}).encode()
        return _whole(200, "application/json", body)

    def control(self, path: bytes) -> bytes:
        if path.startswith(b"/_bench/pace?ms="):
            self.gap = float(path.split(b"=", 1)[1]) / 1000
            return _whole(200, "application/json", b'{"gap_ms":%g}' % (self.gap * 1000))
        if path == b"/_bench/release":
            return self.do_release()
        return self.stats()

    def do_release(self) -> bytes:
        old, self.release = self.release, asyncio.Event()
        old.set()
        return _whole(200, "application/json", b'{"released":true}')


class Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; requests are answered in order."""

    def __init__(self, state: State, kind: str) -> None:
        self.state, self.kind = state, kind
        self.buf = bytearray()
        self.busy = False  # a stream is being written: later requests wait
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self.process()

    def process(self) -> None:
        while self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            length = _content_length(head)
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4:end + 4 + length])
            del self.buf[:end + 4 + length]
            self.state.requests += 1
            path = head.split(b" ", 2)[1]
            stream = self.answer(path, body)
            if stream is not None:
                self.busy = True
                self.task = asyncio.get_running_loop().create_task(stream)
                return

    def answer(self, path: bytes, body: bytes) -> Coroutine[Any, Any, None] | None:
        assert self.transport is not None
        if path.startswith(b"/_bench/"):
            self.transport.write(self.state.control(path))
        elif self.kind == "openai" and path.endswith(b"/chat/completions"):
            if b'"stream":true' in body or b'"stream": true' in body:
                return self.stream(OPENAI_STREAM_HEAD, self.state.openai_frames,
                                   hold=b"bench-hold" in body)
            self.transport.write(OPENAI_JSON)
        elif self.kind == "bedrock" and path.endswith(b"/converse-stream"):
            return self.stream(BEDROCK_STREAM_HEAD, self.state.bedrock_frames, hold=False)
        elif self.kind == "bedrock" and path.endswith(b"/converse"):
            self.transport.write(BEDROCK_JSON)
        else:
            self.transport.write(NOT_FOUND)
        return None

    async def stream(self, head: bytes, frames: list[bytes], *, hold: bool) -> None:
        state = self.state
        try:
            t = self.transport
            if t is None:
                return
            t.write(head)
            for i, frame in enumerate(frames):
                if t.is_closing():
                    return
                t.write(frame)
                if hold and i == 1:
                    state.held += 1
                    try:
                        await asyncio.wait_for(state.release.wait(), HOLD_MAX)
                    except TimeoutError:
                        pass
                    finally:
                        state.held -= 1
                else:
                    await asyncio.sleep(state.gap)  # a producer yields between events
            if not t.is_closing():
                t.write(b"0\r\n\r\n")
        finally:
            self.busy = False
            self.task = None
        self.process()


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    state = State()
    servers = {}
    for kind in ("openai", "bedrock"):
        servers[kind] = await loop.create_server(lambda k=kind: Conn(state, k), "127.0.0.1", 0,
                                                 backlog=args.backlog)
    ports = {k: s.sockets[0].getsockname()[1] for k, s in servers.items()}
    print(json.dumps({**ports, "pid": os.getpid()}), flush=True)
    deadline = time.monotonic() + args.max_seconds
    while time.monotonic() < deadline:  # bounded: never outlives a crashed orchestrator long
        await asyncio.sleep(1)
        if os.getppid() == 1:
            break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backlog", type=int, default=1024)
    parser.add_argument("--max-seconds", type=float, default=1800)
    ns = parser.parse_args()
    try:
        asyncio.run(main(ns))
    except KeyboardInterrupt:
        sys.exit(0)
