"""What arrives: workloads as plain columns, arrival and length generators, readers for public
serving traces, and named scenarios (YAML) that combine them."""
from aps.workload.scenarios import Scenario, list_scenarios, load_scenario
from aps.workload.workload import Workload, WorkloadError

__all__ = ["Scenario", "Workload", "WorkloadError", "list_scenarios", "load_scenario"]
