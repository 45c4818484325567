"""What runs requests in the live server: the simulated GPU paced in wall time, and pools of
upstream OpenAI-compatible servers (routing, health checks, circuit breaker, response cache)."""
from aps.engines.base import Backend, Engine, EngineError
from aps.engines.simulated import SimulatedEngine

__all__ = ["Backend", "Engine", "EngineError", "SimulatedEngine"]
