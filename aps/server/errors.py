"""Every error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`."""
from __future__ import annotations

import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error",
          413: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable"}
# Codes for the errors Starlette raises itself (unknown route, wrong method, body over the limit)
_HTTP_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed",
               413: "body_too_large"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers, self.param = headers or {}, param


def error_type(status: int) -> str:
    """OpenAI's `type` for an HTTP status."""
    return _TYPES.get(status, "api_error")


def error_response(status: int, message: str, code: str | None = None,
                   headers: dict[str, str] | None = None, param: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": error_type(status),
                      "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def retry_after(seconds: float | None) -> dict[str, str]:
    """`Retry-After` in whole seconds, rounded up so that retrying then succeeds."""
    return {} if seconds is None or math.isinf(seconds) else {"Retry-After": str(max(1, math.ceil(seconds)))}


def install(app: FastAPI) -> None:
    """The handlers that put every error in OpenAI's shape, with a code, and an OpenAPI schema
    that documents them so (400 where FastAPI would say 422)."""
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError):
        return error_response(exc.status, exc.message, exc.code, exc.headers, exc.param)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        loc = tuple(first.get("loc", ()))
        if first.get("type") == "json_invalid":  # loc is ("body", offset): not a parameter
            reason = (first.get("ctx") or {}).get("error") or first.get("msg", "")
            where = f" at character {loc[1]}" if len(loc) > 1 else ""
            return error_response(400, f"request body is not valid JSON: {reason}{where}",
                                  "invalid_json")
        param = ".".join(str(p) for p in loc[1:]) or None
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        if param is None and loc[:1] == ("body",) and isinstance(first.get("input"), bytes):
            message = "send a JSON object, with Content-Type: application/json"
        return error_response(400, f"{param or 'body'}: {message}", "invalid_request", param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail),
                              _HTTP_CODES.get(exc.status_code, "http_error"),
                              getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception):  # logged by the server as well
        return error_response(500, "internal error", "internal_error")

    openapi = app.openapi

    def documented() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(openapi())
        return app.openapi_schema

    app.openapi = documented


ERROR_SCHEMA = {
    "title": "Error", "type": "object", "required": ["message", "type", "param", "code"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                   "param": {"anyOf": [{"type": "string"}, {"type": "null"}],
                             "description": "the parameter or body field at fault"},
                   "code": {"type": "string"}}}
ERROR_RESPONSE_SCHEMA = {
    "title": "ErrorResponse", "type": "object", "required": ["error"],
    "properties": {"error": {"$ref": "#/components/schemas/Error"}}}


def document_errors(schema: dict) -> dict:
    """FastAPI's schema says a bad request is a 422 with its own body; here it is a 400 in
    OpenAI's shape, like every other error (`default`)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["Error"], components["ErrorResponse"] = ERROR_SCHEMA, ERROR_RESPONSE_SCHEMA
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses["400"] = {"description": "Bad request: a parameter or the body is invalid",
                                "content": content}
            responses.setdefault("default", {"description": "Error", "content": content})
    return schema
