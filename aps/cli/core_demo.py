"""`aps demo`: the core on its own — two tenants, one policy, what each was served."""
from __future__ import annotations

from aps.core import BatchConfig, Request, Scheduler, Tenant
from aps.core.stats import summarize


def run(policy: str = "aps", per_tenant: int = 50, dt: float = 0.02) -> dict[str, dict]:
    """The seeds' stress test in miniature: tenant_a bids 10, tenant_b bids 1, all at once.

    Iterations take a fixed `dt` seconds; the simulator (`aps simulate`) replaces this with a
    model of a real GPU.
    """
    sched = Scheduler([Tenant("tenant_a", bid=10), Tenant("tenant_b", bid=1)], policy=policy,
                      batch=BatchConfig(max_num_seqs=16), alpha=0.5)
    reqs = [Request(f"{t}-{i}", t, 128, 64, 0.0) for i in range(per_tenant)
            for t in ("tenant_a", "tenant_b")]
    for r in reqs:
        sched.submit(r, 0.0)
    now = 0.0
    while sched.requests:
        plan = sched.step(now)
        now += dt
        sched.complete_step(plan, now)
    out = {}
    for tenant in ("tenant_a", "tenant_b"):
        mine = [r for r in reqs if r.tenant_id == tenant]
        out[tenant] = {"requests": len(mine), "bid": mine[0].bid,
                       "ttft_s": summarize(r.ttft for r in mine),
                       "max_wait_s": max(r.queue_time for r in mine),
                       "tokens": sum(r.prompt_tokens + r.num_output_tokens for r in mine)}
    return out
