"""The simulated GPU, paced in wall time: an iteration takes what the performance model says,
divided by `speed`, and every sampled token is filler text."""
from __future__ import annotations

import asyncio

from aps.core import StepPlan
from aps.perf import BatchShape

# Generated text is filler and says so: nothing here is a model's output.
_FILLER = (" simulated", " token", " from", " a", " modelled", " GPU", ";", " no", " model",
           " ran", ".")


class SimulatedEngine:
    """An Engine and a Backend."""

    def __init__(self, perf, speed: float = 1.0, model_name: str | None = None):
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.perf, self.speed = perf, speed
        self.model_name = model_name or f"sim-{perf.name.split('@')[0]}"
        self.busy_s = 0.0  # wall seconds spent in iterations (modelled time / speed)
        self._free_at = 0.0  # event-loop time at which the last iteration ends

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def execute(self, plan: StepPlan) -> dict[str, str]:
        seconds = self.perf.iteration_time(BatchShape(*plan.shape())) / self.speed
        self.busy_s += seconds
        # Pace against an absolute end, not a relative sleep: timers are coarse (uvloop's tick
        # is 1 ms: a 0.2 ms sleep returns at once, a 0.8 ms one takes 1.2 ms), and an error per
        # iteration would add up. This way one iteration may end a tick early or late, a run
        # of them takes what the model says.
        now = asyncio.get_running_loop().time()
        self._free_at = max(self._free_at, now) + seconds
        await asyncio.sleep(self._free_at - now)
        return {req.request_id: _FILLER[req.num_output_tokens % len(_FILLER)]
                for req, n in plan.scheduled if n == req.num_pending_tokens}
