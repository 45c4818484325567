"""The asyncio glue between the core Scheduler and what runs requests, in wall time: one
Driver base, the Runtime (an iteration engine: the simulated GPU) and the Dispatcher (upstream
servers), and the Stream a request's text arrives on."""
from aps.runtime.dispatch import Dispatcher
from aps.runtime.driver import Draining, Driver
from aps.runtime.loop import Runtime
from aps.runtime.stream import Stream

__all__ = ["Dispatcher", "Draining", "Driver", "Runtime", "Stream"]
