"""The asyncio glue between the core Scheduler and an Engine, in wall time."""
from aps.runtime.loop import Draining, Runtime, Stream

__all__ = ["Draining", "Runtime", "Stream"]
