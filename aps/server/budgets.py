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

import asyncio
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
        # tenant -> (period key, when read (monotonic), the sum or None: the read failed), the
        # last ledger sum read for a Redis seed; one period a tenant, the newest
        self._ledger: dict[str, tuple[str, float, float | None]] = {}
        self._followed = -math.inf  # when follow_ledger last read the ledger (monotonic)
        # tenant -> (period key, the most it is known to have spent in that period): Redis's
        # count, a ledger sum or this gateway's own budget, whichever was highest
        self._known: dict[str, tuple[str, float]] = {}
        # tenants whose restored budget still waits for its read; True: nothing was known
        # to start from, so its requests are refused meanwhile
        self._unread: dict[str, bool] = {}
        self._tasks: set[asyncio.Task] = set()

    def use_clock(self, now: Callable[[], float], unix: Callable[[float], float]) -> None:
        self.now, self.unix_offset = now, unix(0.0)

    def period_bounds(self, period: str, now: float) -> tuple[float, float]:
        """A budget period in the driver's time: the UTC calendar's, shifted by the offset of
        the driver's clock from unix time. (The scheduler's `period_bounds`.)"""
        start, end = period_bounds(period, now + self.unix_offset)
        return start - self.unix_offset, end - self.unix_offset

    def restore(self, tenants) -> None:
        """At startup: a budget starts from what the ledger billed in the current period, so
        spend survives restarts. Read here and now: nothing is served yet."""
        for tenant_id, budget in self._starting(tenants):
            try:
                budget.spent_usd = self.store.spend(tenant_id, self._since(budget))
            except self.store.unreachable as exc:  # refused until `refresh` reads it
                self._unread[tenant_id] = True
                log.error("cannot read %s's spend from %s: %s", tenant_id, self.store.where, exc)

    def restore_soon(self, tenants) -> None:
        """While serving (Redis gone, a budget new at reload): the same, read off the event loop,
        which one blocking read a tenant (up to `db_timeout_s` each) would stall for every
        request. Until the read answers, a budget starts from the most this gateway has seen
        the tenant spend in the period, never from less. Having seen nothing, it refuses the
        tenant's requests (503, `unknown`) rather than let them spend from zero: the read takes
        milliseconds unless the database is down, and then nothing would bound that spend."""
        for tenant_id, budget in self._starting(tenants):
            known = self._known_spend(tenant_id, self._key(budget))
            budget.spent_usd = 0.0 if known is None else known  # 0.0: refused until read
            self._unread[tenant_id] = known is None
            task = asyncio.ensure_future(self._read(tenant_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _starting(self, tenants):
        """(tenant id, budget) of each budget that starts here, rolled to its period."""
        now = self.now()
        for tenant in tenants:
            budget = self.sched.tenants[tenant.tenant_id].budget
            if budget is not None and budget.end == -math.inf:
                budget.roll(now)
                yield tenant.tenant_id, budget

    async def _read(self, tenant_id: str) -> bool:
        """`_follow` for a restored budget. False: the database did not answer; the tenant
        stays where it was (refused, if nothing was known) and `refresh` tries again."""
        try:
            await self._follow(tenant_id)
        except self.store.unreachable as exc:
            log.error("cannot read %s's spend from %s: %s", tenant_id, self.store.where, exc)
            return False
        except Exception:  # whatever it was: `refresh` tries again
            log.exception("reading %s's spend failed", tenant_id)
            return False
        return True

    async def _follow(self, tenant_id: str) -> None:
        """Raise the tenant's budget to what the ledger bills it in the period (with this
        replica's rows not yet written); never lower it: it may count reservations the ledger
        has not billed yet. Raises `store.unreachable`."""
        budget = self._budget(tenant_id)
        if budget is None:  # gone meanwhile (Redis is back, the budget removed)
            self._unread.pop(tenant_id, None)
            return
        budget.roll(self.now())
        since, period_end = self._since(budget), budget.end
        billed = await self.store.run(self.store.spend, tenant_id, since)
        budget = self._budget(tenant_id)  # (the tenant's state may have been replaced)
        if budget is not None and budget.end == period_end:  # the period that was read
            budget.spent_usd = max(budget.spent_usd, billed + self.unwritten(tenant_id, since))
            self._unread.pop(tenant_id, None)

    def unknown(self, tenant_id: str) -> bool:
        """Whether the tenant's budget waits for a spend it knew nothing of (`restore_soon`)."""
        return self._unread.get(tenant_id, False) and self._budget(tenant_id) is not None

    def _budget(self, tenant_id: str):
        state = self.sched.tenants.get(tenant_id)
        return None if state is None else state.budget

    def _key(self, budget) -> str:
        """The period key (Redis's name for it) of a budget's current period."""
        return "total" if budget.period == "total" else str(round(budget.start + self.unix_offset))

    def _note(self, tenant_id: str, period_key: str, usd: float) -> None:
        """Remember what the tenant has spent in a period, if it is the most seen in the newest
        period seen. Not while its budget waits for its read: that figure is a stand-in (0 when
        nothing was known), and a Redis seeded from it would forget the period's spend."""
        if self._unread.get(tenant_id):
            return
        known = self._known.get(tenant_id)
        if known is None or _newer(period_key, known[0]) or \
                (known[0] == period_key and known[1] < usd):
            self._known[tenant_id] = (period_key, usd)

    def _known_spend(self, tenant_id: str, period_key: str) -> float | None:
        known = self._known.get(tenant_id)
        return known[1] if known is not None and known[0] == period_key else None

    def note_local(self, tenant_id: str) -> None:
        """What the tenant's budget here counts, before a new state may replace it (Redis is
        back and takes the budget over): a Redis that restarted empty during a database outage
        starts from it (`_ledger_spend`)."""
        budget = self._budget(tenant_id)
        if budget is not None and budget.end != -math.inf:
            budget.roll(self.now())
            self._note(tenant_id, self._key(budget), budget.spent_usd + budget.reserved_usd)

    def _since(self, budget) -> float | None:
        """The unix time the budget's current period began (None: a total budget)."""
        return None if budget.period == "total" else budget.start + self.unix_offset

    async def follow_ledger(self) -> None:
        """Raise each budget this replica enforces to what the shared ledger bills its tenant
        in the period: the spend of the other replicas on the same database. (A sum over
        the period's rows: read every few seconds, not at every reload.)"""
        if not self.store.shared or time.monotonic() - self._followed < _LEDGER_READ_S:
            return
        self._followed = time.monotonic()
        for tenant_id, state in list(self.sched.tenants.items()):
            if state.budget is not None:
                try:
                    await self._follow(tenant_id)
                except self.store.unreachable:
                    return  # the ledger says so in the log; try again next time

    async def shared_spend(self, req: Request, tenant: Tenant) -> Spend | None:
        """The request's reservation against its tenant's budget, as Redis keeps it."""
        if tenant.budget_usd is None:
            return None
        period_key, start, end = _period(tenant.budget_period)
        return Spend(tenant.budget_usd, req.cost_usd(req.prompt_tokens, req.max_tokens),
                     period_key, end - time.time(),
                     await self._ledger_spend(tenant.tenant_id, period_key, start))

    async def _ledger_spend(self, tenant_id: str, period_key: str,
                            start: float) -> float | None:
        """What the ledger billed the tenant in the period (every replica's, with a shared
        database), read at most every few seconds: it only seeds a period Redis does not
        know. The database unreachable, the most this gateway has seen the tenant spend in the
        period stands in (the last sum read, Redis's count, its own budget while Redis was
        down): never zero, or a Redis restarted during a database outage would forget the
        period's spend. None: it has seen nothing; Redis then starts a new period from zero
        and refuses to start one whose spend it lost."""
        now = time.monotonic()
        read = self._ledger.get(tenant_id)
        if read is None or read[0] != period_key or now - read[1] > _LEDGER_READ_S:
            read = (period_key, now, await self._ledger_sum(tenant_id, period_key, start))
            self._ledger[tenant_id] = read
        return read[2] if read[2] is not None else self._known_spend(tenant_id, period_key)

    def forget_reads(self) -> None:
        """Redis went down or came back: a ledger sum read before may predate spend a seed
        must count (requests that ended meanwhile), so the next seed reads afresh."""
        self._ledger.clear()

    async def _ledger_sum(self, tenant_id: str, period_key: str, start: float) -> float | None:
        since = None if math.isinf(start) else start
        try:
            billed = await self.store.run(self.store.spend, tenant_id, since)
        except self.store.unreachable as exc:
            known = self._known_spend(tenant_id, period_key)
            log.warning("cannot read %s's spend from %s (%s): a period Redis does not know "
                        "starts from %s", tenant_id, self.store.where, exc,
                        "nothing known (zero if the period is new, else refused with 503)"
                        if known is None else f"${known:.6g}, the most seen here")
            return None
        usd = billed + self.unwritten(tenant_id, since)
        self._note(tenant_id, period_key, usd)
        return usd

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
            self._note(tenant_id, self._key(budget), spent + reserved)
        else:  # Redis does: spend there counts settled and reserved together
            try:
                shared = await self.cluster.redis.spent(tenant_id, period_key)
            except UNREACHABLE:
                shared = None
            if shared is not None:
                self._note(tenant_id, period_key, shared)
            else:
                shared = await self._ledger_spend(tenant_id, period_key, start)
            spent = 0.0 if shared is None else shared
            reserved = 0.0
        return {"budget_usd": tenant.budget_usd, "period": tenant.budget_period,
                "spent_usd": spent, "reserved_usd": reserved,
                "remaining_usd": max(0.0, tenant.budget_usd - spent - reserved),
                "resets_at": None if math.isinf(end) else end,
                "over_budget": tenant.over_budget.value}

    async def refresh(self) -> None:
        """Follow the shared ledger, and keep each budgeted tenant's standing at hand for the
        metrics (Redis's, in cluster mode, read here rather than at every scrape)."""
        for tenant_id in list(self._unread):  # restored budgets whose read failed
            if not await self._read(tenant_id):
                break  # the database is down: the next turn tries again
        await self.follow_ledger()
        standing = {}
        for tenant_id, tenant in list(self._tenants().items()):
            if tenant.budget_usd is not None:
                try:
                    standing[tenant_id] = await self.view(tenant_id)
                except Exception:  # a view is for metrics: never let it stop the loop
                    log.exception("reading the budget of %s failed", tenant_id)
        self.standing = standing


def _newer(period_key: str, than: str) -> bool:
    """Whether a period (named by its start in unix seconds, or "total") began after another;
    a budget whose period changed to or from "total" starts afresh."""
    if "total" in (period_key, than):
        return period_key != than
    return float(period_key) > float(than)


def _period(period: str) -> tuple[str, float, float]:
    """The current budget period: its key, start and end (unix seconds)."""
    start, end = period_bounds(period, time.time())
    return ("total" if period == "total" else str(int(start))), start, end
