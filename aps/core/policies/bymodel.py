"""One queue per model, for a gateway in front of several pools of servers.

Each model's requests wait in their own queue, ordered by the same policy; fair-share
counters are shared (`Policy.sibling`), so a tenant's service on one model counts on every
model. The upstream admission takes from each model's queue while that model's servers have
room: a full pool holds back only its own requests. Anything that asks the queue as a whole
(peek, pop) gets the best-ranked head over all models.
"""
from __future__ import annotations

from aps.core.policies.base import Policy, add_service
from aps.core.request import Request


class ByModel:
    def __init__(self, first: Policy):
        self._first = first  # the prototype every model's queue is a sibling of
        # the queues share their counters, so any of them counts service for all
        self.note_progress = first.note_progress
        self.name = first.name
        self.parts: dict[str, Policy] = {}
        self._len = 0

    def part(self, model: str) -> Policy:
        """The queue of one model's requests."""
        queue = self.parts.get(model)
        if queue is None:
            queue = self.parts[model] = self._first if not self.parts else self._first.sibling()
        return queue

    def push(self, req: Request) -> None:
        self.part(req.model).push(req)
        self._len += 1

    def peek(self) -> Request | None:
        heads = [head for q in self.parts.values() if (head := q.peek()) is not None]
        return min(heads, key=self.rank, default=None)

    def pop(self) -> Request:
        head = self.peek()
        if head is None:
            raise IndexError("pop from an empty queue")
        self._len -= 1
        return self.parts[head.model].pop()

    def remove(self, req: Request) -> bool:
        queue = self.parts.get(req.model)
        if queue is None or not queue.remove(req):
            return False
        self._len -= 1
        return True

    def __len__(self) -> int:
        return self._len

    def add_service(self, tenant: str, cost: float) -> None:
        add_service(self._first, tenant, cost)  # the counters are shared: once is enough

    @property
    def charged(self) -> dict[str, float]:
        return getattr(self._first, "charged", {})

    @property
    def counters(self) -> dict[str, float]:
        """The fair-share counters every model's queue shares (none for other policies)."""
        return getattr(self._first, "counters", {})

    def rank(self, req: Request) -> tuple:
        return self.part(req.model).rank(req)

    def preempt_key(self, req: Request) -> tuple:
        return self.part(req.model).preempt_key(req)

    def heads(self) -> list[Request]:
        return [head for q in self.parts.values() for head in q.heads()]

    def sibling(self) -> "ByModel":
        return ByModel(self._first.sibling())
