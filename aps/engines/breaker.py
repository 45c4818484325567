"""A circuit breaker per upstream replica: stop sending to a replica that keeps failing, and try
it again after a cool-down.

    CLOSED --(N failures in a row)--> OPEN --(cooldown_s)--> HALF_OPEN --(success)--> CLOSED
                                       ^                         |
                                       +-------(failure)---------+

Half-open lets one trial request through at a time: a replica that is still broken costs one
request's retry, not a burst of them. Time is an argument, as in the core.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    @property
    def gauge(self) -> int:
        """For Prometheus: 0 closed, 1 open, 2 half-open."""
        return {"closed": 0, "open": 1, "half_open": 2}[self.value]


@dataclass(slots=True)
class CircuitBreaker:
    failures: int = 3  # consecutive failures that open it
    cooldown_s: float = 10.0
    num_failures: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = False

    def state(self, now: float) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if now - self.opened_at < self.cooldown_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allows(self, now: float) -> bool:
        """Whether a request may be sent now (call `on_send` when one is)."""
        state = self.state(now)
        return state is BreakerState.CLOSED or (state is BreakerState.HALF_OPEN
                                                and not self.trial_in_flight)

    def on_send(self, now: float) -> None:
        if self.state(now) is BreakerState.HALF_OPEN:
            self.trial_in_flight = True

    def on_success(self) -> None:
        self.num_failures, self.opened_at, self.trial_in_flight = 0, None, False

    def on_failure(self, now: float) -> None:
        self.num_failures += 1
        self.trial_in_flight = False
        if self.opened_at is not None or self.num_failures >= self.failures:
            self.opened_at = now  # (re)open: a failed trial starts a new cool-down

    def on_abandon(self) -> None:
        """A request ended without saying anything about the replica (the client went away)."""
        self.trial_in_flight = False
