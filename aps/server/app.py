"""The gateway: `create_app(config)` builds the FastAPI app around one Runtime.

Routes: the seeds' `POST /infer`, `GET /health`, `GET /tenants/{id}/status`, `GET /metrics`
(Prometheus text, or `?format=json` for the seeds' summary), and OpenAI's
`POST /v1/completions`, `POST /v1/chat/completions` (SSE when `stream`), `GET /v1/models`.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import sqlite3
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request as HttpRequest
from fastapi.responses import JSONResponse, Response

from aps.core import InvalidRequest, Request, Scheduler, Tenant, Verdict
from aps.engines import SimulatedEngine
from aps.engines.upstream_http import UpstreamCall
from aps.perf import make_perf_model
from aps.runtime import Draining, Runtime
from aps.server import errors, upstreams
from aps.server.client import count_tokens, disconnected
from aps.server.admin_api import router as admin_router
from aps.server.autoscale import AutoscaleSignal
from aps.server.cluster import Cluster, StoreUnavailable
from aps.server.config import ServerConfig
from aps.server.directory import Directory
from aps.server.errors import ApiError
from aps.server.ledger import Ledger, unix_clock
from aps.server.metrics import Metrics, StoreGauges
from aps.server.openai_api import router as openai_router
from aps.server.seed_api import router as seed_router
from aps.store import Store

log = logging.getLogger("aps.server")
# The key prefix of the caller, set by `tenant_for` in the handler's own context and read by
# `submit` in the same handler, for the ledger.
_key_prefix: contextvars.ContextVar[str] = contextvars.ContextVar("aps_key_prefix", default="")


class Gateway:
    """What the routes share: the runtime, the tenants and their keys, metrics, the ledger."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.perf = make_perf_model(config.model, config.gpu)
        self.store = Store(config.store.path)
        self.directory = Directory(self.store, [(t.tenant(), t.keys)
                                                for t in config.tenant_configs()])
        self.cluster = None
        if config.store.redis_url:
            s = config.store
            self.cluster = Cluster(s.redis_url, s.redis_down, s.redis_timeout_s, s.sync_s,
                                   on_change=self.apply_tenants)
        tenants = [self._local(t) for t in self.directory.tenants.values()]
        self.sched = Scheduler(tenants, config.policy,
                               config.batch_config(int(self.perf.kv_capacity_tokens)),
                               **config.policy_params)
        self.engine = SimulatedEngine(self.perf, config.speed)
        self.metrics = Metrics(lambda: self.runtime, list(self.directory.tenants))
        self.metrics.registry.register(StoreGauges(self))
        if config.upstreams:  # real servers behind the gateway: it owns the queue
            self.runtime = upstreams.build(config, self.sched, self.on_end)
            self.engine = self.runtime.engine
            self.metrics.registry.register(upstreams.UpstreamGauges(self.runtime))
        else:
            self.runtime = Runtime(self.sched, self.engine, on_end=self.on_end,
                                   on_iteration=self.metrics.on_iteration)
        self.ledger = Ledger(self.store, config.prices, unix_clock(self.runtime.now))
        self.autoscale = AutoscaleSignal(config.autoscale, self.sched, self.runtime.now,
                                         replicas=max(1, len(config.upstreams)))
        self.metrics.registry.register(self.autoscale)
        self._key_prefix: dict[str, str] = {}  # live request id -> the key it came with
        self.started = time.time()

    def _local(self, tenant: Tenant) -> Tenant:
        return tenant if self.cluster is None else self.cluster.local_view(tenant)

    def apply_tenants(self, tenants=None) -> None:
        """Give the scheduler the tenants' current limits (all of them, or those given)."""
        for tenant in (self.directory.tenants.values() if tenants is None else tenants):
            self.sched.set_tenant(self._local(tenant))
            self.metrics.tenants.add(tenant.tenant_id)

    def reload(self) -> None:
        """Pick up tenants and keys written by the CLI, the admin API or another replica.
        A removed tenant's keys stop working at once; its requests in flight finish."""
        self.apply_tenants(self.directory.reload())

    async def watch_store(self) -> None:
        while True:
            await asyncio.sleep(self.config.store.reload_s)
            try:
                if self.directory.changed():
                    self.reload()
                self.ledger.flush()  # rows a failed write kept, if any
            except sqlite3.Error as exc:
                log.error("cannot read the database %s: %s", self.store.path, exc)

    def on_end(self, req: Request) -> None:
        """Every request, once, as it ends: metrics, the ledger row, the shared bucket refund."""
        self.metrics.on_end(req)
        self.autoscale.on_end(req, self.runtime.now())
        prefix = self._key_prefix.pop(req.request_id, "")
        self.ledger.record(req, prefix, self.engine.model_name)
        if self.cluster is not None:
            self.cluster.on_end(req, self.directory.tenants.get(req.tenant_id))

    async def recorded(self, req: Request) -> None:
        """Return once the ended request's usage row is committed: a handler awaits this before
        it tells its client the request ended, so an acknowledged request is always billed.
        (The runtime reports an end, queueing the row, before it ends the request's stream.)"""
        await self.ledger.settled()

    def tenant_for(self, authorization: str | None, named: str | None = None,
                   keyless_ok: bool = False) -> str:
        """The tenant a request acts for: its key's, or in demo mode a named one."""
        if authorization:
            key = authorization.removeprefix("Bearer ").strip()
            caller = self.directory.lookup(key)
            if caller is None:
                raise ApiError(401, "unknown or revoked API key", "invalid_api_key")
            if named is not None and named != caller.tenant_id:
                raise ApiError(403, "tenant_id does not match the API key", "tenant_mismatch")
            _key_prefix.set(caller.key_prefix)
            return caller.tenant_id
        if keyless_ok and self.config.demo and named in self.directory.tenants:
            _key_prefix.set("")
            return named
        raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", "missing_api_key")

    async def submit(self, tenant: str, prompt: str, max_tokens: int, bid: int | None,
                     prefix: str, call: UpstreamCall | None = None):
        """Queue a request or raise the HTTP error that says why not. `call` is the client's
        body, for upstream servers (the seeds' /infer sends its bare prompt)."""
        req = Request(f"{prefix}-{uuid.uuid4().hex[:24]}", tenant, count_tokens(prompt),
                      max_tokens, 0.0, bid)
        if not self.runtime.accepting:
            raise ApiError(503, "the server is shutting down", "draining", errors.retry_after(5))
        if self.cluster is not None:
            await self._admit_shared(req)
        try:
            verdict, stream = self.runtime.submit(req, call or UpstreamCall(False, {"prompt": prompt},
                                                                            prompt))
        except Draining as exc:
            raise ApiError(503, str(exc), "draining", errors.retry_after(5)) from None
        except InvalidRequest as exc:
            self._refund_shared(req)
            raise ApiError(400, str(exc), "invalid_request") from None
        if stream is None:
            self._refund_shared(req)
            raise self._refusal(tenant, verdict)
        self._key_prefix[req.request_id] = _key_prefix.get()
        return req, stream

    async def _admit_shared(self, req: Request) -> None:
        tenant = self.directory.tenants.get(req.tenant_id)
        if tenant is None:
            raise ApiError(401, "unknown or revoked API key", "invalid_api_key")
        try:
            taken = await self.cluster.admit(req, tenant)
        except StoreUnavailable as exc:
            raise ApiError(503, f"{exc}; retry later", "store_unavailable",
                           errors.retry_after(1)) from None
        if taken is not None and not taken.ok and not req.demoted:
            raise self._refusal(req.tenant_id, Verdict(False, taken.reason, taken.retry_after))

    def _refund_shared(self, req: Request) -> None:
        """A request the local scheduler refused never ran: give back its shared reservation."""
        if self.cluster is not None:
            self.cluster.on_end(req, self.directory.tenants.get(req.tenant_id))

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
        await self.recorded(req)
        if stream.error is not None:  # an upstream server failed it
            raise ApiError(stream.error[0], stream.error[1], "upstream_error")
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
        tasks = [asyncio.create_task(gateway.watch_store(), name="aps-store-watch"),
                 asyncio.create_task(gateway.autoscale.run(), name="aps-autoscale")]
        if gateway.cluster is not None:
            tasks.append(asyncio.create_task(gateway.cluster.run(lambda: gateway.sched.policy),
                                             name="aps-cluster"))
        yield
        cancelled = await gateway.runtime.drain(config.drain_timeout_s)
        if cancelled:
            log.warning("shut down with %d requests unfinished (cancelled)", cancelled)
        for task in tasks:
            task.cancel()
        if gateway.cluster is not None:
            await gateway.cluster.close()
        if not gateway.ledger.flush():
            log.error("%d usage rows could not be written", len(gateway.ledger.pending))
        gateway.store.close()

    app = FastAPI(title="APS", lifespan=lifespan)
    app.state.gateway = gateway
    errors.install(app)

    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)

    app.include_router(seed_router)
    app.include_router(admin_router)
    app.include_router(openai_router)

    @app.get("/metrics")
    async def metrics(format: str | None = None):
        if format == "json":
            from aps.server.summary import summary
            return JSONResponse(summary(gateway))
        return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4")

    return app
