"""The discrete-event simulator: GPU replicas, each driven by a core Scheduler, serving a
workload in simulated time; the autoscaling scaler, the recorder and the summary."""
from aps.sim.simulator import SimConfig, Simulation, simulate

__all__ = ["SimConfig", "Simulation", "simulate"]
