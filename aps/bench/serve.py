"""`aps bench serve`: what the gateway itself costs (added latency, requests/s, streamed
tokens/s), measured against a gateway whose simulated GPU runs 1000x faster than real time."""
from __future__ import annotations

import asyncio

from aps.bench.loadgen import added_latency, throughput
from aps.bench.local.server import LocalServer

BENCH_CONFIG = """
tenants:
  - {id: bench, keys: [sk-bench]}   # no limits: the benchmark measures the gateway, not a bucket
batch: {max_waiting: 100000}
"""


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
