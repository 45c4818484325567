"""A budget that starts while the gateway serves (a new budget at reload, Redis gone) reads its
spend off the event loop, and until the read answers never starts below what was known; a Redis
that restarts empty while the database is down starts its period from what was known too."""
import asyncio
import dataclasses
import sqlite3
import threading
import time

import pytest

from aps.core import Request
from aps.core.periods import period_bounds
from aps.server.config import load_config
from aps.server.errors import ApiError
from aps.server.gateway import Ask, Gateway
from aps.store.cluster import Cluster, StoreUnavailable
from aps.store.directory import Caller
from aps.store.redis import Spend

CONFIG = """
speed: 500
prices: {{input_per_1m: 1000, output_per_1m: 1000}}
store: {{path: {db}{redis}}}
tenants:
  - {{id: thrifty, keys: [sk-thrifty-key]{budget}}}
  - {{id: fresh, keys: [sk-fresh-key]{budget}}}
"""


class SlowLedger:
    """The gateway's store, but `spend` waits for `answer` (a slow or locked database) and
    notes whether it ran on the event loop; `run` leaves the loop, as PostgreSQL's does."""

    def __init__(self, store, billed: float):
        self.store, self.billed = store, billed
        self.called, self.answer = threading.Event(), threading.Event()
        self.on_loop: list[bool] = []

    def __getattr__(self, name):
        return getattr(self.store, name)

    def spend(self, tenant_id, since=None):
        try:
            asyncio.get_running_loop()
            self.on_loop.append(True)
        except RuntimeError:
            self.on_loop.append(False)
        self.called.set()
        self.answer.wait(5)  # bounded: read on the loop, nothing else could ever answer
        return self.billed

    async def run(self, fn, *args):
        return await asyncio.to_thread(fn, *args)


class DatabaseDown:
    """The gateway's store with its database unreachable for reads of spend."""

    def __init__(self, store):
        self.store = store

    def __getattr__(self, name):
        return getattr(self.store, name)

    def spend(self, tenant_id, since=None):
        raise sqlite3.OperationalError("database is locked")


def gateway(tmp_path, budget: bool, redis_url: str | None = None) -> Gateway:
    text = CONFIG.format(db=tmp_path / "aps.db",
                         budget=", budget_usd: 0.5, budget_period: day" if budget else "",
                         redis="" if redis_url is None else f", redis_url: {redis_url}")
    path = tmp_path / "aps.yaml"
    path.write_text(text)
    return Gateway(load_config(path, env={}))


async def answered(gw: Gateway, slow: SlowLedger) -> None:
    """Let the read answer and wait (a bounded number of turns) for it to land."""
    slow.answer.set()
    for _ in range(500):
        if not gw.budgets._tasks:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the spend read never landed")


def test_a_new_budget_at_reload_reads_off_the_loop_and_refuses_until_it_knows(tmp_path):
    gw = gateway(tmp_path, budget=False)
    slow = SlowLedger(gw.store, billed=0.3)

    async def main():
        gw.budgets.store = slow
        tenant = dataclasses.replace(gw.directory.tenants["thrifty"], budget_usd=0.5,
                                     budget_period="day")
        gw.apply_tenants([tenant])  # a budget appears at reload: nothing known of its spend
        assert await asyncio.to_thread(slow.called.wait, 5)
        assert slow.on_loop == [False]
        assert gw.budgets.unknown("thrifty")
        with pytest.raises(ApiError) as refused:  # not served from zero spend meanwhile
            await gw.submit(Caller("thrifty", ""), Ask("hello", 10))
        assert refused.value.status == 503 and refused.value.code == "store_unavailable"
        await answered(gw, slow)
        assert not gw.budgets.unknown("thrifty")
        assert gw.sched.tenants["thrifty"].budget.spent_usd == pytest.approx(0.3)
    asyncio.run(main())
    gw.store.close()


def test_a_budget_restarted_while_serving_starts_from_the_spend_it_knew(tmp_path):
    gw = gateway(tmp_path, budget=True)
    slow = SlowLedger(gw.store, billed=0.1)  # the ledger lags: a row not billed yet

    async def main():
        budget = gw.sched.tenants["thrifty"].budget
        budget.settle(0.0, 0.2, gw.driver.now())  # spent here, as a request's end settles it
        await gw.budgets.refresh()
        gw.budgets.store = slow
        tenant = gw.directory.tenants["thrifty"]
        gw.apply_tenants([dataclasses.replace(tenant, budget_usd=None)])  # Redis took over
        gw.apply_tenants([tenant])  # and went away again: the local budget starts anew
        assert await asyncio.to_thread(slow.called.wait, 5)
        assert slow.on_loop == [False]
        assert not gw.budgets.unknown("thrifty")  # served meanwhile, from what it knew
        assert gw.sched.tenants["thrifty"].budget.spent_usd == pytest.approx(0.2)
        await answered(gw, slow)
        assert gw.sched.tenants["thrifty"].budget.spent_usd == pytest.approx(0.2)  # never lower
    asyncio.run(main())
    gw.store.close()


def test_a_redis_restarted_during_a_database_outage_keeps_the_spend_it_had(tmp_path, redis):
    gw = gateway(tmp_path, budget=True, redis_url=redis.url)
    start, end = period_bounds("day", time.time())
    price = gw.config.prices.for_model(gw.backend.model_name)

    async def main():
        other = Cluster(redis.url, "local", 0.5, 0.1, on_change=lambda: None)  # another replica
        thrifty = gw.directory.tenants["thrifty"]
        for i in range(4):  # it admits $0.28 (this gateway never reads the ledger)
            req = Request(f"other-{i}", "thrifty", 20, 50, 0.0, price=price)
            spend = Spend(0.5, 0.07, str(int(start)), end - time.time(), 0.0)
            assert (await other.admit(req, thrifty, spend)).ok
        await other.close()
        assert (await gw.budgets.view("thrifty"))["spent_usd"] == pytest.approx(0.28)  # seen
        gw.budgets.store = DatabaseDown(gw.store)
        redis.stop()
        redis.start()  # back empty
        req = Request("here-0", "thrifty", 20, 50, 0.0, price=price)
        spend = await gw.budgets.shared_spend(req, thrifty)
        assert (await gw.cluster.admit(req, thrifty, spend)).ok
        # the period starts from the spend seen, not from zero
        assert (await gw.budgets.view("thrifty"))["spent_usd"] == pytest.approx(0.35)
        fresh = gw.directory.tenants["fresh"]  # never seen: refused, and no period seeded
        req = Request("fresh-0", "fresh", 20, 50, 0.0, price=price)
        with pytest.raises(StoreUnavailable):
            await gw.cluster.admit(req, fresh, await gw.budgets.shared_spend(req, fresh))
        assert await gw.cluster.redis.spent("fresh", str(int(start))) is None
        await gw.cluster.close()
    try:
        asyncio.run(main())
    finally:
        gw.store.close()


async def _try(gw: Gateway, tenant: str = "thrifty") -> str:
    try:
        await gw.submit(Caller(tenant, ""), Ask("hello", 10))
        return "admitted"
    except ApiError as exc:
        return f"{exc.status} {exc.code}"


async def _spent_elsewhere(url: str, gw: Gateway, usd_each: float, n: int) -> None:
    """Another replica admits n requests of up to `usd_each` for thrifty, in today's key."""
    start, end = period_bounds("day", time.time())
    price = gw.config.prices.for_model(gw.backend.model_name)
    other = Cluster(url, "local", 0.5, 0.1, on_change=lambda: None)
    for i in range(n):
        req = Request(f"other-{i}", "thrifty", 20, 50, 0.0, price=price)
        spend = Spend(0.5, usd_each, str(int(start)), end - time.time(), 0.0)
        assert (await other.admit(req, gw.directory.tenants["thrifty"], spend)).ok
    await other.close()


def test_requests_waiting_on_redis_when_it_fails_are_not_served_from_zero_spend(tmp_path, redis):
    """Redis and the database down together: the budget that takes over knows nothing, and
    every request that was waiting on Redis is refused, not only those that come after."""
    gw = gateway(tmp_path, budget=True, redis_url=redis.url)

    async def main():
        await _spent_elsewhere(redis.url, gw, 0.07, 7)  # $0.49 of $0.50, in Redis only
        gw.budgets.store = DatabaseDown(gw.store)
        redis.stop()
        answers = await asyncio.gather(*[_try(gw) for _ in range(8)])
        assert answers == ["503 store_unavailable"] * 8
        assert gw.sched.tenants["thrifty"].budget.reserved_usd == 0
        assert not gw.cluster.spends  # nothing left to settle for them
        await gw.cluster.close()
    try:
        asyncio.run(main())
    finally:
        gw.store.close()


def test_a_stand_in_for_an_unread_spend_never_seeds_redis(tmp_path, redis):
    """While the budget waits for its read it counts 0 (and refuses); a Redis restarted empty
    meanwhile must not start the period from that 0."""
    gw = gateway(tmp_path, budget=True, redis_url=redis.url)
    start = str(int(period_bounds("day", time.time())[0]))

    async def main():
        await _spent_elsewhere(redis.url, gw, 0.07, 7)
        gw.budgets.store = DatabaseDown(gw.store)
        redis.stop()
        assert await _try(gw) == "503 store_unavailable"  # Redis is found down here
        await gw.budgets.refresh()  # the store watch's turn: the read fails again
        assert gw.budgets.unknown("thrifty")
        redis.start()  # back, empty
        await gw.cluster.step(None)
        assert not gw.cluster.degraded
        assert [await _try(gw) for _ in range(3)] == ["503 store_unavailable"] * 3
        assert await gw.cluster.redis.spent("thrifty", start) is None
        await gw.cluster.close()
    try:
        asyncio.run(main())
    finally:
        gw.store.close()


def test_a_new_period_starts_from_zero_while_the_database_is_down(tmp_path, monkeypatch, redis):
    """Redis kept its keys (its mark says so): a period it has no key for is new, and starts
    from nothing, database or not."""
    from aps.server import budgets
    gw = gateway(tmp_path, budget=True, redis_url=redis.url)

    def tomorrow(period):
        _, start, end = real(period)
        return str(int(end)), end, end + 86_400
    real = budgets._period

    async def main():
        assert await _try(gw) == "admitted"
        await gw.budgets.refresh()
        gw.budgets.store = DatabaseDown(gw.store)
        monkeypatch.setattr(budgets, "_period", tomorrow)  # midnight passes
        assert [await _try(gw) for _ in range(3)] == ["admitted"] * 3
        assert not gw.cluster.degraded
        await gw.cluster.close()
    try:
        asyncio.run(main())
    finally:
        gw.store.close()
