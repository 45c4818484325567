"""Cluster mode: several gateway replicas share their tenants' limits and fair-share counters
through Redis (`store.redis_url`).

While Redis answers, the token and request buckets live there and the local scheduler keeps
only the concurrency limit and the queue. When Redis stops answering, `store.redis_down`
decides: `closed` refuses requests (503) until it is back; `local` falls back to each replica
enforcing the configured limits on its own (so the cluster may admit up to N times a
tenant's rate) and says so in the `aps:store_degraded` gauge. A probe notices when Redis
returns and the shared limits take over again, with no restart.

A request's budget reservation outlives an outage: one that ends while Redis is unreachable
settles once it is back (or counts the cost of a request admitted meanwhile), in the spend key
it was made in (its epoch) and only there; a Redis that restarted empty started the period
afresh from the ledger, which bills the request already.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid

from redis.exceptions import RedisError

from aps.core import OverLimit, Request, Tenant
from aps.core.policies import add_service
from aps.store.redis import RedisStore, Spend, Taken
from aps.store.urls import redact

log = logging.getLogger("aps.cluster")
UNREACHABLE = (RedisError, OSError, asyncio.TimeoutError)
MAX_DELAY_S = 30.0  # over_limit: delay waits at most this long for the shared bucket
UNSEEN = "?"  # the epoch of a reservation made while Redis was down, its key never seen


class StoreUnavailable(Exception):
    """Redis is unreachable and the configuration says to refuse requests meanwhile."""


def without_buckets(tenant: Tenant) -> Tenant:
    """The tenant with the limits Redis holds (buckets, budget) taken out."""
    return dataclasses.replace(tenant, token_rate=None, token_burst=None, request_rate=None,
                               request_burst=None, budget_usd=None)


class Cluster:
    def __init__(self, url: str, redis_down: str, timeout_s: float, sync_s: float,
                 on_change):
        self.redis = RedisStore(url, timeout_s)
        self.redis_down, self.sync_s = redis_down, sync_s
        self._on_change = on_change  # called when the limits move between Redis and local
        self.healthy = True
        self.reserved: dict[str, int] = {}  # request id -> tokens taken from its shared bucket
        self.spends: dict[str, Spend] = {}  # request id -> its reservation against a budget
        # (tenant, period key, epoch) -> dollars to settle once Redis answers again: in the
        # key of that epoch, and in a key started since
        self.late: dict[tuple[str, str, str], tuple[float, float]] = {}
        # the late sum being sent, with its mark, until Redis's answer is seen
        self._sending: tuple[tuple[str, str, str], float, float, str] | None = None
        self._epochs: dict[str, tuple[str, str]] = {}  # tenant -> (period key, epoch) last seen
        self._pushed: dict[str, float] = {}  # charged totals already added to Redis
        self._remote: dict[str, float] = {}  # other replicas' service already counted here
        self._tasks: set[asyncio.Task] = set()

    @property
    def degraded(self) -> bool:
        return not self.healthy

    def local_view(self, tenant: Tenant) -> Tenant:
        """The tenant as the local scheduler should enforce it."""
        return without_buckets(tenant) if self.healthy else tenant

    async def admit(self, req: Request, tenant: Tenant, spend: Spend | None = None) -> Taken | None:
        """Take the request's cost from the shared buckets and reserve `spend` from the
        tenant's budget. None: Redis is down and the local limits decide. Over a bucket,
        `delay` waits and retries (up to MAX_DELAY_S); over a bucket or the budget, `demote`
        marks the request for the spare-capacity band."""
        if not self.healthy:
            if self.redis_down == "closed":
                raise StoreUnavailable("the shared limit store (Redis) is unreachable")
            if spend is not None:  # the local budget decides; its cost reaches Redis at its end
                seen = self._epochs.get(tenant.tenant_id)
                epoch = seen[1] if seen is not None and seen[0] == spend.period_key else UNSEEN
                self.spends[req.request_id] = dataclasses.replace(spend, cost_usd=0.0,
                                                                  epoch=epoch)
            return None
        cost = req.prompt_tokens + req.max_tokens
        waited = 0.0
        while True:
            try:
                taken = await self.redis.take(tenant, cost, spend)
            except UNREACHABLE as exc:
                self._down(exc)
                return await self.admit(req, tenant, spend)
            if taken.reason == "unseeded":  # a safe seed needs the database: not a refusal
                raise StoreUnavailable(f"{tenant.tenant_id!r}'s spend in the budget period is "
                                       "unknown while the database is unreachable")
            if spend is not None:
                spend = dataclasses.replace(spend, epoch=taken.epoch)
                self._epochs[tenant.tenant_id] = (spend.period_key, taken.epoch)
            if taken.ok:
                self.reserved[req.request_id] = cost if tenant.token_rate else 0
                if spend is not None:
                    self.spends[req.request_id] = spend
                return taken
            if taken.reason == "budget":
                req.demoted = tenant.over_budget is OverLimit.DEMOTE
            elif tenant.over_limit is OverLimit.DEMOTE:
                req.demoted = True
            if req.demoted:
                if spend is not None:  # it reserved nothing; its end bills its whole cost
                    self.spends[req.request_id] = dataclasses.replace(spend, cost_usd=0.0)
                return taken
            if taken.reason == "budget":
                return taken
            if tenant.over_limit is not OverLimit.DELAY or waited + taken.retry_after > MAX_DELAY_S:
                return taken
            await asyncio.sleep(taken.retry_after)
            waited += taken.retry_after

    def forget(self, request_id: str) -> None:
        """A request admitted here while Redis was down, refused after all: nothing to settle."""
        self.spends.pop(request_id, None)

    def on_end(self, req: Request, tenant: Tenant | None) -> None:
        """Give back to the shared bucket what the request reserved and did not use, and
        settle its real cost against the shared budget."""
        cost = self.reserved.pop(req.request_id, 0)
        prompt = req.prompt_tokens if req.first_scheduled is not None else 0
        used = req.num_output_tokens + prompt
        if cost > used and tenant is not None and self.healthy:
            self._spawn(self._refund(tenant, cost - used))
        spend = self.spends.pop(req.request_id, None)
        if spend is not None:
            actual = req.cost_usd(prompt, req.num_output_tokens)
            if self.healthy:
                self._spawn(self._settle(req.tenant_id, spend, actual))
            else:
                self._defer(req.tenant_id, spend, actual)

    async def _refund(self, tenant: Tenant, tokens: int) -> None:
        try:
            await self.redis.refund(tenant, tokens)
        except UNREACHABLE as exc:
            self._down(exc)

    async def _settle(self, tenant_id: str, spend: Spend, actual: float) -> None:
        """Settle a request that ended while Redis answered. Should its key have restarted since
        (Redis came back empty, unnoticed or not), the ledger sum the key started from could not
        bill the request, which had not ended: its whole cost counts."""
        try:
            await self.redis.settle(tenant_id, spend.period_key, spend.epoch,
                                    actual - spend.cost_usd, actual)
        except UNREACHABLE as exc:
            # Not kept for later: the script may have run (the answer timed out), and running
            # it again would count the (negative) correction twice. Left alone, the
            # reservation counts the request's largest cost: too strict, never too lenient.
            self._down(exc)

    def _defer(self, tenant_id: str, spend: Spend, actual: float) -> None:
        """The settlement of a request that ended while Redis was down, for when it answers
        again: left alone, the reservation would count the request's largest cost until its
        period ends, and a request admitted meanwhile would count nothing."""
        key = (tenant_id, spend.period_key, spend.epoch)
        delta, lost = self.late.get(key, (0.0, 0.0))
        # in a key restarted since: nothing, as it started from a ledger that bills the request
        # already, unless the key it was made in was never seen (then its whole cost: more
        # than once at worst)
        self.late[key] = (delta + actual - spend.cost_usd,
                          lost + (actual if spend.epoch == UNSEEN else 0.0))

    async def _settle_late(self) -> None:
        """Settle what ended while Redis was down, in the keys the reservations were made in.
        Each sum goes with a mark: one whose answer is lost is sent again, and counts once."""
        while self.healthy and (self.late or self._sending):
            if self._sending is None:
                key, (delta, lost) = self.late.popitem()
                self._sending = (key, delta, lost, uuid.uuid4().hex)
            key, delta, lost, mark = self._sending
            try:
                await self.redis.settle(*key, delta, lost, mark)
            except UNREACHABLE as exc:  # sent again, with its mark, once Redis answers
                self._down(exc)
                return
            self._sending = None

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _down(self, exc: BaseException) -> None:
        if self.healthy:
            self.healthy = False
            self.reserved.clear()  # a restarted Redis starts with full buckets anyway
            action = ("refusing requests (503)" if self.redis_down == "closed"
                      else "each replica enforces the limits on its own")
            log.warning("Redis at %s unreachable (%s): %s until it is back", redact(self.redis.url),
                        exc or type(exc).__name__, action)
            self._on_change()

    def _up(self) -> None:
        if not self.healthy:
            self.healthy = True
            log.warning("Redis at %s is back: limits are shared again", redact(self.redis.url))
            self._on_change()

    async def run(self, policy_ref) -> None:
        """Share fair-share counters while Redis answers; probe it while it does not."""
        while True:
            await asyncio.sleep(self.sync_s if self.healthy else 1.0)
            await self.step(policy_ref())

    async def step(self, policy) -> None:
        """One turn of `run`: a sync, or a probe that brings the shared limits back and settles
        what ended meanwhile."""
        try:
            if self.healthy:
                await self.sync_counters(policy)
            elif await self.redis.ping():
                await self.redis.reconnect()
                self._up()
                await self._settle_late()
        except UNREACHABLE as exc:
            self._down(exc)

    async def sync_counters(self, policy) -> None:
        """Add the service given here since the last sync to the cluster's totals, and count
        the service other replicas gave in this replica's counters."""
        if not hasattr(policy, "charged"):
            return  # not a fair-share policy: nothing to share
        charged = dict(policy.charged)
        increments = {t: c - self._pushed.get(t, 0.0) for t, c in charged.items()
                      if c != self._pushed.get(t, 0.0)}
        totals = await self.redis.share_counters(increments)
        self._pushed = charged
        if any(totals.get(t, 0.0) < c - 1e-6 for t, c in charged.items()):
            # Redis lost what this replica had added (it restarted empty): add it all again
            # next time. Other replicas' service already counted here is not counted twice:
            # only growth beyond what was seen moves a counter.
            self._pushed = {}
        for tenant, total in totals.items():
            remote = total - charged.get(tenant, 0.0)
            grew = remote - self._remote.get(tenant, 0.0)
            if grew > 0:
                add_service(policy, tenant, grew)
                self._remote[tenant] = remote

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.redis.close()
