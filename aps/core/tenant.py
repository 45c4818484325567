"""Tenant records: who may use the GPU, how much, and what happens when they ask for more."""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from aps.core.errors import ConfigError
from aps.core.periods import PERIODS

# What a tenant's fields may hold, wherever they come from (the admin API, the CLI, the
# configuration, the database): amounts (weight, rates, bursts) finite and in AMOUNT_RANGE, so
# they survive JSON and the scheduler's arithmetic; counts far beyond any real limit but within
# a database's integers.
AMOUNT_RANGE = (1e-6, 1e12)
BID_RANGE = (1, 10)
MAX_COUNT = 2**31 - 1


class OverLimit(str, Enum):
    """What the scheduler does with a request its tenant cannot afford right now."""

    REJECT = "reject"  # refuse at once, saying when enough budget will be back
    DELAY = "delay"  # hold it (THROTTLED, outside the run queue) until the budget refills
    DEMOTE = "demote"  # queue it in the spare-capacity band: it runs only when nothing else waits


@dataclass(slots=True)
class Tenant:
    """A tenant's configuration. `None` limits mean unlimited."""

    tenant_id: str
    weight: float = 1.0  # fair-share weight (vtc) and aging bonus (aps)
    bid: int = 5  # default priority bid, 1..10
    token_rate: float | None = None  # tokens/s refilled into the bucket
    token_burst: float | None = None  # bucket size; defaults to one second of rate
    request_rate: float | None = None  # requests/s
    request_burst: float | None = None
    max_concurrent: int | None = None  # requests queued or running at once
    over_limit: OverLimit = OverLimit.REJECT
    max_bid: int | None = None  # the highest bid a client may ask for (None: `bid`)
    max_queue_s: float | None = None  # the longest a request may wait to start
    budget_usd: float | None = None  # dollars it may spend per `budget_period` (None: no limit)
    budget_period: str = "month"  # day, week, month (UTC calendar periods) or total
    over_budget: OverLimit = OverLimit.REJECT  # reject, or demote to the spare-capacity band

    def __post_init__(self) -> None:
        self.over_limit = OverLimit(self.over_limit)
        self.over_budget = OverLimit(self.over_budget)
        self.check()
        if self.token_rate is not None and self.token_burst is None:
            self.token_burst = self.token_rate
        if self.request_rate is not None and self.request_burst is None:
            self.request_burst = max(1.0, self.request_rate)

    def check(self) -> None:
        """Raise ConfigError unless every field can be used, stored and read back as it is."""
        if not isinstance(self.tenant_id, str) or not self.tenant_id:
            raise ConfigError("tenant_id must be a non-empty string")
        low, high = AMOUNT_RANGE
        for name in ("weight", "token_rate", "token_burst", "request_rate", "request_burst"):
            value = getattr(self, name)
            if value is None and name != "weight":
                continue  # no limit
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or not low <= value <= high:
                self._refuse(name, f"a number from {low:g} to {high:g}", value)
        for name, (low, high) in (("bid", BID_RANGE), ("max_bid", BID_RANGE),
                                  ("max_concurrent", (1, MAX_COUNT))):
            value = getattr(self, name)
            if value is None and name != "bid":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                self._refuse(name, f"a whole number from {low} to {high}", value)
        if self.max_bid is not None and self.max_bid < self.bid:
            self._refuse("max_bid", f"at least the tenant's bid ({self.bid})", self.max_bid)
        for name, low in (("max_queue_s", AMOUNT_RANGE[0]), ("budget_usd", 0.0)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or not low <= value <= high):
                self._refuse(name, f"a number from {low:g} to {high:g}", value)
        if self.budget_period not in PERIODS:
            self._refuse("budget_period", f"one of {', '.join(PERIODS)}", self.budget_period)
        if OverLimit(self.over_budget) is OverLimit.DELAY:
            self._refuse("over_budget", "reject or demote (a budget refills only at the "
                         "period's end)", "delay")

    @property
    def entitled_bid(self) -> int:
        """The highest bid its requests get, whatever a client asks for."""
        return self.bid if self.max_bid is None else self.max_bid

    def _refuse(self, name: str, what: str, value) -> None:
        raise ConfigError(f"tenant {self.tenant_id!r}: {name} must be {what}, got {value!r}")
