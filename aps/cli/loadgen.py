"""Load against a running gateway on 127.0.0.1: the seeds' stress test and `aps bench serve`.

Every loop here is bounded in count and time and stops by itself.
"""
from __future__ import annotations

import asyncio
import json
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

    def __init__(self, config: str, speed: float | None = None, log_path=None,
                 db_path=None, env: dict[str, str] | None = None, port: int | None = None):
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="aps-server-")
        self.config_path = os.path.join(self._dir.name, "config.yaml")
        with open(self.config_path, "w") as f:
            f.write(config)
        # a fresh database of its own unless told which to share
        self.db_path = str(db_path or os.path.join(self._dir.name, "aps.db"))
        args = [sys.executable, "-m", "aps", "serve", "--port", str(self.port),
                "--config", self.config_path]
        if speed is not None:
            args += ["--speed", str(speed)]
        self._log = open(log_path, "a") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "APS_CONFIG": "", "APS_DB": self.db_path,
                                          **(env or {})})
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
        self._cleanup()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, with no drain and no goodbye."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._log is not subprocess.DEVNULL and not self._log.closed:
            self._log.close()
        self._dir.cleanup()


async def added_latency(url: str, n: int = 300) -> dict:
    """One request at a time to /infer: client-seen latency minus the scheduler's own."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"prompt": "hi", "tokens_requested": 1}).encode()
    added = []
    async with RawConnection(host, int(port)) as conn:
        for _ in range(n):
            t0 = time.perf_counter()
            status, payload = await conn.post("/infer", body, {"Authorization": "Bearer sk-bench"})
            seen = time.perf_counter() - t0
            added.append(seen - json.loads(payload)["latency_ms"] / 1000)
    return {"added_p50_ms": _q(added, 50) * 1000, "added_p99_ms": _q(added, 99) * 1000}


class RawConnection:
    """A minimal keep-alive HTTP/1.1 client for the load generator. httpx is the right client
    for everything else, but at hundreds of requests a second its own CPU use, on the same two
    cores as the server, would be what the benchmark measured."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port

    async def __aenter__(self) -> "RawConnection":
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc) -> None:
        self.writer.close()

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """Send a POST; returns the status and the body (chunks joined)."""
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: "
                          f"application/json\r\nContent-Length: {len(body)}\r\n{head}\r\n"
                          .encode() + body)
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        if "content-length" in fields:
            payload = await self.reader.readexactly(int(fields["content-length"]))
        else:  # chunked: read chunks until the empty one
            parts = []
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            await self.reader.readexactly(2)
            payload = b"".join(parts)
        return status, payload


async def throughput(url: str, seconds: float, concurrency: int, stream: bool,
                     max_tokens: int) -> dict:
    """Closed-loop clients for `seconds`: requests/s, and streamed tokens/s when streaming."""
    host, port = url.removeprefix("http://").split(":")
    deadline = time.monotonic() + seconds
    counts = {"requests": 0, "tokens": 0, "errors": 0}
    body = json.dumps({"prompt": "hi", "max_tokens": max_tokens, "stream": stream}).encode()
    headers = {"Authorization": "Bearer sk-bench"}

    async def worker() -> None:
        async with RawConnection(host, int(port)) as conn:
            while time.monotonic() < deadline:
                status, payload = await conn.post("/v1/completions", body, headers)
                counts["requests" if status == 200 else "errors"] += 1
                counts["tokens"] += payload.count(b"data: {")

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
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
