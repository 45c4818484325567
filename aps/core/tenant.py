"""Tenant records: who may use the GPU, how much, and what happens when they ask for more."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from aps.core.errors import ConfigError


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

    def __post_init__(self) -> None:
        self.over_limit = OverLimit(self.over_limit)
        if not self.tenant_id:
            raise ConfigError("tenant_id must be a non-empty string")
        if not self.weight > 0:
            raise ConfigError(f"tenant {self.tenant_id!r}: weight must be > 0, got {self.weight}")
        if not 1 <= self.bid <= 10:
            raise ConfigError(f"tenant {self.tenant_id!r}: bid must be in 1..10, got {self.bid}")
        for name in ("token_rate", "token_burst", "request_rate", "request_burst"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"tenant {self.tenant_id!r}: {name} must be > 0, got {value}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ConfigError(f"tenant {self.tenant_id!r}: max_concurrent must be >= 1")
        if self.token_rate is not None and self.token_burst is None:
            self.token_burst = self.token_rate
        if self.request_rate is not None and self.request_burst is None:
            self.request_burst = max(1.0, self.request_rate)
