"""The operator's console: a live page served by the gateway itself (`GET /console`, static
files in console/static, no build step, nothing fetched from elsewhere), the figures it polls
(`GET /console/api/live`, computed in console/live.py from the gateway's own counters), and the
per-tenant gauges the Grafana dashboard and the alert rules in deploy/ read."""
from __future__ import annotations

from fastapi import FastAPI

from aps.server.console.gauges import TenantGauges
from aps.server.console.routes import check_console, router

__all__ = ["check_console", "install"]


def install(app: FastAPI) -> None:
    """Add the console's routes and gauges to the gateway's app."""
    app.include_router(router)
    app.state.gateway.metrics.registry.register(TenantGauges(app.state.gateway))
