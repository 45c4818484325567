"""`aps bench cache`: seed 004's cache experiment on `make run`'s engine, the simulated GPU.

The same requests go to two gateways, one with the response cache and one without: prompt and
output lengths from the Azure 2023 conversation trace, a tunable share of them repeating an
earlier prompt (`repeat`), sent by a few concurrent clients to `POST /generate` (greedy, so
cacheable). Printed: the hit ratio, latency of hits and of misses, every request's latency with
and without the cache, and the GPU time the hits saved (the simulated GPU's busy seconds with
and without). Everything runs on 127.0.0.1 and stops by itself.
"""
from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np

from aps.bench.loadgen import _q
from aps.bench.local.server import LocalServer
from aps.workload.scenarios import load_scenario

CONFIG = """
speed: {speed}
cache: {{enabled: {enabled}, ttl_s: 3600}}
tenants:
  - {{id: bench, keys: [sk-bench]}}
"""
MAX_OUTPUT = 256  # output lengths from the trace, clipped: the run stays short


def workload(n: int, repeat: float, seed: int = 0) -> list[tuple[str, int]]:
    """`n` (prompt, max_tokens) pairs: a share `repeat` of them repeat an earlier request."""
    rng = np.random.default_rng(seed)
    trace = load_scenario("azure-conv", requests=n).workload
    calls: list[tuple[str, int]] = []
    for i in range(n):
        if calls and rng.random() < repeat:
            calls.append(calls[int(rng.integers(len(calls)))])
            continue
        words = max(1, int(trace.prompt_tokens[i]) * 3 // 4)  # ~4/3 tokens a word
        prompt = f"request {i}: " + " ".join(["word"] * words)
        calls.append((prompt, int(min(MAX_OUTPUT, trace.output_tokens[i]))))
    return calls


async def _send(url: str, calls: list[tuple[str, int]], clients: int) -> list[dict]:
    """Send every call, `clients` at a time, in order; each result with its client latency."""
    results: list[dict] = [{} for _ in calls]
    queue = iter(enumerate(calls))

    async def client(c: httpx.AsyncClient) -> None:
        for i, (prompt, max_tokens) in queue:
            t0 = time.perf_counter()
            r = await c.post(url + "/generate", json={"prompt": prompt, "max_tokens": max_tokens},
                             headers={"Authorization": "Bearer sk-bench"})
            results[i] = {**r.json(), "status": r.status_code, "seconds": time.perf_counter() - t0}

    async with httpx.AsyncClient(timeout=300) as c:
        await asyncio.gather(*(client(c) for _ in range(clients)))
    return results


def _gateway_run(calls: list[tuple[str, int]], cached: bool, clients: int, speed: float) -> dict:
    server = LocalServer(CONFIG.format(speed=speed, enabled=str(cached).lower()))
    try:
        t0 = time.perf_counter()
        results = asyncio.run(_send(server.url, calls, clients))
        wall = time.perf_counter() - t0
        busy = httpx.get(server.url + "/metrics?format=json").json()["gpu_busy_s"]
    finally:
        server.stop()
    return {"results": results, "wall_s": wall, "gpu_busy_s": busy}


def run(n: int = 300, repeat: float = 0.5, clients: int = 8, speed: float = 10.0) -> dict:
    calls = workload(n, repeat)
    on, off = _gateway_run(calls, True, clients, speed), _gateway_run(calls, False, clients, speed)
    ok = [r for r in on["results"] if r.get("status") == 200]
    hits = [r["seconds"] for r in ok if r["cached"]]
    misses = [r["seconds"] for r in ok if not r["cached"]]
    plain = [r["seconds"] for r in off["results"] if r.get("status") == 200]
    errors = sum(r.get("status") != 200 for r in on["results"] + off["results"])
    return {"requests": n, "repeat": repeat, "clients": clients, "speed": speed,
            "distinct_prompts": len(set(calls)), "hit_ratio": len(hits) / max(1, len(ok)),
            "hit_p50_ms": 1000 * _q(hits, 50), "hit_p99_ms": 1000 * _q(hits, 99),
            "miss_p50_ms": 1000 * _q(misses, 50), "miss_p99_ms": 1000 * _q(misses, 99),
            "with_cache_mean_ms": 1000 * float(np.mean([r["seconds"] for r in ok])),
            "without_cache_mean_ms": 1000 * float(np.mean(plain)),
            "with_cache_wall_s": on["wall_s"], "without_cache_wall_s": off["wall_s"],
            # the simulated GPU's modelled seconds (its wall seconds times its speed)
            "gpu_busy_with_cache_s": on["gpu_busy_s"] * speed,
            "gpu_busy_without_cache_s": off["gpu_busy_s"] * speed,
            "gpu_saved": 1 - on["gpu_busy_s"] / off["gpu_busy_s"] if off["gpu_busy_s"] else 0.0,
            "errors": errors}
