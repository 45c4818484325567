"""Per-tenant admission limits: token bucket, request rate, concurrency, and the THROTTLED queue.

A request costs `prompt_tokens + max_tokens` tokens up front; what it did not generate is
refunded when it ends. A tenant over a limit either has its request rejected (with the time
until it would fit) or delayed: held here, outside the run queue, in arrival order, until
every limit allows it.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from aps.core.bucket import TokenBucket
from aps.core.errors import NeverFits
from aps.core.request import Request
from aps.core.tenant import Tenant


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""  # which limit said no: "tokens", "requests", "concurrency"
    retry_after: float | None = None  # seconds until it would pass; None: unknown (a slot frees)


_OK = Verdict(True)


@dataclass(slots=True)
class TenantState:
    tenant: Tenant
    tokens: TokenBucket | None = None
    requests: TokenBucket | None = None
    num_in_flight: int = 0  # admitted and not yet ended (waiting or running)
    throttled: deque[Request] = field(default_factory=deque)

    @classmethod
    def of(cls, tenant: Tenant) -> "TenantState":
        t = tenant
        return cls(
            tenant=t,
            tokens=TokenBucket(t.token_rate, t.token_burst) if t.token_rate else None,
            requests=TokenBucket(t.request_rate, t.request_burst) if t.request_rate else None,
        )

    def check_fits(self, req: Request) -> None:
        cost = req.prompt_tokens + req.max_tokens
        if self.tokens is not None and cost > self.tokens.burst:
            raise NeverFits(
                f"request {req.request_id} costs {cost} tokens (prompt {req.prompt_tokens} + "
                f"max_tokens {req.max_tokens}) but tenant {self.tenant.tenant_id!r} has a burst "
                f"of {self.tokens.burst:g}: lower max_tokens or raise the burst")

    def verdict(self, req: Request, now: float) -> Verdict:
        t = self.tenant
        if t.max_concurrent is not None and self.num_in_flight >= t.max_concurrent:
            return Verdict(False, "concurrency", None)
        if self.requests is not None and not self.requests.can_take(1, now):
            return Verdict(False, "requests", self.requests.time_until(1, now))
        cost = req.prompt_tokens + req.max_tokens
        if self.tokens is not None and not self.tokens.can_take(cost, now):
            return Verdict(False, "tokens", self.tokens.time_until(cost, now))
        return _OK

    def admit(self, req: Request, now: float) -> None:
        """Charge the request to the tenant (call only after an ok verdict)."""
        if self.requests is not None:
            self.requests.take(1, now)
        cost = req.prompt_tokens + req.max_tokens
        if self.tokens is not None:
            self.tokens.take(cost, now)
            req.reserved_tokens = cost
        self.num_in_flight += 1

    def release(self, req: Request, now: float) -> None:
        """The request ended: free its slot and refund what it did not use."""
        self.num_in_flight -= 1
        if self.tokens is not None and req.reserved_tokens:
            used = req.num_output_tokens + (req.prompt_tokens if req.first_scheduled is not None else 0)
            self.tokens.give_back(max(0, req.reserved_tokens - used), now)
            req.reserved_tokens = 0

    def next_release(self, now: float) -> float:
        """When the head of the THROTTLED queue could pass, if nothing else changes."""
        if not self.throttled:
            return math.inf
        v = self.verdict(self.throttled[0], now)
        if v.ok:
            return now
        return math.inf if v.retry_after is None else now + v.retry_after
