"""`aps simulate`: run a scenario or trace through the simulator and show what happened."""
from __future__ import annotations

import json
import math
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from aps.core import BatchConfig
from aps.perf import make_perf_model
from aps.experiments.report import json_safe
from aps.workload.scenarios import load_scenario
from aps.sim.simulator import SimConfig, Simulation

DEFAULT_MODEL, DEFAULT_GPU = "llama-3-8b", "a100-80gb"


def build(scenario: str, *, policy=None, model=None, gpu=None, tp=1, replicas=1,
          router="round-robin", requests=None, seed=0, batch="continuous", fast=True,
          alpha=None, max_num_seqs=256, max_num_batched_tokens=8192, slo_ttft=2.0, slo_tpot=0.2,
          autoscale=True):
    """Load a scenario and make the Simulation the CLI would run (no I/O beyond loading)."""
    sc = load_scenario(scenario, seed=seed, requests=requests)
    hints = sc.defaults
    perf = make_perf_model(model=model or hints.get("model", DEFAULT_MODEL),
                           gpu=gpu or hints.get("gpu", DEFAULT_GPU), tp=tp)
    params = {} if alpha is None else {"alpha": alpha}
    cfg = SimConfig(policy=policy or hints.get("policy", "aps"), policy_params=params,
                    batch=BatchConfig(mode=batch, max_num_seqs=max_num_seqs,
                                      max_num_batched_tokens=max_num_batched_tokens,
                                      kv_capacity_tokens=int(perf.kv_capacity_tokens)),
                    replicas=replicas, router=router, fast=fast, slo_ttft_s=slo_ttft,
                    slo_tpot_s=slo_tpot, autoscale=sc.autoscale if autoscale else None,
                    price=sc.price)
    return sc, perf, cfg


def run(console: Console, scenario: str, json_path: Path | None, csv_path: Path | None,
        **options) -> dict:
    sc, perf, cfg = build(scenario, **options)
    n = len(sc.workload)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task(f"simulating {sc.name}", total=n)
        sim = Simulation(sc.workload, perf, cfg, progress=lambda i: bar.update(task, completed=i))
        result = sim.run()
    result["scenario"] = sc.name
    result["config"] = {"policy": cfg.policy, "model": perf.name, "replicas": cfg.replicas,
                        "router": cfg.router, "batch": cfg.batch.mode, "fast": cfg.fast,
                        "kv_capacity_tokens": cfg.batch.kv_capacity_tokens,
                        "autoscale": cfg.autoscale is not None}
    if json_path:
        json_path.write_text(json.dumps(json_safe(result), indent=2, allow_nan=False))
    if csv_path:
        sim.rec.write_csv(str(csv_path))
    console.print(table(result))
    if "autoscale" in result:
        console.print(autoscale_lines(result))
    return result


def autoscale_lines(r: dict) -> str:
    """The cluster's size over the run, what it cost and the scale events, in a few lines."""
    a = r["autoscale"]
    lines = [f"autoscaled: replicas min {a['min_replicas']}, max {a['max_replicas']}, mean "
             f"{a['mean_replicas']:.2f}; {a['replica_seconds']:,.0f} replica-seconds "
             f"({a['replica_seconds'] / 3600:.2f} GPU-hours); {a['scale_ups']} scale-ups, "
             f"{a['scale_downs']} scale-downs; start-up {a['startup_s']:g} s"]
    events = a["events"]
    for e in events[:12]:
        lines.append(f"  t={e['t']:>7.0f}s  {e['from']} -> {e['to']}  {e['reason']}")
    if len(events) > 12:
        lines.append(f"  ... {len(events) - 12} more (--json has them all)")
    return "\n".join(lines)


def _f(x: float, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def table(r: dict) -> Table:
    c = r["config"]
    size = "autoscaled replicas" if c.get("autoscale") else f"{c['replicas']} replica(s)"
    t = Table(title=f"{r['scenario']}: {c['policy']}, {c['model']}, {size}, {c['batch']} batching")
    for col in ("tenant", "requests", "finished", "rejected", "TTFT p50 s", "TTFT p99 s",
                "TPOT p50 s", "max wait s", "service tokens"):
        t.add_column(col, justify="right")
    rows = sorted(r["per_tenant"].items())
    for name, x in rows[:30]:
        t.add_row(name, str(x["requests"]), str(x["finished"]), str(x["rejected"]),
                  _f(x["ttft_s"]["p50"]), _f(x["ttft_s"]["p99"]), _f(x["tpot_s"]["p50"]),
                  _f(x["max_wait_s"]), f"{x['service_tokens']:,}")
    if len(rows) > 30:
        t.add_row(f"... {len(rows) - 30} more", *[""] * 8)
    t.caption = (f"all: TTFT p50 {_f(r['ttft_s']['p50'])} s, p99 {_f(r['ttft_s']['p99'])} s; "
                 f"TPOT p50 {_f(r['tpot_s']['p50'], 4)} s; {r['throughput_tokens_per_s']:,.0f} "
                 f"tokens/s; GPU busy {r['gpu_utilization']:.0%}, MFU {r['mfu']:.1%}; "
                 f"${r['cost_per_1m_tokens_usd']:.3f} per 1M tokens; Jain {_f(r['jain_fairness'])}; "
                 f"SLO (TTFT <= {r['slo']['ttft_s']:g} s, TPOT <= {r['slo']['tpot_s']:g} s) met by "
                 f"{r['slo_attainment']:.1%}; "
                 f"{r['requests']:,} requests in {r['wall_s']:.2f} s wall")
    return t
