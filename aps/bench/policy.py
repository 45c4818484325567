"""`aps bench policy`: the three outcomes the default policy is held to, simulated.

1. Bids with a bounded wait: a bid-10 tenant bursts above capacity while a bid-1 tenant
   trickles (Llama-3-8B, one A100-80GB). Bid-1's longest wait under `aps` must stay within
   FIFO's + 9/alpha + one request's service time, where static priority's grows with the
   burst; bid-10's p99 TTFT must be no worse than FIFO's (within 1%: what runs before a bid-10
   request is a subset of what runs before it under FIFO, but batches form differently).
2. Equal bids, one tenant flooding (`noisy-neighbour` at twice its rates on the same GPU, where
   the flood alone exceeds it): the light tenants' p90 TTFT within 2x of `vtc`'s.
3. The VTC artifact's trace (`vtc-lmsys`, Llama-2-7B on one A10G as in the paper), at its own
   rate and 1.25x it: light tenants' (at most 30 requests) mean TTFT at least 20x better than
   FIFO's, at throughput within 2% of FIFO's.

Every figure comes from the runs; the verdicts compare them with the targets above.
"""
from __future__ import annotations

import numpy as np

from aps.experiments.kit import by
from aps.experiments.priority import CAPACITY_RPS, bound
from aps.experiments.runs import RunSpec, run_grid, workload_of

ALPHAS = (0.1, 1.0)
BURST_LOAD = 1.2
BURSTS_S = (150.0, 300.0)  # the burst's length: static priority's wait grows with it
LIGHT_MAX_REQUESTS = 30
LMSYS_RATES = (1.0, 1.25)
P99_SLACK = 1.01


def _specs() -> list[RunSpec]:
    specs = []
    for burst_s in BURSTS_S:
        args = {"rate": BURST_LOAD * CAPACITY_RPS, "duration_s": 2 * burst_s, "light_bid10": False}
        for policy, alpha in (("fifo", None), ("priority", None), *(("aps", a) for a in ALPHAS)):
            specs.append(RunSpec(f"burst{burst_s:g}-{policy}-{alpha}",
                                 {"case": "burst", "burst_s": burst_s, "policy": policy,
                                  "alpha": alpha}, build="bid-burst", build_args=args,
                                 policy=policy, policy_params={} if alpha is None else {"alpha": alpha}))
    for policy in ("fifo", "vtc", "aps"):
        specs.append(RunSpec(f"noisy-{policy}", {"case": "noisy", "policy": policy},
                             scenario="noisy-neighbour", rate_scale=2.0, policy=policy))
    for rate in LMSYS_RATES:
        for policy in ("fifo", "aps"):
            specs.append(RunSpec(f"lmsys{rate:g}-{policy}", {"case": "lmsys", "rate": rate,
                                                            "policy": policy},
                                 scenario="vtc-lmsys", rate_scale=rate, policy=policy,
                                 model="llama-2-7b", gpu="a10g"))
    return specs


def _tenant(record: dict, name: str) -> dict:
    return record["summary"]["per_tenant"][name]


def _burst(records: list[dict]) -> dict:
    rows, holds = [], True
    for burst_s in BURSTS_S:
        at = by(records, case="burst", burst_s=burst_s)
        fifo, prio = by(at, policy="fifo")[0], by(at, policy="priority")[0]
        row = {"burst_s": burst_s, "fifo_wait_s": _tenant(fifo, "bid-1")["max_wait_s"],
               "priority_wait_s": _tenant(prio, "bid-1")["max_wait_s"],
               "fifo_bid10_p99_s": _tenant(fifo, "bid-10")["ttft_s"]["p99"], "aps": {}}
        for alpha in ALPHAS:
            r = by(at, policy="aps", alpha=alpha)[0]
            wait, p99 = _tenant(r, "bid-1")["max_wait_s"], _tenant(r, "bid-10")["ttft_s"]["p99"]
            row["aps"][alpha] = {"wait_s": wait, "bound_s": bound(fifo, alpha), "bid10_p99_s": p99}
            holds &= wait <= bound(fifo, alpha) and p99 <= P99_SLACK * row["fifo_bid10_p99_s"]
        rows.append(row)
    grows = rows[-1]["priority_wait_s"] > rows[0]["priority_wait_s"]
    return {"runs": rows, "priority_wait_grows": grows, "holds": bool(holds and grows)}


def _light_p90(record: dict) -> float:
    per = record["summary"]["per_tenant"]
    return max(v["ttft_s"]["p90"] for t, v in per.items() if t != "noisy")


def _noisy(records: list[dict]) -> dict:
    p90 = {p: _light_p90(by(records, case="noisy", policy=p)[0]) for p in ("fifo", "vtc", "aps")}
    return {"light_p90_s": p90, "aps_over_vtc": p90["aps"] / p90["vtc"],
            "holds": p90["aps"] <= 2 * p90["vtc"]}


def _light_mean(record: dict) -> float:
    per = record["summary"]["per_tenant"].values()
    return float(np.mean([v["ttft_s"]["mean"] for v in per
                          if 0 < v["requests"] <= LIGHT_MAX_REQUESTS]))


def _overload(fifo: dict) -> float:
    """Arrivals over what the GPU served: offered tokens/s while requests arrive, over FIFO's
    tokens/s from first arrival to last completion."""
    w = workload_of(RunSpec(**fifo["spec"]))
    offered = float(np.sum(w.prompt_tokens) + np.sum(w.output_tokens))
    span = float(w.arrival_s[-1] - w.arrival_s[0])
    return offered / span / fifo["summary"]["throughput_tokens_per_s"]


def _lmsys(records: list[dict]) -> dict:
    rows, holds = [], True
    for rate in LMSYS_RATES:
        fifo, aps = (by(records, case="lmsys", rate=rate, policy=p)[0] for p in ("fifo", "aps"))
        better = _light_mean(fifo) / _light_mean(aps)
        ratio = aps["summary"]["throughput_tokens_per_s"] / fifo["summary"]["throughput_tokens_per_s"]
        rows.append({"rate": rate, "overload": _overload(fifo),
                     "fifo_light_mean_s": _light_mean(fifo), "aps_light_mean_s": _light_mean(aps),
                     "light_better_x": better, "throughput_ratio": ratio,
                     "fifo_tokens_per_s": fifo["summary"]["throughput_tokens_per_s"],
                     "aps_tokens_per_s": aps["summary"]["throughput_tokens_per_s"]})
        holds &= better >= 20 and ratio >= 0.98
    return {"runs": rows, "holds": bool(holds)}


def run(workers: int | None = None) -> dict:
    records = run_grid(_specs(), workers)
    return {"burst": _burst(records), "noisy": _noisy(records), "lmsys": _lmsys(records)}


def report(result: dict) -> list[str]:
    """The result as lines of text, each outcome with its verdict."""
    verdict = lambda ok: "holds" if ok else "DOES NOT HOLD"
    b, n, m = result["burst"], result["noisy"], result["lmsys"]
    lines = [f"1. bid-10 bursts at {BURST_LOAD:g}x capacity, bid-1 trickles (Llama-3-8B, "
             f"A100-80GB): {verdict(b['holds'])}"]
    for row in b["runs"]:
        lines.append(f"   burst {row['burst_s']:.0f} s: bid-1 longest wait {row['fifo_wait_s']:.1f} s "
                     f"FIFO, {row['priority_wait_s']:.1f} s static priority; "
                     + "; ".join(f"aps a={a:g} {v['wait_s']:.1f} s (bound {v['bound_s']:.1f} s), "
                                 f"bid-10 p99 TTFT {v['bid10_p99_s']:.2f} s"
                                 for a, v in row["aps"].items())
                     + f" vs FIFO's {row['fifo_bid10_p99_s']:.2f} s")
    lines.append(f"   (targets: wait within the bound; bid-10 p99 at most {P99_SLACK:g}x FIFO's; "
                 "static priority's wait growing with the burst)")
    p = n["light_p90_s"]
    lines.append(f"2. noisy-neighbour at 2x its rates (Llama-3-8B, A100-80GB): light tenants' "
                 f"p90 TTFT {p['fifo']:.2f} s FIFO, {p['vtc']:.2f} s vtc, {p['aps']:.2f} s aps "
                 f"({n['aps_over_vtc']:.2f}x vtc's; target <= 2x): {verdict(n['holds'])}")
    lines.append(f"3. vtc-lmsys (Llama-2-7B, A10G): {verdict(m['holds'])}")
    for r in m["runs"]:
        lines.append(f"   rate x{r['rate']:g} (arrivals {r['overload']:.2f}x what FIFO serves): "
                     f"light mean TTFT {r['fifo_light_mean_s']:.2f} s FIFO, "
                     f"{r['aps_light_mean_s']:.3f} s aps ({r['light_better_x']:.0f}x better; target "
                     f">= 20x); throughput {r['fifo_tokens_per_s']:.0f} -> {r['aps_tokens_per_s']:.0f} "
                     f"tokens/s ({r['throughput_ratio']:.1%} of FIFO's; target >= 98%)")
    return lines
