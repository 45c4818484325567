"""Cluster mode on a real redis-server: shared token buckets, shared fair-share counters, and
two real gateway processes whose limits hold together, through a Redis restart."""
import asyncio
import re
import sqlite3
import time

import httpx
import pytest

from aps.bench.local.server import LocalServer
from aps.core import OverLimit, Request, Tenant, make_policy
from aps.store.cluster import Cluster
from aps.store.redis import RedisStore
from budgets import PRICES, THRIFTY, spend_alternately

RATE, BURST = 300, 600


def test_shared_bucket_takes_atomically_and_refunds_up_to_the_burst(redis):
    async def main():
        store = RedisStore(redis.url)
        t = Tenant("a", token_rate=10, token_burst=100, request_rate=1000, request_burst=1000)
        results = await asyncio.gather(*(store.take(t, 30) for _ in range(10)))
        assert sum(r.ok for r in results) == 3  # 3 x 30 of a burst of 100, never 4
        no = next(r for r in results if not r.ok)
        assert no.reason == "tokens" and no.retry_after == pytest.approx(2.0, abs=0.05)
        await store.refund(t, 1000)  # capped at the burst
        assert (await store.take(t, 100)).ok and not (await store.take(t, 5)).ok
        r = Tenant("r", request_rate=2, request_burst=1)
        assert (await store.take(r, 1)).ok
        refused = await store.take(r, 1)
        assert refused.reason == "requests" and refused.retry_after == pytest.approx(0.5, abs=0.05)
        ttl = await store.client.pttl("aps:{r}:requests")
        assert 0 < ttl <= 1600  # an idle tenant's keys go away once its bucket is full again
        await store.close()
    asyncio.run(main())


def test_fair_share_counters_follow_service_on_other_replicas(redis):
    async def main():
        one = Cluster(redis.url, "local", 0.5, 0.1, on_change=lambda: None)
        two = Cluster(redis.url, "local", 0.5, 0.1, on_change=lambda: None)
        p1, p2 = make_policy("vtc"), make_policy("vtc")
        for p in (p1, p2):  # both replicas have a backlog of both tenants
            p.push(Request("x", "heavy", 10, 10, 0.0))
            p.push(Request("y", "light", 10, 10, 1.0))
        p1.note_progress(Request("h", "heavy", 1, 1, 0.0), 1000, 0)  # replica 1 served heavy
        assert p2.peek().tenant_id == "heavy"  # replica 2 alone would serve heavy first
        await one.sync_counters(p1)
        await two.sync_counters(p2)
        assert p2.counters["heavy"] == pytest.approx(1000)
        assert p2.peek().tenant_id == "light"  # the cluster's view: light has had less
        await one.sync_counters(p1)  # nothing new: nothing counted twice
        await two.sync_counters(p2)
        assert p2.counters["heavy"] == pytest.approx(1000) and p1.counters["heavy"] == 1000
        await one.close()
        await two.close()
    asyncio.run(main())


CONFIG = f"""
speed: 500
store: {{reload_s: 0.2, redis_url: REDIS, redis_down: local}}
tenants:
  - {{id: capped, keys: [sk-capped-key], token_rate: {RATE}, token_burst: {BURST}}}
"""


def gateways(tmp_path, redis_url, n=2, down="local"):
    config = CONFIG.replace("REDIS", redis_url).replace("redis_down: local", f"redis_down: {down}")
    db = tmp_path / "shared.db"  # one database for the cluster: the same tenants everywhere
    return [LocalServer(config, log_path=tmp_path / f"gw{i}.log", db_path=db) for i in range(n)]


async def admitted_tokens(urls, seconds: float, clients_per_url: int = 3) -> dict:
    """Send as fast as allowed to every replica for `seconds`; sum the tokens each admitted
    request reserved (prompt + max_tokens; the simulated GPU generates all of them)."""
    stop = time.monotonic() + seconds
    counts = {"tokens": 0, "ok": 0, "refused": 0, "other": 0}

    async def client(c, url):
        while time.monotonic() < stop:
            r = await c.post(url + "/v1/completions", json={"model": "sim-llama-3-8b", "prompt": "x" * 40,
                                                            "max_tokens": 20},
                             headers={"Authorization": "Bearer sk-capped-key"})
            if r.status_code == 200:
                usage = r.json()["usage"]
                counts["tokens"] += usage["prompt_tokens"] + usage["completion_tokens"]
                counts["ok"] += 1
            elif r.status_code == 429:
                counts["refused"] += 1
                await asyncio.sleep(min(float(r.headers["retry-after"]), 0.02))
            else:
                counts["other"] += 1
                await asyncio.sleep(0.02)

    async with httpx.AsyncClient(timeout=10) as c:
        await asyncio.gather(*(client(c, u) for u in urls for _ in range(clients_per_url)))
    return counts


def degraded(url) -> float:
    text = httpx.get(url + "/metrics").text
    return float(re.search(r"^aps:store_degraded (\S+)", text, re.M).group(1))


def test_two_replicas_share_one_tenant_limit(tmp_path, redis):
    servers = gateways(tmp_path, redis.url)
    try:
        got = asyncio.run(admitted_tokens([s.url for s in servers], 10.0))
    finally:
        for s in servers:
            s.stop()
    expected = RATE * 10 + BURST
    assert got["other"] == 0 and got["refused"] > 0
    assert abs(got["tokens"] - expected) <= 0.05 * expected, got


def test_redis_restart_degrades_to_local_limits_and_recovers(tmp_path, redis):
    servers = gateways(tmp_path, redis.url)
    urls = [s.url for s in servers]
    try:
        asyncio.run(admitted_tokens(urls, 1.0))
        redis.stop()
        during = asyncio.run(admitted_tokens(urls, 1.5))
        assert during["ok"] > 0 and during["other"] == 0  # served, on per-replica limits
        assert [degraded(u) for u in urls] == [1.0, 1.0]
        redis.start()
        deadline = time.monotonic() + 10
        while any(degraded(u) for u in urls):
            assert time.monotonic() < deadline, "the gateways did not notice Redis is back"
            time.sleep(0.1)
        after = asyncio.run(admitted_tokens(urls, 8.0))
    finally:
        for s in servers:
            assert s.stop() == 0  # no crash: a clean drain and exit
    expected = RATE * 8 + BURST  # the restarted Redis starts with full buckets
    assert abs(after["tokens"] - expected) <= 0.05 * expected, after


def test_closed_mode_refuses_while_redis_is_down(tmp_path, redis):
    (server,) = gateways(tmp_path, redis.url, n=1, down="closed")
    try:
        redis.stop()
        r = httpx.post(server.url + "/v1/completions", json={"model": "sim-llama-3-8b", "prompt": "hi",
                                                             "max_tokens": 2},
                       headers={"Authorization": "Bearer sk-capped-key"}, timeout=10)
        assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
        assert r.headers["retry-after"]
        redis.start()
        deadline = time.monotonic() + 10
        while degraded(server.url):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        ok = httpx.post(server.url + "/v1/completions", json={"model": "sim-llama-3-8b", "prompt": "hi",
                                                              "max_tokens": 2},
                        headers={"Authorization": "Bearer sk-capped-key"}, timeout=10)
        assert ok.status_code == 200

    finally:
        server.stop()


def test_demote_in_cluster_mode_queues_instead_of_refusing(redis):
    async def main():
        cluster = Cluster(redis.url, "local", 0.5, 0.1, on_change=lambda: None)
        t = Tenant("d", token_rate=1, token_burst=20, over_limit=OverLimit.DEMOTE)
        first, second = Request("1", "d", 10, 10, 0.0), Request("2", "d", 10, 10, 0.0)
        assert (await cluster.admit(first, t)).ok and not first.demoted
        taken = await cluster.admit(second, t)
        assert not taken.ok and second.demoted
        await cluster.close()
    asyncio.run(main())


def test_fair_share_holds_across_two_replicas(tmp_path, redis):
    """Heavy keeps both replicas busy, light uses only replica B (one seat each, vtc). Alone,
    B would split its seat about evenly (light got 48% of B when measured) and heavy would get
    three times light's service over the cluster; with shared counters B knows heavy is served
    on A too and gives light its seat, so the two are even over the cluster."""
    config = f"""
speed: 2
policy: vtc
batch: {{max_num_seqs: 1}}
store: {{redis_url: {redis.url}, sync_s: 0.1}}
tenants:
  - {{id: heavy, keys: [sk-heavy-key]}}
  - {{id: light, keys: [sk-light-key]}}
"""
    db = tmp_path / "shared.db"
    a, b = (LocalServer(config, log_path=tmp_path / f"{n}.log", db_path=db) for n in "ab")
    done = {"heavy@a": 0, "heavy@b": 0, "light@b": 0}

    async def load(seconds=6.0):
        stop = time.monotonic() + seconds

        async def client(c, url, key, label):
            while time.monotonic() < stop:
                r = await c.post(url + "/v1/completions", headers={"Authorization": f"Bearer {key}"},
                                 json={"model": "sim-llama-3-8b", "prompt": "x" * 40, "max_tokens": 32})
                assert r.status_code == 200
                if time.monotonic() < stop:
                    done[label] += 1
        async with httpx.AsyncClient(timeout=60) as c:
            await asyncio.gather(*(client(c, a.url, "sk-heavy-key", "heavy@a") for _ in range(4)),
                                 *(client(c, b.url, "sk-heavy-key", "heavy@b") for _ in range(4)),
                                 *(client(c, b.url, "sk-light-key", "light@b") for _ in range(4)))
    try:
        asyncio.run(load())
    finally:
        a.stop()
        b.stop()
    heavy = done["heavy@a"] + done["heavy@b"]
    print(f"\nrequests served in 6 s: {done}")
    assert done["light@b"] >= 0.8 * (done["light@b"] + done["heavy@b"]), done
    assert 0.75 * heavy <= done["light@b"] <= 1.25 * heavy, done


BUDGET_CONFIG = f"""
speed: 500
{PRICES}
store: {{reload_s: 0.2, redis_url: REDIS}}
tenants:
  - {THRIFTY}
"""


def test_two_replicas_share_one_budget(tmp_path, redis):
    """Each replica alone would let the tenant spend $0.50; together they let it spend $0.50,
    not twice that, refusing on both once it is spent."""
    db = tmp_path / "shared.db"
    config = BUDGET_CONFIG.replace("REDIS", redis.url)
    servers = [LocalServer(config, log_path=tmp_path / f"gw{i}.log", db_path=db) for i in range(2)]
    try:
        codes, spent = spend_alternately(servers)
        assert "ok" in codes and codes[-2:] == ["budget_exceeded"] * 2
        assert spent[0] == pytest.approx(spent[1])  # one spend, seen alike by both
    finally:
        for s in servers:
            s.stop()
    with sqlite3.connect(db) as ledger:
        billed = ledger.execute("SELECT SUM(cost) FROM usage").fetchone()[0]
    assert 0.4 < billed <= 0.5 + 1e-9
    assert billed == pytest.approx(spent[0], abs=1e-6)
