"""Raw ConverseStream bytes (AWS event stream) -> OpenAI SSE bytes, chunk by chunk.

``EventStreamToSSE`` is a ``flow.response.stream`` callable for mitmproxy: it is called with each
raw chunk as it arrives (split anywhere, even inside a frame) and once with ``b""`` at the end.
Framing and both CRCs are checked by botocore's ``EventStreamBuffer`` (this module re-implements
none of it); payloads are JSON.
Wire format: https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html#streaming-event-stream
and botocore/eventstream.py; events: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html

Output rules:

* never ``b""`` (mitmproxy would end the chunked response): ``[]`` when there is nothing yet;
* ``data: [DONE]`` right after the ``metadata`` event that completes the message;
* an exception frame, a broken frame, a translation failure, or the end of input before the
  message completed -> one ``data: {"error": {...}}`` event (the openai SDK raises ``APIError``)
  and nothing after it, never ``[DONE]``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any, cast

from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError

from sidecar.core.accounting import Usage, usage_from_openai
from sidecar.core.errors import SidecarError, TranslationError, error_body
from sidecar.providers.bedrock.errors import from_stream_exception
from sidecar.providers.bedrock.stream import ConverseStreamTranslator

DONE = b"data: [DONE]\n\n"
# What botocore's decoder raises on malformed input: its own ParserErrors, and from header
# parsing an unknown value type (KeyError), short data (struct.error) or bad UTF-8.
_BROKEN_FRAME = (ParserError, KeyError, struct.error, UnicodeDecodeError)


def sse_event(obj: object) -> bytes:
    """One SSE ``data:`` event (compact JSON; a JSON string never contains a raw newline)."""
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


class EventStreamToSSE:
    """Stateful transcoder; after ``[DONE]`` or an error event it swallows everything."""

    def __init__(self, translator: ConverseStreamTranslator) -> None:
        self.translator = translator
        self.error: dict[str, Any] | None = None  # the OpenAI error body, if one was sent
        self.closed = False
        self._buffer = EventStreamBuffer()

    @property
    def usage(self) -> Usage | None:
        """The usage Bedrock reported (its ``metadata`` event), once seen."""
        return usage_from_openai({"usage": self.translator.usage})

    @property
    def failed(self) -> bool:
        return self.error is not None

    def __call__(self, data: bytes) -> list[bytes]:
        if self.closed:
            return []
        if not data:
            return self._end()
        out: list[bytes] = []
        try:
            self._buffer.add_data(data)
            for message in self._buffer:
                out += self._on_message(message)
                if self.closed:
                    break
        except _BROKEN_FRAME as exc:  # bad CRC or length, or a valid CRC over bad headers
            why = f"Bedrock sent a broken event stream: {exc!r}"
            out.append(self._fail(error_body(why, type="server_error", code="bad_event_stream")))
        except SidecarError as exc:
            out.append(self._fail_with(exc))
        return out

    def _on_message(self, message: EventStreamMessage) -> list[bytes]:
        headers = cast(Mapping[str, Any], message.headers)  # botocore-stubs say int: wrong
        kind = headers.get(":message-type")
        if kind == "exception":
            code, payload = headers.get(":exception-type"), _json_object(message.payload)
            return [self._fail(from_stream_exception(str(code), payload).body)]
        if kind == "error":
            code, payload = headers.get(":error-code"), {"message": headers.get(":error-message")}
            return [self._fail(from_stream_exception(str(code), payload).body)]
        if kind != "event":
            return []
        event = {str(headers.get(":event-type")): _json_object(message.payload)}
        out = [sse_event(chunk) for chunk in self.translator.feed(event)]
        if self.translator.done:
            self.closed = True
            out.append(DONE)
        return out

    def _end(self) -> list[bytes]:
        try:
            chunks = self.translator.finish()
        except SidecarError as exc:
            return [self._fail_with(exc)]
        self.closed = True
        return [sse_event(chunk) for chunk in chunks] + [DONE]

    def _fail_with(self, exc: SidecarError) -> bytes:
        return self._fail(error_body(exc.message, type=exc.type, param=exc.param, code=exc.code))

    def _fail(self, body: dict[str, Any]) -> bytes:
        self.closed = True
        self.error = body
        return sse_event(body)


def _json_object(payload: bytes) -> dict[str, Any]:
    """An event payload; an empty payload is ``{}``; anything but a JSON object is an error."""
    if not payload:
        return {}
    try:
        value = json.loads(payload)
    except ValueError as exc:
        raise TranslationError(f"Bedrock sent a non-JSON event payload: {exc}") from exc
    if not isinstance(value, dict):
        raise TranslationError("Bedrock sent an event payload that is not a JSON object")
    return value
