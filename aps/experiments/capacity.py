"""`capacity`: how many replicas of each GPU a workload needs to meet an SLO, and the cost."""
from __future__ import annotations

import math

from aps.experiments.kit import Experiment, by
from aps.experiments.runs import RunSpec

SLO_TTFT_P90_S, SLO_TPOT_P99_S = 2.0, 0.2
GPUS = ["l4", "a10g", "a100-80gb", "h100-sxm", "h200"]
REPLICAS = [1, 2, 3, 4, 6, 8]


def grid(quick: bool) -> list[RunSpec]:
    gpus, replicas = (["a10g", "h100-sxm"], [1, 2, 4]) if quick else (GPUS, REPLICAS)
    return [RunSpec(f"{gpu}-{mode}-{n}", {"gpu": gpu, "batch": mode, "replicas": n},
                    scenario="azure-conv", requests=400 if quick else 6000, policy="fifo",
                    model="llama-3-8b", gpu=gpu, replicas=n,
                    batch={"mode": mode} if mode == "continuous" else {"mode": mode, "max_batch": 16})
            for gpu in gpus for mode in ("continuous", "micro") for n in replicas]


def meets_slo(record: dict) -> bool:
    s = record["summary"]
    return (s["finished"] == s["requests"] and s["ttft_s"]["p90"] < SLO_TTFT_P90_S
            and s["tpot_s"]["p99"] < SLO_TPOT_P99_S)


def analyze(records: list[dict]):
    rows, cheapest, chosen = [], {}, {}
    for gpu in dict.fromkeys(r["labels"]["gpu"] for r in records):
        for mode in ("continuous", "micro"):
            runs = sorted(by(records, gpu=gpu, batch=mode), key=lambda r: r["labels"]["replicas"])
            ok = next((r for r in runs if meets_slo(r)), None)
            s = ok["summary"] if ok else None
            rows.append([gpu, mode, ok["labels"]["replicas"] if ok else f"> {runs[-1]['labels']['replicas']}",
                         s["ttft_s"]["p90"] if s else math.nan, s["tpot_s"]["p99"] if s else math.nan,
                         s["cost_per_1m_tokens_usd"] if s else math.nan,
                         s["gpu_utilization"] if s else math.nan, s["mfu"] if s else math.nan])
            if ok:
                cheapest[(gpu, mode)] = s["cost_per_1m_tokens_usd"]
                chosen[(gpu, mode)] = s
    table = {"title": f"Replicas needed for TTFT p90 < {SLO_TTFT_P90_S:g} s and TPOT p99 < "
                      f"{SLO_TPOT_P99_S:g} s (azure-conv, Llama-3-8B, FIFO)",
             "columns": ["GPU", "batching", "replicas", "TTFT p90 s", "TPOT p99 s",
                         "$ per 1M tokens", "GPU busy", "MFU"], "rows": rows,
             "note": "Cost counts every replica for the whole run, busy or not."}
    gpus = list(dict.fromkeys(r["labels"]["gpu"] for r in records))
    figure = {"name": "capacity_ttft_p90", "title": "TTFT p90 versus replicas", "kind": "line",
              "xlabel": "replicas", "ylabel": "TTFT p90 (s)", "logy": True,
              "panels": [{"title": mode, "series": [
                  {"label": gpu, "x": [r["labels"]["replicas"] for r in by(records, gpu=gpu, batch=mode)],
                   "y": [r["summary"]["ttft_s"]["p90"] for r in by(records, gpu=gpu, batch=mode)]}
                  for gpu in gpus]} for mode in ("continuous", "micro")]}
    met = sorted(chosen, key=lambda k: chosen[k]["cost_per_1m_tokens_usd"])
    labels = [f"{g} ({m}, {n})" for g, m in met
              for n in [next(row[2] for row in rows if row[:2] == [g, m])]]
    economics = {"name": "capacity_cost_utilization",
                 "title": "Configurations that meet the SLO: cost, busy time and MFU",
                 "kind": "bar", "xlabel": "GPU (batching, replicas)", "ylabel": "",
                 "panels": [
                     {"title": "$ per 1M tokens", "series": [
                         {"label": "cost", "x": labels,
                          "y": [chosen[k]["cost_per_1m_tokens_usd"] for k in met]}]},
                     {"title": "fraction of the GPUs' capacity", "series": [
                         {"label": "busy (any batch running)", "x": labels,
                          "y": [chosen[k]["gpu_utilization"] for k in met]},
                         {"label": "MFU", "x": labels, "y": [chosen[k]["mfu"] for k in met]}]}]}
    return [table], [figure, economics], _findings(cheapest)


def _findings(cheapest: dict) -> str:
    if not cheapest:
        return "**What the runs say.** No configuration in the grid met the SLO."
    (gpu, mode), cost = min(cheapest.items(), key=lambda kv: kv[1])
    micro = sorted(g for g, m in cheapest if m == "micro")
    text = (f"**What the runs say.** The cheapest configuration that meets the SLO is {gpu} "
            f"with {mode} batching at ${cost:.3f} per 1M tokens. ")
    if not micro:
        return text + ("Micro-batching meets it on no GPU of the grid: a request that arrives "
                       "while a batch runs waits for that batch's longest output.")
    return text + f"Micro-batching meets it on {', '.join(micro)}."


EXPERIMENTS = {
    "capacity": Experiment(
        "Capacity planning: replicas and cost to meet an SLO",
        "The Azure 2023 conversation trace (one hour, 5.5 requests/s) served by Llama-3-8B on "
        "each GPU type with 1 to 8 replicas (round-robin routing), continuous versus micro batching (max batch 16). A configuration meets "
        f"the SLO when every request finishes, TTFT p90 < {SLO_TTFT_P90_S:g} s and TPOT p99 < "
        f"{SLO_TPOT_P99_S:g} s.", grid, analyze),
}
