"""The driver for an iteration engine (the simulated GPU): each turn steps the Scheduler,
runs the plan's iteration on the engine, pushes the sampled text and accounts the step."""
from __future__ import annotations

import time
from typing import Callable

from aps.core import Request, Scheduler, Status, StepPlan
from aps.engines import Engine, EngineError
from aps.engines.cache import ResponseCache
from aps.runtime.driver import Driver


class Runtime(Driver):
    name = "runtime"

    def __init__(self, scheduler: Scheduler, engine: Engine,
                 clock: Callable[[], float] = time.monotonic,
                 on_end: Callable[[Request], None] | None = None,
                 on_iteration: Callable[[StepPlan], None] | None = None,
                 cache: ResponseCache | None = None):
        super().__init__(scheduler, clock, on_end, cache)
        self.engine = engine
        self._on_iteration = on_iteration  # for metrics

    async def _loop(self) -> None:
        while True:
            plan = self.sched.step(self.now())
            self._settle()  # a step may end requests: their deadline passed, their budget ran out
            if plan:
                await self._iterate(plan)
                continue
            if not self.accepting and not self.sched.requests:
                return
            wake = plan.next_wakeup
            await self._wait(None if wake is None else max(0.0, wake - self.now()))

    async def _iterate(self, plan: StepPlan) -> None:
        if self._on_iteration is not None:
            self._on_iteration(plan)
        try:
            pieces = await self.engine.execute(plan)
        except EngineError as exc:
            self.log.warning("iteration failed, failing %d requests: %s", len(plan.scheduled), exc)
            for req, _ in plan.scheduled:
                if req.request_id in self.sched.requests:
                    self._fail(req.request_id, str(exc), exc)
            self._settle()
            return
        for req, _ in plan.scheduled:
            text = pieces.get(req.request_id)
            if text is not None and req.status is Status.RUNNING:
                self._push(req, text)
        self.sched.complete_step(plan, self.now())
        self._settle()
