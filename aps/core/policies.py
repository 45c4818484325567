"""Queue policies: the order in which waiting requests are admitted.

Every policy is a `Policy`: push, pop, peek, remove, len, plus `note_progress` (service a
tenant actually received, for fair share) and `rank` (a sort key, lower runs first, used to
pick a preemption victim among running requests).

Heap-based policies give each request a time-invariant key, so a heap stays exact without
re-heapifying. Removal is lazy: a removed entry is blanked and skipped when it surfaces.
"""
from __future__ import annotations

import heapq
import itertools
from typing import Mapping, Protocol

from aps.core.errors import ConfigError
from aps.core.request import Request


class Policy(Protocol):
    name: str

    def push(self, req: Request) -> None: ...
    def pop(self) -> Request: ...
    def peek(self) -> Request | None: ...
    def remove(self, req: Request) -> bool: ...
    def __len__(self) -> int: ...
    def note_progress(self, req: Request, prefill_tokens: int, decode_tokens: int) -> None: ...
    def rank(self, req: Request) -> tuple: ...
    def heads(self) -> list[Request]: ...


class _KeyedHeap:
    """A heap of requests ordered by `_key(req)`, ties broken by push order.

    Entries are flat tuples `(key..., seq, req)` so that comparisons stay in C. A removed
    request's seq goes into `_removed`; its entry is dropped when it surfaces.
    """

    name = "keyed"

    def __init__(self) -> None:
        self._heap: list[tuple] = []
        self._removed: set[int] = set()
        self._seq = itertools.count()
        self._len = 0

    def _entry(self, req: Request, seq: int) -> tuple:
        raise NotImplementedError

    def push(self, req: Request) -> None:
        seq = req.queue_seq = next(self._seq)
        heapq.heappush(self._heap, self._entry(req, seq))
        self._len += 1

    def pop(self) -> Request:
        self._skip_removed()
        if not self._heap:
            raise IndexError("pop from an empty queue")
        self._len -= 1
        req = heapq.heappop(self._heap)[-1]
        req.queue_seq = -1
        return req

    def _skip_removed(self) -> None:
        heap, removed = self._heap, self._removed
        while removed and heap and heap[0][-2] in removed:
            removed.discard(heapq.heappop(heap)[-2])

    def peek(self) -> Request | None:
        self._skip_removed()
        return self._heap[0][-1] if self._heap else None

    def remove(self, req: Request) -> bool:
        """Remove a request pushed here (False if it is not waiting in this queue)."""
        if req.queue_seq < 0:
            return False
        self._removed.add(req.queue_seq)
        req.queue_seq = -1
        self._len -= 1
        return True

    def __len__(self) -> int:
        return self._len

    def note_progress(self, req: Request, prefill_tokens: int, decode_tokens: int) -> None:
        pass

    def rank(self, req: Request) -> tuple:
        return self._entry(req, 0)[:-2]

    def heads(self) -> list[Request]:
        """Every request that could be popped next as service is recorded: keys are fixed."""
        head = self.peek()
        return [] if head is None else [head]


class Fifo(_KeyedHeap):
    """Arrival order."""

    name = "fifo"

    def _entry(self, req: Request, seq: int) -> tuple:
        return (req.arrival, seq, req)


class StaticPriority(_KeyedHeap):
    """Highest bid first, FIFO within a bid. Low bids can starve: that is the point of it."""

    name = "priority"

    def _entry(self, req: Request, seq: int) -> tuple:
        return (-req.bid, req.arrival, seq, req)


class AdaptivePriority(_KeyedHeap):
    """APS: effective priority `bid + weight_bonus + alpha * (now - arrival)`.

    The aging term grows equally for every waiting request, so ordering by it at any instant
    equals ordering by the time-invariant `bid + bonus - alpha * arrival`. A bid-1 request
    therefore overtakes a bid-10 one that arrived more than `9 / alpha` seconds later.
    """

    name = "aps"

    def __init__(self, alpha: float = 0.1, weight_bonus: float = 0.0,
                 weights: Mapping[str, float] | None = None):
        if not alpha >= 0:
            raise ConfigError(f"aps: alpha must be >= 0, got {alpha}")
        super().__init__()
        self.alpha = alpha
        self.weight_bonus = weight_bonus  # bid points per unit of tenant weight above 1
        self._weights = weights if weights is not None else {}

    def _bonus(self, req: Request) -> float:
        if not self.weight_bonus:
            return 0.0
        return self.weight_bonus * (self._weights.get(req.tenant_id, 1.0) - 1.0)

    def _entry(self, req: Request, seq: int) -> tuple:
        return (self.alpha * req.arrival - req.bid - self._bonus(req), req.arrival, seq, req)

    def effective_priority(self, req: Request, now: float) -> float:
        return req.bid + self._bonus(req) + self.alpha * (now - req.arrival)


class _Partitioned:
    """A queue made of sub-queues, one per partition key (a tenant, a priority class)."""

    def __init__(self) -> None:
        self._parts: dict = {}
        self._len = 0

    def _key_of(self, req: Request):
        raise NotImplementedError

    def remove(self, req: Request) -> bool:
        part = self._parts.get(self._key_of(req))
        if part is None or not part.remove(req):
            return False
        self._len -= 1
        return True

    def __len__(self) -> int:
        return self._len


class VirtualTokenCounter(_Partitioned):
    """VTC (Sheng et al., OSDI 2024): serve the backlogged tenant with the least weighted service.

    A tenant's counter grows by `(w_in * prompt + w_out * output tokens) / weight` as tokens are
    actually processed. A tenant that returns from idle is lifted to the smallest counter among
    backlogged tenants (or to the last served tenant's counter if none), so idling banks no credit.
    Within a tenant, requests run in arrival order.
    """

    name = "vtc"

    def __init__(self, weights: Mapping[str, float] | None = None, w_in: float = 1.0,
                 w_out: float = 2.0, counters: dict[str, float] | None = None):
        if w_in < 0 or w_out < 0 or w_in + w_out == 0:
            raise ConfigError(f"vtc: token weights must be >= 0 and not both 0: {w_in}, {w_out}")
        super().__init__()
        self._weights = weights if weights is not None else {}
        self.w_in, self.w_out = w_in, w_out
        self.counters: dict[str, float] = {} if counters is None else counters
        self.charged: dict[str, float] = {}  # weighted service given here (no lifts): shared
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

    def rank(self, req: Request) -> tuple:
        """The order `pop` serves in: counter, then the fixed tenant order, then arrival."""
        tenant = req.tenant_id
        return (self.counters.get(tenant, 0.0), self._order.get(tenant, len(self._order)),
                req.arrival)

    def heads(self) -> list[Request]:
        """Counters move with service, so any backlogged tenant's oldest request may be next."""
        return [q.peek() for q in self._queues.values() if q]


class ClassThenVtc(_Partitioned):
    """Strict priority classes (the request's bid, higher first); VTC fair share inside a class.

    Counters are shared across classes: service in any class counts against the tenant.
    """

    name = "class+vtc"

    def __init__(self, weights: Mapping[str, float] | None = None, w_in: float = 1.0,
                 w_out: float = 2.0):
        super().__init__()
        self.counters: dict[str, float] = {}
        self._make = lambda: VirtualTokenCounter(weights, w_in, w_out, self.counters)
        self._classes: dict[int, VirtualTokenCounter] = self._parts
        self._by_bid: list[VirtualTokenCounter] = []  # highest bid first
        self._any = self._make()  # does the counting for note_progress

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

    def note_progress(self, req: Request, prefill_tokens: int, decode_tokens: int) -> None:
        self._any.note_progress(req, prefill_tokens, decode_tokens)

    @property
    def charged(self) -> dict[str, float]:
        return self._any.charged

    def add_service(self, tenant: str, cost: float) -> None:
        self._any.add_service(tenant, cost)

    def rank(self, req: Request) -> tuple:
        cls = self._classes.get(req.bid)
        return (-req.bid, *(cls.rank(req) if cls else (self.counters.get(req.tenant_id, 0.0),)))

    def heads(self) -> list[Request]:
        cls = self._highest()
        return [] if cls is None else cls.heads()


class Banded:
    """A policy plus a spare-capacity band: requests whose tenant was over budget (demoted) wait
    in arrival order and are served only when the policy's own queue is empty. They rank after
    every other request, so priority preemption evicts them first."""

    def __init__(self, main: Policy):
        self.main, self.spare = main, Fifo()
        self.name = main.name

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

    def note_progress(self, req: Request, prefill_tokens: int, decode_tokens: int) -> None:
        self.main.note_progress(req, prefill_tokens, decode_tokens)  # demoted service counts too

    def add_service(self, tenant: str, cost: float) -> None:
        add_service(self.main, tenant, cost)

    @property
    def charged(self) -> dict[str, float]:
        return getattr(self.main, "charged", {})

    def rank(self, req: Request) -> tuple:
        return (1, *self.spare.rank(req)) if req.demoted else (0, *self.main.rank(req))

    def heads(self) -> list[Request]:
        return self.main.heads() if len(self.main) else self.spare.heads()


def add_service(policy: Policy, tenant: str, cost: float) -> None:
    """Count service a tenant received elsewhere (another gateway replica) in a fair-share
    policy's counter, in the policy's own units. A no-op for policies without counters."""
    add = getattr(policy, "add_service", None)
    if add is not None:
        add(tenant, cost)


POLICIES = ("fifo", "priority", "aps", "vtc", "class+vtc")


def make_policy(name: str, weights: Mapping[str, float] | None = None, **params) -> Policy:
    """Build a policy by name. `weights` maps tenant ids to fair-share weights (default 1);
    the scheduler passes its live mapping, so weight changes apply at once.

    Parameters: `aps` takes `alpha` and `weight_bonus` (bid points per unit of weight above 1);
    `vtc` and `class+vtc` take `w_in` and `w_out`.
    """
    try:
        if name == "fifo":
            return Fifo(**params)
        if name == "priority":
            return StaticPriority(**params)
        if name == "aps":
            return AdaptivePriority(weights=weights, **params)
        if name == "vtc":
            return VirtualTokenCounter(weights, **params)
        if name == "class+vtc":
            return ClassThenVtc(weights, **params)
    except TypeError as exc:
        raise ConfigError(f"policy {name!r}: bad parameters {sorted(params)}: {exc}") from None
    raise ConfigError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}")
