"""`aps bench soak` and `aps bench overload`: the gateway on the simulated GPU, held under load
for minutes, and pushed past what it can serve. Both start their own `aps serve` on 127.0.0.1
and read its memory from /proc; every loop is bounded in time and stops by itself.
"""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np

from aps.bench.loadgen import RawConnection, throughput
from aps.bench.local.server import LocalServer

KEY = {"Authorization": "Bearer sk-bench"}
SOAK_CONFIG = """
speed: {speed}
tenants:
  - {{id: bench, keys: [sk-bench]}}
batch: {{max_waiting: 100000}}
"""
OVERLOAD_CONFIG = """
speed: 1
tenants:
  - {id: bench, keys: [sk-bench]}
batch: {max_num_seqs: 16, max_waiting: 64}
"""


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def held(url: str, settle_s: float = 5.0) -> dict[str, int]:
    """What the gateway still holds once nothing is in flight (waits up to `settle_s` for the
    last requests to end)."""
    import httpx
    deadline = time.monotonic() + settle_s
    while True:
        sizes = httpx.get(url + "/metrics?format=json", timeout=5).json()["held"]
        if not any(sizes.values()) or time.monotonic() > deadline:
            return sizes
        time.sleep(0.1)


# -- soak ------------------------------------------------------------------------------------

async def _stream_clients(url: str, seconds: float, streams: int, max_tokens: int) -> dict:
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"prompt": "hello", "max_tokens": max_tokens, "stream": True}).encode()
    deadline = time.monotonic() + seconds
    counts = {"requests": 0, "tokens": 0, "errors": 0}

    async def client() -> None:
        while time.monotonic() < deadline:
            try:
                async with RawConnection(host, int(port)) as conn:
                    while time.monotonic() < deadline:
                        status, payload = await conn.post("/v1/completions", body, KEY)
                        ok = status == 200 and payload.rstrip().endswith(b"data: [DONE]")
                        counts["requests" if ok else "errors"] += 1
                        counts["tokens"] += payload.count(b'"text"')
            except (OSError, asyncio.IncompleteReadError):
                counts["errors"] += 1

    await asyncio.gather(*(client() for _ in range(streams)))
    return counts


def soak(minutes: float, streams: int, speed: float = 20.0, max_tokens: int = 64) -> dict:
    """`streams` streaming clients for `minutes` against the simulated GPU at `speed`, memory
    read after a warm-up and then about ten times more, so a leak shows as a slope."""
    server = LocalServer(SOAK_CONFIG.format(speed=speed))
    try:
        seconds = minutes * 60
        warmup = min(30.0, seconds / 5)
        start = rss_mb(server.proc.pid)
        asyncio.run(_stream_clients(server.url, warmup, streams, max_tokens))
        series = [(warmup, rss_mb(server.proc.pid))]  # (seconds into the run, RSS MB)
        counts = {"requests": 0, "tokens": 0, "errors": 0}
        step = (seconds - warmup) / 10
        for i in range(10):
            part = asyncio.run(_stream_clients(server.url, step, streams, max_tokens))
            counts = {k: counts[k] + part[k] for k in counts}
            series.append((warmup + (i + 1) * step, rss_mb(server.proc.pid)))
        left = held(server.url)
    finally:
        server.stop()
    (_, first), (t1, last) = series[0], series[-1]
    return {"minutes": minutes, "streams": streams, "speed": speed, **counts,
            "rss_mb": {"start_mb": start, "after_warmup_mb": first, "end_mb": last,
                       "series": series},
            "rss_growth_mb": last - first,
            "rss_slope_mb_per_hour": (last - series[len(series) // 2][1]) /
                                     max(1e-9, t1 - series[len(series) // 2][0]) * 3600,
            "held_after": left}


# -- overload --------------------------------------------------------------------------------

async def _open_loop(url: str, rate: float, seconds: float, pool: int = 256) -> list:
    """Requests at a fixed rate whatever the answers: (status, seconds, error code) each."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"prompt": "hello", "max_tokens": 64}).encode()
    free: asyncio.Queue = asyncio.Queue()
    for _ in range(pool):
        free.put_nowait(await RawConnection(host, int(port)).__aenter__())
    results: list = []

    async def one() -> None:
        conn = await free.get()
        t0 = time.perf_counter()
        try:
            status, payload = await conn.post("/v1/completions", body, KEY)
            code = json.loads(payload)["error"]["code"] if status != 200 else None
        except (OSError, asyncio.IncompleteReadError, ValueError):
            status, code = None, "connection"
            conn = await RawConnection(host, int(port)).__aenter__()
        results.append((status, time.perf_counter() - t0, code))
        free.put_nowait(conn)

    loop = asyncio.get_running_loop()
    start, tasks = loop.time(), []
    for i in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    while not free.empty():
        await free.get_nowait().__aexit__(None, None, None)
    return results


def overload(factor: float = 4.0, seconds: float = 10.0) -> dict:
    """Open-loop load at `factor` times the capacity measured first (closed loop, 32 clients),
    on a simulated GPU at real speed with a bounded queue: what is refused, how fast, and
    whether anything breaks."""
    server = LocalServer(OVERLOAD_CONFIG)
    try:
        capacity = asyncio.run(throughput(server.url, 4.0, 32, False, 64))["requests_per_s"]
        rss_start = rss_mb(server.proc.pid)
        results = asyncio.run(_open_loop(server.url, factor * capacity, seconds))
        rss_end = rss_mb(server.proc.pid)
        left = held(server.url, settle_s=30)
    finally:
        server.stop()
    refused = [(s, t, c) for s, t, c in results if s != 200]
    by_code: dict[str, int] = {}
    for status, _, code in refused:
        key = f"{status} {code}"
        by_code[key] = by_code.get(key, 0) + 1
    latency = [t * 1000 for s, t, _ in refused if s in (429, 503)]
    return {"factor": factor, "capacity_requests_per_s": capacity,
            "offered_requests_per_s": factor * capacity, "requests": len(results),
            "accepted": len(results) - len(refused), "refused": by_code,
            "refusal_p50_ms": float(np.percentile(latency, 50)) if latency else None,
            "refusal_p99_ms": float(np.percentile(latency, 99)) if latency else None,
            "server_errors": sum(1 for s, _, c in results
                                 if s is not None and s >= 500 and c != "queue_full"),
            "rss_mb": {"start": rss_start, "end": rss_end}, "held_after": left}
