"""The runtime for upstream mode: the gateway owns the queue, the upstream servers run requests.

    dispatcher = Dispatcher(scheduler, pool, retries=2)
    await dispatcher.start()
    verdict, stream = dispatcher.submit(request, call)   # as Runtime.submit, plus the body
    async for text in stream: ...
    dispatcher.cancel(request.request_id)               # closes the upstream stream too

Each loop turn sets the scheduler's seats to what the healthy replicas can take, steps it, and
starts one task per admitted request. The task streams from a replica the pool picks, pushes
text into the request's Stream, reports progress (so fair-share counters move as tokens come),
and ends the request with the server's own usage. A failure before the first token puts the
request back in the queue (its place kept) to run on another replica, up to `retries` times;
after the first token the request fails and the client gets an error event.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from aps.core import NeverFits, Request, Scheduler, Status, StepPlan, Verdict
from aps.engines.cache import CachedResponse, ResponseCache, cache_key
from aps.engines.upstream import UpstreamPool
from aps.engines.upstream_http import UpstreamCall, UpstreamError
from aps.runtime.loop import Draining, Driver, Stream

log = logging.getLogger("aps.dispatch")
_IDLE_RECHECK_S = 0.25  # with requests waiting, look again this often (a replica may be back)


@dataclass(slots=True, eq=False)
class _Job:
    req: Request
    call: UpstreamCall
    stream: Stream
    cache_key: str | None = None
    tried: set[str] = field(default_factory=set)  # replicas that failed it
    attempts: int = 0
    task: asyncio.Task | None = None
    pieces: list[str] = field(default_factory=list)  # kept only when it will be cached


class Dispatcher(Driver):
    def __init__(self, scheduler: Scheduler, pool: UpstreamPool, retries: int = 2,
                 cache: ResponseCache | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_end: Callable[[Request], None] | None = None):
        super().__init__(scheduler, clock)
        self.engine, self.retries, self.cache = pool, retries, cache
        self._on_end = on_end
        self._jobs: dict[str, _Job] = {}
        pool.on_change = self._wake.set

    @property
    def num_streams(self) -> int:
        return len(self._jobs)

    async def start(self) -> None:
        await self.engine.start()
        self._task = asyncio.create_task(self._run(), name="aps-dispatch")

    # -- requests --------------------------------------------------------------------------

    def submit(self, req: Request, call: UpstreamCall | None = None) -> tuple[Verdict, Stream | None]:
        """Queue a request (`call`: what to send upstream; None for a bare prompt of
        `req.prompt_tokens`, which only tests use). A cached answer ends it at once."""
        if not self.accepting:
            raise Draining("the server is shutting down")
        call = call or UpstreamCall(False, {"prompt": "x" * 4 * req.prompt_tokens})
        total, largest = req.prompt_tokens + req.max_tokens, self.engine.max_request_tokens
        if total > largest:
            raise NeverFits(f"request {req.request_id}: prompt {req.prompt_tokens} + max_tokens "
                            f"{req.max_tokens} = {total} tokens is more than any upstream "
                            f"replica takes ({largest})")
        req.arrival = self.now()
        key = None
        if self.cache is not None:
            key = cache_key(req.tenant_id, self.engine.model_name, call.chat, call.body)
            hit = self.cache.get(key, req.arrival) if key is not None else None
            if hit is not None:
                return Verdict(True), self._answer_from_cache(req, hit)
        verdict = self.sched.submit(req, req.arrival)
        if req.status is Status.REJECTED:
            return verdict, None
        stream = Stream(req)
        self._jobs[req.request_id] = _Job(req, call, stream, key)
        self._wake.set()
        return verdict, stream

    def _answer_from_cache(self, req: Request, hit: CachedResponse) -> Stream:
        """A finished request that never queued: recorded and billed like any other."""
        now = self.now()
        req.prompt_tokens, req.num_output_tokens = hit.prompt_tokens, hit.completion_tokens
        req.num_computed_tokens = hit.prompt_tokens + hit.completion_tokens
        req.first_scheduled = req.first_token = req.finished = now
        req.status, req.reason = Status.FINISHED, "cached"
        stream = Stream(req)
        if hit.text:
            stream._push(hit.text)
        # soon, not now: the caller is still registering the request
        asyncio.get_running_loop().call_soon(self._end_cached, req, stream)
        return stream

    def _end_cached(self, req: Request, stream: Stream) -> None:
        if self._on_end is not None:  # reported before the stream ends, as in `_settle`
            self._on_end(req)
        stream._close()

    def cancel(self, request_id: str) -> None:
        """Drop a request if it is still live; a running one's upstream stream is closed, which
        makes the server abort it."""
        if request_id in self.sched.requests:
            self.sched.cancel(request_id, self.now())
            job = self._jobs.get(request_id)
            if job is not None and job.task is not None:
                job.task.cancel()
            self._wake.set()

    # -- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._loop()
        except Exception:  # never leave a client waiting on a stream that will not end
            log.exception("dispatch loop crashed; failing every live request")
            for request_id in list(self.sched.requests):
                self.sched.fail(request_id, self.now(), "internal error")
            for job in self._jobs.values():
                job.stream._close()
            self._jobs.clear()
            raise

    async def _loop(self) -> None:
        while True:
            self.sched.set_max_num_seqs(self.engine.seats())
            plan = self.sched.step(self.now())
            self._settle(plan)
            for req, _ in plan.scheduled:
                job = self._jobs[req.request_id]
                job.task = asyncio.create_task(self._serve(job))
            if not self.accepting and not self.sched.requests:
                return
            self._wake.clear()
            timeout = None if plan.next_wakeup is None else max(0.0, plan.next_wakeup - self.now())
            if self.sched.num_waiting:
                timeout = _IDLE_RECHECK_S if timeout is None else min(timeout, _IDLE_RECHECK_S)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    def _settle(self, plan: StepPlan) -> None:
        """Report the requests that ended since the last step (`on_end` once each), then close
        their streams: whoever reads a stream's end finds the end already reported."""
        for ended in (plan.finished, plan.cancelled, plan.failed, plan.rejected):
            for req in ended:
                if self._on_end is not None:
                    self._on_end(req)
                job = self._jobs.pop(req.request_id, None)
                if job is not None:
                    job.stream._close()

    # -- one request -----------------------------------------------------------------------

    async def _serve(self, job: _Job) -> None:
        req, pool = job.req, self.engine
        rid, tokens = req.request_id, req.prompt_tokens + req.max_tokens
        replica = pool.pick(tokens, job.call.prompt, job.tried)
        if replica is None:  # no single replica has room for it now: wait for one
            self.sched.requeue(rid, self.now())
            return
        pool.acquire(replica, tokens)
        estimate = req.prompt_tokens
        try:
            usage, finish = None, None
            async for chunk in pool.stream(replica, job.call, req.max_tokens, req.bid):
                if chunk.text:
                    self.sched.progress(rid, estimate, req.num_output_tokens + 1, self.now())
                    job.stream._push(chunk.text)
                    if job.cache_key is not None:
                        job.pieces.append(chunk.text)
                usage = chunk.usage or usage
                finish = chunk.finish_reason or finish
            pool.on_success(replica)
            self._finish(job, usage, finish)
        except UpstreamError as exc:
            if exc.replica_fault:
                pool.on_failure(replica)
            self._failed(job, replica.url, exc)
        except asyncio.CancelledError:
            pool.on_abandon(replica)
            raise
        finally:
            pool.release(replica, tokens)
            self._wake.set()  # the loop reports an end and closes the stream

    def _finish(self, job: _Job, usage, finish: str | None) -> None:
        req, now = job.req, self.now()
        if usage is not None:  # the server's counts replace the estimate and the chunk count
            self.sched.progress(req.request_id, usage.prompt_tokens or req.prompt_tokens,
                                max(usage.completion_tokens, req.num_output_tokens), now)
        self.sched.finish(req.request_id, now, finish or "stop")
        if job.cache_key is not None and self.cache is not None:
            self.cache.put(job.cache_key, CachedResponse("".join(job.pieces), req.prompt_tokens,
                                                         req.num_output_tokens, now))

    def _failed(self, job: _Job, url: str, exc: UpstreamError) -> None:
        req, now = job.req, self.now()
        started = req.num_output_tokens > 0
        if not started and exc.retryable and job.attempts < self.retries:
            job.attempts += 1
            job.tried.add(url)
            self.engine.num_retries += 1
            log.info("request %s: %s failed before its first token (%s); retrying elsewhere",
                     req.request_id, url, exc)
            self.sched.requeue(req.request_id, now)
            return
        status = 502 if exc.retryable or exc.status is None else exc.status  # 4xx: the client's
        job.stream.error = (status, exc.message)
        self.sched.fail(req.request_id, now, f"upstream {url}: {exc.message}")

    async def _drained(self) -> None:
        """Wait for the cancelled requests' tasks (they close their upstream streams), then
        close the pool's client."""
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.engine.close()
