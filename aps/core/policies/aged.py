"""`aps`, the default policy: entitled bids kept apart by linear aging, weighted fair share
within a bid.

Requests are grouped by bid (after the tenant's `max_bid` and the key's cap lowered it). The
group served next is the one whose oldest waiting request has the highest aged priority,
`bid + alpha * (now - arrival)`; as the aging term grows alike for every request, that is the
group with the largest `bid - alpha * oldest arrival`, an order that changes only when requests
come and go, never with the clock. Inside the group the backlogged tenant with the least
weighted service goes first (VTC), so a tenant flooding at a bid cannot starve a light one at
the same bid. The bound this gives, and its proof, are in docs/SCHEDULING.md.
"""
from __future__ import annotations

import heapq
import itertools
from typing import Mapping

from aps.core.errors import ConfigError
from aps.core.policies.fair import ClassThenVtc
from aps.core.request import Request


class AgedFairShare(ClassThenVtc):
    name = "aps"

    def __init__(self, weights: Mapping[str, float] | None = None, alpha: float = 0.1,
                 w_in: float = 1.0, w_out: float = 2.0, counters: dict[str, float] | None = None,
                 charged: dict[str, float] | None = None):
        if not alpha >= 0:
            raise ConfigError(f"aps: alpha must be >= 0, got {alpha}")
        super().__init__(weights, w_in, w_out, counters, charged)
        self.alpha = alpha
        # per bid: the arrivals waiting there, oldest first. A request that left is dropped
        # lazily, but never left on top: the top is always a waiting request.
        self._arrivals: dict[int, list[tuple[float, int, Request]]] = {}
        self._waiting: set[int] = set()  # id() of every request waiting here
        # per bid with requests waiting: `bid - alpha * oldest arrival`, the group's aged
        # priority less the aging every waiting request shares; it changes only on push/pop
        self._keys: dict[int, float] = {}
        # per bid: the arrival of the request last admitted there, the group's place in `rank`
        # while nothing waits at that bid
        self._last_admitted: dict[int, float] = {}
        self._seq = itertools.count()

    def sibling(self) -> "AgedFairShare":
        weights, w_in, w_out = self._args
        return AgedFairShare(weights, self.alpha, w_in, w_out, self.counters, self._any.charged)

    def push(self, req: Request) -> None:
        super().push(req)
        heap = self._arrivals.setdefault(req.bid, [])
        heapq.heappush(heap, (req.arrival, next(self._seq), req))
        self._waiting.add(id(req))
        self._keys[req.bid] = req.bid - self.alpha * heap[0][0]

    def pop(self) -> Request:
        req = super().pop()
        self._left(req)
        self._last_admitted[req.bid] = req.arrival
        return req

    def remove(self, req: Request) -> bool:
        if not super().remove(req):
            return False
        self._left(req)
        return True

    def _left(self, req: Request) -> None:
        self._waiting.discard(id(req))
        heap = self._arrivals[req.bid]
        while heap and id(heap[0][2]) not in self._waiting:
            heapq.heappop(heap)
        if heap:
            self._keys[req.bid] = req.bid - self.alpha * heap[0][0]
        else:
            del self._keys[req.bid]

    def oldest(self, bid: int) -> float | None:
        """The arrival of the oldest request waiting at `bid`."""
        heap = self._arrivals.get(bid)
        return heap[0][0] if heap else None

    def _highest(self):
        """The bid group whose oldest request has the highest aged priority (ties: the
        higher bid)."""
        keys = self._keys
        if not keys:
            return None
        return self._classes[max(keys, key=lambda bid: (keys[bid], bid))]

    def _place(self, req: Request) -> tuple:
        """Its group's place. Every request at a bid shares it (the group's oldest waiting
        arrival, else the last admitted one's), so between equal bids the fair share alone
        decides, as it does for `vtc`."""
        since = self.oldest(req.bid)
        if since is None:
            since = self._last_admitted.get(req.bid, req.arrival)
        return (self.alpha * since - req.bid, -req.bid)

    def rank(self, req: Request) -> tuple:
        """Its group's place, then its place inside the group."""
        group = self._classes.get(req.bid)
        inside = group.rank(req) if group is not None else (self.counters.get(req.tenant_id, 0.0),)
        return (*self._place(req), *inside)

    def preempt_key(self, req: Request) -> tuple:
        return (*self._place(req), *self._classes.get(req.bid, self._any).preempt_key(req))

    def effective_priority(self, req: Request, now: float) -> float:
        return req.bid + self.alpha * (now - req.arrival)
