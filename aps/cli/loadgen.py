"""Load against a running gateway on 127.0.0.1: the seeds' stress test and `aps bench serve`.

Every loop here is bounded in count and time and stops by itself.
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import numpy as np

DEMO_KEYS = {"tenant_a": "sk-demo-tenant_a", "tenant_b": "sk-demo-tenant_b"}


async def stress(url: str, per_tenant: int = 50, tokens: int = 20) -> dict[str, dict]:
    """The seeds' stress test: tenant_a (bid 10) and tenant_b (bid 1) send `per_tenant`
    requests each, all at once, to `/infer`."""
    async def one(c: httpx.AsyncClient, tenant: str, bid: int, i: int):
        t0 = time.perf_counter()
        r = await c.post(url + "/infer", headers={"Authorization": f"Bearer {DEMO_KEYS[tenant]}"},
                         json={"tenant_id": tenant, "prompt": f"request {i} of {tenant}",
                               "tokens_requested": tokens, "priority_bid": bid})
        return tenant, r.status_code, (time.perf_counter() - t0), r.json()

    limits = httpx.Limits(max_connections=2 * per_tenant)
    async with httpx.AsyncClient(timeout=120, limits=limits) as c:
        jobs = [one(c, t, bid, i) for i in range(per_tenant) for t, bid in
                (("tenant_a", 10), ("tenant_b", 1))]
        results = await asyncio.gather(*jobs)
    out = {}
    for tenant in DEMO_KEYS:
        mine = [r for r in results if r[0] == tenant]
        ok = [r for r in mine if r[1] == 200]
        ttft = [r[3]["ttft_ms"] / 1000 for r in ok]
        out[tenant] = {"requests": len(mine), "ok": len(ok),
                       "refused": {str(code): sum(1 for r in mine if r[1] == code)
                                   for code in sorted({r[1] for r in mine if r[1] != 200})},
                       "ttft_p50_s": _q(ttft, 50), "ttft_p99_s": _q(ttft, 99),
                       "latency_p50_s": _q([r[2] for r in ok], 50)}
    return out


def _q(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BENCH_CONFIG = """
tenants:
  - {id: bench, keys: [sk-bench]}   # no limits: the benchmark measures the gateway, not a bucket
batch: {max_waiting: 100000}
"""


class LocalServer:
    """`aps serve` in a child process on a free loopback port, with `config` (YAML text);
    stopped by PID with SIGTERM, as an operator would."""

    def __init__(self, config: str, speed: float | None = None, log_path=None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._config = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        self._config.write(config)
        self._config.close()
        args = [sys.executable, "-m", "aps", "serve", "--port", str(self.port),
                "--config", self._config.name]
        if speed is not None:
            args += ["--speed", str(speed)]
        self._log = open(log_path, "w") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "APS_CONFIG": ""})
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server on {self.url} did not start")

    def stop(self) -> int:
        """SIGTERM, wait for the drain, and return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        if os.path.exists(self._config.name):
            os.unlink(self._config.name)
        return self.proc.returncode


async def added_latency(url: str, n: int = 300) -> dict:
    """One request at a time to /infer: client-seen latency minus the scheduler's own."""
    added = []
    async with httpx.AsyncClient(timeout=30) as c:
        for i in range(n):
            t0 = time.perf_counter()
            r = await c.post(url + "/infer", headers={"Authorization": "Bearer sk-bench"},
                             json={"prompt": "hi", "tokens_requested": 1})
            seen = time.perf_counter() - t0
            added.append(seen - r.json()["latency_ms"] / 1000)
    return {"added_p50_ms": _q(added, 50) * 1000, "added_p99_ms": _q(added, 99) * 1000}


async def throughput(url: str, seconds: float, concurrency: int, stream: bool,
                     max_tokens: int) -> dict:
    """Closed-loop clients for `seconds`: requests/s, and streamed tokens/s when streaming."""
    deadline = time.monotonic() + seconds
    counts = {"requests": 0, "tokens": 0, "errors": 0}
    body = {"prompt": "hi", "max_tokens": max_tokens, "stream": stream}
    headers = {"Authorization": "Bearer sk-bench"}

    async def worker(c: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            if stream:
                async with c.stream("POST", url + "/v1/completions", json=body, headers=headers) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data: {"):
                            counts["tokens"] += 1
                ok = r.status_code == 200
            else:
                ok = (await c.post(url + "/v1/completions", json=body, headers=headers)).status_code == 200
            counts["requests" if ok else "errors"] += 1

    t0 = time.monotonic()
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as c:
        await asyncio.gather(*(worker(c) for _ in range(concurrency)))
    elapsed = time.monotonic() - t0
    return {"requests_per_s": counts["requests"] / elapsed, "tokens_per_s": counts["tokens"] / elapsed,
            "errors": counts["errors"], "concurrency": concurrency}


def bench_serve(seconds: float = 5.0) -> dict:
    """Start a gateway whose simulated GPU runs 1000x faster than real time (so the engine's
    own time is negligible) and measure what the gateway itself costs."""
    server = LocalServer(BENCH_CONFIG, speed=1000)
    try:
        latency = asyncio.run(added_latency(server.url))
        plain = asyncio.run(throughput(server.url, seconds, 32, False, 16))
        streamed = asyncio.run(throughput(server.url, seconds, 32, True, 256))
    finally:
        server.stop()
    return {**latency, "requests_per_s": plain["requests_per_s"],
            "streamed_tokens_per_s": streamed["tokens_per_s"],
            "errors": plain["errors"] + streamed["errors"]}
