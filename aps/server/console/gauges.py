"""Per-tenant gauges for Prometheus, read from the scheduler at scrape time: what the console
shows per tenant, for the Grafana dashboard and the alert rules (deploy/).

    aps:tenant_num_requests_waiting|running|throttled{tenant}
    aps:tenant_weight{tenant}            the tenant's fair-share weight
    aps:tenant_service_tokens{tenant}    tokens computed for it since the gateway started (a
                                         gauge: it may step back a little when an upstream
                                         request is retried, so take `delta`, not `rate`)

Like every series with a `tenant` label, they are shown only to the metrics or admin key
outside demo mode, and a tenant the gateway was not configured with is counted as `other`.
"""
from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily


class TenantGauges:
    def __init__(self, gateway):
        self.gw = gateway

    def collect(self):
        sched, label = self.gw.sched, self.gw.metrics.label
        families = {
            "waiting": GaugeMetricFamily("aps:tenant_num_requests_waiting",
                                         "The tenant's requests in the waiting queue",
                                         labels=["tenant"]),
            "running": GaugeMetricFamily("aps:tenant_num_requests_running",
                                         "The tenant's requests in the running batch (or in "
                                         "flight to an upstream server)", labels=["tenant"]),
            "throttled": GaugeMetricFamily("aps:tenant_num_requests_throttled",
                                           "The tenant's requests held by its limits",
                                           labels=["tenant"]),
            "weight": GaugeMetricFamily("aps:tenant_weight", "The tenant's fair-share weight",
                                        labels=["tenant"]),
            "service": GaugeMetricFamily("aps:tenant_service_tokens", "Tokens computed for the "
                                         "tenant since the start (prompt and output)",
                                         labels=["tenant"]),
        }
        running = sched.num_running_by_tenant
        values: dict[str, dict[str, float]] = {}  # label -> figure -> value (`other` summed)
        waiting = sched.num_waiting_by_tenant
        for tenant_id, state in sched.tenants.items():
            mine = values.setdefault(label(tenant_id), dict.fromkeys(families, 0.0))
            mine["waiting"] += waiting.get(tenant_id, 0)
            mine["running"] += running.get(tenant_id, 0)
            mine["throttled"] += len(state.throttled)
            mine["weight"] += state.tenant.weight
            mine["service"] += sched.service_tokens.get(tenant_id, 0)
        for tenant, figures in sorted(values.items()):
            for name, value in figures.items():
                families[name].add_metric([tenant], value)
        yield from families.values()
