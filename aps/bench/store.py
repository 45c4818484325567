"""`aps bench store`: what the store costs a request.

- Ledger writes/s with SQLite (WAL, synchronous=NORMAL) on a file in a temporary directory:
  one committed transaction per row, as the gateway writes them, and in batches of 100.
- The Redis path of cluster mode, against a real redis-server on 127.0.0.1 (started here, or
  `--redis-url`): the added latency of one admission (the token-bucket script), p50 and p99,
  one at a time; admissions/s with 64 in flight; and one fair-share counter sync.
"""
from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np

from aps.bench.local.redis_server import RedisMissing, RedisServer
from aps.core import Request, Tenant, make_policy
from aps.store import Store
from aps.store.cluster import Cluster
from aps.store.redis import RedisStore

ROW = ("r", "tenant", "sk-aps-abcde", "model", 5, 0.0, 0.1, 1.0, 300, 200, "finished", "", 0.0)


def ledger(rows: int = 20_000) -> dict:
    out = {}
    with tempfile.TemporaryDirectory(prefix="aps-bench-") as tmp:
        store = Store(Path(tmp) / "bench.db")
        t0 = time.perf_counter()
        for i in range(rows):
            store.record([(f"r{i}", *ROW[1:])])
        out["ledger_rows_per_s_one_per_commit"] = rows / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        batch = [(f"b{i}", *ROW[1:]) for i in range(100)]
        for _ in range(rows // 100):
            store.record(batch)
        out["ledger_rows_per_s_batches_of_100"] = rows / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        n = len(store.usage(since=0))
        out["ledger_query_rows_per_s"] = n / (time.perf_counter() - t0)
        store.close()
    return out


async def _redis_path(url: str, sequential: int, seconds: float) -> dict:
    store = RedisStore(url, timeout_s=1.0)
    tenant = Tenant("bench", token_rate=1e12, token_burst=1e12, request_rate=1e12)
    await store.take(tenant, 1)  # connect
    lat = []
    for _ in range(sequential):
        t0 = time.perf_counter()
        await store.take(tenant, 500)
        lat.append(time.perf_counter() - t0)
    done = 0
    stop = time.perf_counter() + seconds

    async def worker():
        nonlocal done
        while time.perf_counter() < stop:
            await store.take(tenant, 500)
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(64)))
    rate = done / (time.perf_counter() - t0)
    policy = make_policy("vtc")
    for i in range(100):  # a hundred tenants with service to share
        policy.note_progress(Request(f"x{i}", f"t{i}", 1, 1, 0.0), 100, 10)
    cluster = Cluster(url, "local", 1.0, 1.0, on_change=lambda: None)
    t0 = time.perf_counter()
    await cluster.sync_counters(policy)
    sync_ms = (time.perf_counter() - t0) * 1000
    await cluster.close()
    await store.close()
    ms = np.array(lat) * 1000
    return {"redis_admit_p50_ms": float(np.percentile(ms, 50)),
            "redis_admit_p99_ms": float(np.percentile(ms, 99)),
            "redis_admissions_per_s_64_in_flight": rate,
            "redis_counter_sync_100_tenants_ms": sync_ms}


def run(redis_url: str | None = None, rows: int = 20_000, sequential: int = 2000,
        seconds: float = 3.0) -> dict:
    result = ledger(rows)
    server = None
    if redis_url is None:
        try:
            server = RedisServer()
        except RedisMissing as exc:
            result["redis"] = f"skipped: {exc}"
            return result
        redis_url = server.url
    try:
        result.update(asyncio.run(_redis_path(redis_url, sequential, seconds)))
    finally:
        if server is not None:
            server.stop()
    return result
