"""The asyncio glue between the core Scheduler and an Engine, in wall time."""
from aps.runtime.dispatch import Dispatcher
from aps.runtime.loop import Draining, Runtime, Stream

__all__ = ["Dispatcher", "Draining", "Runtime", "Stream"]
