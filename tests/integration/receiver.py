"""A webhook receiver on 127.0.0.1 for tests: records every request, answers as told."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: str
    status: int  # what the receiver answered
    received_at: float  # time.monotonic()


@dataclass
class Receiver:
    """``answer(request number) -> status``; default 200."""

    answer: Callable[[int], int] = lambda _: 200
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length).decode()
                with receiver._lock:
                    status = receiver.answer(len(receiver.requests))
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.requests.append(
                        Received(self.path, headers, body, status, time.monotonic())
                    )
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def delivered(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [
                r
                for r in self.requests
                if 200 <= r.status < 300 and (path is None or r.path == path)
            ]

    def wait_for(
        self,
        check: Callable[[list[Received]], bool],
        timeout: float = 20.0,
        path: str | None = None,
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.delivered(path)
            if check(found):
                return found
            time.sleep(0.02)
        found = self.delivered(path)
        raise AssertionError(f"not received in {timeout} s: {[r.body[:120] for r in found]}")
