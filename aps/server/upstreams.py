"""The gateway in front of upstream servers: the pool and dispatcher it runs on, and their
Prometheus series (per replica: outstanding requests and tokens, health, breaker state,
errors; retries; the response cache's hits and misses)."""
from __future__ import annotations

from typing import Callable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from aps.core import Request, Scheduler
from aps.engines.upstream import UpstreamPool
from aps.runtime import Dispatcher
from aps.server.upstream_config import make_replicas


def build(config, sched: Scheduler, on_end: Callable[[Request], None]) -> Dispatcher:
    replicas = make_replicas(config.upstreams, config.breaker)
    pool = UpstreamPool(replicas, config.routing, config.health_interval_s)
    return Dispatcher(sched, pool, config.retries, config.cache.make(), on_end=on_end)


class UpstreamGauges:
    """Read from the pool and the cache when scraped."""

    def __init__(self, dispatcher: Dispatcher):
        self.d = dispatcher

    def collect(self):
        pool, cache = self.d.engine, self.d.cache
        now = pool._clock()
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
        for r in pool.replicas:
            series["requests"].add_metric([r.url], r.num_in_flight)
            series["tokens"].add_metric([r.url], r.num_tokens_in_flight)
            series["healthy"].add_metric([r.url], 1 if r.healthy else 0)
            series["breaker"].add_metric([r.url], r.breaker.state(now).gauge)
            series["errors"].add_metric([r.url], r.num_errors)
        yield from series.values()
        yield CounterMetricFamily("aps:upstream_retries", "Requests sent again to another "
                                  "replica after a failure before their first token",
                                  value=pool.num_retries)
        if cache is not None:
            yield CounterMetricFamily("aps:cache_hits", "Responses served from the cache",
                                      value=cache.hits)
            yield CounterMetricFamily("aps:cache_misses", "Cacheable requests not in the cache",
                                      value=cache.misses)
            yield GaugeMetricFamily("aps:cache_bytes", "Bytes held by the response cache",
                                    value=cache.num_bytes)
