"""The gateway's side of spend budgets: calendar periods on the driver's clock, spend restored
from the ledger, a request's reservation as Redis keeps it in cluster mode, and each tenant's
standing (for /tenants/{id}/status and the metrics).

The core enforces a budget with a gateway's own scheduler; in cluster mode Redis does, for all
replicas, and the local scheduler has none. Without Redis (or while it is down), each
replica's budgets follow a shared (PostgreSQL) ledger: every few seconds a budget's spend
rises to what the ledger bills the tenant in the period (every replica's committed rows, plus
this replica's rows not yet written), so a budget holds across replicas up to what the others
spend within those seconds.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Callable

from aps.core import Request, Scheduler, Tenant
from aps.core.periods import period_bounds
from aps.store import SqlStore
from aps.store.cluster import UNREACHABLE, Cluster
from aps.store.redis import Spend

log = logging.getLogger("aps.budgets")
_LEDGER_READ_S = 5.0  # how stale a ledger sum seeding a new Redis period may be


class Budgets:
    def __init__(self, store: SqlStore, sched: Scheduler | None,
                 tenants: Callable[[], dict[str, Tenant]],
                 cluster: Cluster | None):
        self.store, self.sched, self.cluster = store, sched, cluster
        self._tenants = tenants  # the directory's current tenants
        # dollars in this replica's ledger rows not yet written: (tenant, since) -> usd
        self.unwritten: Callable[[str, float | None], float] = lambda tenant, since: 0.0
        self.now: Callable[[], float] = time.monotonic  # the driver's clock, once there is one
        self.unix_offset = 0.0  # unix time minus driver time
        self.standing: dict[str, dict] = {}  # each budgeted tenant's, refreshed for the metrics
        self._ledger: dict[tuple[str, str], tuple[float, float]] = {}
        self._followed = -math.inf  # when follow_ledger last read the ledger (monotonic)

    def use_clock(self, now: Callable[[], float], unix: Callable[[float], float]) -> None:
        self.now, self.unix_offset = now, unix(0.0)

    def period_bounds(self, period: str, now: float) -> tuple[float, float]:
        """A budget period in the driver's time: the UTC calendar's, shifted by the offset of
        the driver's clock from unix time. (The scheduler's `period_bounds`.)"""
        start, end = period_bounds(period, now + self.unix_offset)
        return start - self.unix_offset, end - self.unix_offset

    def restore(self, tenants) -> None:
        """A budget that starts here (at startup, a new budget, Redis gone) starts from what
        the ledger billed in the current period, so spend survives restarts."""
        now = self.now()
        for tenant in tenants:
            budget = self.sched.tenants[tenant.tenant_id].budget
            if budget is not None and budget.end == -math.inf:
                budget.roll(now)
                try:
                    budget.spent_usd = self.store.spend(tenant.tenant_id, self._since(budget))
                except self.store.unreachable as exc:  # `refresh` catches up once it answers
                    log.error("cannot read %s's spend from %s: %s", tenant.tenant_id,
                              self.store.where, exc)

    def _since(self, budget) -> float | None:
        """The unix time the budget's current period began (None: a total budget)."""
        return None if budget.period == "total" else budget.start + self.unix_offset

    async def follow_ledger(self) -> None:
        """Raise each budget this replica enforces to what the shared ledger bills its tenant
        in the period: the spend of the other replicas on the same database. (A sum over
        the period's rows: read every few seconds, not at every reload.)"""
        if not self.store.shared or time.monotonic() - self._followed < _LEDGER_READ_S:
            return
        self._followed, now = time.monotonic(), self.now()
        for tenant_id, state in list(self.sched.tenants.items()):
            budget = state.budget
            if budget is None:
                continue
            budget.roll(now)
            since, period_end = self._since(budget), budget.end
            try:
                billed = await self.store.run(self.store.spend, tenant_id, since)
            except self.store.unreachable:
                return  # the ledger says so in the log; try again next time
            if budget.end == period_end:  # still the period the sum was read for
                budget.spent_usd = max(budget.spent_usd, billed + self.unwritten(tenant_id, since))

    async def shared_spend(self, req: Request, tenant: Tenant) -> Spend | None:
        """The request's reservation against its tenant's budget, as Redis keeps it."""
        if tenant.budget_usd is None:
            return None
        period_key, start, end = _period(tenant.budget_period)
        return Spend(tenant.budget_usd, req.cost_usd(req.prompt_tokens, req.max_tokens),
                     period_key, end - time.time(),
                     await self._ledger_spend(tenant.tenant_id, period_key, start))

    async def _ledger_spend(self, tenant_id: str, period_key: str, start: float) -> float:
        """What the ledger billed the tenant in the period (every replica's, with a shared
        database), read at most every few seconds: it only seeds a period Redis does not
        know. The database unreachable, the last sum read (or nothing) stands in."""
        key, now = (tenant_id, period_key), time.monotonic()
        cached = self._ledger.get(key)
        if cached is None or now - cached[0] > _LEDGER_READ_S:
            since = None if math.isinf(start) else start
            try:
                billed = await self.store.run(self.store.spend, tenant_id, since)
                cached = (now, billed + self.unwritten(tenant_id, since))
            except self.store.unreachable:
                cached = (now, 0.0 if cached is None else cached[1])
            self._ledger[key] = cached
        return cached[1]

    async def view(self, tenant_id: str) -> dict | None:
        """A tenant's budget as it stands: the cluster's (Redis) or this gateway's."""
        tenant = self._tenants().get(tenant_id)
        if tenant is None or tenant.budget_usd is None:
            return None
        period_key, start, end = _period(tenant.budget_period)
        budget = self.sched.tenants[tenant_id].budget
        if budget is not None:  # this gateway enforces it
            budget.roll(self.now())
            spent, reserved = budget.spent_usd, budget.reserved_usd
        else:  # Redis does: spend there counts settled and reserved together
            try:
                shared = await self.cluster.redis.spent(tenant_id, period_key)
            except UNREACHABLE:
                shared = None
            spent = shared if shared is not None else await self._ledger_spend(
                tenant_id, period_key, start)
            reserved = 0.0
        return {"budget_usd": tenant.budget_usd, "period": tenant.budget_period,
                "spent_usd": spent, "reserved_usd": reserved,
                "remaining_usd": max(0.0, tenant.budget_usd - spent - reserved),
                "resets_at": None if math.isinf(end) else end,
                "over_budget": tenant.over_budget.value}

    async def refresh(self) -> None:
        """Follow the shared ledger, and keep each budgeted tenant's standing at hand for the
        metrics (Redis's, in cluster mode, read here rather than at every scrape)."""
        await self.follow_ledger()
        standing = {}
        for tenant_id, tenant in list(self._tenants().items()):
            if tenant.budget_usd is not None:
                try:
                    standing[tenant_id] = await self.view(tenant_id)
                except Exception:  # a view is for metrics: never let it stop the loop
                    log.exception("reading the budget of %s failed", tenant_id)
        self.standing = standing


def _period(period: str) -> tuple[str, float, float]:
    """The current budget period: its key, start and end (unix seconds)."""
    start, end = period_bounds(period, time.time())
    return ("total" if period == "total" else str(int(start))), start, end
