"""Experiments described in YAML: a grid over scenarios, policies, GPUs and options.

    title: VTC versus FIFO on my traffic
    description: what is compared and why
    grid:                       # every combination of the lists is one run
      scenario: [vtc-lmsys, my-scenario.yaml]
      policy: [fifo, vtc]
      gpu: [a10g]
      model: [llama-2-7b]
      replicas: [1]
      rate_scale: [1.0, 2.0]
    requests: 2000              # optional: cut or tile every workload
"""
from __future__ import annotations

import itertools
from pathlib import Path

import yaml

from aps.experiments.kit import SUMMARY_COLUMNS, Experiment, cdf_panel, summary_row
from aps.experiments.runs import RunSpec
from aps.workload.workload import WorkloadError

AXES = {"scenario": str, "policy": str, "gpu": str, "model": str, "replicas": int,
        "rate_scale": float, "tp": int}


def load_experiment(path: Path) -> Experiment:
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise WorkloadError(f"{path.name}: not valid YAML: {exc}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("grid"), dict):
        raise WorkloadError(f"{path.name}: field 'grid': expected a mapping of lists")
    grid = spec["grid"]
    unknown = set(grid) - set(AXES)
    if unknown:
        raise WorkloadError(f"{path.name}: field 'grid.{sorted(unknown)[0]}': unknown axis; "
                            f"known: {', '.join(AXES)}")
    if "scenario" not in grid:
        raise WorkloadError(f"{path.name}: field 'grid.scenario': required")
    axes = {k: [AXES[k](v) for v in (grid[k] if isinstance(grid[k], list) else [grid[k]])]
            for k in grid}
    base = path.parent
    requests = spec.get("requests")

    def make_grid(quick: bool) -> list[RunSpec]:
        specs = []
        for combo in itertools.product(*axes.values()):
            point = dict(zip(axes, combo))
            sc = point.pop("scenario")
            if (base / sc).is_file():
                sc = str(base / sc)
            labels = {"scenario": Path(sc).stem, **{k: str(v) for k, v in point.items()}}
            specs.append(RunSpec("-".join(map(str, labels.values())), labels, scenario=sc,
                                 requests=min(requests or 500, 500) if quick else requests,
                                 **point))
        return specs

    return Experiment(spec.get("title", path.stem), spec.get("description", ""), make_grid,
                      analyze)


def analyze(records: list[dict]):
    keys = list(records[0]["labels"]) if records else []
    table = {"title": "Every run of the grid", "columns": [*keys, *SUMMARY_COLUMNS],
             "rows": [summary_row(r, *keys) for r in records]}
    figure = {"name": "ttft_cdf", "title": "Time to first token per tenant", "kind": "cdf",
              "xlabel": "time to first token (s)", "ylabel": "fraction of requests",
              "panels": [cdf_panel(r, ", ".join(r["labels"].values())) for r in records[:6]]}
    return [table], [figure], ""
