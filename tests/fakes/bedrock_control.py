"""A fake Bedrock control plane (the ``bedrock`` service, not ``bedrock-runtime``) on loopback.

``FakeBedrockControl`` serves, on 127.0.0.1 (port 0, its own thread, HTTP/1.1 keep-alive), the
two operations model discovery uses, as botocore's service model (``bedrock/2023-04-20``)
describes them (rest-json):

* ``GET /foundation-models`` (``ListFoundationModels``; query filters ``byProvider``,
  ``byOutputModality``, ``byInferenceType``, ``byCustomizationType``) ->
  ``{"modelSummaries": [...]}``, never paged (the API has no ``nextToken``);
* ``GET /inference-profiles`` (``ListInferenceProfiles``; ``maxResults`` 1-1000, ``nextToken``,
  ``type``) -> ``{"inferenceProfileSummaries": [...], "nextToken": ...}``, ``page_size`` (or
  ``maxResults``, the smaller) profiles a page;
* errors as AWS sends them: the status, an ``x-amzn-ErrorType`` header and a JSON
  ``{"message": ...}`` body.

Scripting: ``models`` and ``profiles`` are the lists answered (build them with
``foundation_model`` and ``inference_profile``; timestamps are epoch seconds, as rest-json sends
them); ``page_size`` pages the profiles; ``fail(status, code)`` answers the next request (or
the next of ``operation=``) with that error; ``hang()`` leaves it unanswered until ``close()``.
Every request's SigV4 signature is checked like ``FakeBedrock`` does (service ``bedrock``, the
fake's region and test credentials); each request is recorded in ``requests``.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.bedrock import (
    TEST_ACCESS_KEY,
    TEST_REGION,
    TEST_SECRET_KEY,
    BedrockError,
    FakeBedrock,
)

ACCOUNT = "123456789012"
CREATED = 1_700_000_000  # epoch seconds
OPERATIONS = {"/foundation-models": "ListFoundationModels",
              "/inference-profiles": "ListInferenceProfiles"}
_FILTERS = {  # ListFoundationModels query parameter -> the summary field it filters on
    "byProvider": "providerName", "byOutputModality": "outputModalities",
    "byInferenceType": "inferenceTypesSupported", "byCustomizationType": "customizationsSupported",
}


def model_arn(model_id: str, region: str = TEST_REGION) -> str:
    return f"arn:aws:bedrock:{region}::foundation-model/{model_id}"


def foundation_model(
    model_id: str,
    *,
    status: str = "ACTIVE",
    inference_types: Iterable[str] = ("ON_DEMAND",),
    region: str = TEST_REGION,
    provider: str | None = None,
    streaming: bool = True,
) -> dict[str, Any]:
    """A ``FoundationModelSummary`` as ListFoundationModels answers it."""
    vendor = provider or model_id.split(".")[0].capitalize()
    lifecycle: dict[str, Any] = {"status": status, "startOfLifeTime": CREATED}
    if status == "LEGACY":
        lifecycle.update(legacyTime=CREATED + 86_400, endOfLifeTime=CREATED + 2 * 86_400)
    return {
        "modelArn": model_arn(model_id, region),
        "modelId": model_id,
        "modelName": model_id.split(".")[-1].split(":")[0],
        "providerName": vendor,
        "inputModalities": ["TEXT", "IMAGE"],
        "outputModalities": ["TEXT"],
        "responseStreamingSupported": streaming,
        "customizationsSupported": [],
        "inferenceTypesSupported": list(inference_types),
        "modelLifecycle": lifecycle,
    }


def inference_profile(
    profile_id: str,
    model_ids: Iterable[str],
    *,
    regions: Iterable[str] = (TEST_REGION, "us-west-2"),
    region: str = TEST_REGION,
    kind: str = "SYSTEM_DEFINED",
) -> dict[str, Any]:
    """An ``InferenceProfileSummary``: ``profile_id`` serving ``model_ids`` in ``regions``."""
    ids = list(model_ids)
    return {
        "inferenceProfileName": f"{profile_id} profile",
        "description": f"Routes requests to {', '.join(ids)}.",
        "createdAt": CREATED,
        "updatedAt": CREATED,
        "inferenceProfileArn": f"arn:aws:bedrock:{region}:{ACCOUNT}:inference-profile/{profile_id}",
        "models": [{"modelArn": model_arn(m, r)} for m in ids for r in regions],
        "inferenceProfileId": profile_id,
        "status": "ACTIVE",
        "type": kind,
    }


@dataclass
class ControlRequest:
    method: str
    path: str  # as sent, query included
    query: dict[str, str]  # decoded
    headers: dict[str, str]  # lower-case names
    signature_ok: bool
    operation: str  # "ListFoundationModels", "ListInferenceProfiles", or "" (unknown route)


class FakeBedrockControl:
    def __init__(
        self,
        *,
        region: str = TEST_REGION,
        access_key: str = TEST_ACCESS_KEY,
        secret_key: str = TEST_SECRET_KEY,
        page_size: int | None = None,
    ) -> None:
        self.region = region
        self.models: list[dict[str, Any]] = []
        self.profiles: list[dict[str, Any]] = []
        self.page_size = page_size  # profiles a page (None: all, or maxResults)
        self.requests: list[ControlRequest] = []
        # the runtime fake checks signatures the same way (never started: only its checker)
        self._signatures = FakeBedrock(region=region, access_key=access_key, secret_key=secret_key)
        # (operation or None for any, the error to answer or None to hang), first come first
        self._script: deque[tuple[str | None, BedrockError | None]] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- scripting ----------------------------------------------------------------------------

    def fail(self, status: int, code: str, message: str | None = None, *,
             operation: str | None = None) -> None:
        """Answer the next request (of ``operation``, e.g. "ListInferenceProfiles") with this
        AWS error."""
        with self._lock:
            self._script.append((operation, BedrockError(code, message or f"fake {code}", status)))

    def hang(self, *, operation: str | None = None) -> None:
        """Leave the next request (of ``operation``) unanswered until ``close()``."""
        with self._lock:
            self._script.append((operation, None))

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeBedrockControl is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self._closing.clear()
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        name="FakeBedrockControl", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is None:
            return
        self._closing.set()  # hung requests end
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

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- request handling (handler thread) ------------------------------------------------------

    def handle(self, handler: _Handler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        parts = urlsplit(handler.path)
        auth_error = self._signatures.check_signature(handler.command, handler.path, headers, raw)
        record = ControlRequest(
            method=handler.command, path=handler.path, query=dict(parse_qsl(parts.query)),
            headers=headers, signature_ok=auth_error is None,
            operation=OPERATIONS.get(parts.path, "") if handler.command == "GET" else "")
        with self._lock:
            self.requests.append(record)
            script, scripted = None, False
            for item in self._script if auth_error is None else ():
                if item[0] in (None, record.operation):
                    self._script.remove(item)
                    script, scripted = item[1], True
                    break
        if scripted and script is None:  # hang()
            self._closing.wait()
            return
        try:
            if auth_error is not None:
                raise auth_error
            if isinstance(script, BedrockError):
                raise script
            handler.send_json(200, self._answer(record))
        except BedrockError as exc:
            status = exc.status or 400
            error_type = f"{exc.code}:http://internal.amazon.com/coral/com.amazon.bedrock/"
            handler.send_json(status, {"message": exc.message}, {"x-amzn-ErrorType": error_type})

    def _answer(self, record: ControlRequest) -> dict[str, Any]:
        if record.operation == "ListFoundationModels":
            return {"modelSummaries": [m for m in self.models if _matches(m, record.query)]}
        if record.operation == "ListInferenceProfiles":
            return self._profile_page(record.query)
        raise BedrockError("UnknownOperationException", f"no route for {record.path}", 404)

    def _profile_page(self, query: Mapping[str, str]) -> dict[str, Any]:
        wanted = query.get("type")
        profiles = [p for p in self.profiles if wanted is None or p.get("type") == wanted]
        size = len(profiles) or 1
        if "maxResults" in query:
            if not query["maxResults"].isdigit() or not 1 <= int(query["maxResults"]) <= 1000:
                raise BedrockError("ValidationException", _MAX_RESULTS, 400)
            size = int(query["maxResults"])
        if self.page_size is not None:
            size = min(size, self.page_size)
        start = _offset(query["nextToken"]) if "nextToken" in query else 0
        if start is None or start > len(profiles):
            raise BedrockError("ValidationException", "The pagination token is invalid.", 400)
        page: dict[str, Any] = {"inferenceProfileSummaries": profiles[start:start + size]}
        if start + size < len(profiles):
            page["nextToken"] = _token(start + size)
        return page


_MAX_RESULTS = ("1 validation error detected: Value at 'maxResults' failed to satisfy constraint: "
                "Member must have value between 1 and 1000")


def _matches(model: Mapping[str, Any], query: Mapping[str, str]) -> bool:
    for name, field in _FILTERS.items():
        if name not in query:
            continue
        value = model.get(field)
        values = value if isinstance(value, list) else [value]
        if query[name].lower() not in {str(v).lower() for v in values}:
            return False
    return True


def _token(offset: int) -> str:
    """An opaque page token (base64 with padding and '+'/'/': it must travel URL-encoded)."""
    return base64.b64encode(f"\xfb\xffoffset={offset}".encode("latin-1")).decode()


def _offset(token: str) -> int | None:
    try:
        text = base64.b64decode(token, validate=True).decode("latin-1")
    except ValueError:
        return None
    prefix = "\xfb\xffoffset="
    return int(text[len(prefix):]) if text.startswith(prefix) and text[len(prefix):].isdigit() \
        else None


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins handler threads
    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 fake: FakeBedrockControl) -> None:
        self.fake = fake
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up is not an error of the fake


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

    def do_GET(self) -> None:
        self.server.fake.handle(self)

    do_POST = do_GET

    def send_json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.send_header("Date", self.date_time_string())
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
