"""`fairness`: FIFO, priority, aging, VTC, class+VTC and APS on workloads with unequal tenants."""
from __future__ import annotations

import math

from aps.experiments.kit import (SUMMARY_COLUMNS, Experiment, light_heavy, by, cdf_panel,
                                    share_panel, summary_row)
from aps.experiments.runs import RunSpec

POLICIES = ["fifo", "priority", "aging", "vtc", "class+vtc", "aps"]
WORKLOADS = [  # (scenario, model, gpu, rate scale, requests in quick mode)
    ("noisy-neighbour", "llama-3-8b", "a10g", 0.3, 600),
    ("vtc-lmsys", "llama-2-7b", "a10g", 1.0, 600),
    ("servegen", "llama-3-8b", "a10g", 1.0, 600),
]


def grid(quick: bool) -> list[RunSpec]:
    return [RunSpec(f"{sc}-{p}", {"workload": sc, "policy": p, "gpu": gpu}, scenario=sc,
                    requests=n if quick else None, rate_scale=scale, policy=p, model=model,
                    gpu=gpu)
            for sc, model, gpu, scale, n in WORKLOADS for p in POLICIES]


def analyze(records: list[dict]):
    rows = []
    for r in records:
        light, heavy = light_heavy(r)
        rows.append([*summary_row(r, "workload", "policy"), light, heavy,
                     r["summary"]["max_service_gap_tokens"]])
    table = {"title": "Per workload and policy (light tenants: fewer requests than the mean tenant)",
             "columns": ["workload", "policy", *SUMMARY_COLUMNS, "light TTFT mean s",
                         "heavy TTFT mean s", "max service gap"], "rows": rows,
             "note": "Jain's index is over service / min(demand, weighted fair share), with the "
                     "service each tenant had received when the last request arrived. The max "
                     "service gap (VTC's measure) is the largest difference in tokens served, "
                     "per unit of weight, between two tenants over a window in which both were "
                     "waiting, read from 120 samples of the run."}
    workloads = list(dict.fromkeys(r["labels"]["workload"] for r in records))
    figures = [
        {"name": "ttft_cdf_vtc-lmsys", "title": "TTFT per tenant on the 27-tenant LMSYS trace",
         "kind": "cdf", "xlabel": "time to first token (s)", "ylabel": "fraction of requests",
         "logx": True, "panels": [cdf_panel(r, r["labels"]["policy"])
                                  for r in by(records, workload="vtc-lmsys")]},
        {"name": "service_share_noisy", "title": "Share of tokens served, noisy-neighbour",
         "kind": "step", "xlabel": "simulated time (s)",
         "ylabel": "share of tokens served (sliding window)",
         "panels": [share_panel(r, r["labels"]["policy"])
                    for r in by(records, workload="noisy-neighbour")]},
        {"name": "throughput_by_policy", "title": "Does fairness cost throughput?",
         "kind": "bar", "xlabel": "workload", "ylabel": "tokens per second",
         "panels": [{"title": "throughput", "series": [
             {"label": p, "x": workloads,
              "y": [by(records, workload=w, policy=p)[0]["summary"]["throughput_tokens_per_s"]
                    for w in workloads]} for p in POLICIES]}]},
    ]
    return [table], figures, _findings(records, workloads)


def _findings(records: list[dict], workloads: list[str]) -> str:
    parts = []
    for w in workloads:
        runs = {r["labels"]["policy"]: r for r in by(records, workload=w)}
        fifo, vtc = runs.get("fifo"), runs.get("vtc")
        if not fifo or not vtc:
            continue
        lf, lv = light_heavy(fifo)[0], light_heavy(vtc)[0]
        tf = fifo["summary"]["throughput_tokens_per_s"]
        tv = vtc["summary"]["throughput_tokens_per_s"]
        light = "" if math.isnan(lf) else f"light tenants wait {lf:.2f} s (FIFO) vs {lv:.2f} s (VTC) for a first token; "
        parts.append(f"on {w}: {light}throughput {tf:,.0f} vs {tv:,.0f} tokens/s "
                     f"({(tv - tf) / tf:+.1%}); Jain {fifo['summary']['jain_fairness']:.3f} vs "
                     f"{vtc['summary']['jain_fairness']:.3f}")
    return "**What the runs say.** " + "; ".join(parts) + "."


EXPERIMENTS = {
    "fairness": Experiment(
        "Does fairness cost throughput?",
        "Six policies on three multi-tenant workloads: `noisy-neighbour` (four steady tenants "
        "and one that floods at 5x its share, slowed to 0.3x so that the steady tenants alone "
        "fit, Llama-3-8B on an A10G), the 27-tenant LMSYS trace "
        "of the VTC paper (Llama-2-7B on an A10G, as in the paper) and the ten busiest ServeGen "
        "clients (Llama-3-8B on an A10G). Continuous batching throughout; every policy sees the "
        "same requests at the same times. Every tenant of these workloads bids the same, so "
        "`priority` and `aging` order requests as FIFO does, and `class+vtc` and `aps` (the "
        "default) as VTC does: the identical rows are a check, not a copy.",
        grid, analyze),
}
