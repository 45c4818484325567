"""What every driver of a Scheduler in wall time shares.

    driver = Runtime(scheduler, engine) | Dispatcher(scheduler, pool)
    await driver.start()
    verdict, stream = driver.submit(request)    # InvalidRequest for bad input
    async for text in stream: ...               # the request's text as it comes
    driver.cancel(request.request_id)           # the client went away
    await driver.drain(timeout_s)               # stop accepting, let in-flight work finish

Time is the monotonic clock since the driver was made, so the scheduler sees the same kind of
`now` as in the simulator, only advancing by itself. Every request that ends is reported once,
as it ends (`on_end`: metrics, the usage ledger), before its stream closes: whoever reads a
stream's end finds the end already reported. A loop that crashes fails every live request, so
no client waits on a stream that will never end.

With a response cache, a deterministic request (`temperature: 0`) whose answer is cached ends
at once without queueing, and a finished one's answer is kept for the next.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from aps.core import Request, Scheduler, Status, Verdict
from aps.engines.cache import CachedResponse, ResponseCache, cache_key
from aps.engines.upstream_http import UpstreamCall
from aps.runtime.stream import Stream


class Draining(Exception):
    """The driver no longer accepts requests: it is shutting down."""


class Driver:
    """A subclass writes `_loop` (one turn: step the scheduler, run what it planned) and may
    extend `submit`, `_forget` (drop what it kept for an ended request) and `_drained`."""

    name = "driver"

    def __init__(self, scheduler: Scheduler, clock: Callable[[], float],
                 on_end: Callable[[Request], None] | None = None,
                 cache: ResponseCache | None = None):
        self.sched = scheduler
        self.cache = cache
        self._to_cache: dict[str, tuple[str, list[str]]] = {}  # request id: (key, text so far)
        self._clock, self._t0 = clock, clock()
        self._on_end = on_end
        self._streams: dict[str, Stream] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.accepting = True
        self._refusal = "the server is shutting down"  # why, once not accepting
        self.log = logging.getLogger(f"aps.{self.name}")

    def now(self) -> float:
        return self._clock() - self._t0

    @property
    def num_streams(self) -> int:
        return len(self._streams)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"aps-{self.name}")

    # -- requests --------------------------------------------------------------------------

    def submit(self, req: Request, call: UpstreamCall | None = None) -> tuple[Verdict, Stream | None]:
        """Queue a request, or answer it from the cache. Returns the verdict and, unless it was
        refused, its stream. (`call`, the client's body: the cache's key, and what drivers that
        forward requests send.)"""
        self._check_accepting()
        key = None
        if self.cache is not None and call is not None:
            self.sched.entitle(req)  # a hit reports and bills the entitled bid too
            key = cache_key(req.tenant_id, req.model, call.chat, call.body)
            hit = self.cache.get(key, self.now()) if key is not None else None
            if hit is not None:
                return Verdict(True), self._answer_from_cache(req, hit)
        req.arrival = self.now()
        verdict = self.sched.submit(req, req.arrival)
        if req.status is Status.REJECTED:
            self._settle()  # a refusal is reported like any other end
            return verdict, None
        stream = self._streams[req.request_id] = Stream(req)
        if key is not None:
            self._to_cache[req.request_id] = (key, [])
        self._wake.set()
        return verdict, stream

    def _push(self, req: Request, text: str) -> None:
        """Give the client the next piece of a request's text (kept too, if it will be cached)."""
        stream = self._streams.get(req.request_id)
        if stream is not None:
            stream.push(text)
            kept = self._to_cache.get(req.request_id)
            if kept is not None:
                kept[1].append(text)

    def _answer_from_cache(self, req: Request, hit: CachedResponse) -> Stream:
        """A finished request that never queued: recorded and billed like any other."""
        now = req.arrival = self.now()
        req.prompt_tokens, req.num_output_tokens = hit.prompt_tokens, hit.completion_tokens
        req.num_computed_tokens = hit.prompt_tokens + hit.completion_tokens
        req.first_scheduled = req.first_token = req.finished = now
        req.status, req.reason = Status.FINISHED, "cached"
        stream = Stream(req)
        if hit.text:
            stream.push(hit.text)
        # soon, not now: the caller is still registering the request
        asyncio.get_running_loop().call_soon(self._end_cached, req, stream)
        return stream

    def _end_cached(self, req: Request, stream: Stream) -> None:
        if self._on_end is not None:  # reported before the stream ends, as in `_settle`
            self._on_end(req)
        stream.close()

    def _check_accepting(self) -> None:
        if not self.accepting:
            raise Draining(self._refusal)

    def cancel(self, request_id: str, reason: str = "cancelled") -> None:
        """Drop a request if it is still live (a no-op once it has ended)."""
        if request_id in self.sched.requests:
            self.sched.cancel(request_id, self.now(), reason)
            self._settle()
            self._wake.set()

    def _fail(self, request_id: str, reason: str, error: Exception | None = None) -> None:
        """End a live request as FAILED; its stream carries `error` for the client."""
        stream = self._streams.get(request_id)
        if stream is not None:
            stream.error = error
        self.sched.fail(request_id, self.now(), reason)

    def _settle(self) -> None:
        """Report every request that ended since the last call, then close its stream."""
        for req in self.sched.pop_ended():
            if self._on_end is not None:
                try:
                    self._on_end(req)
                except Exception:  # a failed report must not leave its client waiting
                    self.log.exception("reporting the end of request %s failed", req.request_id)
            self._forget(req)
            kept = self._to_cache.pop(req.request_id, None)
            if kept is not None and req.status is Status.FINISHED:
                self.cache.put(kept[0], CachedResponse("".join(kept[1]), req.prompt_tokens,
                                                       req.num_output_tokens, self.now()))
            stream = self._streams.pop(req.request_id, None)
            if stream is not None:
                stream.close()

    def _forget(self, req: Request) -> None:
        """Drop what the driver kept for an ended request."""

    # -- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._loop()
        except Exception:
            self.log.exception("the %s loop crashed; failing every live request", self.name)
            self.accepting = False  # nothing would step the scheduler for a new request
            self._refusal = "the scheduling loop stopped after an internal error"
            for request_id in list(self.sched.requests):
                self._fail(request_id, "internal error")
            self._settle()
            for stream in self._streams.values():
                stream.close()
            self._streams.clear()
            raise

    async def _loop(self) -> None:
        raise NotImplementedError

    async def _wait(self, timeout: float | None) -> None:
        """Until something wakes the loop (a submit, a cancel, an end), or `timeout` passes."""
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    # -- shutting down ---------------------------------------------------------------------

    async def drain(self, timeout_s: float) -> int:
        """Stop accepting, let in-flight requests finish for up to `timeout_s`, cancel the rest
        (reason `server_shutting_down`). Returns how many were cancelled. Draining again, once
        drained, returns at once."""
        self.accepting = False
        self._wake.set()
        deadline = self.now() + timeout_s
        while self.sched.requests and self.now() < deadline:
            await asyncio.sleep(min(0.01, max(0.0, deadline - self.now())))
        left = list(self.sched.requests)
        for request_id in left:
            self.cancel(request_id, "server_shutting_down")
        if self._task is not None:
            self._wake.set()
            await self._task
        await self._drained()
        return len(left)

    async def _drained(self) -> None:
        """After the loop has stopped: what else to wind down."""
