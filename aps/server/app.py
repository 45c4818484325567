"""The gateway: `create_app(config)` builds the FastAPI app around one Runtime.

Routes: the seeds' `POST /infer`, `GET /health`, `GET /tenants/{id}/status`, `GET /metrics`
(Prometheus text, or `?format=json` for the seeds' summary), and OpenAI's
`POST /v1/completions`, `POST /v1/chat/completions` (SSE when `stream`), `GET /v1/models`.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request as HttpRequest
from fastapi.responses import JSONResponse, Response

from aps.core import InvalidRequest, Request, Scheduler
from aps.engines import SimulatedEngine
from aps.perf import make_perf_model
from aps.runtime import Draining, Runtime
from aps.server import errors
from aps.server.client import count_tokens, disconnected
from aps.server.config import ServerConfig
from aps.server.errors import ApiError
from aps.server.metrics import Metrics
from aps.server.openai_api import router as openai_router
from aps.server.seed_api import router as seed_router

log = logging.getLogger("aps.server")


class Gateway:
    """What the routes share: the runtime, the tenants' keys, metrics and the engine."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.perf = make_perf_model(config.model, config.gpu)
        tenants = config.tenant_configs()
        self.keys = {key: t.id for t in tenants for key in t.keys}
        self.sched = Scheduler([t.tenant() for t in tenants], config.policy,
                               config.batch_config(int(self.perf.kv_capacity_tokens)),
                               **config.policy_params)
        self.engine = SimulatedEngine(self.perf, config.speed)
        self.metrics = Metrics(lambda: self.runtime, [t.id for t in tenants])
        self.runtime = Runtime(self.sched, self.engine, on_end=self.metrics.on_end,
                               on_iteration=self.metrics.on_iteration)
        self.started = time.time()

    def tenant_for(self, authorization: str | None, named: str | None = None,
                   keyless_ok: bool = False) -> str:
        """The tenant a request acts for: its key's, or in demo mode a named one."""
        if authorization:
            key = authorization.removeprefix("Bearer ").strip()
            tenant = self.keys.get(key)
            if tenant is None:
                raise ApiError(401, "unknown API key", "invalid_api_key")
            if named is not None and named != tenant:
                raise ApiError(403, "tenant_id does not match the API key", "tenant_mismatch")
            return tenant
        if keyless_ok and self.config.demo and named in self.sched.tenants:
            return named
        raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", "missing_api_key")

    def submit(self, tenant: str, prompt: str, max_tokens: int, bid: int | None, prefix: str):
        """Queue a request or raise the HTTP error that says why not."""
        req = Request(f"{prefix}-{uuid.uuid4().hex[:24]}", tenant, count_tokens(prompt),
                      max_tokens, 0.0, bid)
        try:
            verdict, stream = self.runtime.submit(req)
        except Draining as exc:
            raise ApiError(503, str(exc), "draining", errors.retry_after(5)) from None
        except InvalidRequest as exc:
            raise ApiError(400, str(exc), "invalid_request") from None
        if stream is None:
            raise self._refusal(tenant, verdict)
        return req, stream

    def _refusal(self, tenant: str, verdict) -> ApiError:
        headers = errors.retry_after(verdict.retry_after)
        state, now = self.sched.tenants[tenant], self.runtime.now()
        for kind, bucket in (("tokens", state.tokens), ("requests", state.requests)):
            if bucket is not None:
                level = bucket.refill(now)
                headers.update({f"x-ratelimit-limit-{kind}": f"{bucket.burst:g}",
                                f"x-ratelimit-remaining-{kind}": str(int(level)),
                                f"x-ratelimit-reset-{kind}": f"{(bucket.burst - level) / bucket.rate:.3f}s"})
        if verdict.reason == "queue_full":
            return ApiError(503, "the queue is full; retry later", "queue_full", headers)
        if verdict.retry_after is None:  # a concurrency limit: waiting may or may not help
            return ApiError(429, f"tenant {tenant!r} is over its {verdict.reason} limit",
                            verdict.reason, headers)
        return ApiError(429, f"tenant {tenant!r} is over its {verdict.reason} limit; retry in "
                             f"{verdict.retry_after:.2f} s", "rate_limit_exceeded", headers)

    async def collect(self, http: HttpRequest, req: Request, stream) -> str:
        """The whole text, cancelling the request if the client goes away first."""
        text = asyncio.ensure_future(stream.text())
        gone = asyncio.ensure_future(disconnected(http))
        done, _ = await asyncio.wait({text, gone}, return_when=asyncio.FIRST_COMPLETED)
        if text not in done:
            text.cancel()
            self.runtime.cancel(req.request_id)
            raise ApiError(499, "client closed the request", "client_closed")
        gone.cancel()
        return text.result()


class BodyLimit:
    """Refuse bodies over `max_bytes` (413) from their Content-Length, before reading them.
    Plain ASGI: the decorator form of middleware costs a task per request."""

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


def create_app(config: ServerConfig | None = None) -> FastAPI:
    config = config or ServerConfig()
    gateway = Gateway(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await gateway.runtime.start()
        yield
        cancelled = await gateway.runtime.drain(config.drain_timeout_s)
        if cancelled:
            log.warning("shut down with %d requests unfinished (cancelled)", cancelled)

    app = FastAPI(title="APS", lifespan=lifespan)
    app.state.gateway = gateway
    errors.install(app)

    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)

    app.include_router(seed_router)
    app.include_router(openai_router)

    @app.get("/metrics")
    async def metrics(format: str | None = None):
        if format == "json":
            from aps.server.summary import summary
            return JSONResponse(summary(gateway))
        return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4")

    return app
