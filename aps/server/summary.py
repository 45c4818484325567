"""The seeds' JSON summary at `/metrics?format=json`."""
from __future__ import annotations

import time

from aps.perf import cost_per_1m_tokens
from aps.server.metrics import live_jain


def summary(gw, tenants: bool = True) -> dict:
    """`tenants`: whether the caller may see per-tenant figures."""
    sched, elapsed = gw.sched, max(time.time() - gw.started, 1e-9)
    tokens = sum(sched.service_tokens.values())
    out = {
        "uptime_s": elapsed,
        "throughput_tokens_per_s": tokens / elapsed,
        # wall seconds the backend had work: the simulated GPU's iterations, or some upstream
        # request in flight
        "gpu_utilization": min(1.0, gw.backend.busy_s / elapsed),
        "gpu_busy_s": gw.backend.busy_s,
        # null until a token is served (JSON has no infinity)
        "cost_per_1m_tokens_usd": (cost_per_1m_tokens(gw.perf.price_per_hour, tokens, elapsed)
                                   if tokens else None),
        "jain_fairness": live_jain(sched),
        "running": sched.num_running, "waiting": sched.num_waiting,
        "throttled": sched.num_throttled, "kv_cache_usage": sched.kv.usage,
        "held": gw.held(),
    }
    if tenants:
        out["per_tenant"] = {t: {"service_tokens": sched.service_tokens.get(t, 0),
                                 "in_flight": s.num_in_flight, "throttled": len(s.throttled)}
                             for t, s in sched.tenants.items()}
    return out
