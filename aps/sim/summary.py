"""The summary of a simulation, from plain data: the recorder's columns and the run's totals.

Metric definitions are in docs/simulation.md: TTFT is arrival to first token, TPOT the mean
time per output token after the first, utilization busy time over GPU time, Jain's index over
service relative to entitlement up to the last arrival, the service gap VTC's measure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aps.core.stats import fairness_index, max_service_gap
from aps.perf import cost_per_1m_tokens
from aps.sim.recorder import STATUS_CODES, Recorder

FINISHED, REJECTED, CANCELLED, EXPIRED, PENDING = (
    STATUS_CODES[s] for s in ("finished", "rejected", "cancelled", "expired", "pending"))


@dataclass(frozen=True, slots=True)
class RunTotals:
    """What the event loop hands the summary besides the recorder."""

    makespan_s: float  # first arrival to the last event
    wall_s: float
    replicas: int  # every replica the run had
    replica_seconds: float | None  # autoscaled runs: the GPU time held; None: replicas x makespan
    busy_s: float
    flops: float
    iterations: int
    scheduled: int  # requests summed over iterations
    service: dict[str, int]  # tokens computed per tenant, at the end
    price_per_hour: float
    peak_flops: float
    slo_ttft_s: float
    slo_tpot_s: float
    autoscale: dict | None  # the scaler's own summary


def pcts(x: np.ndarray) -> dict[str, float]:
    x = x[~np.isnan(x)]
    if not len(x):
        return {"p50": math.nan, "p90": math.nan, "p99": math.nan, "mean": math.nan}
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(x.mean())}


def summarize(rec: Recorder, run: RunTotals) -> dict:
    w, c, makespan = rec.w, rec.cols, run.makespan_s
    done = rec.status == FINISHED
    prompt_done = int(w.prompt_tokens[done].sum())
    output_done = int(rec.output[done].sum())
    tokens = prompt_done + output_done
    gpu_s = makespan * run.replicas
    price = run.price_per_hour * run.replicas
    if run.replica_seconds is not None:  # replicas came and went: pay for the time each was held
        gpu_s = run.replica_seconds
        price = run.price_per_hour * gpu_s / makespan if makespan else 0.0
    out = {
        "requests": len(w),
        "finished": int(done.sum()),
        "rejected": int((rec.status == REJECTED).sum()),
        "cancelled": int((rec.status == CANCELLED).sum()),
        "expired": int((rec.status == EXPIRED).sum()),
        "unfinished": int((rec.status == PENDING).sum()),
        "simulated_s": makespan,
        "throughput_tokens_per_s": tokens / makespan if makespan else 0.0,
        "output_tokens_per_s": output_done / makespan if makespan else 0.0,
        "requests_per_s": int(done.sum()) / makespan if makespan else 0.0,
        "ttft_s": pcts(c["ttft_s"]), "tpot_s": pcts(c["tpot_s"]),
        "e2e_s": pcts(c["e2e_s"]), "queue_s": pcts(c["queue_s"]),
        "preemptions": int(rec.preemptions.sum()),
        "gpu_utilization": run.busy_s / gpu_s if gpu_s else 0.0,
        "mfu": run.flops / (run.peak_flops * gpu_s) if gpu_s else 0.0,
        "iterations": run.iterations,
        "mean_batch_size": run.scheduled / max(1, run.iterations),
        "cost_per_1m_tokens_usd": cost_per_1m_tokens(price, tokens, makespan),
        "cost_per_1m_output_tokens_usd": cost_per_1m_tokens(price, output_done, makespan),
        "wall_s": run.wall_s,
        "simulated_requests_per_wall_s": len(w) / run.wall_s if run.wall_s else math.inf,
    }
    good = done & (c["ttft_s"] <= run.slo_ttft_s) & ~(c["tpot_s"] > run.slo_tpot_s)
    out["slo"] = {"ttft_s": run.slo_ttft_s, "tpot_s": run.slo_tpot_s}
    out["slo_attainment"] = float(good.sum() / len(w)) if len(w) else math.nan
    out["goodput_requests_per_s"] = float(good.sum() / makespan) if makespan else 0.0
    out["per_tenant"], out["jain_fairness"] = _per_tenant(rec, run.service)
    out["max_service_gap_tokens"] = _service_gap(rec)
    if run.autoscale is not None:
        out["autoscale"] = run.autoscale
    return out


def _per_tenant(rec: Recorder, service: dict[str, int]) -> tuple[dict, float]:
    w, c = rec.w, rec.cols
    offered = rec.service_at_last_arrival or service
    demand, weight, per = {}, {}, {}
    for k, tenant in enumerate(w.tenants):
        mine = w.tenant == k
        name = tenant.tenant_id
        demand[name] = float(w.prompt_tokens[mine].sum() + w.output_tokens[mine].sum())
        weight[name] = tenant.weight
        done = mine & (rec.status == FINISHED)
        wait = c["queue_s"][done]
        per[name] = {
            "requests": int(mine.sum()), "finished": int(done.sum()),
            "rejected": int((mine & (rec.status == REJECTED)).sum()),
            "expired": int((mine & (rec.status == EXPIRED)).sum()),
            "ttft_s": pcts(c["ttft_s"][mine]), "tpot_s": pcts(c["tpot_s"][mine]),
            "e2e_s": pcts(c["e2e_s"][mine]),
            "service_tokens": service.get(name, 0),
            "max_wait_s": float(wait.max()) if len(wait) else math.nan,
        }
    asked = {t: d for t, d in demand.items() if d > 0}
    got = {t: float(offered.get(t, 0)) for t in asked}
    jain = fairness_index(got, asked, weight) if asked and sum(got.values()) else math.nan
    return per, jain


def _service_gap(rec: Recorder) -> float:
    """VTC's measure over the timeline samples, per unit of weight (nan without samples)."""
    tl = rec.timeline
    if not tl["t"]:
        return math.nan
    weight = {t.tenant_id: t.weight for t in rec.w.tenants}
    per_weight = [{t: n / weight.get(t, 1.0) for t, n in s.items()} for s in tl["service"]]
    return max_service_gap(zip(per_weight, tl["backlogged"]))
