"""Server-sent events on the way through: read the usage report out of an OpenAI stream.

``UsageTap`` is a stream transform (bytes in, chunks out) that survives events split at any
byte. It finds the provider's usage chunk; when the sidecar asked for usage on the app's behalf
(``strip=True``), it removes that chunk and the ``"usage": null`` fields, so the app sees exactly
what it asked for.
"""

from __future__ import annotations

import json
from typing import Any

from sidecar.core.accounting import Usage, usage_from_openai


class UsageTap:
    def __init__(self, *, strip: bool) -> None:
        self.strip = strip
        self.usage: Usage | None = None
        self.error = False  # the provider sent an error event
        self._buffer = b""

    @property
    def failed(self) -> bool:
        return self.error

    def __call__(self, data: bytes) -> list[bytes]:
        if not data:  # the end: whatever is left is an incomplete event; pass it on
            rest, self._buffer = self._buffer, b""
            return [rest] if rest else []
        self._buffer += data
        out = []
        while True:
            end = _event_end(self._buffer)
            if end < 0:
                break
            event, self._buffer = self._buffer[:end], self._buffer[end:]
            kept = self._event(event)
            if kept:
                out.append(kept)
        return out

    def _event(self, event: bytes) -> bytes:
        if event.startswith(b'data: {"error"'):
            self.error = True
        if b'"usage"' not in event:
            return event
        if event.startswith(b"event: response."):  # a native Responses stream
            self._responses_usage(event)
            return event
        if not event.startswith(b"data: {"):
            return event
        try:
            chunk: Any = json.loads(event[6:])
        except ValueError:
            return event
        usage = usage_from_openai(chunk)
        if usage is not None:
            self.usage = usage
        if not self.strip:
            return event
        if usage is not None and not chunk.get("choices"):
            return b""  # the usage chunk the app did not ask for
        chunk.pop("usage", None)
        return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


    def _responses_usage(self, event: bytes) -> None:
        """``response.completed`` (or incomplete) carries the whole response, usage included."""
        data = event.partition(b"\ndata: ")[2]
        try:
            payload: Any = json.loads(data)
        except ValueError:
            return
        response = payload.get("response") if isinstance(payload, dict) else None
        usage = usage_from_openai(response) if isinstance(response, dict) else None
        if usage is not None:
            self.usage = usage


def _event_end(buffer: bytes) -> int:
    """Index just past the first complete event (blank line: LF LF or CRLF CRLF), or -1."""
    ends = [i + len(sep) for sep in (b"\n\n", b"\r\n\r\n") if (i := buffer.find(sep)) >= 0]
    return min(ends) if ends else -1


class SSEReader:
    """The events of a server-sent event stream fed in pieces of any size: ``feed`` returns
    the ``(event, data)`` of every event its bytes complete (CRLF line ends, ``:`` comments,
    data over several lines, events without an ``event:`` line). ``pending`` is the length of
    the line still being read; ``clear`` lets go of it."""

    def __init__(self) -> None:
        self._line = bytearray()
        self._data: list[bytes] = []  # the data lines of the event being read
        self._event = ""  # its ``event:`` field

    @property
    def pending(self) -> int:
        return len(self._line)

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        self._line += data
        if b"\n" not in data:
            return []
        lines = bytes(self._line).split(b"\n")
        self._line = bytearray(lines.pop())  # the rest of an unfinished line
        events = []
        for line in lines:
            line = line.removesuffix(b"\r")
            if not line:
                if self._data or self._event:
                    events.append((self._event, b"\n".join(self._data)))
                self._data, self._event = [], ""
            elif line.startswith(b"data:"):
                self._data.append(line[5:].removeprefix(b" "))
            elif line.startswith(b"event:"):
                self._event = line[6:].strip().decode("utf-8", "replace")
            # comments (": keep-alive"), id: and retry: change nothing
        return events

    def clear(self) -> None:
        self._line, self._data, self._event = bytearray(), [], ""
