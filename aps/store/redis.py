"""Limits and fair-share counters shared by several gateway replicas, in Redis.

Token buckets are Lua scripts, so a check-and-take is atomic across replicas, and they read
Redis's own clock (`TIME`), so the replicas' clocks do not matter. Each tenant's buckets are one
key group, `aps:{tenant}:tokens` and `aps:{tenant}:requests`: the braces are a Redis Cluster hash
tag, keeping a tenant's keys in one slot. Keys expire once a bucket would be full again, so an
idle tenant costs nothing.

Spend budgets: a tenant's spend in the current period is `aps:{tenant}:spend:<period start>`,
reserved and settled like the buckets (the largest cost at admission, the real one at the end)
by the same script, and gone once its period is over. A key that is missing (a new period, or a
Redis that restarted empty) starts from what the admitting replica's ledger billed, or, its
database unreachable, the most that replica has seen the tenant spend; knowing nothing, a new
period starts from zero when `aps:{tenant}:spend:kept` (set with every spend key, never
expiring) says Redis has lost no key, and otherwise the request is refused rather than start
a period whose spend Redis lost from zero. Each start of a key also sets `...:epoch` (Redis's
time then), which every reservation remembers: a settlement applies the request's real cost in
place of its reservation only to the key that holds it, so one that waited out a Redis outage
is settled once Redis is back, and never against a key a restarted Redis started afresh from
the ledger. Such a late settlement carries a mark, so sending it again after a lost answer
counts it once.

Fair-share counters: each replica adds the weighted service it gave (its VTC `charged` totals)
to the hash `aps:vtc` and reads everyone's totals back; the service other replicas gave a
tenant then moves that tenant's counter here too, so the tenant that got the least service
across the cluster is served first everywhere.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError

from aps.core import Tenant

# KEYS: token bucket, request bucket, spend, its epoch, the tenant's mark that Redis has kept
# its spend keys (set with each, never expiring). ARGV: token rate, token burst, cost,
# request rate, request burst (a rate of 0: no such limit), budget (negative: none), the
# request's largest cost in dollars, the spend key's time to live in ms (0: none), the spend to
# start a missing key from (negative: unknown: 0 in a new period, where the mark says no key was
# lost, else refused as 'unseeded'), seconds to the period's
# reset. Returns {1, epoch} or {0, limit, seconds to wait, epoch}: the spend key's epoch ('':
# no budget).
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function level(key, rate, burst)
  local v = redis.call('HMGET', key, 'level', 'ts')
  local l, ts = tonumber(v[1]), tonumber(v[2])
  if l == nil then return burst end
  return math.min(burst, l + math.max(0, now - ts) * rate)
end
local function put(key, value, rate, burst)
  redis.call('HSET', key, 'level', value, 'ts', now)
  redis.call('PEXPIRE', key, math.ceil((burst - value) / rate * 1000) + 1000)
end
local tr, tb, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rr, rb = tonumber(ARGV[4]), tonumber(ARGV[5])
local lt, lr
local limit, usd, ttl = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local epoch = ''
-- the budget before the buckets: a bucket's refusal may demote, never onto a spent budget
if limit >= 0 then
  local spent = tonumber(redis.call('GET', KEYS[3]))
  if spent == nil then
    spent = tonumber(ARGV[9])
    if spent < 0 then
      if redis.call('EXISTS', KEYS[5]) == 0 then return {0, 'unseeded', '1', ''} end
      spent = 0
    end
    redis.call('SET', KEYS[3], spent)
    redis.call('SET', KEYS[4], t[1] .. '.' .. t[2])
    redis.call('SET', KEYS[5], '1')
    if ttl > 0 then
      redis.call('PEXPIRE', KEYS[3], ttl)
      redis.call('PEXPIRE', KEYS[4], ttl)
    end
  end
  epoch = redis.call('GET', KEYS[4]) or ''
  if spent + usd > limit * (1 + 1e-9) then return {0, 'budget', ARGV[10], epoch} end
end
if rr > 0 then
  lr = level(KEYS[2], rr, rb)
  if lr < 1 then return {0, 'requests', tostring((1 - lr) / rr), epoch} end
end
if tr > 0 then
  lt = level(KEYS[1], tr, tb)
  if lt < cost then return {0, 'tokens', tostring((cost - lt) / tr), epoch} end
end
if limit >= 0 then redis.call('INCRBYFLOAT', KEYS[3], ARGV[7]) end
if rr > 0 then put(KEYS[2], lr - 1, rr, rb) end
if tr > 0 then put(KEYS[1], lt - cost, tr, tb) end
return {1, epoch}
"""

# KEYS: spend, its epoch, the settlement's mark. ARGV: what the request really cost minus what
# it reserved (dollars), the reservation's epoch, what to count if the key no longer holds the
# reservation (a Redis that restarted empty started it afresh), the mark's time to live in ms
# (0: no mark). A key that has expired (its period is over), or is not started again yet (its
# start will count the cost from the ledger), is left alone. A settlement sent again after an
# answer that never came runs once: the first run leaves its mark.
_SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[4] ~= '0' and not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[4]) then
  return 0
end
if (redis.call('GET', KEYS[2]) or '') == ARGV[2] then
  redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
elseif tonumber(ARGV[3]) ~= 0 then
  redis.call('INCRBYFLOAT', KEYS[1], ARGV[3])
end
return 1
"""

# KEYS: token bucket. ARGV: rate, burst, tokens to give back (what a request did not use).
_REFUND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst, back = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 'level', 'ts')
local l, ts = tonumber(v[1]), tonumber(v[2])
if l == nil then return 0 end
l = math.min(burst, l + math.max(0, now - ts) * rate + back)
redis.call('HSET', KEYS[1], 'level', l, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - l) / rate * 1000) + 1000)
return 1
"""

COUNTERS_KEY = "aps:vtc"


@dataclass(frozen=True, slots=True)
class Taken:
    ok: bool
    reason: str = ""
    retry_after: float | None = None
    epoch: str = ""  # the spend key's, for the settlement


@dataclass(frozen=True, slots=True)
class Spend:
    """A request's reservation against its tenant's budget in the current period."""

    limit_usd: float
    cost_usd: float  # the request's largest cost
    period_key: str  # the period, named by its start (unix seconds), or "total"
    ttl_s: float  # until the period's end (inf: a total budget)
    seed_usd: float | None  # spend to start from if Redis has none for the period (None: unknown)
    epoch: str = ""  # the spend key's when the reservation was made (`Taken.epoch`)


def bucket_keys(tenant_id: str) -> list[str]:
    return [f"aps:{{{tenant_id}}}:tokens", f"aps:{{{tenant_id}}}:requests"]


def spend_key(tenant_id: str, period_key: str) -> str:
    return f"aps:{{{tenant_id}}}:spend:{period_key}"


def spend_keys(tenant_id: str, period_key: str) -> list[str]:
    """The spend key and its epoch."""
    key = spend_key(tenant_id, period_key)
    return [key, key + ":epoch"]


class RedisStore:
    """The Redis side of cluster mode. Every call may raise `redis.RedisError` (or OSError)
    when Redis is unreachable or slower than `timeout_s`; the caller decides what that means."""

    def __init__(self, url: str, timeout_s: float = 0.25):
        self.url = url
        # One immediate retry on a broken connection: after Redis restarts, every pooled
        # connection is stale once, which is not an outage. A timeout is not retried.
        self.client = aioredis.Redis.from_url(url, socket_timeout=timeout_s,
                                              socket_connect_timeout=timeout_s,
                                              retry=Retry(NoBackoff(), 1),
                                              retry_on_error=[ConnectionError],
                                              retry_on_timeout=False, decode_responses=True)
        self._take = self.client.register_script(_TAKE)
        self._refund = self.client.register_script(_REFUND)
        self._settle = self.client.register_script(_SETTLE)

    async def ping(self) -> bool:
        return await self.client.ping()

    async def reconnect(self) -> None:
        """Drop pooled connections (they may point at a Redis that has since restarted)."""
        await self.client.connection_pool.disconnect()

    async def take(self, tenant: Tenant, cost: int, spend: Spend | None = None) -> Taken:
        """Atomically take one request and `cost` tokens from the tenant's buckets and reserve
        `spend` from its budget, or say which limit refused and for how long."""
        budget = (-1, 0, 0, 0, "inf") if spend is None else (
            spend.limit_usd, repr(spend.cost_usd),
            0 if math.isinf(spend.ttl_s) else math.ceil(spend.ttl_s * 1000) + 60_000,
            "-1" if spend.seed_usd is None else repr(spend.seed_usd), repr(spend.ttl_s))
        args = [tenant.token_rate or 0, tenant.token_burst or 0, cost,
                tenant.request_rate or 0, tenant.request_burst or 0, *budget]
        keys = spend_keys(tenant.tenant_id, spend.period_key if spend else "none")
        kept = spend_key(tenant.tenant_id, "kept")
        result = await self._take(keys=[*bucket_keys(tenant.tenant_id), *keys, kept], args=args)
        if int(result[0]) == 1:
            return Taken(True, epoch=result[1])
        return Taken(False, result[1], float(result[2]), result[3])

    async def settle(self, tenant_id: str, period_key: str, epoch: str, delta_usd: float,
                     lost_usd: float = 0.0, mark: str = "") -> None:
        """A request ended: its real cost replaces what it reserved in the key of `epoch`;
        a key started since (Redis restarted empty) counts `lost_usd` instead. With a `mark`,
        the settlement counts once however often it is sent (for an hour)."""
        if delta_usd or lost_usd:
            key = spend_key(tenant_id, "settled")
            await self._settle(keys=[*spend_keys(tenant_id, period_key), f"{key}:{mark}"],
                               args=[repr(delta_usd), epoch, repr(lost_usd),
                                     3_600_000 if mark else 0])

    async def spent(self, tenant_id: str, period_key: str) -> float | None:
        """The cluster's spend (settled and reserved) in a period; None if Redis has none."""
        value = await self.client.get(spend_key(tenant_id, period_key))
        return None if value is None else float(value)

    async def refund(self, tenant: Tenant, tokens: int) -> None:
        if tenant.token_rate and tokens > 0:
            await self._refund(keys=bucket_keys(tenant.tenant_id)[:1],
                               args=[tenant.token_rate, tenant.token_burst, tokens])

    async def share_counters(self, increments: dict[str, float]) -> dict[str, float]:
        """Add this replica's new weighted service per tenant; return the cluster's totals."""
        async with self.client.pipeline(transaction=True) as pipe:
            for tenant, amount in increments.items():
                pipe.hincrbyfloat(COUNTERS_KEY, tenant, amount)
            pipe.hgetall(COUNTERS_KEY)
            results = await pipe.execute()
        return {tenant: float(value) for tenant, value in results[-1].items()}

    async def close(self) -> None:
        await self.client.aclose()
