"""Fair share by virtual token counters (vtc), alone or inside strict priority classes."""
from __future__ import annotations

import heapq
from typing import Mapping

from aps.core.errors import ConfigError
from aps.core.policies.base import Partitioned
from aps.core.policies.priority import Fifo
from aps.core.request import Request


class VirtualTokenCounter(Partitioned):
    """VTC (Sheng et al., OSDI 2024): serve the backlogged tenant with the least weighted service.

    A tenant's counter grows by `(w_in * prompt + w_out * output tokens) / weight` as tokens are
    actually processed. A tenant that returns from idle is lifted to the smallest counter among
    backlogged tenants (or to the last served tenant's counter if none), so idling banks no credit.
    Within a tenant, requests run in arrival order.
    """

    name = "vtc"

    def __init__(self, weights: Mapping[str, float] | None = None, w_in: float = 1.0,
                 w_out: float = 2.0, counters: dict[str, float] | None = None,
                 charged: dict[str, float] | None = None):
        if w_in < 0 or w_out < 0 or w_in + w_out == 0:
            raise ConfigError(f"vtc: token weights must be >= 0 and not both 0: {w_in}, {w_out}")
        super().__init__()
        self._weights = weights if weights is not None else {}
        self.w_in, self.w_out = w_in, w_out
        self.counters: dict[str, float] = {} if counters is None else counters
        # weighted service given here (no lifts), what cluster mode shares
        self.charged: dict[str, float] = {} if charged is None else charged
        self._queues: dict[str, Fifo] = self._parts  # per tenant, by arrival
        self._tenants: list[tuple[float, int, str]] = []  # lazy heap of backlogged tenants
        self._in_heap: set[str] = set()
        # Equal counters are common (token counts are integers): break ties by a fixed order
        # per tenant, so the choice never depends on how often the heap was refreshed.
        self._order: dict[str, int] = {}
        self._len = 0
        self._last_served = 0.0

    def push(self, req: Request) -> None:
        tenant = req.tenant_id
        queue = self._queues.get(tenant)
        if queue is None:
            queue = self._queues[tenant] = Fifo()
            self._order[tenant] = len(self._order)
        if not queue:
            self._lift(tenant)
        queue.push(req)
        self._len += 1
        if tenant not in self._in_heap:
            self._in_heap.add(tenant)
            heapq.heappush(self._tenants, (self.counters[tenant], self._order[tenant], tenant))

    def _lift(self, tenant: str) -> None:
        floor = self._min_backlogged()
        if floor is None:
            floor = self._last_served
        self.counters[tenant] = max(self.counters.get(tenant, 0.0), floor)

    def _min_backlogged(self) -> float | None:
        top = self._top()
        return None if top is None else self.counters[top]

    def _top(self) -> str | None:
        """The backlogged tenant with the smallest counter, refreshing stale heap entries.

        Counters only grow, so an entry is never larger than its tenant's counter: when the
        top entry is current it is the true minimum.
        """
        heap = self._tenants
        while heap:
            counter, _, tenant = heap[0]
            if not self._queues[tenant]:
                heapq.heappop(heap)
                self._in_heap.discard(tenant)
            elif counter != self.counters[tenant]:
                heapq.heapreplace(heap, (self.counters[tenant], self._order[tenant], tenant))
            else:
                return tenant
        return None

    def pop(self) -> Request:
        tenant = self._top()
        if tenant is None:
            raise IndexError("pop from an empty queue")
        self._len -= 1
        self._last_served = self.counters[tenant]
        return self._queues[tenant].pop()

    def peek(self) -> Request | None:
        tenant = self._top()
        return None if tenant is None else self._queues[tenant].peek()

    def _key_of(self, req: Request) -> str:
        return req.tenant_id

    def note_progress(self, req: Request, prefill_tokens: int, decode_tokens: int) -> None:
        cost = (self.w_in * prefill_tokens + self.w_out * decode_tokens) / \
            self._weights.get(req.tenant_id, 1.0)
        tenant = req.tenant_id
        self.counters[tenant] = self.counters.get(tenant, 0.0) + cost
        self.charged[tenant] = self.charged.get(tenant, 0.0) + cost

    def add_service(self, tenant: str, cost: float) -> None:
        """Service given to `tenant` by other replicas (weighted, as in `charged`): it moves the
        counter like local service, but is not counted in `charged` (which is what this replica
        reports). Counters only grow, so the heap stays valid."""
        if cost > 0:
            self.counters[tenant] = self.counters.get(tenant, 0.0) + cost

    def sibling(self) -> "VirtualTokenCounter":
        """An empty queue sharing this one's counters: service in either counts in both."""
        return VirtualTokenCounter(self._weights, self.w_in, self.w_out, self.counters,
                                   self.charged)

    def rank(self, req: Request) -> tuple:
        """The order `pop` serves in: counter, then the fixed tenant order, then arrival."""
        tenant = req.tenant_id
        return (self.counters.get(tenant, 0.0), self._order.get(tenant, len(self._order)),
                req.arrival)

    def preempt_key(self, req: Request) -> tuple:
        """A request of the tenant furthest past its share gives memory back first, and of its
        requests the one with the least to recompute. (Its newest, as vLLM would pick, can be
        one that has decoded for minutes: on vtc-lmsys at 1.25x overload that choice
        recomputed 51% of the tokens served, against 42% under FIFO, and cost 2.4% of
        throughput; this one costs none. docs/SCHEDULING.md has the figures.)"""
        tenant = req.tenant_id
        return (self.counters.get(tenant, 0.0), self._order.get(tenant, len(self._order)),
                -req.num_computed_tokens)

    def heads(self) -> list[Request]:
        """Counters move with service, so any backlogged tenant's oldest request may be next."""
        return [q.peek() for q in self._queues.values() if q]


class ClassThenVtc(Partitioned):
    """Strict priority classes (the request's bid, higher first); VTC fair share inside a class.

    Counters are shared across classes: service in any class counts against the tenant.
    """

    name = "class+vtc"

    def __init__(self, weights: Mapping[str, float] | None = None, w_in: float = 1.0,
                 w_out: float = 2.0, counters: dict[str, float] | None = None,
                 charged: dict[str, float] | None = None):
        super().__init__()
        self.counters: dict[str, float] = {} if counters is None else counters
        self._args = (weights, w_in, w_out)
        self._classes: dict[int, VirtualTokenCounter] = self._parts
        self._by_bid: list[VirtualTokenCounter] = []  # highest bid first
        # does the counting for note_progress; the classes share its counters and charges
        self._any = VirtualTokenCounter(weights, w_in, w_out, self.counters, charged)
        self._make = self._any.sibling
        self.note_progress = self._any.note_progress  # bound once: per request per iteration

    def sibling(self) -> "ClassThenVtc":
        return ClassThenVtc(*self._args, self.counters, self._any.charged)

    def _highest(self) -> VirtualTokenCounter | None:
        for cls in self._by_bid:
            if cls:
                return cls
        return None

    def push(self, req: Request) -> None:
        cls = self._classes.get(req.bid)
        if cls is None:
            cls = self._classes[req.bid] = self._make()
            self._by_bid = [self._classes[b] for b in sorted(self._classes, reverse=True)]
        cls.push(req)
        self._len += 1

    def pop(self) -> Request:
        cls = self._highest()
        if cls is None:
            raise IndexError("pop from an empty queue")
        self._len -= 1
        return cls.pop()

    def peek(self) -> Request | None:
        cls = self._highest()
        return None if cls is None else cls.peek()

    def _key_of(self, req: Request) -> int:
        return req.bid

    @property
    def charged(self) -> dict[str, float]:
        return self._any.charged

    def add_service(self, tenant: str, cost: float) -> None:
        self._any.add_service(tenant, cost)

    def rank(self, req: Request) -> tuple:
        cls = self._classes.get(req.bid)
        return (-req.bid, *(cls.rank(req) if cls else (self.counters.get(req.tenant_id, 0.0),)))

    def preempt_key(self, req: Request) -> tuple:
        return (-req.bid, *self._classes.get(req.bid, self._any).preempt_key(req))

    def heads(self) -> list[Request]:
        cls = self._highest()
        return [] if cls is None else cls.heads()
