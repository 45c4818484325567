"""Simulated time: workloads, trace readers, scenarios and the discrete-event simulator."""
from aps.sim.scenarios import Scenario, list_scenarios, load_scenario
from aps.sim.simulator import SimConfig, Simulation, simulate
from aps.sim.workload import Workload, WorkloadError

__all__ = ["Scenario", "SimConfig", "Simulation", "Workload", "WorkloadError", "list_scenarios",
           "load_scenario", "simulate"]
