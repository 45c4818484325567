"""`aps bench store`: what the store costs a request.

- The ledger, in SQLite (a file in a temporary directory, WAL, synchronous=NORMAL) and in
  PostgreSQL (a throwaway server on 127.0.0.1 started here, with its default durability:
  fsync on, synchronous_commit on): rows/s committed one per transaction and in batches of
  100, rows/s read back; then the gateway's group commit, with 64 requests ending over and
  over: rows/s committed and how long a response waits for its row's commit (p50, p99).
- PostgreSQL only: one poll for tenant changes (what each replica does every reload_s) and
  one read of a tenant's spend (what seeds a budget period).
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

from aps.bench.local.postgres_server import PostgresMissing, PostgresServer
from aps.bench.local.redis_server import RedisMissing, RedisServer
from aps.core import Request, Status, Tenant, make_policy
from aps.store import SqlStore, Store, open_store
from aps.store.cluster import Cluster
from aps.store.ledger import Ledger
from aps.store.redis import RedisStore

ROW = ("r", "tenant", "sk-aps-abcde", "model", 5, 0.0, 0.1, 1.0, 300, 200, "finished", "", 0.0)


def ledger(store: SqlStore, rows: int, prefix: str) -> dict:
    """Rows/s committed one per transaction and in batches of 100; rows/s read back."""
    out = {}
    t0 = time.perf_counter()
    for i in range(rows):
        store.record([(f"{prefix}r{i}", *ROW[1:])])
    out["ledger_rows_per_s_one_per_commit"] = rows / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for b in range(rows // 100):
        store.record([(f"{prefix}b{b}-{i}", *ROW[1:]) for i in range(100)])
    out["ledger_rows_per_s_batches_of_100"] = rows / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    n = len(store.usage(since=0))
    out["ledger_query_rows_per_s"] = n / (time.perf_counter() - t0)
    return out


async def group_commit(store: SqlStore, seconds: float, clients: int = 64) -> dict:
    """`clients` requests ending over and over, each answered once its row is committed, as
    the gateway does: rows/s committed, and each response's wait for its commit."""
    book = Ledger(store, lambda t: t)
    waits: list[float] = []
    stop = time.perf_counter() + seconds
    count = 0

    async def client(c: int):
        nonlocal count
        while time.perf_counter() < stop:
            count += 1
            req = Request(f"g{c}-{count}", "tenant", 300, 200, 0.0)
            req.status, req.first_scheduled, req.finished = Status.FINISHED, 0.0, 1.0
            t0 = time.perf_counter()
            book.record(req, "sk-aps-abcde", "model")
            await book.settled()
            waits.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    elapsed = time.perf_counter() - t0
    await store.aclose()
    ms = np.array(waits) * 1000
    return {"group_commit_rows_per_s_64_clients": (len(waits) - len(book.pending)) / elapsed,
            "commit_wait_p50_ms": float(np.percentile(ms, 50)),
            "commit_wait_p99_ms": float(np.percentile(ms, 99))}


def _timed_ms(fn, repeat: int = 200) -> float:
    """The median time of one call."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def sqlite(rows: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="aps-bench-") as tmp:
        store = Store(Path(tmp) / "bench.db")
        out = ledger(store, rows, "")
        out.update(asyncio.run(group_commit(store, seconds)))
        store.close()
    return out


def postgres(rows: int, seconds: float, url: str | None = None) -> dict:
    """Against `url` (a database of its own: it gets the rows), or a throwaway server."""
    server = None
    if url is None:
        server = PostgresServer()
        url = server.create_database("bench")
    try:
        with open_store(url) as store:
            out = ledger(store, rows, "")
            out.update(asyncio.run(group_commit(store, seconds)))
            store.put_tenant(Tenant("tenant"))
            out["directory_poll_ms"] = _timed_ms(store.data_version)
            out["tenant_spend_read_ms"] = _timed_ms(lambda: store.spend("tenant", 0.0))
    finally:
        if server is not None:
            server.close()
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
    result = {f"sqlite_{k}": v for k, v in sqlite(rows, seconds).items()}
    try:
        result.update({f"postgres_{k}": v for k, v in postgres(rows, seconds).items()})
    except PostgresMissing as exc:
        result["postgres"] = f"skipped: {exc}"
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
