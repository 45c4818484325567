"""A pool of upstream OpenAI-compatible servers (vLLM, SGLang, TGI, llama.cpp) behind the gateway.

The gateway owns the queue: it admits requests in policy order and sends each one to a replica
with room, so fairness and priority are decided here, not by the engine's own FCFS queue. The
pool knows, per replica, its capacity (requests and tokens in flight), what is outstanding,
whether it answers its health check and its circuit breaker; it picks a replica with a router
and streams one request from it (`aps.engines.upstream_http`). One `aiohttp.ClientSession` is
shared by every request, so connections are pooled and kept alive.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Iterable, Sequence

import aiohttp

from aps.engines.breaker import BreakerState, CircuitBreaker
from aps.engines.routing import Router
from aps.engines.upstream_http import (Chunk, UpstreamCall, read_capacity,
                                       stream_chunks, upstream_body)

log = logging.getLogger("aps.upstream")
# Idle connections are closed after this long, before the servers close them (uvicorn, which
# vLLM and SGLang run on, after 5 s): a request is never sent on a connection being closed.
KEEPALIVE_S = 4.0


@dataclass(slots=True, eq=False)
class Replica:
    url: str  # the server's root, e.g. http://127.0.0.1:8000 (no /v1)
    model: str  # the name the server serves: replaces the client's `model`
    max_in_flight: int = 64
    max_tokens_in_flight: int = 65536  # prompt + max_tokens of the requests sent to it
    priority: bool = False  # the server honours `priority` (vLLM --scheduling-policy priority)
    capacity_from_metrics: bool = False  # read its KV token capacity from its /metrics
    api_key: str | None = None  # sent as `Authorization: Bearer` to the server
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    healthy: bool = False  # until the first health check says otherwise
    num_in_flight: int = 0
    num_tokens_in_flight: int = 0
    num_errors: int = 0

    def available(self, now: float) -> bool:
        return self.healthy and self.breaker.allows(now)

    def has_room(self, num_tokens: int) -> bool:
        return (self.num_in_flight < self.max_in_flight
                and self.num_tokens_in_flight + num_tokens <= self.max_tokens_in_flight)

    def seats(self, now: float) -> int:
        """Requests it can take now: all of its capacity, one trial when half-open, or none."""
        if not self.healthy:
            return 0
        state = self.breaker.state(now)
        if state is BreakerState.CLOSED:
            return self.max_in_flight
        return 1 if state is BreakerState.HALF_OPEN else 0


class BusyTime:
    """Wall seconds during which something was in flight, however many pools count into it
    (the gateway's view of upstream utilization: it cannot see the servers' GPUs)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock, self._in_flight, self._since, self._total = clock, 0, 0.0, 0.0

    def start(self) -> None:
        if not self._in_flight:
            self._since = self.clock()
        self._in_flight += 1

    def stop(self) -> None:
        self._in_flight -= 1
        if not self._in_flight:
            self._total += self.clock() - self._since

    @property
    def seconds(self) -> float:
        return self._total + (self.clock() - self._since if self._in_flight else 0.0)


_PROBE_TIMEOUT = aiohttp.ClientTimeout(total=2.0)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long to wait for a replica: to connect (a dead one is found this fast), for the next
    bytes of a streamed answer (a stalled one: its gap between tokens), and for the whole of an
    answer that is not streamed (the generation time of a long request)."""

    connect_s: float = 5.0
    stall_s: float = 30.0
    response_s: float = 600.0

    def for_stream(self, stream: bool) -> aiohttp.ClientTimeout:
        read = self.stall_s if stream else self.response_s
        # `connect` bounds the name lookup too (the pool never queues: its connector has no limit)
        return aiohttp.ClientTimeout(connect=self.connect_s, sock_connect=self.connect_s,
                                     sock_read=read)


class UpstreamPool:
    def __init__(self, replicas: Sequence[Replica], routing: str = "least-outstanding-tokens",
                 health_interval_s: float = 2.0, clock: Callable[[], float] = time.monotonic,
                 timeouts: Timeouts | None = None, busy: BusyTime | None = None):
        if not replicas:
            raise ValueError("an upstream pool needs at least one replica")
        urls = [r.url for r in replicas]
        if len(set(urls)) != len(urls):
            raise ValueError("two upstream replicas have the same url")
        self.replicas = list(replicas)
        self.router = Router(routing, self.replicas)
        self.model_name = self.replicas[0].model
        self.health_interval_s = health_interval_s
        self.busy = busy or BusyTime(clock)  # shared by the pools of one gateway
        self.on_change: Callable[[], None] | None = None  # the dispatcher's wake-up
        self.clock = clock  # monotonic seconds, for breakers and busy time
        self.timeouts = timeouts or Timeouts()
        self.client: aiohttp.ClientSession | None = None
        self._task: asyncio.Task | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S)
        self.client = aiohttp.ClientSession(connector=connector,
                                            timeout=self.timeouts.for_stream(False))
        await self.check_health()
        for replica in self.replicas:
            if replica.capacity_from_metrics and replica.healthy:
                await self._read_capacity(replica)
        self._task = asyncio.create_task(self._health_loop(), name="aps-upstream-health")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.client is not None:
            await self.client.close()

    # -- health ----------------------------------------------------------------------------

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval_s)
            try:
                await self.check_health()
            except Exception:  # never let a probe bug stop the probing
                log.exception("health check failed")

    async def check_health(self) -> None:
        results = await asyncio.gather(*(self._probe(r) for r in self.replicas))
        changed = False
        for replica, ok in zip(self.replicas, results):
            if ok != replica.healthy:
                log.warning("upstream %s is %s", replica.url, "healthy" if ok else "unhealthy")
                replica.healthy, changed = ok, True
        if changed and self.on_change is not None:
            self.on_change()

    async def _probe(self, replica: Replica) -> bool:
        """`GET /health`; servers without one (404) are asked `GET /v1/models` instead."""
        try:
            status = await self._get(replica.url + "/health")
            if status in (404, 405):
                headers = {"Authorization": f"Bearer {replica.api_key}"} if replica.api_key else None
                status = await self._get(replica.url + "/v1/models", headers)
            return status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return False

    async def _get(self, url: str, headers: dict | None = None, text: bool = False):
        """A GET bounded by 2 s: its status, or (`text`) its body."""
        assert self.client is not None
        async with self.client.get(url, headers=headers, timeout=_PROBE_TIMEOUT) as r:
            return await r.text() if text else r.status

    async def _read_capacity(self, replica: Replica) -> None:
        try:
            text = await self._get(replica.url + "/metrics", text=True)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("upstream %s: cannot read /metrics (%s); keeping the configured capacity",
                        replica.url, exc)
            return
        tokens = read_capacity(text)
        if tokens is None:
            log.warning("upstream %s: no KV capacity in /metrics; keeping the configured one",
                        replica.url)
        else:
            replica.max_tokens_in_flight = tokens

    # -- capacity and routing --------------------------------------------------------------

    def seats(self) -> int:
        now = self.clock()
        return sum(r.seats(now) for r in self.replicas)

    @property
    def max_request_tokens(self) -> int:
        """The largest request (prompt + max_tokens) any replica could ever take."""
        return max(r.max_tokens_in_flight for r in self.replicas)

    def pick(self, num_tokens: int, prompt: str, avoid: Iterable[str] = ()) -> Replica | None:
        """A replica that is up and has room, in the router's order. Replicas in `avoid` (that
        already failed this request) are taken only when no other replica is up at all."""
        now, avoid = self.clock(), set(avoid)
        order = [r for r in self.router.order(prompt) if r.available(now)]
        fresh = [r for r in order if r.url not in avoid]
        for replica in fresh or order:
            if replica.has_room(num_tokens):
                return replica
        return None

    @property
    def busy_s(self) -> float:
        """Wall seconds during which some replica had a request in flight."""
        return self.busy.seconds

    @property
    def max_tokens(self) -> int:
        """Prompt + max_tokens the whole pool can hold in flight."""
        return sum(r.max_tokens_in_flight for r in self.replicas)

    def acquire(self, replica: Replica, num_tokens: int) -> None:
        self.busy.start()
        replica.num_in_flight += 1
        replica.num_tokens_in_flight += num_tokens
        replica.breaker.on_send(self.clock())

    def release(self, replica: Replica, num_tokens: int) -> None:
        replica.num_in_flight -= 1
        replica.num_tokens_in_flight -= num_tokens
        self.busy.stop()

    def on_success(self, replica: Replica) -> None:
        replica.breaker.on_success()

    def on_failure(self, replica: Replica) -> None:
        replica.num_errors += 1
        was = replica.breaker.state(self.clock())
        replica.breaker.on_failure(self.clock())
        if was is not BreakerState.OPEN and replica.breaker.opened_at is not None:
            log.warning("upstream %s: circuit open for %.0f s after %d failures", replica.url,
                        replica.breaker.cooldown_s, replica.breaker.num_failures)
            if self.on_change is not None:
                self.on_change()

    def on_abandon(self, replica: Replica) -> None:
        replica.breaker.on_abandon()

    # -- one request -----------------------------------------------------------------------

    def stream(self, replica: Replica, call: UpstreamCall, max_tokens: int,
               bid: int) -> AsyncIterator[Chunk]:
        """The request's chunks from `replica`. Raises UpstreamError; closing the iterator (or
        cancelling its task) closes the HTTP stream, which makes the server abort the request."""
        assert self.client is not None, "start() the pool first"
        body = upstream_body(call, replica.model, max_tokens, bid if replica.priority else None)
        return stream_chunks(self.client, replica.url, call.chat, body, replica.api_key,
                             self.timeouts.for_stream(body["stream"]))


class UpstreamPools:
    """The pools of one gateway, one per served model: the Backend it builds in front of
    upstream servers. Requests wait in one queue (one per model inside it, `ByModel`) and each
    model's are admitted against its own pool's room."""

    def __init__(self, pools: Sequence[UpstreamPool]):
        if not pools:
            raise ValueError("no upstream pools")
        self.pools = {pool.model_name: pool for pool in pools}
        if len(self.pools) != len(pools):
            raise ValueError("two upstream pools serve the same model")
        self.model_name = pools[0].model_name  # the default model
        self.busy = pools[0].busy
        for pool in pools[1:]:
            pool.busy = self.busy  # one utilization for the gateway

    @property
    def busy_s(self) -> float:
        return self.busy.seconds

    def replicas(self) -> list[Replica]:
        return [r for pool in self.pools.values() for r in pool.replicas]

    async def start(self) -> None:
        await asyncio.gather(*(pool.start() for pool in self.pools.values()))

    async def close(self) -> None:
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))
