"""What a simulation observed: each request's outcome in columns indexed like the workload,
and, when asked for, a timeline of queue depth and service per tenant."""
from __future__ import annotations

import csv
import math

import numpy as np

from aps.core import Request
from aps.sim.replica import Replica
from aps.workload import Workload

STATUS_CODES = {"pending": 0, "finished": 1, "rejected": 2, "cancelled": 3, "failed": 4,
                "expired": 5}
_NAMES = {v: k for k, v in STATUS_CODES.items()}
_COLUMNS = ("queue_s", "ttft_s", "tpot_s", "e2e_s", "start_s", "end_s")


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
        tl["service"].append(self.service(replicas))
        tl["backlogged"].append(sorted({t for r in replicas for t in r.sched.num_waiting_by_tenant}))

    @staticmethod
    def service(replicas: list[Replica]) -> dict[str, int]:
        """Tokens computed per tenant so far, over all replicas."""
        total: dict[str, int] = {}
        for r in replicas:
            for tenant, tokens in r.sched.service_tokens.items():
                total[tenant] = total.get(tenant, 0) + tokens
        return total

    def ttft_by_tenant(self) -> dict[str, list[float]]:
        w, ttft = self.w, self.cols["ttft_s"]
        return {t.tenant_id: ttft[(w.tenant == k) & ~np.isnan(ttft)].tolist()
                for k, t in enumerate(w.tenants)}

    def routed(self, i: int, replica: int) -> None:
        self.replica[i] = replica

    def ended(self, requests: list[Request]) -> None:
        for req in requests:
            self._ended(req, STATUS_CODES[req.status.value])

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

    def note_last_arrival(self, replicas) -> None:
        """Service so far, when the last request arrives: fairness is judged over the time
        tenants were still asking. (Served to completion, every tenant ends with all it asked
        for, and a whole-run index would call any policy fair.)"""
        self.service_at_last_arrival = self.service(replicas)

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
