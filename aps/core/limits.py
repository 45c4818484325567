"""Per-tenant admission limits: token bucket, request rate, concurrency, the spend budget, and
the THROTTLED queue.

A request costs `prompt_tokens + max_tokens` tokens up front; what it did not generate is
refunded when it ends. Its largest possible cost in dollars is reserved from the tenant's budget
the same way and settled at its real cost. A tenant over a limit either has its request rejected
(with the time until it would fit) or delayed: held here, outside the run queue, in arrival
order, until every limit allows it.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from aps.core.bucket import TokenBucket
from aps.core.errors import NeverFits
from aps.core.periods import period_bounds
from aps.core.request import Request
from aps.core.tenant import OverLimit, Tenant

# (period, now) -> the period's start and end, in the scheduler's time
Bounds = Callable[[str, float], tuple[float, float]]
_CENT_FRACTION = 1e-9  # spend within this of the limit counts as under it (float rounding)


@dataclass(slots=True)
class Budget:
    """Dollars a tenant may spend per period. Admission reserves a request's largest possible
    cost; its end settles the real one. A new period starts from nothing spent."""

    limit_usd: float
    period: str
    bounds: Bounds = period_bounds
    spent_usd: float = 0.0  # settled in the current period
    reserved_usd: float = 0.0  # held by requests in flight
    start: float = -math.inf  # the current period, in the scheduler's time
    end: float = -math.inf

    def roll(self, now: float) -> None:
        if now >= self.end:
            if self.end != -math.inf:  # a period ended: the next starts from nothing
                self.spent_usd = 0.0
            self.start, self.end = self.bounds(self.period, now)

    def can_reserve(self, cost: float, now: float) -> bool:
        self.roll(now)
        return self.spent_usd + self.reserved_usd + cost <= self.limit_usd * (1 + _CENT_FRACTION)

    def remaining(self, now: float) -> float:
        self.roll(now)
        return max(0.0, self.limit_usd - self.spent_usd - self.reserved_usd)

    def settle(self, reserved: float, actual: float, now: float) -> None:
        self.roll(now)
        self.reserved_usd = max(0.0, self.reserved_usd - reserved)
        self.spent_usd += actual


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""  # which limit said no: "tokens", "requests", "concurrency", "budget"
    retry_after: float | None = None  # seconds until it would pass; None: unknown (a slot frees)


_OK = Verdict(True)


@dataclass(slots=True)
class TenantState:
    tenant: Tenant
    tokens: TokenBucket | None = None
    requests: TokenBucket | None = None
    budget: Budget | None = None
    num_in_flight: int = 0  # admitted and not yet ended (waiting or running)
    throttled: deque[Request] = field(default_factory=deque)

    @classmethod
    def of(cls, tenant: Tenant, bounds: Bounds = period_bounds) -> "TenantState":
        t = tenant
        return cls(
            tenant=t,
            tokens=TokenBucket(t.token_rate, t.token_burst) if t.token_rate else None,
            requests=TokenBucket(t.request_rate, t.request_burst) if t.request_rate else None,
            budget=(None if t.budget_usd is None
                    else Budget(t.budget_usd, t.budget_period, bounds)),
        )

    def check_fits(self, req: Request) -> None:
        cost = req.prompt_tokens + req.max_tokens
        if self.tokens is not None and cost > self.tokens.burst:
            raise NeverFits(
                f"request {req.request_id} costs {cost} tokens (prompt {req.prompt_tokens} + "
                f"max_tokens {req.max_tokens}) but tenant {self.tenant.tenant_id!r} has a burst "
                f"of {self.tokens.burst:g}: lower max_tokens or raise the burst")
        budget = self.budget
        if budget is not None and self.tenant.over_budget is OverLimit.REJECT:
            usd = req.cost_usd(req.prompt_tokens, req.max_tokens)
            if usd > budget.limit_usd:
                raise NeverFits(
                    f"request {req.request_id} may cost ${usd:.6f} but tenant "
                    f"{self.tenant.tenant_id!r} has a budget of ${budget.limit_usd:g} a "
                    f"{budget.period}: lower max_tokens or raise the budget")

    def verdict(self, req: Request, now: float) -> Verdict:
        t = self.tenant
        if t.max_concurrent is not None and self.num_in_flight >= t.max_concurrent:
            return Verdict(False, "concurrency", None)
        # The budget before the buckets: a bucket's refusal may demote, and a demoted request
        # must not run on a spent budget
        budget = self.budget
        if budget is not None and not budget.can_reserve(req.cost_usd(req.prompt_tokens,
                                                                      req.max_tokens), now):
            return Verdict(False, "budget", budget.end - now)  # inf for a total budget
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
        if self.budget is not None:
            req.reserved_usd = req.cost_usd(req.prompt_tokens, req.max_tokens)
            self.budget.reserved_usd += req.reserved_usd
        self.num_in_flight += 1

    def release(self, req: Request, now: float) -> None:
        """The request ended: free its slot, refund the tokens it did not use, and settle its
        real cost (a request that never started is charged no prompt)."""
        self.num_in_flight -= 1
        prompt = req.prompt_tokens if req.first_scheduled is not None else 0
        if self.tokens is not None and req.reserved_tokens:
            used = req.num_output_tokens + prompt
            self.tokens.give_back(max(0, req.reserved_tokens - used), now)
            req.reserved_tokens = 0
        if self.budget is not None:  # demoted requests reserved nothing but are billed too
            self.budget.settle(req.reserved_usd, req.cost_usd(prompt, req.num_output_tokens), now)
            req.reserved_usd = 0.0

    def next_release(self, now: float) -> float:
        """When the head of the THROTTLED queue could pass, if nothing else changes."""
        if not self.throttled:
            return math.inf
        v = self.verdict(self.throttled[0], now)
        if v.ok:
            return now
        return math.inf if v.retry_after is None else now + v.retry_after
