"""The one place where asyncio meets the core: a task that steps the Scheduler in wall time.

    runtime = Runtime(scheduler, engine)
    await runtime.start()
    verdict, stream = runtime.submit(request)    # InvalidRequest for bad input
    async for text in stream: ...               # tokens as the engine samples them
    runtime.cancel(request.request_id)          # the client went away
    await runtime.drain(timeout_s)              # stop accepting, let in-flight work finish

Time is the monotonic clock since the runtime was made, so the scheduler sees the same kind of
`now` as in the simulator, only advancing by itself.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from aps.core import Request, Scheduler, Status, StepPlan, Verdict
from aps.engines import Engine, EngineError

log = logging.getLogger("aps.runtime")
_END = object()


class Draining(Exception):
    """The runtime no longer accepts requests: it is shutting down."""


class Stream:
    """The tokens of one request, in order, ending when the request ends."""

    def __init__(self, request: Request):
        self.request = request
        self._queue: asyncio.Queue = asyncio.Queue()
        self.done = asyncio.Event()
        self.error: tuple[int, str] | None = None  # (HTTP status, message) when it failed

    def _push(self, text: str) -> None:
        self._queue.put_nowait(text)

    def _close(self) -> None:
        if not self.done.is_set():
            self.done.set()
            self._queue.put_nowait(_END)

    def __aiter__(self):
        return self

    async def __anext__(self) -> str:
        item = await self._queue.get()
        if item is _END:
            raise StopAsyncIteration
        return item

    async def text(self) -> str:
        """Everything, once the request has ended."""
        return "".join([piece async for piece in self])


class Driver:
    """What the two drivers of a Scheduler share (this Runtime for an iteration engine, the
    Dispatcher for upstream servers): the clock, the wake-up, the loop task, and draining.
    Each driver has its own `cancel` and `_run`."""

    def __init__(self, scheduler: Scheduler, clock: Callable[[], float]):
        self.sched = scheduler
        self._clock, self._t0 = clock, clock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.accepting = True

    def now(self) -> float:
        return self._clock() - self._t0

    async def drain(self, timeout_s: float) -> int:
        """Stop accepting, let in-flight requests finish for up to `timeout_s`, cancel the rest.
        Returns how many were cancelled."""
        self.accepting = False
        self._wake.set()
        deadline = self.now() + timeout_s
        while self.sched.requests and self.now() < deadline:
            await asyncio.sleep(min(0.01, max(0.0, deadline - self.now())))
        left = list(self.sched.requests)
        for request_id in left:
            self.cancel(request_id)
        if self._task is not None:
            self._wake.set()
            await self._task
        await self._drained()
        return len(left)

    async def _drained(self) -> None:
        """After the loop has stopped: what else to wind down."""


class Runtime(Driver):
    def __init__(self, scheduler: Scheduler, engine: Engine,
                 clock: Callable[[], float] = time.monotonic,
                 on_end: Callable[[Request], None] | None = None,
                 on_iteration: Callable[[StepPlan], None] | None = None):
        super().__init__(scheduler, clock)
        self.engine = engine
        self._on_end, self._on_iteration = on_end, on_iteration  # for metrics
        self._streams: dict[str, Stream] = {}

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="aps-runtime")

    def submit(self, req: Request, call: object = None) -> tuple[Verdict, Stream | None]:
        """Queue a request. Returns the verdict and, unless it was rejected, its stream.
        (`call`, the client's body, is for runtimes that forward it; an iteration engine
        needs only the token counts.)"""
        if not self.accepting:
            raise Draining("the server is shutting down")
        req.arrival = self.now()
        verdict = self.sched.submit(req, req.arrival)
        if req.status is Status.REJECTED:
            return verdict, None
        stream = self._streams[req.request_id] = Stream(req)
        self._wake.set()
        return verdict, stream

    def cancel(self, request_id: str) -> None:
        """Drop a request if it is still live (a no-op once it has ended)."""
        if request_id in self.sched.requests:
            self.sched.cancel(request_id, self.now())
            self._wake.set()

    @property
    def num_streams(self) -> int:
        return len(self._streams)

    async def _run(self) -> None:
        try:
            await self._loop()
        except Exception:  # never leave a client waiting on a stream that will not end
            log.exception("runtime loop crashed; failing every live request")
            for request_id in list(self.sched.requests):
                self.sched.fail(request_id, self.now(), "internal error")
            for stream in self._streams.values():
                stream._close()
            self._streams.clear()
            raise

    async def _loop(self) -> None:
        while True:
            plan = self.sched.step(self.now())
            self._settle(plan)
            if plan:
                await self._iterate(plan)
                continue
            if not self.accepting and not self.sched.requests:
                return
            wake = plan.next_wakeup
            self._wake.clear()
            timeout = None if wake is None else max(0.0, wake - self.now())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    async def _iterate(self, plan: StepPlan) -> None:
        if self._on_iteration is not None:
            self._on_iteration(plan)
        try:
            pieces = await self.engine.execute(plan)
        except EngineError as exc:
            log.warning("iteration failed, failing %d requests: %s", len(plan.scheduled), exc)
            for req, _ in plan.scheduled:
                if req.request_id in self.sched.requests:
                    self.sched.fail(req.request_id, self.now(), str(exc))
            return
        for req, _ in plan.scheduled:
            text = pieces.get(req.request_id)
            stream = self._streams.get(req.request_id)
            if text is not None and stream is not None and req.status is Status.RUNNING:
                stream._push(text)
        self.sched.complete_step(plan, self.now())

    def _settle(self, plan: StepPlan) -> None:
        """Close the streams of requests that ended since the last plan."""
        for ended in (plan.finished, plan.cancelled, plan.failed, plan.rejected):
            for req in ended:
                if self._on_end is not None:  # reported before its stream ends: whoever
                    self._on_end(req)         # reads the end finds it already reported
                stream = self._streams.pop(req.request_id, None)
                if stream is not None:
                    stream._close()

