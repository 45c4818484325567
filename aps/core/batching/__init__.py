"""Batch formation: one admission strategy per batch mode, behind one small interface.

    continuous  decode the running requests and admit waiting ones every iteration (vLLM)
    micro       gather for a window, admit what fits, run the batch to completion (the seeds)
    upstream    admit while upstream servers have seats and tokens; they run the iterations
"""
from aps.core.batching.base import Admission, SchedulerState
from aps.core.batching.continuous import ContinuousBatching
from aps.core.batching.micro import MicroBatching
from aps.core.batching.upstream import UpstreamAdmission

STRATEGIES: dict[str, type[Admission]] = {
    "continuous": ContinuousBatching, "micro": MicroBatching, "upstream": UpstreamAdmission}


def make_admission(sched: SchedulerState) -> Admission:
    return STRATEGIES[sched.batch.mode](sched)


__all__ = ["Admission", "ContinuousBatching", "MicroBatching", "SchedulerState", "STRATEGIES",
           "UpstreamAdmission", "make_admission"]
