"""What the shipped experiments share: the Experiment record and helpers that turn run records
into table rows and figure panels (plain data, see `aps.experiments.report`).

Numbers in an experiment's findings are computed from its runs, never written by hand.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from aps.experiments.runs import RunSpec


@dataclass(frozen=True)
class Experiment:
    title: str
    description: str
    grid: Callable[[bool], list[RunSpec]]
    analyze: Callable[[list[dict]], tuple[list, list, str]]
    # files written beside the report, {name: text}, from the runs (e.g. a telemetry log)
    logs: Callable[[list[dict]], dict[str, str]] | None = None


# -- shared analysis helpers ---------------------------------------------------------------------

def light_heavy(record: dict) -> tuple[float, float]:
    """Mean TTFT of light tenants (fewer requests than the mean tenant) and of the others."""
    per = record["summary"]["per_tenant"]
    mean_count = np.mean([v["requests"] for v in per.values()])
    light = [v["ttft_s"]["mean"] for v in per.values() if 0 < v["requests"] < mean_count]
    heavy = [v["ttft_s"]["mean"] for v in per.values() if v["requests"] >= mean_count]
    mean = lambda xs: float(np.nanmean(xs)) if xs else float("nan")
    return mean(light), mean(heavy)


def cdf_panel(record: dict, title: str, limit: int = 12) -> dict:
    """TTFT CDFs of the `limit` tenants with the most requests and the fewest."""
    per = record["summary"]["per_tenant"]
    names = sorted(per, key=lambda t: -per[t]["requests"])
    if len(names) > limit:
        names = names[: limit // 2] + names[-(limit // 2):]
    return {"title": title, "series": [
        {"label": f"{t} ({per[t]['requests']})", "x": record["ttft_by_tenant"][t]}
        for t in names if record["ttft_by_tenant"].get(t)]}


def share_panel(record: dict, title: str, window: int = 10) -> dict:
    """Each tenant's share of the tokens served over a sliding window of samples."""
    tl = record["timeline"]
    t, service = tl["t"], tl["service"]
    tenants = sorted({k for s in service for k in s})
    total = np.array([sum(s.values()) for s in service], dtype=float)
    lagged = lambda x: x - np.concatenate([np.zeros(min(window, len(x))), x[:-window]])
    served = lagged(total)
    series = []
    for name in tenants:
        got = lagged(np.array([s.get(name, 0) for s in service], dtype=float))
        share = np.where(served > 0, got / np.maximum(served, 1), np.nan)
        series.append({"label": name, "x": t, "y": share.tolist()})
    return {"title": title, "series": series}


def queue_panel(record: dict, title: str) -> dict:
    tl = record["timeline"]
    return {"title": title, "series": [{"label": "waiting", "x": tl["t"], "y": tl["waiting"]},
                                       {"label": "running", "x": tl["t"], "y": tl["running"]}]}


def summary_row(record: dict, *labels: str) -> list:
    s = record["summary"]
    return [*(record["labels"].get(k, "") for k in labels), s["throughput_tokens_per_s"],
            s["ttft_s"]["p50"], s["ttft_s"]["p99"], s["tpot_s"]["p50"], s["gpu_utilization"],
            s["mfu"], s["cost_per_1m_tokens_usd"], s["jain_fairness"]]


SUMMARY_COLUMNS = ["tokens/s", "TTFT p50 s", "TTFT p99 s", "TPOT p50 s", "GPU busy", "MFU",
                   "$ per 1M tokens", "Jain"]


def by(records: list[dict], **labels) -> list[dict]:
    return [r for r in records if all(r["labels"].get(k) == v for k, v in labels.items())]
