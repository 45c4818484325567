"""One simulated replica: a core Scheduler and the accounting of the GPU it runs on."""
from __future__ import annotations

import math
from dataclasses import dataclass

from aps.core import Scheduler, StepPlan
from aps.perf import BatchShape, decode_run_time


@dataclass(slots=True, eq=False)
class Replica:
    index: int
    sched: Scheduler
    plan: StepPlan | None = None  # the iteration in flight
    shape: BatchShape | None = None  # its shape (the first iteration's, for a decode run)
    jump: int = 0  # decode iterations the plan stands for (fast mode), 0: one plain step
    # fast mode: decode iterations the batch is known to run unchanged after the plan's, and
    # whether a request was submitted since the plan was made (then the next step may differ)
    left: int = 0
    submitted: bool = False
    kick_at: float = math.inf  # a pending wake-up
    outstanding_tokens: int = 0
    busy_s: float = 0.0
    flops: float = 0.0
    iterations: int = 0
    scheduled: int = 0  # requests summed over iterations, for the mean batch size
    draining: bool = False  # takes no new requests; removed once empty (autoscaling)


def decode_run(perf, shape: BatchShape, k: int) -> tuple[float, float]:
    """Seconds and FLOPs of `k` decode iterations starting from `shape`, each adding one
    token to every request's context, in closed form (both are linear in the context)."""
    d, c0 = shape.num_decode, shape.decode_ctx_sum
    return decode_run_time(perf.decode_terms(d), c0, d, k), decode_run_flops(perf, shape, k)


def decode_run_flops(perf, shape: BatchShape, k: int) -> float:
    """The FLOPs of `decode_run`."""
    d, c0 = shape.num_decode, shape.decode_ctx_sum
    f0 = perf.iteration_flops(shape)
    f1 = perf.iteration_flops(BatchShape(0, 0, 0, d, c0 + d)) - f0
    return k * f0 + f1 * k * (k - 1) / 2
