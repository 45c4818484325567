"""`aps bench core`: how fast the scheduling core decides.

Figures: microseconds per push+pop at a given queue depth, per policy; and one continuous
batching iteration (decide with `step`, account with `complete_step`) with 256 running requests.
"""
from __future__ import annotations

import gc
import random
import time

from aps.core import BatchConfig, Request, Scheduler, Tenant, make_policy
from aps.core.policies import POLICIES

DEPTHS = (1_000, 100_000, 1_000_000)
NUM_TENANTS = 100


def _requests(n: int, rng: random.Random, start: int = 0) -> list[Request]:
    return [Request(f"r{start + i}", f"t{rng.randrange(NUM_TENANTS)}", 100, 100,
                    (start + i) * 1e-3, rng.randint(1, 10)) for i in range(n)]


def push_pop_us(policy_name: str, depth: int, pool: list[Request], ops: int = 20_000) -> float:
    """Mean microseconds for one push plus one pop with `depth` requests waiting."""
    policy = make_policy(policy_name)
    for req in pool[:depth]:
        policy.push(req)
    fresh = pool[depth:depth + ops]
    push, pop = policy.push, policy.pop
    gc.disable()
    try:
        t0 = time.perf_counter()
        for req in fresh:
            push(req)
            pop()
        elapsed = time.perf_counter() - t0
    finally:
        gc.enable()
    return elapsed / len(fresh) * 1e6


def step_us(running: int = 256, iterations: int = 2_000) -> dict[str, float]:
    """Microseconds per decode iteration with `running` requests and a backlog waiting."""
    tenants = [Tenant(f"t{i}") for i in range(NUM_TENANTS)]
    cfg = BatchConfig(max_num_seqs=running, max_num_batched_tokens=8192,
                      kv_capacity_tokens=4_000_000)
    sched = Scheduler(tenants, policy="vtc", batch=cfg)
    rng = random.Random(1)
    for i in range(running + 1_000):
        sched.submit(Request(f"r{i}", f"t{rng.randrange(NUM_TENANTS)}", 64, 100_000, 0.0), 0.0)
    now = 0.0
    while sched.num_running < running or any(r.is_prefilling for r in sched.running):
        plan = sched.step(now)
        now += 0.01
        sched.complete_step(plan, now)
    decide = account = 0.0
    for _ in range(iterations):
        t0 = time.perf_counter()
        plan = sched.step(now)
        t1 = time.perf_counter()
        now += 0.01
        sched.complete_step(plan, now)
        t2 = time.perf_counter()
        decide += t1 - t0
        account += t2 - t1
    return {"step_us": decide / iterations * 1e6, "complete_step_us": account / iterations * 1e6,
            "cycle_us": (decide + account) / iterations * 1e6}


def run(depths=DEPTHS) -> dict:
    rng = random.Random(0)
    pool = _requests(max(depths) + 20_000, rng)
    table = {name: {str(d): round(push_pop_us(name, d, pool), 3) for d in depths}
             for name in POLICIES}
    cycle = step_us()
    return {"push_pop_us": table, "step_us_256": round(cycle["cycle_us"], 1),
            "step_detail_us_256": {k: round(v, 1) for k, v in cycle.items()}}
