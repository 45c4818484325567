"""The spare-capacity band: where requests of tenants over their budget wait (`over_limit:
demote`)."""
from __future__ import annotations

from aps.core.policies.base import Policy, add_service
from aps.core.policies.priority import Fifo
from aps.core.request import Request


class Banded:
    """A policy plus a spare-capacity band: requests whose tenant was over budget (demoted) wait
    in arrival order and are served only when the policy's own queue is empty. They rank after
    every other request, so priority preemption evicts them first."""

    def __init__(self, main: Policy):
        self.main, self.spare = main, Fifo()
        self.name = main.name
        # demoted service counts too; bound once: it runs per request per iteration
        self.note_progress = main.note_progress

    def push(self, req: Request) -> None:
        (self.spare if req.demoted else self.main).push(req)

    def pop(self) -> Request:
        return self.main.pop() if len(self.main) else self.spare.pop()

    def peek(self) -> Request | None:
        head = self.main.peek()
        return head if head is not None else self.spare.peek()

    def remove(self, req: Request) -> bool:
        return (self.spare if req.demoted else self.main).remove(req)

    def __len__(self) -> int:
        return len(self.main) + len(self.spare)

    def add_service(self, tenant: str, cost: float) -> None:
        add_service(self.main, tenant, cost)

    @property
    def charged(self) -> dict[str, float]:
        return getattr(self.main, "charged", {})

    @property
    def counters(self) -> dict[str, float]:
        return getattr(self.main, "counters", {})

    def rank(self, req: Request) -> tuple:
        return (1, *self.spare.rank(req)) if req.demoted else (0, *self.main.rank(req))

    def preempt_key(self, req: Request) -> tuple:
        if req.demoted:
            return (1, *self.spare.preempt_key(req))
        return (0, *self.main.preempt_key(req))

    def sibling(self) -> "Banded":
        return Banded(self.main.sibling())

    def heads(self) -> list[Request]:
        return self.main.heads() if len(self.main) else self.spare.heads()
