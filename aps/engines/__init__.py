"""What executes a scheduler's plan in the live server: one small Engine protocol."""
from aps.engines.base import Engine, EngineError
from aps.engines.simulated import SimulatedEngine

__all__ = ["Engine", "EngineError", "SimulatedEngine"]
