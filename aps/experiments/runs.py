"""One run of an experiment's grid (`RunSpec` -> a plain-data record), and the grid run in
parallel worker processes."""
from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np

from aps.core import BatchConfig
from aps.perf import make_perf_model
from aps.workload.scenarios import load_scenario
from aps.experiments.builders import BUILDERS
from aps.sim.simulator import SimConfig, Simulation
from aps.workload.workload import Workload

TIMELINE_POINTS = 120
MAX_CDF_POINTS = 400  # per tenant: enough for a smooth curve, small enough for the JSON


@dataclass(slots=True)
class RunSpec:
    """One simulation of the grid. `labels` name it in tables (policy, load, option, ...)."""

    id: str
    labels: dict
    scenario: str | None = None  # a named scenario or file, or None with `build`
    build: str | None = None  # a workload builder from aps.experiments.builders
    build_args: dict = field(default_factory=dict)
    requests: int | None = None
    rate_scale: float = 1.0
    policy: str = "aps"
    policy_params: dict = field(default_factory=dict)
    model: str = "llama-3-8b"
    gpu: str = "a100-80gb"
    tp: int = 1
    replicas: int = 1
    batch: dict = field(default_factory=dict)  # BatchConfig fields
    seed: int = 0
    # None: a fixed count. A mapping: follow the scenario's autoscale block with these
    # settings replaced (e.g. {"startup_s": 10}); `replicas` is then the starting count.
    autoscale: dict | None = None
    router: str = "round-robin"
    batch_log: bool = False  # micro-batching: keep every batch as formed (`record["batches"]`)


def workload_of(spec: RunSpec) -> Workload:
    if spec.build is not None:
        w = BUILDERS[spec.build](np.random.default_rng(spec.seed), **spec.build_args)
    else:
        w = load_scenario(spec.scenario, seed=spec.seed, requests=spec.requests).workload
    return w.scale_rate(spec.rate_scale) if spec.rate_scale != 1.0 else w


def run_one(spec: RunSpec) -> dict:
    """Simulate one grid point; returns a plain-data record (picklable, JSON-able)."""
    perf = make_perf_model(model=spec.model, gpu=spec.gpu, tp=spec.tp)
    batch = {"kv_capacity_tokens": int(perf.kv_capacity_tokens), **spec.batch}
    scale = None
    if spec.autoscale is not None:
        scale = load_scenario(spec.scenario, seed=spec.seed, requests=spec.requests).autoscale
        if scale is None:
            raise ValueError(f"run {spec.id}: scenario {spec.scenario!r} has no autoscale block")
        scale = replace(scale, **spec.autoscale)
    cfg = SimConfig(policy=spec.policy, policy_params=dict(spec.policy_params),
                    batch=BatchConfig(**batch), replicas=spec.replicas, router=spec.router,
                    timeline_points=TIMELINE_POINTS, autoscale=scale)
    sim = Simulation(workload_of(spec), perf, cfg)
    logs = []
    if spec.batch_log:
        for replica in sim.replicas:
            replica.sched.admission.batch_log = logs
    summary = sim.run()
    ttft = {t: _thin(sorted(v)) for t, v in sim.rec.ttft_by_tenant().items()}
    return {"id": spec.id, "labels": spec.labels, "spec": asdict(spec), "summary": summary,
            "timeline": sim.rec.timeline, "ttft_by_tenant": ttft,
            "weights": {t.tenant_id: t.weight for t in sim.w.tenants},
            **({"batches": [asdict(b) for b in logs]} if spec.batch_log else {})}


def _thin(xs: list[float]) -> list[float]:
    if len(xs) <= MAX_CDF_POINTS:
        return xs
    idx = np.linspace(0, len(xs) - 1, MAX_CDF_POINTS).round().astype(int)
    return [xs[i] for i in idx]


def run_grid(specs: list[RunSpec], workers: int | None = None,
             progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Run every spec, in parallel processes when there is more than one; order kept."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(specs)))
    records: list[dict] = []
    if workers == 1:
        for spec in specs:
            records.append(run_one(spec))
            if progress:
                progress(len(records), len(specs))
        return records
    with mp.get_context("spawn").Pool(workers) as pool:
        for record in pool.imap(run_one, specs):
            records.append(record)
            if progress:
                progress(len(records), len(specs))
    return records
