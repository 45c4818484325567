"""The gateway's app: `create_app(config)` builds the FastAPI app around one Gateway.

Routes (aps/server/api): the seeds' `POST /infer`, `GET /health`, `GET /tenants/{id}/status`;
OpenAI's `POST /v1/completions`, `POST /v1/chat/completions` (SSE when `stream`),
`GET /v1/models`; the admin API under `/admin`; `GET /metrics` (Prometheus text, or
`?format=json` for the seeds' summary); and the operator's console, `GET /console`
(aps/server/console).
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse, Response

from aps.server import errors
from aps.server.api.admin import router as admin_router
from aps.server.api.openai import router as openai_router
from aps.server.api.seed import router as seed_router
from aps.server.config import ServerConfig
from aps.server.console import install as install_console
from aps.server.gateway import Gateway
from aps.server.middleware import Authentication, BodyLimit
from aps.server.summary import summary

log = logging.getLogger("aps.server")


def create_app(config: ServerConfig | None = None) -> FastAPI:
    config = config or ServerConfig()
    gateway = Gateway(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await gateway.backend.start()
        await gateway.driver.start()
        tasks = [asyncio.create_task(gateway.watch_store(), name="aps-store-watch"),
                 asyncio.create_task(gateway.autoscale.run(), name="aps-autoscale")]
        if gateway.cluster is not None:
            tasks.append(asyncio.create_task(gateway.cluster.run(lambda: gateway.sched.policy),
                                             name="aps-cluster"))
        yield
        cancelled = await gateway.driver.drain(config.drain_timeout_s)
        if cancelled:
            log.warning("shut down with %d requests unfinished (cancelled)", cancelled)
        await gateway.backend.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # each releases what it holds
        await gateway.ledger.idle()  # a commit in flight ends before the last flush
        if gateway.cluster is not None:
            await gateway.cluster.close()
        if not gateway.ledger.flush():
            log.error("%d usage rows could not be written", len(gateway.ledger.pending))
        await gateway.store.aclose()
        gateway.store.close()

    app = FastAPI(title="APS", lifespan=lifespan)
    app.state.gateway = gateway
    errors.install(app)

    # the last added runs first: the caller is checked before a byte of body is read
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(Authentication, gateway=gateway)

    app.include_router(seed_router)
    app.include_router(admin_router)
    app.include_router(openai_router)
    install_console(app)  # GET /console, its figures, the per-tenant gauges

    @app.get("/metrics")
    async def metrics(format: str | None = None, authorization: str | None = Header(None)):
        """Open to scrapers; series that name tenants need the metrics key outside demo mode."""
        tenants = gateway.may_see_tenants(authorization)
        if format == "json":
            return JSONResponse(summary(gateway, tenants))
        return Response(gateway.metrics.render(tenants), media_type="text/plain; version=0.0.4")

    return app
