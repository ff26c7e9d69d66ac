"""A real HTTP server on 127.0.0.1 that answers like Serpstat API v4.

Tests, the demo and the benchmarks talk to it over HTTP exactly as the pipeline talks to
api.serpstat.com, so the client's transport, retries and redaction are exercised for real.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from .api import SerpstatApi

logger = logging.getLogger(__name__)

API_PATHS = {"/v4", "/v4/"}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as a real client session uses
    # Headers and body go out in two writes: with Nagle's algorithm on, the body waits for the
    # client's delayed ACK (~40 ms a request), which would make the emulator the bottleneck.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:  # http.server naming
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if url.path not in API_PATHS:
            self._send(404, b"Not Found", {"Content-Type": "text/plain"})
            return
        query_token = parse_qs(url.query).get("token", [None])[0]
        response = self.server.api.handle(body, query_token, self.headers.get("token"))
        if response.delay:
            time.sleep(response.delay)
        if response.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        headers = {"Content-Type": "application/json; charset=utf-8", **response.headers}
        self._send(response.status, response.body, headers)

    def do_GET(self) -> None:
        self._send(405, b"Method Not Allowed", {"Content-Type": "text/plain", "Allow": "POST"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test): nothing to answer

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries ?token=...: never log it.
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: SerpstatApi) -> None:
        super().__init__(address, _Handler)
        self.api = api


class SerpstatEmulator:
    """The emulator as a context manager: `with SerpstatEmulator(seed=1) as emu: emu.url`.

    Everything tests need is an attribute: `api` (account state, `log`, `faults`, `graph`),
    `today` to move the index date, `set_profile` to fix a target's size.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **api_options: Any) -> None:
        self.api = SerpstatApi(**api_options)
        self._server = _Server((host, port), self.api)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        # an AF_INET server: its address is (host, port); typeshed allows bytes for other families
        host, port = cast(tuple[str, int], self._server.server_address[:2])
        return f"http://{host}:{port}/v4"

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    # Conveniences over the api object, the ones tests reach for most.
    @property
    def log(self):
        return self.api.log

    @property
    def faults(self):
        return self.api.faults

    @property
    def graph(self):
        return self.api.graph

    @property
    def today(self) -> dt.date:
        return self.api.today

    @today.setter
    def today(self, day: dt.date) -> None:
        self.api.today = day

    def set_profile(self, target: str, size: int) -> None:
        self.api.graph.set_profile(target, size)

    def start(self) -> SerpstatEmulator:
        self._thread = threading.Thread(target=self._server.serve_forever, name="serpstat-emulator",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def __enter__(self) -> SerpstatEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
