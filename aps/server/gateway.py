"""What the routes share: one Gateway around one Scheduler, its backend and the driver that
runs it, the tenants and their keys, metrics, the usage ledger and, in cluster mode, Redis.

The backend is built once: the simulated GPU (driven per iteration by a Runtime) or, with
`upstreams:`, a pool of upstream servers (driven per request by a Dispatcher).
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
import uuid
from dataclasses import dataclass

from fastapi import Request as HttpRequest

from aps.core import ConfigError, InvalidRequest, Request, Scheduler, Status, Tenant, Verdict
from aps.core.stats import RecentEnds
from aps.engines import Backend, SimulatedEngine
from aps.engines.upstream import UpstreamPool, UpstreamPools
from aps.engines.upstream_http import UpstreamCall, UpstreamError
from aps.perf import make_perf_model
from aps.runtime import Dispatcher, Draining, Driver, Runtime, Stream
from aps.server import errors
from aps.server.api.client import count_tokens, disconnected
from aps.server.autoscale import AutoscaleSignal
from aps.server.budgets import Budgets
from aps.server.config import ServerConfig
from aps.server.errors import ApiError
from aps.server.metrics import CacheGauges, Metrics, StoreGauges, UpstreamGauges
from aps.server.upstream_config import make_replicas
from aps.store import open_store
from aps.store.cluster import Cluster, StoreUnavailable
from aps.store.directory import Caller, Directory
from aps.store.ledger import Ledger, unix_clock

log = logging.getLogger("aps.server")


@dataclass(slots=True)
class Ask:
    """What a client asks for, as a route reads it from its body and headers."""

    prompt: str
    max_tokens: int
    bid: int | None = None  # the client's priority; clamped to what its tenant and key allow
    model: str | None = None  # None: the default model
    max_queue_s: float | None = None  # X-APS-Max-Queue-Seconds: it may only shorten the wait
    id_prefix: str = "req"
    call: UpstreamCall | None = None  # the client's body, for upstream servers


class Gateway:
    def __init__(self, config: ServerConfig):
        self.config = config
        self.perf = make_perf_model(config.model, config.gpu)
        s = config.store
        self.store = open_store(s.target, timeout_s=s.db_timeout_s)
        self.directory = Directory(self.store, [(t.tenant(), t.keys)
                                                for t in config.tenant_configs()],
                                   demo=not config.tenants)
        self.cluster = None
        if s.redis_url:
            self.cluster = Cluster(s.redis_url, s.redis_down, s.redis_timeout_s, s.sync_s,
                                   on_change=self._limits_moved)
        tenants = [self._local(t) for t in self.directory.tenants.values()]
        self.budgets = Budgets(self.store, None, lambda: self.directory.tenants, self.cluster)
        self.sched = Scheduler(tenants, config.policy,
                               config.batch_config(int(self.perf.kv_capacity_tokens)),
                               period_bounds=self.budgets.period_bounds, **config.policy_params)
        self.budgets.sched = self.sched  # (each needs the other: budgets give it their periods)
        self.metrics = Metrics(self.sched, list(self.directory.tenants))
        self.metrics.registry.register(StoreGauges(self))
        self.cache = config.cache.make()  # None unless enabled; in front of either engine
        if self.cache is not None:
            self.metrics.registry.register(CacheGauges(self.cache))
        self.backend, self.driver = self._build_backend()
        unix = unix_clock(self.driver.now)  # driver time -> unix seconds
        self.ledger = Ledger(self.store, unix, bill_cached=config.cache.bill_hits,
                             buffer_rows=s.ledger_buffer_rows, when_full=s.ledger_full,
                             timeout_s=s.db_timeout_s)
        self.budgets.unwritten = self.ledger.unwritten_usd
        self.budgets.use_clock(self.driver.now, unix)
        self.budgets.restore(self.directory.tenants.values())
        self.models = self._served_models()
        self.autoscale = AutoscaleSignal(config.autoscale, self.sched, self.driver.now,
                                         replicas=max(1, len(config.upstreams)))
        self.metrics.registry.register(self.autoscale)
        self._key_prefix: dict[str, str] = {}  # live request id -> the key it came with
        self.recent = RecentEnds(30.0)  # for the Retry-After of a refusal that no bucket times
        self.started = time.time()

    def _served_models(self) -> dict[str, str]:
        """Every name a client may ask for -> the served model it means."""
        names = set(getattr(self.backend, "pools", {self.backend.model_name: None}))
        served = {name: name for name in names}
        for alias, target in self.config.aliases.items():
            if target not in names:  # a served model's name, never another alias
                raise ConfigError(f"aliases: {alias!r} names {target!r}, which is not served "
                                  f"here (an alias names a served model: "
                                  f"{', '.join(sorted(names))})")
            served[alias] = target
        for name in self.config.prices.models():  # a typo would bill the default price
            if name not in names:
                raise ConfigError(f"prices: {name!r} is not a model served here (a price names "
                                  f"a served model: {', '.join(sorted(names))})")
        return served

    def _build_backend(self) -> tuple[Backend, Driver]:
        config = self.config
        if config.upstreams:  # real servers behind the gateway: it owns the queue
            by_model: dict[str, list] = {}
            for upstream in config.upstreams:  # one pool per served model, in config order
                by_model.setdefault(upstream.model, []).append(upstream)
            pools = UpstreamPools([
                UpstreamPool(make_replicas(ups, config.breaker), config.routing,
                             config.health_interval_s, timeouts=config.timeouts.make())
                for ups in by_model.values()])
            driver = Dispatcher(self.sched, pools, config.retries, self.cache,
                                on_end=self.on_end)
            self.metrics.registry.register(UpstreamGauges(driver))
            return pools, driver
        engine = SimulatedEngine(self.perf, config.speed)
        return engine, Runtime(self.sched, engine, on_end=self.on_end,
                               on_iteration=self.metrics.on_iteration, cache=self.cache)

    # -- tenants ---------------------------------------------------------------------------

    def _local(self, tenant: Tenant) -> Tenant:
        return tenant if self.cluster is None else self.cluster.local_view(tenant)

    def apply_tenants(self, tenants=None) -> None:
        """Give the scheduler the tenants' current limits (all of them, or those given)."""
        tenants = list(self.directory.tenants.values() if tenants is None else tenants)
        for tenant in tenants:
            self.budgets.note_local(tenant.tenant_id)  # before Redis may take its budget over
            self.sched.set_tenant(self._local(tenant))
            self.metrics.tenants.add(tenant.tenant_id)
        self.budgets.restore_soon(tenants)

    def _limits_moved(self) -> None:
        """Redis went down or came back: the limits move between it and this gateway."""
        self.budgets.forget_reads()
        self.apply_tenants()

    def reload(self) -> None:
        """Pick up tenants and keys written by the CLI, the admin API or another replica.
        A removed tenant's keys stop working at once; its requests in flight finish."""
        self.apply_tenants(self.directory.reload())

    async def watch_store(self) -> None:
        """Every `store.reload_s`: pick up tenant and key changes made anywhere, write the
        ledger rows an outage left, follow budgets. Nothing ends the loop but its
        cancellation: an unexpected error is logged and tried again at the next turn."""
        failing = False
        while True:
            await asyncio.sleep(self.config.store.reload_s)
            try:
                changed = await self.directory.refresh()
                if changed is not None:
                    self.apply_tenants(changed)
                if failing:
                    log.warning("the database %s answers again", self.store.where)
                failing = False
            except self.store.unreachable as exc:
                if not failing:  # once per outage, not every reload
                    log.error("cannot read the database %s: %s", self.store.where, exc)
                failing = True
            except Exception:
                log.exception("cannot apply the tenants in %s", self.store.where)
            try:
                await self.ledger.retry()
                await self.budgets.refresh()
            except Exception:
                log.exception("the store watch failed; trying again in %gs",
                              self.config.store.reload_s)

    def caller(self, authorization: str | None, named: str | None = None,
               keyless_ok: bool = False) -> Caller:
        """Who a request acts for: its key's tenant, or (`keyless_ok`) a demo tenant it names.
        Named None with no key: whether a demo tenant could be named at all (the middleware
        asks before the body, which names it, is read)."""
        if authorization:
            key = authorization.removeprefix("Bearer ").strip()
            caller = self.directory.lookup(key)
            if caller is None:
                raise ApiError(401, "unknown or revoked API key", "invalid_api_key")
            if caller.expires_at is not None and time.time() >= caller.expires_at:
                raise ApiError(401, "this API key has expired", "key_expired")
            if named is not None and named != caller.tenant_id:
                raise ApiError(403, "tenant_id does not match the API key", "tenant_mismatch")
            return caller
        demo = self.directory.demo_tenants
        if keyless_ok and demo:
            if named is None or named in demo:
                return Caller(named or "", "")
            if named not in self.directory.tenants:
                raise ApiError(404, f"unknown tenant {named!r}; the demo tenants are "
                                    f"{', '.join(sorted(demo))}", "unknown_tenant")
            raise ApiError(401, f"tenant {named!r} needs its API key: send 'Authorization: "
                                "Bearer <key>'", "missing_api_key")
        raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", "missing_api_key")

    def may_see_tenants(self, authorization: str | None) -> bool:
        """Whether /metrics may show tenant-labelled series (names, tokens, shares): in demo
        mode to anyone; otherwise to a scraper with the metrics key, or the operator's admin
        key."""
        if self.directory.demo:
            return True
        given = (authorization or "").removeprefix("Bearer ").strip().encode()
        return any(key is not None and hmac.compare_digest(given, key.encode())
                   for key in (self.config.metrics_key, self.config.admin_key))

    def check_admin(self, authorization: str | None) -> None:
        """The admin API's key, compared in constant time; without one the API is off."""
        expected = self.config.admin_key
        if expected is None:
            raise ApiError(403, "the admin API is off: set admin_key in the configuration "
                                "(or APS_ADMIN_KEY)", "admin_disabled")
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(401, "admin API: missing or wrong admin key", "invalid_admin_key")

    # -- requests --------------------------------------------------------------------------

    def resolve_model(self, name: str | None) -> str:
        """The served model a request's `model` names (an alias, or the served name itself;
        none: the default). Unknown: 404."""
        if name is None:
            return self.backend.model_name
        served = self.models.get(name)
        if served is None:
            raise ApiError(404, f"model {name!r} is not served here; see GET /v1/models",
                           "model_not_found", param="model")
        return served

    async def submit(self, caller: Caller, ask: "Ask") -> tuple[Request, Stream]:
        """Queue a request or raise the HTTP error that says why not."""
        model = self.resolve_model(ask.model)
        if caller.models is not None and model not in caller.models and \
                ask.model not in caller.models:
            raise ApiError(403, f"this API key may not use model {ask.model or model!r}",
                           "model_not_allowed", param="model")
        bid = ask.bid
        if caller.max_bid is not None:  # the key's cap, below the tenant's own
            bid = min(bid if bid is not None else self.sched.tenants[caller.tenant_id].tenant.bid,
                      caller.max_bid)
        req = Request(f"{ask.id_prefix}-{uuid.uuid4().hex[:24]}", caller.tenant_id,
                      count_tokens(ask.prompt), ask.max_tokens, 0.0, bid, model=model,
                      max_queue_s=ask.max_queue_s, price=self.config.prices.for_model(model))
        if not self.driver.accepting:
            raise ApiError(503, "the server is shutting down", "draining", errors.retry_after(5))
        if self.ledger.full and self.ledger.when_full == "reject":
            raise ApiError(503, "the usage ledger cannot be written and its buffer is full; "
                                "retry later", "ledger_unavailable",
                           errors.retry_after(self.config.store.reload_s * 5))
        if self.budgets.unknown(req.tenant_id):  # see Budgets.restore_soon
            raise ApiError(503, "the tenant's spend is being read from the database; retry "
                                "later", "store_unavailable", errors.retry_after(1))
        if self.cluster is not None:
            await self._admit_shared(req)
        self._key_prefix[req.request_id] = caller.key_prefix  # for its ledger row, at its end
        call = ask.call or UpstreamCall(False, {"prompt": ask.prompt}, ask.prompt)
        try:
            verdict, stream = self.driver.submit(req, call)
        except BaseException as exc:  # never queued: nothing else will clean up after it
            self._key_prefix.pop(req.request_id, None)
            self._refund_shared(req)
            if isinstance(exc, Draining):
                raise ApiError(503, str(exc), "draining", errors.retry_after(5)) from None
            if isinstance(exc, InvalidRequest):
                raise ApiError(400, str(exc), "invalid_request") from None
            raise
        if stream is None:
            self._refund_shared(req)
            raise self._refusal(caller.tenant_id, verdict)
        return req, stream

    async def _admit_shared(self, req: Request) -> None:
        tenant = self.directory.tenants.get(req.tenant_id)
        if tenant is None:
            raise ApiError(401, "unknown or revoked API key", "invalid_api_key")
        try:
            spend = await self.budgets.shared_spend(req, tenant)
            taken = await self.cluster.admit(req, tenant, spend)
            if taken is None and self.budgets.unknown(req.tenant_id):  # Redis failed meanwhile:
                self.cluster.forget(req.request_id)  # see `Budgets.restore_soon`
                raise StoreUnavailable(f"{req.tenant_id!r}'s spend is being read")
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
        now = self.driver.now()
        headers = errors.retry_after(self._retry_after(verdict, now))
        state = self.sched.tenants[tenant]
        for kind, bucket in (("tokens", state.tokens), ("requests", state.requests)):
            if bucket is not None:
                level = bucket.refill(now)
                headers.update({f"x-ratelimit-limit-{kind}": f"{bucket.burst:g}",
                                f"x-ratelimit-remaining-{kind}": str(int(level)),
                                f"x-ratelimit-reset-{kind}": f"{(bucket.burst - level) / bucket.rate:.3f}s"})
        if verdict.reason == "queue_full":
            return ApiError(503, "the queue is full; retry later", "queue_full", headers)
        if verdict.reason == "budget":
            period = self.directory.tenants[tenant].budget_period
            if math.isinf(verdict.retry_after or math.inf):
                headers["x-should-retry"] = "false"  # a total budget never comes back
                return ApiError(429, f"tenant {tenant!r} has spent its budget", "budget_exceeded",
                                headers)
            return ApiError(429, f"tenant {tenant!r} has spent its {period} budget; it resets "
                                 f"in {verdict.retry_after:.0f} s", "budget_exceeded", headers)
        if verdict.retry_after is None:  # a concurrency limit: one of its requests must end
            return ApiError(429, f"tenant {tenant!r} is over its {verdict.reason} limit",
                            verdict.reason, headers)
        return ApiError(429, f"tenant {tenant!r} is over its {verdict.reason} limit; retry in "
                             f"{verdict.retry_after:.2f} s", "rate_limit_exceeded", headers)

    def _retry_after(self, verdict, now: float) -> float:
        """When to come back: the bucket's refill time when a bucket said no; for a full queue,
        the time the queue takes to drain at the recent rate of ends; for a concurrency limit,
        the time a request takes lately. At least a second, at most a minute."""
        if verdict.retry_after is not None:
            return verdict.retry_after
        if verdict.reason == "queue_full":
            estimate = self.recent.time_for(self.sched.num_waiting, now)
        else:
            estimate = self.recent.mean_duration(now)
        return min(60.0, max(1.0, estimate if estimate is not None else 1.0))

    def on_end(self, req: Request) -> None:
        """Every request, once, as it ends: metrics, the ledger row, the shared bucket refund."""
        self.metrics.on_end(req)
        now = self.driver.now()
        self.autoscale.on_end(req, now)
        if req.status is Status.FINISHED:
            self.recent.add(now, req.e2e)
        prefix = self._key_prefix.pop(req.request_id, "")
        self.ledger.record(req, prefix, req.model or self.backend.model_name)
        if self.cluster is not None:
            self.cluster.on_end(req, self.directory.tenants.get(req.tenant_id))

    def held(self) -> dict[str, int]:
        """What the gateway holds for requests in flight: every count is 0 when none is (a
        leak shows as a count that stays up; `aps bench soak` checks them)."""
        sched = self.sched
        return {"live_requests": len(sched.requests), "running": sched.num_running,
                "waiting": sched.num_waiting, "throttled": sched.num_throttled,
                "kv_used_blocks": sched.kv.num_used_blocks, "streams": self.driver.num_streams,
                "key_prefixes": len(self._key_prefix), "ledger_pending_rows": len(self.ledger.pending)}

    async def recorded(self, req: Request) -> None:
        """Return once the ended request's usage row is committed: a handler awaits this before
        it tells its client the request ended, so an acknowledged request is always billed.
        (The driver reports an end, queueing the row, before it ends the request's stream.)"""
        await self.ledger.settled()

    async def collect(self, http: HttpRequest, req: Request, stream: Stream) -> str:
        """The whole text, cancelling the request if the client goes away first."""
        text = asyncio.ensure_future(stream.text())
        gone = asyncio.ensure_future(disconnected(http))
        done, _ = await asyncio.wait({text, gone}, return_when=asyncio.FIRST_COMPLETED)
        if text not in done:
            text.cancel()
            self.driver.cancel(req.request_id)
            raise ApiError(499, "client closed the request", "client_closed")
        gone.cancel()
        await self.recorded(req)
        if req.status is not Status.FINISHED:
            raise ended_error(req, stream.error, self.queue_wait_s())
        return text.result()

    def queue_wait_s(self) -> float:
        """How long the queue takes to drain at the recent rate of ends (for Retry-After)."""
        return self._retry_after(Verdict(False, "queue_full"), self.driver.now())


def ended_error(req: Request, error: Exception | None, queue_wait_s: float = 1.0) -> ApiError:
    """The HTTP error for a request that ended without finishing (its client still waiting);
    `queue_wait_s`: when a request that expired in the queue might be served."""
    if isinstance(error, UpstreamError):  # a client's 4xx from the server is passed on as is
        status = 502 if error.retryable or error.status is None else error.status
        return ApiError(status, error.message, "upstream_error")
    if req.status is Status.EXPIRED:
        return ApiError(503, f"the request waited its limit ({req.deadline - req.arrival:g} s) "
                             "without starting; retry later", "queue_timeout",
                        errors.retry_after(queue_wait_s))
    if req.status is Status.CANCELLED:  # by the server: its drain ran out of time
        return ApiError(503, "the server shut down before the request finished; retry it",
                        "server_shutting_down", errors.retry_after(5))
    return ApiError(500, f"request {req.status.value}: {req.reason}", "engine_error")
