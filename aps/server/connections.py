"""What a connection may cost before its request reaches the app: uvicorn's httptools protocol
with the limits a public server needs and uvicorn does not have.

- A cap on open connections: one over `max_connections` gets a 503 and is closed at once, and
  the gateway says so in its log (at most every 10 s), instead of running out of file
  descriptors with nothing logged.
- A deadline for a request's head (request line and headers): `header_timeout_s` from the
  connection opening, or from the previous response ending. A silent connection is closed; a
  slow one (slowloris) gets a 408.
- A cap on the head's size: over `max_header_bytes` gets a 431, or a 414 when the URL alone is
  over `max_url_bytes`; what was buffered is dropped.
The idle time between requests on a kept-alive connection is uvicorn's `timeout_keep_alive`.
Errors are in the API's shape, like the app's own.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger("aps.server")
_LOG_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int = 4096
    header_timeout_s: float = 10.0
    max_header_bytes: int = 65536
    max_url_bytes: int = 8192


def error_bytes(status: int, message: str, code: str) -> bytes:
    """A whole HTTP/1.1 response in the API's error shape, closing the connection."""
    kind = "invalid_request_error" if status < 500 else "service_unavailable"
    body = json.dumps({"error": {"message": message, "type": kind, "param": None,
                                 "code": code}}).encode()
    return b"".join([STATUS_LINE[status], b"content-type: application/json\r\n",
                     b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body), body])


def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """The protocol class for `uvicorn.Config(http=...)`, with these limits."""
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"limits": limits})


class GuardedHttpProtocol(HttpToolsProtocol):
    limits = ConnectionLimits()
    _refused_at = -_LOG_EVERY_S  # when a refusal was last logged (shared by the class)
    _refused = 0

    def connection_made(self, transport) -> None:
        over = len(self.connections) >= self.limits.max_connections
        self._head_bytes, self._head_timer = 0, None
        super().connection_made(transport)
        if over:
            self._refuse_connection()
        else:
            self._expect_head()

    def _refuse_connection(self) -> None:
        cls = type(self)
        cls._refused += 1
        now = time.monotonic()
        if now - cls._refused_at >= _LOG_EVERY_S:
            log.warning("connection limit reached: %d open (limits.max_connections); refused %d "
                        "connection(s) since the last report", len(self.connections) - 1,
                        cls._refused)
            cls._refused_at, cls._refused = now, 0
        self._send_and_close(503, "too many open connections; retry later", "too_many_connections")

    def _send_and_close(self, status: int, message: str, code: str) -> None:
        if not self.transport.is_closing():
            self.transport.write(error_bytes(status, message, code))
            self.transport.close()

    # -- the head of each request ----------------------------------------------------------

    def _expect_head(self) -> None:
        """A request's head is due: arm its deadline."""
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_late)

    def _head_done(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._head_bytes:  # it started and did not finish: a slow client
            self._send_and_close(408, f"request headers not received within "
                                      f"{self.limits.header_timeout_s:g} s", "request_timeout")
        elif not self.transport.is_closing():  # silent: nothing to answer
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        reading_head = self._head_timer is not None
        super().data_received(data)
        if reading_head and self._head_timer is not None:  # the head is still not complete
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self._head_done()
                if len(getattr(self, "url", b"")) > self.limits.max_url_bytes:
                    self._send_and_close(414, f"URL over {self.limits.max_url_bytes} bytes",
                                         "uri_too_long")
                else:
                    self._send_and_close(431, f"request headers over "
                                              f"{self.limits.max_header_bytes} bytes",
                                         "headers_too_large")

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_url_bytes and self._head_timer is not None:
            self._head_done()
            self._send_and_close(414, f"URL over {self.limits.max_url_bytes} bytes",
                                 "uri_too_long")

    def on_headers_complete(self) -> None:
        self._head_done()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        idle = self.cycle is None or self.cycle.response_complete  # no pipelined request runs
        if idle and not self.transport.is_closing() and self._head_timer is None:
            self._expect_head()

    def connection_lost(self, exc) -> None:
        self._head_done()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """A request the parser could not read, in the API's error shape (not plain text)."""
        self._head_done()
        self._send_and_close(400, msg, "invalid_http")
