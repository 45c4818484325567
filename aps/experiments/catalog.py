"""Reproducible comparisons by name: the shipped experiments, or one described in YAML.

An experiment is a function `grid(quick) -> list[RunSpec]` and a function
`analyze(records) -> (tables, figures, findings)` (`aps.experiments.kit.Experiment`).
`run_experiment` runs the grid in worker processes and, given an output folder, writes the
report (markdown, self-contained HTML, PNG plots, raw JSON and CSV).
"""
from __future__ import annotations

from pathlib import Path

from aps.experiments import autoscale, capacity, fairness, governor, priority
from aps.experiments.from_yaml import load_experiment
from aps.experiments.report import write_report
from aps.experiments.runs import run_grid


def experiments() -> dict:
    """The shipped experiments by name."""
    return {**priority.EXPERIMENTS, **governor.EXPERIMENTS, **fairness.EXPERIMENTS,
            **capacity.EXPERIMENTS, **autoscale.EXPERIMENTS}


def run_experiment(name: str, quick: bool = False, out_dir: Path | None = None,
                   workers: int | None = None, progress=None) -> dict:
    """Run a named experiment; returns the results dict and writes the report to `out_dir`."""
    known = experiments()
    if name in known:
        exp = known[name]
    elif name.endswith((".yaml", ".yml")) or Path(name).is_file():
        exp = load_experiment(Path(name))
    else:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(sorted(known))} "
                         "or a YAML file")
    records = run_grid(exp.grid(quick), workers, progress)
    tables, figures, findings = exp.analyze(records)
    results = {"experiment": name, "title": exp.title,
               "description": exp.description + ("\n\n" + findings if findings else ""),
               "command": f"aps experiment {name}" + (" --quick" if quick else ""),
               "quick": quick, "tables": tables, "figures": figures, "runs": records,
               "logs": exp.logs(records) if exp.logs else {}}
    if out_dir is not None:
        write_report(results, Path(out_dir))
    return results
