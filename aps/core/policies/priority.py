"""Policies that order by a fixed key: arrival (fifo), bid (priority), bid plus aging (aging)."""
from __future__ import annotations

from typing import Mapping

from aps.core.errors import ConfigError
from aps.core.policies.base import KeyedHeap
from aps.core.request import Request


class Fifo(KeyedHeap):
    """Arrival order."""

    name = "fifo"

    def _entry(self, req: Request, seq: int) -> tuple:
        return (req.arrival, seq, req)


class StaticPriority(KeyedHeap):
    """Highest bid first, FIFO within a bid. Low bids can starve: that is the point of it."""

    name = "priority"

    def _entry(self, req: Request, seq: int) -> tuple:
        return (-req.bid, req.arrival, seq, req)


class AdaptivePriority(KeyedHeap):
    """The seeds' adaptive priority: effective priority `bid + weight_bonus + alpha * (now -
    arrival)`, in arrival order within a bid.

    The aging term grows equally for every waiting request, so ordering by it at any instant
    equals ordering by the time-invariant `bid + bonus - alpha * arrival`. A bid-1 request
    therefore overtakes a bid-10 one that arrived more than `9 / alpha` seconds later.
    """

    name = "aging"

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

    def sibling(self) -> "AdaptivePriority":
        return AdaptivePriority(self.alpha, self.weight_bonus, self._weights)

    def effective_priority(self, req: Request, now: float) -> float:
        return req.bid + self._bonus(req) + self.alpha * (now - req.arrival)
