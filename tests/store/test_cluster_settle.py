"""Budget reservations through a Redis outage, on a real redis-server stopped and started again:
a request that ends while Redis is down settles once it is back, in the spend key its
reservation was made in, and never against a key a restarted Redis started afresh."""
import asyncio
import math

import pytest

from aps.core import Request, Tenant
from aps.store.cluster import Cluster
from aps.store.redis import Spend
from redis_server import Restartable

PRICE = (0.001, 0.001)  # a dollar per thousand tokens: up to $0.07 a request of 20 + 50
TENANT = Tenant("t", budget_usd=10.0, budget_period="total")


def spend(seed: float = 0.0) -> Spend:
    return Spend(10.0, 0.07, "total", math.inf, seed)


def request(rid: str) -> Request:
    return Request(rid, "t", 20, 50, 0.0, price=PRICE)


def ended(req: Request, output_tokens: int) -> Request:
    req.first_scheduled, req.num_output_tokens = 0.0, output_tokens
    return req


async def spent(cluster: Cluster, expected: float) -> float:
    """Redis's spend once the settlements in flight land (a bounded number of turns)."""
    for _ in range(200):
        value = await cluster.redis.spent("t", "total")
        if value == pytest.approx(expected):
            break
        await asyncio.sleep(0.01)
    return value


async def outage(cluster: Cluster, redis: Restartable) -> Request:
    """Stop Redis and let the cluster notice at an admission, which the local limits then
    decide: that request (returned) reserved nothing in Redis."""
    redis.stop()
    during = request("during")
    assert await cluster.admit(during, TENANT, spend()) is None and cluster.degraded
    return during


def test_a_reservation_that_waited_out_an_outage_settles_once_redis_is_back(kept_redis):
    redis = kept_redis

    async def main():
        cluster = Cluster(redis.url, "local", 0.25, 0.1, on_change=lambda: None)
        early, running = request("early"), request("running")
        for req in (early, running):
            assert (await cluster.admit(req, TENANT, spend())).ok  # $0.07 reserved each
        during = await outage(cluster, redis)
        cluster.on_end(ended(early, 10), TENANT)  # $0.03 in all: settled once Redis is back
        cluster.on_end(ended(during, 10), TENANT)  # $0.03, reserved nothing: counted then
        redis.start()
        assert await cluster.redis.spent("t", "total") == pytest.approx(0.14)  # kept its count
        await cluster.step(None)  # the probe: Redis is back
        assert not cluster.degraded
        assert await cluster.redis.spent("t", "total") == pytest.approx(0.13)
        cluster.on_end(ended(running, 30), TENANT)  # in flight through it all: $0.05
        assert await spent(cluster, 0.11) == pytest.approx(0.11)
        await cluster.close()
    asyncio.run(main())


def test_a_redis_restarted_empty_is_not_settled_for_reservations_it_lost(redis):
    async def main():
        cluster = Cluster(redis.url, "local", 0.25, 0.1, on_change=lambda: None)
        early, running = request("early"), request("running")
        for req in (early, running):
            assert (await cluster.admit(req, TENANT, spend())).ok
        during = await outage(cluster, redis)
        cluster.on_end(ended(early, 10), TENANT)
        cluster.on_end(ended(during, 10), TENANT)
        redis.start()  # back empty
        other = Cluster(redis.url, "local", 0.25, 0.1, on_change=lambda: None)
        # another replica starts the period from its ledger, which bills early and during
        assert (await other.admit(request("other"), TENANT, spend(seed=0.06))).ok
        await other.close()
        await cluster.step(None)
        assert await cluster.redis.spent("t", "total") == pytest.approx(0.13)  # none of theirs
        # running ended after the new key started from a ledger without it: its whole cost
        cluster.on_end(ended(running, 30), TENANT)
        assert await spent(cluster, 0.18) == pytest.approx(0.18)
        await cluster.close()
    asyncio.run(main())


def _answer_lost(cluster: Cluster):
    """Make the next settlement run in Redis but its answer never come (a timeout)."""
    real = cluster.redis._settle

    async def lost(**kw):
        cluster.redis._settle = real
        await real(**kw)
        raise TimeoutError("Timeout reading from socket")
    cluster.redis._settle = lost


async def _noticed(cluster: Cluster) -> None:
    for _ in range(200):  # a bounded number of turns for the settlement task
        if cluster.degraded:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the lost answer was never noticed")


def test_a_settlement_whose_answer_is_lost_counts_once(redis):
    """Sent again, a correction (real cost minus reservation, negative) would count twice and
    let the tenant spend more than its budget."""

    async def main():
        cluster = Cluster(redis.url, "local", 0.25, 0.1, on_change=lambda: None)
        first = request("first")
        assert (await cluster.admit(first, TENANT, spend())).ok
        _answer_lost(cluster)
        cluster.on_end(ended(first, 10), TENANT)  # $0.03 of the $0.07 reserved
        await _noticed(cluster)
        await cluster.step(None)  # back: nothing is sent again
        assert await cluster.redis.spent("t", "total") == pytest.approx(0.03)
        await cluster.close()
    asyncio.run(main())


def test_a_late_settlement_sent_again_counts_once(kept_redis):
    redis = kept_redis

    async def main():
        cluster = Cluster(redis.url, "local", 0.25, 0.1, on_change=lambda: None)
        early = request("early")
        assert (await cluster.admit(early, TENANT, spend())).ok
        await outage(cluster, redis)
        cluster.on_end(ended(early, 10), TENANT)  # -$0.04 to settle once Redis is back
        redis.start()
        _answer_lost(cluster)
        await cluster.step(None)  # back, the settlement runs, its answer is lost
        assert cluster.degraded and await cluster.redis.spent("t", "total") == pytest.approx(0.03)
        await cluster.step(None)  # back again: sent again, with its mark
        assert not cluster.degraded and not cluster.late
        assert await cluster.redis.spent("t", "total") == pytest.approx(0.03)
        await cluster.close()
    asyncio.run(main())


def test_what_a_replica_admitted_without_seeing_the_key_counts_whole_once_redis_is_back(kept_redis):
    """A replica that never reserved in the period's key (started during the outage) knows no
    epoch: what it admitted meanwhile counts its whole cost, never nothing."""
    redis = kept_redis

    async def main():
        other = Cluster(redis.url, "local", 0.25, 0.1, on_change=lambda: None)
        assert (await other.admit(request("other"), TENANT, spend())).ok  # $0.07
        await other.close()
        cluster = Cluster(redis.url, "local", 0.25, 0.1, on_change=lambda: None)
        during = await outage(cluster, redis)
        cluster.on_end(ended(during, 10), TENANT)  # $0.03
        redis.start()
        await cluster.step(None)
        assert await cluster.redis.spent("t", "total") == pytest.approx(0.10)
        await cluster.close()
    asyncio.run(main())
