"""Raw chat SSE bytes -> Responses SSE bytes: the byte-level shell of ``stream.py``.

Direction: chat stream -> Responses stream. ``ChatSSEToResponsesSSE`` is a mitmproxy
``flow.response.stream`` callable: called with each raw chunk as it arrives (split anywhere, even
inside a UTF-8 character) and once with ``b""`` at the end; it never returns ``b""``. SSE format:
https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Protocol

from sidecar.apis.responses.stream import TRUNCATED, ChatToResponsesStream
from sidecar.core.accounting import Usage, usage_from_openai

MALFORMED = {**TRUNCATED, "code": "bad_stream",
             "message": "The provider sent a malformed stream event"}


class ChatSSEToResponsesSSE:
    """Raw chat SSE bytes (split anywhere) -> Responses SSE bytes; ``b""`` marks the end.

    Understands ``data:`` lines (several per event are joined), ``data: [DONE]``, comments, LF
    or CRLF line ends, and an OpenAI error event ``data: {"error": {...}}``.
    """

    def __init__(self, translator: ChatToResponsesStream) -> None:
        self.translator = translator
        self._buffer = b""
        self._data: list[bytes] = []

    def __call__(self, data: bytes) -> list[bytes]:
        if self.translator.closed:
            return []
        if not data:  # the end: a last line without its newline still counts
            rest, self._buffer = self._buffer.removesuffix(b"\r"), b""
            return (self._line(rest) if rest else []) + self._dispatch() + self.translator.finish()
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        out: list[bytes] = []
        for line in lines:
            out += self._line(line.removesuffix(b"\r"))
        return out

    def _line(self, line: bytes) -> list[bytes]:
        if not line:
            return self._dispatch()
        name, _, value = line.partition(b":")
        if name == b"data":
            self._data.append(value.removeprefix(b" "))
        return []  # comments (":..."), event names, ids, retry: nothing chat needs

    def _dispatch(self) -> list[bytes]:
        if not self._data:
            return []
        payload, self._data = b"\n".join(self._data), []
        if payload.strip() == b"[DONE]":
            return self.translator.finish()
        try:
            chunk = json.loads(payload)
        except ValueError:
            chunk = None
        if not isinstance(chunk, dict):
            return self.translator.fail(MALFORMED)
        error = chunk.get("error")
        if error is not None and "choices" not in chunk:
            body = error if isinstance(error, Mapping) else {"message": str(error)}
            return self.translator.fail(body)
        return self.translator.feed(chunk)


class AfterChat:
    """A chat SSE stream transform (the usage tap, the Bedrock transcoder) followed by
    ``ChatSSEToResponsesSSE``: a Responses stream served by a chat provider. Its usage is the
    one the Responses events reported; it failed when the chat stream did."""

    def __init__(self, first: ChatStream, second: ChatSSEToResponsesSSE) -> None:
        self.first, self.second = first, second

    def __call__(self, data: bytes) -> list[bytes]:
        out = [event for piece in self.first(data) if piece for event in self.second(piece)]
        return out + self.second(b"") if not data else out

    @property
    def usage(self) -> Usage | None:
        return usage_from_openai({"usage": self.second.translator.usage})

    @property
    def failed(self) -> bool:
        return self.first.failed


class ChatStream(Protocol):
    def __call__(self, data: bytes) -> list[bytes]: ...

    @property
    def failed(self) -> bool: ...
