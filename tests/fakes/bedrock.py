"""A fake Bedrock Runtime on loopback that speaks the real wire protocol.

``FakeBedrock`` serves, on 127.0.0.1 (port 0, its own thread, HTTP/1.1 keep-alive):

* ``POST /model/{modelId}/converse`` -> ``200 application/json`` Converse response body;
* ``POST /model/{modelId}/converse-stream`` -> ``200 application/vnd.amazon.eventstream``,
  chunked, one AWS event-stream frame (prelude, headers, payload, both CRC32s) per chunk,
  flushed as produced, ``delay`` seconds apart; exception events become
  ``:message-type: exception`` frames;
* errors as AWS sends them: status from botocore's service model, ``x-amzn-ErrorType`` header,
  JSON ``{"message": ...}`` body.

Every request's SigV4 signature is recomputed with botocore from the known test credentials
(mismatch -> 403 ``InvalidSignatureException``, unknown key -> 403
``UnrecognizedClientException``), and a few of Bedrock's own validations are applied (roles
alternate and start with user, toolConfig present with tool blocks, no blank text, temperature and
topP in [0, 1]). Each request is recorded in ``requests``.

Scripting: ``push(response)`` queues a Converse response (streamed via ``stream_events`` on the
streaming route), ``push_stream(events, delay=)`` a literal event list (a missing ``messageStop``
makes a truncated stream), ``push_error(code)`` an HTTP error. With nothing queued the answer
echoes the last user text -- or, with ``FakeBedrock(tool_call=(name, arguments))``, calls that
tool when the request declares it in ``toolConfig`` and its last message is not a tool result.
"""

from __future__ import annotations

import binascii
import calendar
import hmac
import json
import re
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

TEST_ACCESS_KEY = "AKIDFAKEBEDROCK0001"
TEST_SECRET_KEY = "fake-bedrock-secret-key"
TEST_REGION = "us-east-1"

# ---------------------------------------------------------------------------------------------
# Event-stream encoder (botocore only decodes). message = prelude | prelude_crc | headers |
# payload | message_crc; prelude = total_len u32 | headers_len u32; header = name_len u8 | name |
# type u8 (7 = string) | value_len u16 | value.
# ---------------------------------------------------------------------------------------------


def encode_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message with string headers."""
    head = b"".join(
        struct.pack(">B", len(n.encode()))
        + n.encode()
        + struct.pack(">BH", 7, len(v.encode()))
        + v.encode()
        for n, v in headers.items()
    )
    prelude = struct.pack(">II", 12 + len(head) + len(payload) + 4, len(head))
    start = prelude + struct.pack(">I", binascii.crc32(prelude)) + head + payload
    return start + struct.pack(">I", binascii.crc32(start))


def encode_event(event: Mapping[str, Any]) -> bytes:
    """``{"contentBlockDelta": {...}}`` -> an event frame; ``{"throttlingException": {...}}``
    (a member ending in Exception) -> an exception frame."""
    ((name, body),) = event.items()
    payload = json.dumps(body).encode()
    if name.endswith("Exception"):
        kind = {":exception-type": name, ":message-type": "exception"}
    else:
        kind = {":event-type": name, ":message-type": "event"}
    return encode_frame({**kind, ":content-type": "application/json"}, payload)


def encode_events(events: Iterable[Mapping[str, Any]]) -> bytes:
    return b"".join(encode_event(e) for e in events)


# ---------------------------------------------------------------------------------------------
# Canned Converse responses and their stream form
# ---------------------------------------------------------------------------------------------


def usage(
    inp: int = 10, out: int = 5, *, cache_read: int = 0, cache_write: int = 0
) -> dict[str, int]:
    """A TokenUsage (inputTokens excludes cached tokens, as on Bedrock)."""
    result = {
        "inputTokens": inp,
        "outputTokens": out,
        "totalTokens": inp + out + cache_read + cache_write,
    }
    if cache_read:
        result["cacheReadInputTokens"] = cache_read
    if cache_write:
        result["cacheWriteInputTokens"] = cache_write
    return result


def response(
    content: list[dict[str, Any]],
    *,
    stop_reason: str = "end_turn",
    token_usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": token_usage or usage(),
        "metrics": {"latencyMs": 42},
    }


def text_response(text: str, **kwargs: Any) -> dict[str, Any]:
    return response([{"text": text}], **kwargs)


def tool_use(name: str, arguments: dict[str, Any], tool_id: str | None = None) -> dict[str, Any]:
    return {
        "toolUse": {"toolUseId": tool_id or f"tooluse_{name}", "name": name, "input": arguments}
    }


def tool_response(
    calls: list[dict[str, Any]], *, text: str | None = None, **kwargs: Any
) -> dict[str, Any]:
    kwargs.setdefault("stop_reason", "tool_use")
    return response(([{"text": text}] if text else []) + calls, **kwargs)


def reasoning_response(reasoning: str, text: str, **kwargs: Any) -> dict[str, Any]:
    block = {
        "reasoningContent": {"reasoningText": {"text": reasoning, "signature": "c2lnbmF0dXJl"}}
    }
    return response([block, {"text": text}], **kwargs)


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def stream_events(resp: Mapping[str, Any], *, piece: int = 4) -> list[dict[str, Any]]:
    """The ConverseStream events Bedrock sends for the Converse response ``resp``."""
    events: list[dict[str, Any]] = [{"messageStart": {"role": "assistant"}}]
    for index, block in enumerate(resp["output"]["message"]["content"]):
        events += _block_events(index, block, piece)
        events.append({"contentBlockStop": {"contentBlockIndex": index}})
    events.append({"messageStop": {"stopReason": resp["stopReason"]}})
    events.append(
        {"metadata": {"usage": resp["usage"], "metrics": resp.get("metrics", {"latencyMs": 1})}}
    )
    return events


def _block_events(index: int, block: Mapping[str, Any], piece: int) -> list[dict[str, Any]]:
    def delta(d: dict[str, Any]) -> dict[str, Any]:
        return {"contentBlockDelta": {"delta": d, "contentBlockIndex": index}}

    if "text" in block:  # like Claude: no contentBlockStart for text
        return [delta({"text": p}) for p in _pieces(block["text"], piece)]
    if "toolUse" in block:
        use = block["toolUse"]
        start = {
            "contentBlockStart": {
                "start": {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}},
                "contentBlockIndex": index,
            }
        }
        return [start] + [
            delta({"toolUse": {"input": p}}) for p in _pieces(json.dumps(use["input"]), piece)
        ]
    if "reasoningContent" in block:
        reasoning = block["reasoningContent"]["reasoningText"]
        texts = [
            delta({"reasoningContent": {"text": p}}) for p in _pieces(reasoning["text"], piece)
        ]
        return texts + [delta({"reasoningContent": {"signature": reasoning.get("signature", "")}})]
    raise ValueError(f"no stream form for block {block}")


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamScript:
    events: list[dict[str, Any]]
    delay: float = 0.0


@dataclass(frozen=True)
class ErrorScript:
    code: str
    message: str
    status: int


@dataclass
class RecordedRequest:
    method: str
    path: str  # as sent: the model id percent-encoded
    model_id: str  # decoded
    headers: dict[str, str]  # lower-case names
    raw_body: bytes
    body: Any  # parsed JSON (None if it was not JSON)
    signature_ok: bool
    operation: str  # "converse", "converse-stream", or "" for an unknown path

    @property
    def stream(self) -> bool:
        return self.operation == "converse-stream"


class BedrockError(Exception):
    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


_PATH = re.compile(r"/model/(?P<model>[^/]+)/(?P<op>converse|converse-stream)")
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)"
    r"/(?P<service>[^/]+)/aws4_request, ?"
    r"SignedHeaders=(?P<signed>[^,]+), ?Signature=(?P<sig>[0-9a-f]+)"
)
_AUTH_STATUS = {
    "InvalidSignatureException": 403,
    "UnrecognizedClientException": 403,
    "MissingAuthenticationTokenException": 403,
}


class FakeBedrock:
    def __init__(
        self,
        *,
        region: str = TEST_REGION,
        access_key: str = TEST_ACCESS_KEY,
        secret_key: str = TEST_SECRET_KEY,
        delay: float = 0.0,
        tool_call: tuple[str, dict[str, Any]] | None = None,
    ) -> None:
        self.region, self.access_key, self.secret_key, self.delay = (
            region,
            access_key,
            secret_key,
            delay,
        )
        self.tool_call = tool_call  # the default answer calls this tool when it is declared
        self.requests: list[RecordedRequest] = []
        self._queue: deque[dict[str, Any] | StreamScript | ErrorScript] = deque()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._model = botocore.session.get_session().get_service_model("bedrock-runtime")
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting ----------------------------------------------------------------------------

    def push(self, resp: dict[str, Any]) -> None:
        """Answer the next request with this Converse response (streamed on converse-stream)."""
        self._queue.append(resp)

    def push_stream(self, events: list[dict[str, Any]], *, delay: float | None = None) -> None:
        """Answer the next converse-stream request with exactly these events."""
        self._queue.append(StreamScript(events, self.delay if delay is None else delay))

    def push_error(
        self, code: str, message: str | None = None, *, status: int | None = None
    ) -> None:
        """Answer the next request with this error (status from the service model by default)."""
        self._queue.append(
            ErrorScript(code, message or f"fake {code}", status or self.error_status(code))
        )

    def error_status(self, code: str) -> int:
        if code in _AUTH_STATUS:
            return _AUTH_STATUS[code]
        return int(self._model.shape_for(code).metadata["error"]["httpStatusCode"])

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeBedrock is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="FakeBedrock", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        with self._lock:
            for conn in list(self._connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._server.server_close()  # joins the handler threads
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- request handling (handler thread) ------------------------------------------------------

    def handle(self, handler: _Handler) -> None:
        record, auth_error = self._record(handler)
        try:
            if auth_error is not None:
                raise auth_error
            self._answer(handler, record)
        except BedrockError as exc:
            status = exc.status or self.error_status(exc.code)
            error_type = f"{exc.code}:http://internal.amazon.com/coral/com.amazon.bedrock/"
            handler.send_json(status, {"message": exc.message}, {"x-amzn-ErrorType": error_type})

    def _record(self, handler: _Handler) -> tuple[RecordedRequest, BedrockError | None]:
        raw = handler.rfile.read(int(handler.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in handler.headers.items()}
        match = _PATH.fullmatch(handler.path)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        auth_error = self.check_signature(handler.command, handler.path, headers, raw)
        record = RecordedRequest(
            method=handler.command,
            path=handler.path,
            model_id=unquote(match["model"]) if match else "",
            headers=headers,
            raw_body=raw,
            body=body,
            signature_ok=auth_error is None,
            operation=match["op"] if match else "",
        )
        with self._lock:
            self.requests.append(record)
        return record, auth_error

    def _answer(self, handler: _Handler, record: RecordedRequest) -> None:
        if not record.operation or record.method != "POST":
            raise BedrockError("UnknownOperationException", f"no route for {record.path}", 404)
        if not isinstance(record.body, dict):
            raise BedrockError("SerializationException", "the body is not a JSON object", 400)
        validate(record.body)
        script = self._queue.popleft() if self._queue else self.default_answer(record.body)
        if isinstance(script, ErrorScript):
            raise BedrockError(script.code, script.message, script.status)
        if isinstance(script, StreamScript):
            if not record.stream:
                raise BedrockError("ValidationException", "a stream was scripted for converse")
            handler.send_stream(script.events, script.delay)
        elif record.stream:
            handler.send_stream(stream_events(script), self.delay)
        else:
            handler.send_json(200, script)

    def default_answer(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """What a request gets with nothing queued: a call of ``tool_call`` when the request
        declares that tool and is not answering a call, else the echo of the last user text."""
        if self.tool_call is not None:
            name, arguments = self.tool_call
            tools = (body.get("toolConfig") or {}).get("tools") or []
            declared = {(t.get("toolSpec") or {}).get("name") for t in tools}
            messages = body.get("messages") or []
            last = (messages[-1].get("content") or []) if messages else []
            answering = any("toolResult" in block for block in last)
            if name in declared and not answering:
                return tool_response([tool_use(name, arguments, f"tooluse_{name}_1")])
        return echo(body)

    def check_signature(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> BedrockError | None:
        """None if the SigV4 signature is right for the test credentials, else the AWS error."""
        match = _AUTH.fullmatch(headers.get("authorization", ""))
        if match is None:
            return BedrockError(
                "MissingAuthenticationTokenException", "Missing Authentication Token", 403
            )
        if match["key"] != self.access_key:
            return BedrockError(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
                403,
            )
        signed = match["signed"].split(";")
        request = AWSRequest(
            method=method,
            url=f"http://{headers.get('host', '')}{path}",
            data=body,
            headers={name: headers.get(name, "") for name in signed},
        )
        request.context["timestamp"] = headers.get("x-amz-date", "")
        signer = SigV4Auth(
            Credentials(self.access_key, self.secret_key), match["service"], match["region"]
        )
        expected = signer.signature(
            signer.string_to_sign(request, signer.canonical_request(request)), request
        )
        ok = (
            hmac.compare_digest(expected, match["sig"])
            and match["service"] == "bedrock"
            and match["region"] == self.region
            and "host" in signed
            and "x-amz-date" in signed
            and abs(_epoch(request.context["timestamp"]) - time.time()) < 300
        )
        if ok:
            return None
        return BedrockError("InvalidSignatureException", _BAD_SIGNATURE, 403)


def _epoch(stamp: str) -> float:
    try:
        return float(calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ")))
    except ValueError:
        return 0.0


_MUST_START = (
    "A conversation must start with a user message. "
    "Try again with a conversation that starts with a user message."
)
_MUST_ALTERNATE = (
    "A conversation must alternate between user and assistant roles. Make sure the conversation "
    "alternates between user and assistant roles and try again."
)
_NEED_TOOL_CONFIG = (
    "The toolConfig field must be defined when using toolUse and toolResult content blocks."
)
_BLANK_TEXT = (
    "The text field in the ContentBlock object is blank. Add text to the text field, and try again."
)
_BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)


def validate(body: Mapping[str, Any]) -> None:
    """A few of Bedrock's own request checks (texts as the service words them)."""
    messages = body.get("messages") or []
    if not messages or messages[0].get("role") != "user":
        raise BedrockError("ValidationException", _MUST_START)
    roles = [m.get("role") for m in messages]
    if any(a == b for a, b in zip(roles, roles[1:], strict=False)):
        raise BedrockError("ValidationException", _MUST_ALTERNATE)
    blocks = [b for m in messages for b in m.get("content") or []]
    if any("toolUse" in b or "toolResult" in b for b in blocks) and "toolConfig" not in body:
        raise BedrockError("ValidationException", _NEED_TOOL_CONFIG)
    texts = blocks + list(body.get("system") or [])
    if any("text" in b and not str(b["text"]).strip() for b in texts):
        raise BedrockError("ValidationException", _BLANK_TEXT)
    config = body.get("inferenceConfig") or {}
    for key in ("temperature", "topP"):
        if key in config and not 0 <= config[key] <= 1:
            raise BedrockError(
                "ValidationException",
                f"1 validation error detected: Value at 'inferenceConfig.{key}' failed to satisfy "
                "constraint: Member must have value less than or equal to 1",
            )


def echo(body: Mapping[str, Any]) -> dict[str, Any]:
    """The default answer: the last user text, echoed."""
    texts = [
        b["text"]
        for m in body.get("messages", [])
        if m.get("role") == "user"
        for b in m.get("content", [])
        if "text" in b
    ]
    said = texts[-1] if texts else ""
    return text_response(
        f"You said: {said}", token_usage=usage(max(1, len(said) // 4), 3 + len(said) // 4)
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins handler threads
    block_on_close = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: FakeBedrock
    ) -> None:
        self.fake = fake
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-stream is not an error of the fake


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 10

    def setup(self) -> None:
        super().setup()
        with self.server.fake._lock:
            self.server.fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.fake._lock:
            self.server.fake._connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.server.fake.handle(self)

    do_GET = do_POST

    def _common_headers(self) -> None:
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.send_header("Date", self.date_time_string())

    def send_json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self._common_headers()
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def send_stream(self, events: list[dict[str, Any]], delay: float) -> None:
        self.send_response(200)
        self._common_headers()
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in events:
            frame = encode_event(event)
            self.wfile.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
            self.wfile.flush()
            if delay:
                time.sleep(delay)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
