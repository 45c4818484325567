"""What a simulation measured: per request, per tenant and overall (defined in the README)."""
from __future__ import annotations

import csv
import math
from typing import TYPE_CHECKING

import numpy as np

from aps.core import Request, StepPlan
from aps.core.stats import fairness_index, max_service_gap
from aps.perf import cost_per_1m_tokens
from aps.sim.workload import Workload

if TYPE_CHECKING:
    from aps.sim.simulator import Simulation

STATUS_CODES = {"pending": 0, "finished": 1, "rejected": 2, "cancelled": 3, "failed": 4}
_NAMES = {v: k for k, v in STATUS_CODES.items()}
_COLUMNS = ("queue_s", "ttft_s", "tpot_s", "e2e_s", "start_s", "end_s")


def _service(replicas) -> dict[str, int]:
    """Tokens computed per tenant so far, over all replicas."""
    total: dict[str, int] = {}
    for r in replicas:
        for tenant, tokens in r.sched.service_tokens.items():
            total[tenant] = total.get(tenant, 0) + tokens
    return total


def _pcts(x: np.ndarray) -> dict[str, float]:
    x = x[~np.isnan(x)]
    if not len(x):
        return {"p50": math.nan, "p90": math.nan, "p99": math.nan, "mean": math.nan}
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(x.mean())}


class Recorder:
    """Per-request outcomes in columns indexed like the workload (a request's id is its row)."""

    def __init__(self, workload: Workload):
        n = len(workload)
        self.w = workload
        self.cols = {name: np.full(n, np.nan) for name in _COLUMNS}
        self.status = np.zeros(n, np.int8)
        self.replica = np.zeros(n, np.int16)
        self.preemptions = np.zeros(n, np.int32)
        self.output = np.zeros(n, np.int32)

        self.service_at_last_arrival: dict[str, int] | None = None
        self.timeline: dict[str, list] = {"t": [], "waiting": [], "running": [], "throttled": [],
                                          "service": [], "backlogged": []}

    def sample(self, t: float, replicas) -> None:
        """Queue depth and cumulative service per tenant at simulated time `t`."""
        tl = self.timeline
        tl["t"].append(t)
        tl["waiting"].append(sum(r.sched.num_waiting for r in replicas))
        tl["running"].append(sum(r.sched.num_running for r in replicas))
        tl["throttled"].append(sum(r.sched.num_throttled for r in replicas))
        tl["service"].append(_service(replicas))
        tl["backlogged"].append(sorted({t for r in replicas for t in r.sched.num_waiting_by_tenant}))

    def ttft_by_tenant(self) -> dict[str, list[float]]:
        w, ttft = self.w, self.cols["ttft_s"]
        return {t.tenant_id: ttft[(w.tenant == k) & ~np.isnan(ttft)].tolist()
                for k, t in enumerate(w.tenants)}

    def routed(self, i: int, replica: int) -> None:
        self.replica[i] = replica

    def plan(self, plan: StepPlan) -> None:
        for req in plan.finished:
            self._ended(req, 1)
        for req in plan.rejected:
            self._ended(req, 2)
        for req in plan.cancelled:
            self._ended(req, 3)
        for req in plan.failed:
            self._ended(req, 4)

    def _ended(self, req: Request, code: int) -> None:
        i = int(req.request_id)
        self.status[i] = code
        if code != 1:
            return
        c = self.cols
        c["queue_s"][i] = req.first_scheduled - req.arrival
        c["ttft_s"][i] = req.first_token - req.arrival
        c["e2e_s"][i] = req.finished - req.arrival
        c["start_s"][i] = req.first_scheduled
        c["end_s"][i] = req.finished
        if req.num_output_tokens > 1:
            c["tpot_s"][i] = (req.finished - req.first_token) / (req.num_output_tokens - 1)
        self.preemptions[i] = req.num_preemptions
        self.output[i] = req.num_output_tokens

    def summary(self, sim: "Simulation", wall_s: float) -> dict:
        w, c, perf = self.w, self.cols, sim.perf
        done = self.status == 1
        makespan = max(sim.now - float(w.arrival_s[0]), 1e-12) if len(w) else 0.0
        prompt_done = int(w.prompt_tokens[done].sum())
        output_done = int(self.output[done].sum())
        tokens = prompt_done + output_done
        busy = sum(r.busy_s for r in sim.replicas)
        gpu_s = makespan * len(sim.replicas)
        price = perf.price_per_hour * len(sim.replicas)
        if sim.scaler is not None:  # replicas came and went: pay for the time each was held
            gpu_s = sim.scaler.replica_seconds(sim.now)
            price = perf.price_per_hour * gpu_s / makespan if makespan else 0.0
        out = {
            "requests": len(w),
            "finished": int(done.sum()),
            "rejected": int((self.status == 2).sum()),
            "cancelled": int((self.status == 3).sum()),
            "unfinished": int((self.status == 0).sum()),
            "simulated_s": makespan,
            "throughput_tokens_per_s": tokens / makespan if makespan else 0.0,
            "output_tokens_per_s": output_done / makespan if makespan else 0.0,
            "requests_per_s": int(done.sum()) / makespan if makespan else 0.0,
            "ttft_s": _pcts(c["ttft_s"]), "tpot_s": _pcts(c["tpot_s"]),
            "e2e_s": _pcts(c["e2e_s"]), "queue_s": _pcts(c["queue_s"]),
            "preemptions": int(self.preemptions.sum()),
            "gpu_utilization": busy / gpu_s if gpu_s else 0.0,
            "mfu": sum(r.flops for r in sim.replicas) / (perf.peak_flops * gpu_s) if gpu_s else 0.0,
            "iterations": sum(r.iterations for r in sim.replicas),
            "mean_batch_size": (sum(r.scheduled for r in sim.replicas)
                                / max(1, sum(r.iterations for r in sim.replicas))),
            "cost_per_1m_tokens_usd": cost_per_1m_tokens(price, tokens, makespan),
            "cost_per_1m_output_tokens_usd": cost_per_1m_tokens(price, output_done, makespan),
            "wall_s": wall_s,
            "simulated_requests_per_wall_s": len(w) / wall_s if wall_s else math.inf,
        }
        good = done & (c["ttft_s"] <= sim.cfg.slo_ttft_s) & ~(c["tpot_s"] > sim.cfg.slo_tpot_s)
        out["slo"] = {"ttft_s": sim.cfg.slo_ttft_s, "tpot_s": sim.cfg.slo_tpot_s}
        out["slo_attainment"] = float(good.sum() / len(w)) if len(w) else math.nan
        out["goodput_requests_per_s"] = float(good.sum() / makespan) if makespan else 0.0
        out["per_tenant"], out["jain_fairness"] = self._per_tenant(sim)
        out["max_service_gap_tokens"] = self._service_gap()
        if sim.scaler is not None:
            out["autoscale"] = sim.scaler.summary(sim.now, makespan)
        return out

    def note_last_arrival(self, replicas) -> None:
        """Service so far, when the last request arrives: fairness is judged over the time
        tenants were still asking. (Served to completion, every tenant ends with all it asked
        for, and a whole-run index would call any policy fair.)"""
        self.service_at_last_arrival = _service(replicas)

    def _per_tenant(self, sim: "Simulation") -> tuple[dict, float]:
        w, c = self.w, self.cols
        service = _service(sim.replicas)
        offered = self.service_at_last_arrival or service
        demand, weight, per = {}, {}, {}
        for k, tenant in enumerate(w.tenants):
            mine = w.tenant == k
            name = tenant.tenant_id
            demand[name] = float(w.prompt_tokens[mine].sum() + w.output_tokens[mine].sum())
            weight[name] = tenant.weight
            done = mine & (self.status == 1)
            wait = c["queue_s"][done]
            per[name] = {
                "requests": int(mine.sum()), "finished": int(done.sum()),
                "rejected": int((mine & (self.status == 2)).sum()),
                "ttft_s": _pcts(c["ttft_s"][mine]), "tpot_s": _pcts(c["tpot_s"][mine]),
                "e2e_s": _pcts(c["e2e_s"][mine]),
                "service_tokens": service.get(name, 0),
                "max_wait_s": float(wait.max()) if len(wait) else math.nan,
            }
        asked = {t: d for t, d in demand.items() if d > 0}
        got = {t: float(offered.get(t, 0)) for t in asked}
        jain = fairness_index(got, asked, weight) if asked and sum(got.values()) else math.nan
        return per, jain

    def _service_gap(self) -> float:
        """VTC's measure over the timeline samples, per unit of weight (nan without samples)."""
        tl = self.timeline
        if not tl["t"]:
            return math.nan
        weight = {t.tenant_id: t.weight for t in self.w.tenants}
        per_weight = [{t: n / weight.get(t, 1.0) for t, n in s.items()} for s in tl["service"]]
        return max_service_gap(zip(per_weight, tl["backlogged"]))

    def write_csv(self, path: str) -> None:
        w, c = self.w, self.cols
        with open(path, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["request", "tenant", "arrival_s", "prompt_tokens", "output_tokens", "bid",
                          "status", "replica", "preemptions", *_COLUMNS])
            tenant_ids = [t.tenant_id for t in w.tenants]
            for i in range(len(w)):
                out.writerow([i, tenant_ids[w.tenant[i]], f"{w.arrival_s[i]:.6f}",
                              int(w.prompt_tokens[i]), int(w.output_tokens[i]), int(w.bid[i]),
                              _NAMES[int(self.status[i])], int(self.replica[i]),
                              int(self.preemptions[i]),
                              *("" if math.isnan(c[k][i]) else f"{c[k][i]:.6f}" for k in _COLUMNS)])
