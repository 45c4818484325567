"""ASGI middleware in front of every route. Plain ASGI: the decorator form of middleware costs a
task per request."""
from __future__ import annotations

from starlette.exceptions import HTTPException

from aps.server import errors
from aps.server.console import check_console
from aps.server.errors import ApiError

KEYED = ("/v1/", "/generate")  # every route here needs a tenant's key
KEY_OR_DEMO = ("/infer", "/tenants/")  # a key, or in demo mode a demo tenant named in the call
ADMIN = "/admin"
CONSOLE = "/console/api/"  # the console's figures: the admin key, or none in demo mode


class Authentication:
    """Checks the caller from the headers before any route runs, so a request without a valid
    key is answered (401) before its body is read: a client with no key cannot make the gateway
    receive, let alone buffer, anything. The routes then ask the gateway who the caller is."""

    def __init__(self, app, gateway):
        self.app, self.gateway = app, gateway

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"]
            keyed, demo_ok = path.startswith(KEYED), path.startswith(KEY_OR_DEMO)
            admin = path == ADMIN or path.startswith(ADMIN + "/")
            console = path.startswith(CONSOLE)
            if keyed or demo_ok or admin or console:
                authorization = next((v.decode("latin-1") for k, v in scope["headers"]
                                      if k == b"authorization"), None)
                try:
                    if console:
                        check_console(self.gateway, authorization)
                    elif admin:
                        self.gateway.check_admin(authorization)
                    else:
                        self.gateway.caller(authorization, keyless_ok=demo_ok)
                except ApiError as exc:
                    response = errors.error_response(exc.status, exc.message, exc.code,
                                                     exc.headers, exc.param)
                    return await response(scope, receive, send)
        await self.app(scope, receive, send)


class BodyLimit:
    """At most `max_bytes` of body: a declared Content-Length over it is refused before anything
    is read, and a body without one (chunked) is counted as it arrives and stopped at the limit.
    Both get a 413 in the API's error shape. (FastAPI's own `max_body_size` does the counting
    too, but answers a declared length in plain text, over any error the app sends.)"""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = f"request body over {self.max_bytes} bytes"
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                response = errors.error_response(413, too_large, "body_too_large")
                return await response(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # an HTTPException: FastAPI lets it through body
                raise HTTPException(413, too_large)  # parsing, to the app's error handler
            return message

        await self.app(scope, counted, send)
