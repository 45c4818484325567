"""A minimal driver for core tests: steps a Scheduler with a fixed iteration time."""
from __future__ import annotations

from dataclasses import dataclass, field

from aps.core import Request, Scheduler, Status


@dataclass
class Trace:
    plans: list = field(default_factory=list)
    ended: list[Request] = field(default_factory=list)  # in the order the scheduler ended them

    def with_status(self, status: Status) -> list[Request]:
        return [r for r in self.ended if r.status is status]

    @property
    def finished(self) -> list[Request]:
        return self.with_status(Status.FINISHED)


def run(sched: Scheduler, arrivals: list[Request], dt: float = 0.01, until: float = 1e9,
        max_steps: int = 100_000) -> Trace:
    """Submit `arrivals` (by arrival time) and step until every request has ended."""
    pending = sorted(arrivals, key=lambda r: r.arrival)
    trace, now, i = Trace(), 0.0, 0
    for _ in range(max_steps):
        while i < len(pending) and pending[i].arrival <= now:
            sched.submit(pending[i], pending[i].arrival)
            i += 1
        plan = sched.step(now)
        trace.plans.append(plan)
        if plan:
            sched.complete_step(plan, now + dt)
            now += dt
        trace.ended += sched.pop_ended()
        if not plan:
            if i < len(pending) or sched.requests:
                nxt = [pending[i].arrival] if i < len(pending) else []
                if plan.next_wakeup is not None:
                    nxt.append(plan.next_wakeup)
                if not nxt:
                    raise AssertionError("scheduler idle with live requests and nothing to wait for")
                now = max(now, min(nxt))
            else:
                return trace
        if now > until:
            break
    raise AssertionError("did not drain")
