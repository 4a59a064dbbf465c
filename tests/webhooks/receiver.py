"""A webhook receiver for the tests: a real HTTP server on loopback that records what it gets
and answers as told."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def delivery_id(self) -> str:
        return self.headers["x-mlflow-delivery-id"]


class Receiver:
    """Records every request; answers ``status`` (and ``location`` for redirects)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.received: list[Received] = []
        self.status = 200
        self.location = ""
        self.answer = b'{"ok": true}'
        self.delay = 0.0
        self._cv = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._cv:
                    receiver.received.append(Received(self.path, headers, body))
                    receiver._cv.notify_all()
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(receiver.answer)))
                self.end_headers()
                self.wfile.write(receiver.answer)

            do_GET = do_POST  # noqa: N815

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def wait_for(
        self, count: int, timeout: float = 20.0, where: Callable[[Received], bool] | None = None
    ) -> list[Received]:
        """The first ``count`` requests (that ``where`` accepts), waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                found = [r for r in self.received if where is None or where(r)]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(found)} of {count} deliveries after {timeout} s")
                self._cv.wait(left)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
