"""The interface every batch mode implements, and what it may use of the Scheduler."""
from __future__ import annotations

from typing import Protocol

from aps.core.batch import BatchConfig, StepPlan, StopReason
from aps.core.kv import BlockManager
from aps.core.policies import Policy
from aps.core.request import Request


class SchedulerState(Protocol):
    """The part of the Scheduler an admission strategy reads and moves requests through."""

    batch: BatchConfig
    policy: Policy  # the waiting queue
    kv: BlockManager
    running: list[Request]
    service_tokens: dict[str, int]  # tokens computed per tenant

    def get(self, request_id: str) -> Request:
        """The live request with this id (UnknownRequest if none)."""

    def enqueue(self, req: Request, now: float) -> None:
        """Put a request (back) in the waiting queue."""

    def start(self, req: Request, now: float) -> None:
        """A request taken off the queue starts running (its KV is the strategy's to allocate)."""

    def preempt(self, req: Request, plan: StepPlan) -> int:
        """Recompute preemption: back to the queue; returns its tokens in `plan`."""


class Admission:
    """Forms each step's batch for one batch mode.

    `schedule` fills `plan.scheduled` (running requests first, then admissions in policy order)
    and says why admission stopped. The hooks let a mode watch arrivals and the queue.
    """

    def __init__(self, sched: SchedulerState):
        self.sched = sched

    def check_fits(self, req: Request) -> None:
        """Raise NeverFits if this mode can never run `req` (the KV check is the scheduler's)."""

    def note_arrival(self, now: float) -> None:
        """A valid request arrived (before any limit is applied)."""

    def note_queued(self, now: float) -> None:
        """A request joined the waiting queue."""

    def schedule(self, plan: StepPlan, now: float) -> StopReason:
        raise NotImplementedError
