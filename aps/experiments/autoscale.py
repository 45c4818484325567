"""`autoscale`: a bursty trace served by fixed replica counts and by the autoscaler.

The shipped scenario `autoscale-azure-code` (the Azure 2023 code trace, Llama-2-7B on
A100-40GB) runs with 1, 2, 4, 6 and 8 fixed replicas and autoscaled between 1 and 8, each new
replica routable a minute after it is asked for (and, to see what that minute costs, 10 s).
What each costs (replica-seconds) against what it serves (TTFT, SLO attainment), and the
count over time.
"""
from __future__ import annotations

from aps.experiments.kit import Experiment
from aps.experiments.runs import RunSpec
from aps.workload.scenarios import load_scenario

SCENARIO = "autoscale-azure-code"
FIXED = [1, 2, 4, 6, 8]


def grid(quick: bool) -> list[RunSpec]:
    hints = load_scenario(SCENARIO, requests=10).defaults
    common = dict(scenario=SCENARIO, requests=2500 if quick else None, policy=hints["policy"],
                  model=hints["model"], gpu=hints["gpu"], router="least-outstanding-tokens")
    runs = [RunSpec(f"fixed-{n}", {"config": f"fixed {n}"}, replicas=n, **common) for n in FIXED]
    runs.append(RunSpec("autoscaled", {"config": "autoscaled"}, replicas=1, autoscale={},
                        **common))
    # what the minute of start-up costs: the same autoscaler with replicas ready in 10 s
    runs.append(RunSpec("autoscaled-fast-start", {"config": "autoscaled, 10 s start-up"},
                        replicas=1, autoscale={"startup_s": 10.0}, **common))
    return runs


def _replica_s(record: dict) -> float:
    s = record["summary"]
    a = s.get("autoscale")
    return a["replica_seconds"] if a else s["simulated_s"] * record["spec"]["replicas"]


def analyze(records: list[dict]):
    rows = []
    for r in records:
        s, a = r["summary"], r["summary"].get("autoscale")
        n = r["spec"]["replicas"]
        rows.append([r["labels"]["config"], a["mean_replicas"] if a else n,
                     a["max_replicas"] if a else n, _replica_s(r) / 3600,
                     s["cost_per_1m_tokens_usd"], s["ttft_s"]["p50"], s["ttft_s"]["p99"],
                     s["slo_attainment"], (a["scale_ups"] + a["scale_downs"]) if a else 0])
    slo = records[0]["summary"]["slo"]
    table = {"title": f"Fixed replica counts versus the autoscaler ({SCENARIO})",
             "columns": ["replicas", "mean", "max", "GPU-hours", "$ per 1M tokens",
                         "TTFT p50 s", "TTFT p99 s", "SLO met", "scale events"],
             "rows": rows,
             "note": f"SLO: TTFT <= {slo['ttft_s']:g} s and TPOT <= {slo['tpot_s']:g} s. "
                     "GPU-hours count a replica from the moment it is asked for (start-up "
                     "included) until it is removed."}
    return [table], [_count_figure(records), _queue_figure(records)], _findings(records)


def _count_figure(records: list[dict]) -> dict:
    series = []
    for r in records:
        a = r["summary"].get("autoscale")
        if a:
            tl, name = a["timeline"], r["labels"]["config"]
            series += [{"label": f"{name}: provisioned", "x": tl["t"], "y": tl["provisioned"]},
                       {"label": f"{name}: routable", "x": tl["t"], "y": tl["ready"]}]
        else:
            end = r["summary"]["simulated_s"]
            n = r["spec"]["replicas"]
            series.append({"label": r["labels"]["config"], "x": [0.0, end], "y": [n, n]})
    return {"name": "autoscale_replicas", "title": "Replicas over time", "kind": "step",
            "xlabel": "time (s)", "ylabel": "replicas", "panels": [{"title": "", "series": series}]}


def _queue_figure(records: list[dict]) -> dict:
    return {"name": "autoscale_queue", "title": "Requests waiting, all replicas", "kind": "line",
            "xlabel": "time (s)", "ylabel": "waiting requests", "panels": [
                {"title": r["labels"]["config"], "series": [
                    {"label": "waiting", "x": r["timeline"]["t"], "y": r["timeline"]["waiting"]}]}
                for r in records]}


def _findings(records: list[dict]) -> str:
    scaled = [r for r in records if r["summary"].get("autoscale")]
    auto = scaled[0] if scaled else None
    fixed = [r for r in records if r not in scaled]
    if auto is None or not fixed:
        return ""
    a, top = auto["summary"], max(fixed, key=lambda r: r["spec"]["replicas"])
    # the cheapest fixed count that serves at least as well as the autoscaler
    as_good = [r for r in fixed if r["summary"]["slo_attainment"] >= a["slo_attainment"]]
    best = min(as_good, key=_replica_s) if as_good else None
    text = (f"**What the runs say.** Autoscaled, the cluster averaged "
            f"{a['autoscale']['mean_replicas']:.1f} replicas (at most "
            f"{a['autoscale']['max_replicas']}) and met the SLO for {a['slo_attainment']:.1%} of "
            f"requests, using {_replica_s(auto) / _replica_s(top):.0%} of the GPU-hours of a "
            f"fixed {top['spec']['replicas']} ({top['summary']['slo_attainment']:.1%}). ")
    if best is not None:
        ratio = _replica_s(best) / _replica_s(auto)
        text += (f"The cheapest fixed count that serves at least as well is "
                 f"{best['spec']['replicas']}, at {ratio:.2f}x the autoscaler's GPU-hours. ")
    for other in scaled[1:]:
        o = other["summary"]
        text += (f"With replicas ready in {o['autoscale']['startup_s']:g} s instead of "
                 f"{a['autoscale']['startup_s']:g} s, the SLO is met for {o['slo_attainment']:.1%} "
                 f"(TTFT p99 {o['ttft_s']['p99']:.1f} s against {a['ttft_s']['p99']:.1f} s) at "
                 f"{o['autoscale']['mean_replicas']:.1f} replicas on average. ")
    return text.rstrip()


EXPERIMENTS = {
    "autoscale": Experiment(
        "Autoscaling: fixed replica counts versus the autoscaler on a bursty trace",
        "The Azure 2023 code trace (bursts of up to 10 requests/s between idle minutes) served "
        "by Llama-2-7B on A100-40GB, FIFO, least-outstanding-tokens routing: fixed at 1, 2, 4, 6 "
        "and 8 replicas, and autoscaled between 1 and 8 from queue depth, KV usage and SLO "
        "attainment, each new replica routable 60 s after it is asked for (the scenario's "
        "`autoscale:` block), and once more with a 10 s start-up.", grid, analyze),
}
