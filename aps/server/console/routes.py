"""The console's routes: the page and its scripts and style sheet (static files shipped in the
package, open: they hold no data), and `GET /console/api/live`, the figures it draws, behind the
admin key.

Who may read the figures (`check_console`, asked by the Authentication middleware before the
route runs, and again by the route): with an `admin_key` configured, a caller with
`Authorization: Bearer ADMIN_KEY`; without one, anyone while every tenant is a demo tenant (demo
mode, where /metrics shows every tenant's series to anyone too); otherwise nobody (403). The
operator's actions on the page go to the admin API with the key the operator typed in.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Depends, Header, Query, Request as HttpRequest
from fastapi.responses import JSONResponse, Response

from aps.server.console.live import Console
from aps.server.errors import ApiError

STATIC = Path(__file__).with_name("static")
ASSETS = {"": ("index.html", "text/html; charset=utf-8"),
          "app.js": ("app.js", "text/javascript; charset=utf-8"),
          "charts.js": ("charts.js", "text/javascript; charset=utf-8"),
          "tables.js": ("tables.js", "text/javascript; charset=utf-8"),
          "admin.js": ("admin.js", "text/javascript; charset=utf-8"),
          "style.css": ("style.css", "text/css; charset=utf-8")}
MAX_HISTORY = 400  # chart points a call may ask for (five minutes at about one a second)
# The page runs only its own files and talks only to its own gateway.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY", "Cache-Control": "no-cache"}


def check_console(gateway, authorization: str | None) -> None:
    """The admin key when one is configured; open in demo mode; else off (403)."""
    if gateway.config.admin_key is not None:
        gateway.check_admin(authorization)
    elif not gateway.directory.demo:
        raise ApiError(403, "the console is off: set admin_key in the configuration (or "
                            "APS_ADMIN_KEY) and give it to the console", "admin_disabled")


def _access(http: HttpRequest, authorization: str | None = Header(None)) -> None:
    check_console(http.app.state.gateway, authorization)


router = APIRouter()


@lru_cache(maxsize=None)
def _read(file: str) -> bytes:
    return (STATIC / file).read_bytes()


def _asset(name: str) -> Response:
    file, media_type = ASSETS[name]
    return Response(_read(file), media_type=media_type, headers=PAGE_HEADERS)


@router.get("/console", include_in_schema=False)
async def page() -> Response:
    return _asset("")


@router.get("/console/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    if name not in ASSETS or not name:
        raise ApiError(404, f"no console file {name!r}", "not_found")
    return _asset(name)


@router.get("/console/api/live", dependencies=[Depends(_access)])
async def live(http: HttpRequest, history: int = Query(0, ge=0, le=MAX_HISTORY,
                                                       description="chart points to include")):
    """What the console draws: per tenant and for the whole gateway (see
    aps/server/console/live.py), with the JSON summary of /metrics?format=json inside."""
    unknown = sorted(set(http.query_params) - {"history"})
    if unknown:
        raise ApiError(400, f"unknown parameter {unknown[0]!r}; the only one is 'history'",
                       "invalid_request", param=unknown[0])
    if len(http.query_params.getlist("history")) > 1:
        raise ApiError(400, "history: give it once", "invalid_request", param="history")
    state = http.app.state
    console = getattr(state, "console", None)
    if console is None:
        console = state.console = Console(state.gateway)
    return JSONResponse(console.live(history), headers={"Cache-Control": "no-store"})
