"""A minimal driver for core tests: steps a Scheduler with a fixed iteration time."""
from __future__ import annotations

from aps.core import Request, Scheduler


def run(sched: Scheduler, arrivals: list[Request], dt: float = 0.01, until: float = 1e9,
        max_steps: int = 100_000) -> list:
    """Submit `arrivals` (by arrival time) and step until every request has ended.

    Returns every plan made, in order.
    """
    pending = sorted(arrivals, key=lambda r: r.arrival)
    plans, now, i = [], 0.0, 0
    for _ in range(max_steps):
        while i < len(pending) and pending[i].arrival <= now:
            sched.submit(pending[i], pending[i].arrival)
            i += 1
        plan = sched.step(now)
        plans.append(plan)
        if plan:
            sched.complete_step(plan, now + dt)
            now += dt
        elif i < len(pending) or sched.requests:
            nxt = [pending[i].arrival] if i < len(pending) else []
            if plan.next_wakeup is not None:
                nxt.append(plan.next_wakeup)
            if not nxt:
                raise AssertionError("scheduler idle with live requests and nothing to wait for")
            now = max(now, min(nxt))
        else:
            plans.append(sched.step(now))  # collect what ended in the last iteration
            return plans
        if now > until:
            break
    raise AssertionError("did not drain")


def ended(plans) -> dict[str, list]:
    out = {"finished": [], "rejected": [], "cancelled": []}
    for p in plans:
        out["finished"] += p.finished
        out["rejected"] += p.rejected
        out["cancelled"] += p.cancelled
    return out
