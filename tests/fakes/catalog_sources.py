"""A fake for remote catalog sources on loopback: serves JSON documents by path.

``SourceServer().start()``; ``server.documents["/prices.json"] = {...}`` sets what a path
answers (JSON, as LiteLLM's price map or OpenRouter's list would); ``server.broken[path] =
"down"`` answers 503, ``"truncated"`` cuts the body half-way. ``server.url("/prices.json")``;
every GET is counted in ``server.hits``.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


class SourceServer:
    def __init__(self) -> None:
        self.documents: dict[str, Any] = {}
        self.broken: dict[str, str] = {}
        self.hits: Counter[str] = Counter()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _handler(fake: SourceServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            fake.hits[self.path] += 1
            broken = fake.broken.get(self.path)
            if self.path not in fake.documents or broken == "down":
                self._send(503 if broken else 404, b'{"error": "unavailable"}')
                return
            body = json.dumps(fake.documents[self.path]).encode()
            if broken == "truncated":
                self._send(200, body[: len(body) // 2], length=len(body))
                self.close_connection = True
                return
            self._send(200, body)

        def _send(self, status: int, body: bytes, *, length: int | None = None) -> None:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
            pass

    return Handler
