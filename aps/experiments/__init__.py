"""Experiments: named grids of simulations compared in reports (markdown, HTML, plots)."""
from aps.experiments.catalog import experiments, run_experiment

__all__ = ["experiments", "run_experiment"]
