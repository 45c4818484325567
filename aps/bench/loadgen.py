"""Load against a running gateway on 127.0.0.1: the seeds' stress test, and the closed-loop
clients `aps bench serve` measures with.

Every loop here is bounded in count and time and stops by itself.
"""
from __future__ import annotations

import asyncio
import json
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
