"""Workloads built in code for the experiments (seeded; built inside the worker processes)."""
from __future__ import annotations

import numpy as np

from aps.core import Tenant
from aps.workload.generators import Gamma, LogNormal, OnOff, Poisson
from aps.workload.workload import Workload, merge


def _tenant_traffic(rng, tenant: Tenant, process, duration_s: float, prompt=256, output=128):
    arrivals = process.sample(rng, duration_s=duration_s)
    n = len(arrivals)
    return Workload.build(tenant.tenant_id, [tenant], arrivals, np.zeros(n, np.int32),
                          LogNormal(prompt, 1.0, 4096).sample(rng, n),
                          LogNormal(output, 1.0, 2048).sample(rng, n))


def two_bids(rng, rate: float, duration_s: float) -> Workload:
    """Sustained load from a paying tenant (bid 10) and a free one (bid 1), half each."""
    hi, lo = Tenant("bid-10", bid=10), Tenant("bid-1", bid=1)
    return merge([_tenant_traffic(rng, t, Poisson(rate / 2), duration_s) for t in (hi, lo)],
                 name="two-bids")


def bid_burst(rng, rate: float, duration_s: float, trickle: float = 0.5,
              light_bid10: bool = True) -> Workload:
    """A paying tenant (bid 10) bursting at `rate` for the first half of the run; a free one
    (bid 1) and, with `light_bid10`, a second paying one trickling at `trickle` requests/s
    throughout. When the burst alone exceeds capacity, static priority holds every bid-1
    request back until the burst's backlog has drained, and arrival order within a bid holds
    the light bid-10 tenant behind it."""
    burst, light, free = Tenant("bid-10", bid=10), Tenant("bid-10-light", bid=10), \
        Tenant("bid-1", bid=1)
    parts = [_tenant_traffic(rng, burst, Poisson(rate), duration_s / 2),
             _tenant_traffic(rng, free, Poisson(trickle), duration_s)]
    if light_bid10:
        parts.append(_tenant_traffic(rng, light, Poisson(trickle), duration_s))
    return merge(parts, name="bid-burst")


def patterned(rng, rate: float, duration_s: float) -> Workload:
    """Regular arrivals (gamma, CV 0.25) from four tenants: easy to batch."""
    ts = [Tenant(f"regular-{i}") for i in range(4)]
    return merge([_tenant_traffic(rng, t, Gamma(rate / 4, 0.25), duration_s) for t in ts],
                 name="patterned")


def burst50(rng, rate: float, duration_s: float) -> Workload:
    """The seeds' 50-tenant burst: 50 tenants, each silent most of the time, then bursting."""
    ts = [Tenant(f"t{i:02d}") for i in range(50)]
    parts = []
    for t in ts:
        on, off = rng.uniform(0.5, 2.0), rng.uniform(5.0, 20.0)
        parts.append(_tenant_traffic(rng, t, OnOff(rate / 50 * (on + off) / on, on, off),
                                     duration_s, prompt=128, output=64))
    return merge(parts, name="burst50")


BUILDERS = {"two-bids": two_bids, "bid-burst": bid_burst, "patterned": patterned, "burst50": burst50}
