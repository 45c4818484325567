"""The Engine protocol: run one iteration of a plan, say what each request produced."""
from __future__ import annotations

from typing import Protocol

from aps.core import StepPlan


class EngineError(Exception):
    """The engine could not run an iteration; the requests in it have failed."""


class Engine(Protocol):
    model_name: str

    async def execute(self, plan: StepPlan) -> dict[str, str]:
        """Run `plan`'s iteration. Returns the text of the token each request sampled (only
        requests whose pending tokens were all computed sample one). Raises EngineError."""
        ...
