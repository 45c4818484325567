"""ASGI middleware in front of every route. Plain ASGI: the decorator form of middleware costs a
task per request."""
from __future__ import annotations

from aps.server import errors


class BodyLimit:
    """Refuse bodies over `max_bytes` (413) from their Content-Length, before reading them."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                    response = errors.error_response(
                        413, f"request body over {self.max_bytes} bytes", "body_too_large")
                    return await response(scope, receive, send)
        await self.app(scope, receive, send)
