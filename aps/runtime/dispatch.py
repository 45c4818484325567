"""The driver for upstream servers: the gateway owns the queue, the servers run requests.

    dispatcher = Dispatcher(scheduler, pools, retries=2)  # scheduler in upstream batch mode
    await pools.start(); await dispatcher.start()
    verdict, stream = dispatcher.submit(request, call)    # as Runtime.submit, plus the body

`pools` has one pool of replicas per served model (a request's `model` picks its pool). Each
loop turn gives the scheduler each pool's room (the seats its healthy replicas can take, its
in-flight tokens), steps it, and starts one task per admitted request. The task streams from a replica the pool picks, pushes
text into the request's Stream, reports progress (so fair-share counters move as tokens come),
and ends the request with the server's own usage. A failure before the first token puts the
request back in the queue (its place kept) to run on another replica, up to `retries` times;
after the first token the request fails and its stream carries the error.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable

from aps.core import NeverFits, Request, Scheduler, Verdict
from aps.core.batching import UpstreamAdmission
from aps.engines.cache import ResponseCache
from aps.engines.upstream import UpstreamPool, UpstreamPools
from aps.engines.upstream_http import UpstreamCall, UpstreamError
from aps.runtime.driver import Driver
from aps.runtime.stream import Stream

_IDLE_RECHECK_S = 0.25  # with requests waiting, look again this often (a replica may be back)


@dataclass(slots=True, eq=False)
class _Job:
    req: Request
    call: UpstreamCall
    tried: set[str] = field(default_factory=set)  # replicas that failed it
    attempts: int = 0
    task: asyncio.Task | None = None


class Dispatcher(Driver):
    name = "dispatch"

    def __init__(self, scheduler: Scheduler, pools: UpstreamPools, retries: int = 2,
                 cache: ResponseCache | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_end: Callable[[Request], None] | None = None):
        if not isinstance(scheduler.admission, UpstreamAdmission):
            raise ValueError("the Dispatcher drives a scheduler in upstream batch mode, "
                             f"not {scheduler.batch.mode!r}")
        super().__init__(scheduler, clock, on_end, cache)
        self.upstream: UpstreamAdmission = scheduler.admission
        self.pools, self.retries = pools, retries
        self.num_retries = 0  # requests sent again after a failure before their first token
        self._jobs: dict[str, _Job] = {}
        self._tasks: set[asyncio.Task] = set()  # every request task still running
        for pool in pools.pools.values():
            pool.on_change = self._wake.set

    # -- requests --------------------------------------------------------------------------

    def submit(self, req: Request, call: UpstreamCall | None = None) -> tuple[Verdict, Stream | None]:
        """Queue a request (`call`: what to send upstream; None for a bare prompt of
        `req.prompt_tokens`, which only tests use). A cached answer ends it at once."""
        self._check_accepting()
        call = call or UpstreamCall(False, {"prompt": "x" * 4 * req.prompt_tokens})
        pool = self.pool_of(req)
        req.model = pool.model_name  # its queue is its pool's
        total, largest = req.prompt_tokens + req.max_tokens, pool.max_request_tokens
        if total > largest:
            raise NeverFits(f"request {req.request_id}: prompt {req.prompt_tokens} + max_tokens "
                            f"{req.max_tokens} = {total} tokens is more than any upstream "
                            f"replica takes ({largest})")
        verdict, stream = super().submit(req, call)
        if stream is not None and req.request_id in self.sched.requests:  # queued, not cached
            self._jobs[req.request_id] = _Job(req, call)
        return verdict, stream

    def pool_of(self, req: Request) -> UpstreamPool:
        """The pool serving the request's model (the default pool's, when it names none)."""
        return self.pools.pools.get(req.model) or self.pools.pools[self.pools.model_name]

    def _forget(self, req: Request) -> None:
        """An ended request's task, if another hand ended it (a cancel, a crash), is cancelled:
        that closes its upstream stream, which makes the server abort the request."""
        job = self._jobs.pop(req.request_id, None)
        if job is not None and job.task is not None and job.task is not asyncio.current_task():
            job.task.cancel()

    # -- the loop --------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            self.upstream.set_pools({model: (pool.seats(), pool.max_tokens)
                                     for model, pool in self.pools.pools.items()})
            plan = self.sched.step(self.now())
            self._settle()  # a step may end requests: their deadline passed, their budget ran out
            for req, _ in plan.scheduled:
                job = self._jobs[req.request_id]
                job.task = task = asyncio.create_task(self._serve(job))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if not self.accepting and not self.sched.requests:
                return
            timeout = None if plan.next_wakeup is None else max(0.0, plan.next_wakeup - self.now())
            if self.sched.num_waiting:
                timeout = _IDLE_RECHECK_S if timeout is None else min(timeout, _IDLE_RECHECK_S)
            await self._wait(timeout)

    # -- one request -----------------------------------------------------------------------

    async def _serve(self, job: _Job) -> None:
        req, pool = job.req, self.pool_of(job.req)
        rid, tokens = req.request_id, req.prompt_tokens + req.max_tokens
        replica = pool.pick(tokens, job.call.prompt, job.tried)
        if replica is None:  # no single replica has room for it now: wait for one
            self.upstream.requeue(rid, self.now())
            return
        pool.acquire(replica, tokens)
        estimate = req.prompt_tokens
        try:
            usage, finish = None, None
            async for chunk in pool.stream(replica, job.call, req.max_tokens, req.bid):
                if chunk.text:
                    self.upstream.progress(rid, estimate, req.num_output_tokens + 1, self.now())
                    self._push(req, chunk.text)
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
            self._settle()
            self._wake.set()  # a seat is free

    def _finish(self, job: _Job, usage, finish: str | None) -> None:
        req, now = job.req, self.now()
        if usage is not None:  # the server's counts replace the estimate and the chunk count
            self.upstream.progress(req.request_id, usage.prompt_tokens or req.prompt_tokens,
                                   max(usage.completion_tokens, req.num_output_tokens), now)
        self.sched.finish(req.request_id, now, finish or "stop")

    def _failed(self, job: _Job, url: str, exc: UpstreamError) -> None:
        req, now = job.req, self.now()
        started = req.num_output_tokens > 0
        if not started and exc.retryable and job.attempts < self.retries:
            job.attempts += 1
            job.tried.add(url)
            self.num_retries += 1
            self.log.info("request %s: %s failed before its first token (%s); retrying elsewhere",
                     req.request_id, url, exc)
            self.upstream.requeue(req.request_id, now)
            return
        self._fail(req.request_id, f"upstream {url}: {exc.message}", exc)

    async def _drained(self) -> None:
        """Wait for the cancelled requests' tasks: they close their upstream streams."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
