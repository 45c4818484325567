"""Token buckets: a rate, a burst, and the time until a given amount is available."""
from __future__ import annotations

import math
from dataclasses import dataclass


# Refills are computed in floating point: at the instant `time_until` names, the level may fall
# short of the amount by a rounding error. Amounts within this relative tolerance count as there,
# or a caller waking at that instant would be told to wait 0 more seconds, forever.
_TOLERANCE = 1e-9


def _short(level: float, amount: float) -> bool:
    return level < amount - _TOLERANCE * max(1.0, amount)


@dataclass(slots=True)
class TokenBucket:
    """Holds up to `burst` tokens, refilled at `rate` per second. Starts full.

    Time only moves forward: an older `now` than the last one seen is treated as the last one,
    so a caller with a slightly stale clock can never mint tokens.
    """

    rate: float
    burst: float
    level: float = math.nan
    updated: float = -math.inf

    def __post_init__(self) -> None:
        if math.isnan(self.level):
            self.level = self.burst

    def refill(self, now: float) -> float:
        if now > self.updated:
            if self.updated != -math.inf:
                self.level = min(self.burst, self.level + (now - self.updated) * self.rate)
            self.updated = now
        return self.level

    def can_take(self, amount: float, now: float) -> bool:
        return not _short(self.refill(now), amount)

    def take(self, amount: float, now: float) -> bool:
        """Take `amount` if it is there; all or nothing."""
        if _short(self.refill(now), amount):
            return False
        self.level = max(0.0, self.level - amount)
        return True

    def give_back(self, amount: float, now: float) -> None:
        """Refund unused tokens; never above `burst`."""
        self.refill(now)
        self.level = min(self.burst, self.level + amount)

    def time_until(self, amount: float, now: float) -> float:
        """Seconds until `amount` tokens are available (0 if now, inf if never)."""
        if amount > self.burst:
            return math.inf
        level = self.refill(now)
        return 0.0 if not _short(level, amount) else (amount - level) / self.rate
