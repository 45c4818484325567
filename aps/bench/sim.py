"""`aps bench sim`: simulated requests per wall-second, fast and step mode, and peak memory.

Workload: the Azure 2023 conversation trace tiled to 1,000,000 requests (fast) and 20,000
(step); one GPU, continuous batching. Llama-2-7B on an A100-80GB cannot keep up with the trace
at its own rate (its queue grows for the whole run: batches of ~90); at 70% of that rate it
serves it (batches of ~24, TTFT p99 ~3 s), and Llama-3-8B on an H100 serves the full rate
(batches of ~11). Served load is what the simulator mostly answers questions about, and where
fast mode gains most: batches decode undisturbed between arrivals. `quick` runs a twentieth of
the requests. Each run happens in a fresh process so that its peak memory is its own.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import resource
import time

from aps.core import BatchConfig
from aps.perf import make_perf_model
from aps.workload.scenarios import load_scenario
from aps.sim.simulator import SimConfig, Simulation

# (mode, requests, model, gpu, share of the trace's rate, load)
RUNS = (("fast", 1_000_000, "llama-2-7b", "a100-80gb", 1.0, "overloaded"),
        ("step", 20_000, "llama-2-7b", "a100-80gb", 1.0, "overloaded"),
        ("fast", 1_000_000, "llama-2-7b", "a100-80gb", 0.7, "served"),
        ("step", 20_000, "llama-2-7b", "a100-80gb", 0.7, "served"),
        ("fast", 1_000_000, "llama-3-8b", "h100-sxm", 1.0, "served"),
        ("step", 20_000, "llama-3-8b", "h100-sxm", 1.0, "served"))
QUICK = 0.05  # `--quick`: this share of the requests (under a minute in all)


def _one(mode: str, requests: int, model: str, gpu: str, rate: float, load: str, policy: str,
         queue) -> None:
    t0 = time.perf_counter()
    workload = load_scenario("azure-conv", requests=requests).workload
    if rate != 1.0:
        workload = workload.scale_rate(rate)
    perf = make_perf_model(model=model, gpu=gpu)
    cfg = SimConfig(policy=policy, fast=mode == "fast",
                    batch=BatchConfig(kv_capacity_tokens=int(perf.kv_capacity_tokens)))
    load_s = time.perf_counter() - t0
    result = Simulation(workload, perf, cfg).run()
    queue.put({
        "mode": mode, "requests": requests, "policy": policy, "model": perf.name,
        "rate": rate, "load": load, "mean_batch": round(result["mean_batch_size"], 1),
        "wall_s": round(result["wall_s"], 2), "load_s": round(load_s, 2),
        "requests_per_s": round(requests / result["wall_s"]),
        "wall_s_per_1m": round(result["wall_s"] / requests * 1e6, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "iterations": result["iterations"], "simulated_s": round(result["simulated_s"]),
        "ttft_p50_s": round(result["ttft_s"]["p50"], 4),
    })


def run(policy: str = "aps", scale: float = 1.0) -> list[dict]:
    ctx = mp.get_context("spawn")
    out = []
    for mode, n, model, gpu, rate, load in RUNS:
        queue = ctx.Queue()
        n = max(1000, int(n * scale))
        proc = ctx.Process(target=_one, args=(mode, n, model, gpu, rate, load, policy, queue))
        proc.start()
        out.append(queue.get())
        proc.join()
    return out


if __name__ == "__main__":
    print(json.dumps(run()))
