"""Prometheus metrics, named after vLLM's where the meaning is the same (`vllm:` -> `aps:`).

Per-tenant series carry a `tenant` label for configured tenants only, so a client cannot grow
the label set. Gauges are read at scrape time: from the scheduler, the store, and in upstream
mode the pool (per replica: outstanding requests and tokens, health, breaker state, errors;
retries; the response cache's hits and misses).
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from aps.core import Request, Scheduler, Status, StepPlan
from aps.core.stats import jain_index
from aps.engines.cache import ResponseCache
from aps.runtime import Dispatcher

_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)
_TPOT = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1)


class Metrics:
    def __init__(self, sched: Scheduler, tenants: list[str]):
        self.sched = sched
        self.tenants = set(tenants)
        self.registry = r = CollectorRegistry()
        t = ["tenant"]
        self.ttft = Histogram("aps:time_to_first_token_seconds", "Time to first token", t,
                              buckets=_LATENCY, registry=r)
        self.tpot = Histogram("aps:time_per_output_token_seconds", "Time per output token "
                              "after the first", t, buckets=_TPOT, registry=r)
        self.e2e = Histogram("aps:e2e_request_latency_seconds", "Arrival to last token", t,
                             buckets=_LATENCY, registry=r)
        self.queue = Histogram("aps:request_queue_time_seconds", "Arrival to first scheduled",
                               t, buckets=_LATENCY, registry=r)
        self.prompt_tokens = Counter("aps:prompt_tokens", "Prompt tokens of ended requests", t,
                                     registry=r)
        self.generation_tokens = Counter("aps:generation_tokens", "Generated tokens", t, registry=r)
        self.ended = Counter("aps:request_ended", "Requests ended, by status", ["tenant", "status"],
                             registry=r)
        self.rejected = Counter("aps:request_rejected", "Requests refused, by reason",
                                ["tenant", "reason"], registry=r)
        self.batch = Histogram("aps:iteration_num_requests", "Requests in one iteration",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=r)
        r.register(_Live(self))

    def label(self, tenant: str) -> str:
        return tenant if tenant in self.tenants else "other"

    def on_end(self, req: Request) -> None:
        t = self.label(req.tenant_id)
        self.ended.labels(t, req.status.value).inc()
        if req.status is Status.REJECTED:
            self.rejected.labels(t, req.reason or "unknown").inc()
            return
        self.prompt_tokens.labels(t).inc(req.prompt_tokens if req.first_scheduled is not None else 0)
        self.generation_tokens.labels(t).inc(req.num_output_tokens)
        for hist, value in ((self.ttft, req.ttft), (self.tpot, req.tpot), (self.queue, req.queue_time)):
            if value is not None:
                hist.labels(t).observe(value)
        if req.status is Status.FINISHED:
            self.e2e.labels(t).observe(req.e2e)

    def on_iteration(self, plan: StepPlan) -> None:
        self.batch.observe(len(plan.scheduled))

    def render(self, tenants: bool = True) -> bytes:
        """The exposition text; without `tenants`, no sample that carries a tenant label."""
        text = generate_latest(self.registry)
        if tenants:
            return text
        return b"\n".join(line for line in text.split(b"\n") if b'tenant="' not in line)


class _Live:
    """Gauges computed from the scheduler when scraped."""

    def __init__(self, metrics: Metrics):
        self.m = metrics

    def collect(self):
        sched = self.m.sched
        for name, doc, value in (
                ("aps:num_requests_running", "Requests in the running batch", sched.num_running),
                ("aps:num_requests_waiting", "Requests in the waiting queue", sched.num_waiting),
                ("aps:num_requests_throttled", "Requests held by their tenant's limits",
                 sched.num_throttled),
                ("aps:kv_cache_usage_perc", "Fraction of KV blocks in use", sched.kv.usage)):
            yield GaugeMetricFamily(name, doc, value=value)
        service = {t: float(n) for t, n in sched.service_tokens.items()}
        total = sum(service.values()) or 1.0
        share = GaugeMetricFamily("aps:tenant_service_share", "Share of tokens computed",
                                  labels=["tenant"])
        for t, n in sorted(service.items()):
            share.add_metric([self.m.label(t)], n / total)
        yield share
        yield GaugeMetricFamily("aps:jain_fairness_index", "Jain's index over service per unit "
                                "of weight among tenants served so far",
                                value=live_jain(sched))


def live_jain(sched) -> float:
    """Jain's index over service per unit of weight, among tenants served so far. (Live, the
    demand of each tenant is unknown: this is the raw-service form of the index.)"""
    served = [n / sched.weights.get(t, 1.0) for t, n in sched.service_tokens.items() if n > 0]
    return jain_index(served) if served else 1.0


class StoreGauges:
    """The store's health, read at scrape time."""

    def __init__(self, gateway):
        self.gw = gateway

    def collect(self):
        cluster = self.gw.cluster
        yield GaugeMetricFamily("aps:store_degraded", "1 while Redis is unreachable and the "
                                "configured fallback applies (cluster mode only)",
                                value=float(cluster is not None and cluster.degraded))
        ledger = self.gw.ledger
        yield GaugeMetricFamily("aps:ledger_pending_rows", "Usage rows not yet committed (a "
                                "backlog while the database does not take writes)",
                                value=len(ledger.pending))
        yield CounterMetricFamily("aps:ledger_dropped_rows", "Usage rows given up on: past a "
                                  "full buffer (store.ledger_full: serve) or refused by the "
                                  "database", value=ledger.dropped)
        spent = GaugeMetricFamily("aps:tenant_spend_usd", "Dollars spent in the budget's current "
                                  "period (settled and reserved)", labels=["tenant"])
        remaining = GaugeMetricFamily("aps:tenant_budget_remaining_usd", "Dollars left in the "
                                      "budget's current period", labels=["tenant"])
        for tenant, view in sorted(self.gw.budgets.standing.items()):
            spent.add_metric([tenant], view["spent_usd"] + view["reserved_usd"])
            remaining.add_metric([tenant], view["remaining_usd"])
        yield spent
        yield remaining


class UpstreamGauges:
    """Read from the pools when scraped."""

    def __init__(self, dispatcher: Dispatcher):
        self.d = dispatcher

    def collect(self):
        pools = self.d.pools
        series = {
            "requests": GaugeMetricFamily("aps:upstream_num_requests_running",
                                          "Requests in flight to the replica", labels=["upstream"]),
            "tokens": GaugeMetricFamily("aps:upstream_num_tokens_in_flight", "Prompt + max_tokens "
                                        "of the requests in flight to the replica",
                                        labels=["upstream"]),
            "healthy": GaugeMetricFamily("aps:upstream_healthy", "1 when the replica's health "
                                         "check passes", labels=["upstream"]),
            "breaker": GaugeMetricFamily("aps:upstream_breaker_state", "Circuit breaker: 0 closed, "
                                         "1 open, 2 half-open", labels=["upstream"]),
            "errors": CounterMetricFamily("aps:upstream_errors", "Failed requests to the replica "
                                          "(connection, 5xx, 429, broken stream)",
                                          labels=["upstream"]),
        }
        for pool in pools.pools.values():
            now = pool.clock()
            for r in pool.replicas:
                series["requests"].add_metric([r.url], r.num_in_flight)
                series["tokens"].add_metric([r.url], r.num_tokens_in_flight)
                series["healthy"].add_metric([r.url], 1 if r.healthy else 0)
                series["breaker"].add_metric([r.url], r.breaker.state(now).gauge)
                series["errors"].add_metric([r.url], r.num_errors)
        yield from series.values()
        yield CounterMetricFamily("aps:upstream_retries", "Requests sent again to another "
                                  "replica after a failure before their first token",
                                  value=self.d.num_retries)


class CacheGauges:
    """Read from the response cache when scraped (whichever engine is behind it)."""

    def __init__(self, cache: ResponseCache):
        self.cache = cache

    def collect(self):
        cache = self.cache
        yield CounterMetricFamily("aps:cache_hits", "Responses served from the cache",
                                  value=cache.hits)
        yield CounterMetricFamily("aps:cache_misses", "Cacheable requests not in the cache",
                                  value=cache.misses)
        yield GaugeMetricFamily("aps:cache_bytes", "Bytes held by the response cache",
                                value=cache.num_bytes)
