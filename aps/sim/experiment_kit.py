"""What the shipped experiments share: the Experiment record, workload builders, and helpers
that turn run records into table rows and figure panels (plain data, see `aps.sim.report`).

Numbers in an experiment's findings are computed from its runs, never written by hand.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from aps.core import Tenant
from aps.sim.generators import Gamma, LogNormal, OnOff, Poisson
from aps.sim.workload import Workload, merge

if TYPE_CHECKING:  # experiments.py imports this module's builders at run time
    from aps.sim.experiments import RunSpec


@dataclass(frozen=True)
class Experiment:
    title: str
    description: str
    grid: Callable[[bool], list["RunSpec"]]
    analyze: Callable[[list[dict]], tuple[list, list, str]]


# -- workload builders (seeded; run inside the worker processes) ---------------------------------

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


BUILDERS = {"two-bids": two_bids, "patterned": patterned, "burst50": burst50}


# -- shared analysis helpers ---------------------------------------------------------------------

def _tenant_means(record: dict, key: str = "ttft_s") -> dict[str, float]:
    return {t: v[key]["mean"] for t, v in record["summary"]["per_tenant"].items()}


def light_heavy(record: dict) -> tuple[float, float]:
    """Mean TTFT of light tenants (fewer requests than the mean tenant) and of the others."""
    per = record["summary"]["per_tenant"]
    mean_count = np.mean([v["requests"] for v in per.values()])
    light = [v["ttft_s"]["mean"] for v in per.values() if 0 < v["requests"] < mean_count]
    heavy = [v["ttft_s"]["mean"] for v in per.values() if v["requests"] >= mean_count]
    mean = lambda xs: float(np.nanmean(xs)) if xs else float("nan")
    return mean(light), mean(heavy)


def cdf_panel(record: dict, title: str, limit: int = 12) -> dict:
    """TTFT CDFs of the `limit` tenants with the most requests and the fewest."""
    per = record["summary"]["per_tenant"]
    names = sorted(per, key=lambda t: -per[t]["requests"])
    if len(names) > limit:
        names = names[: limit // 2] + names[-(limit // 2):]
    return {"title": title, "series": [
        {"label": f"{t} ({per[t]['requests']})", "x": record["ttft_by_tenant"][t]}
        for t in names if record["ttft_by_tenant"].get(t)]}


def share_panel(record: dict, title: str, window: int = 10) -> dict:
    """Each tenant's share of the tokens served over a sliding window of samples."""
    tl = record["timeline"]
    t, service = tl["t"], tl["service"]
    tenants = sorted({k for s in service for k in s})
    total = np.array([sum(s.values()) for s in service], dtype=float)
    lagged = lambda x: x - np.concatenate([np.zeros(min(window, len(x))), x[:-window]])
    served = lagged(total)
    series = []
    for name in tenants:
        got = lagged(np.array([s.get(name, 0) for s in service], dtype=float))
        share = np.where(served > 0, got / np.maximum(served, 1), np.nan)
        series.append({"label": name, "x": t, "y": share.tolist()})
    return {"title": title, "series": series}


def queue_panel(record: dict, title: str) -> dict:
    tl = record["timeline"]
    return {"title": title, "series": [{"label": "waiting", "x": tl["t"], "y": tl["waiting"]},
                                       {"label": "running", "x": tl["t"], "y": tl["running"]}]}


def summary_row(record: dict, *labels: str) -> list:
    s = record["summary"]
    return [*(record["labels"].get(k, "") for k in labels), s["throughput_tokens_per_s"],
            s["ttft_s"]["p50"], s["ttft_s"]["p99"], s["tpot_s"]["p50"], s["gpu_utilization"],
            s["mfu"], s["cost_per_1m_tokens_usd"], s["jain_fairness"]]


SUMMARY_COLUMNS = ["tokens/s", "TTFT p50 s", "TTFT p99 s", "TPOT p50 s", "GPU busy", "MFU",
                   "$ per 1M tokens", "Jain"]


def by(records: list[dict], **labels) -> list[dict]:
    return [r for r in records if all(r["labels"].get(k) == v for k, v in labels.items())]
