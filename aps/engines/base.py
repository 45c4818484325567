"""What the gateway runs requests on, and the Engine protocol of an iteration executor.

    Backend   the simulated GPU or a pool of upstream servers: the model it serves, how long
              it was busy, and its lifecycle. The gateway builds exactly one.
    Engine    runs one iteration of a scheduler's plan (the simulated GPU); an upstream pool
              is not an Engine: its servers run the iterations, the Dispatcher streams requests
"""
from __future__ import annotations

from typing import Protocol

from aps.core import StepPlan


class EngineError(Exception):
    """The engine could not run an iteration; the requests in it have failed."""


class Backend(Protocol):
    model_name: str

    @property
    def busy_s(self) -> float:
        """Wall seconds during which it had work (for utilization)."""
        ...

    async def start(self) -> None: ...
    async def close(self) -> None: ...


class Engine(Protocol):
    model_name: str

    async def execute(self, plan: StepPlan) -> dict[str, str]:
        """Run `plan`'s iteration. Returns the text of the token each request sampled (only
        requests whose pending tokens were all computed sample one). Raises EngineError."""
        ...
