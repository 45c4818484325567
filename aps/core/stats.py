"""Latency and fairness statistics, as the README's metric definitions describe them."""
from __future__ import annotations

import math
from collections import deque
from typing import Collection, Iterable, Mapping, Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linearly interpolated; nan for no values."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(values: Iterable[float]) -> dict[str, float]:
    """p50, p90, p99 and mean of the values that are not None."""
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return {"p50": math.nan, "p90": math.nan, "p99": math.nan, "mean": math.nan}
    return {"p50": percentile(xs, 50), "p90": percentile(xs, 90), "p99": percentile(xs, 99),
            "mean": math.fsum(xs) / len(xs)}


def jain_index(xs: Sequence[float]) -> float:
    """Jain's fairness index (sum x)^2 / (n * sum x^2): 1 when all equal, 1/n when one has all."""
    if not xs:
        return math.nan
    square_sum = math.fsum(x * x for x in xs)
    if square_sum == 0:
        return 1.0
    return math.fsum(xs) ** 2 / (len(xs) * square_sum)


def fair_shares(demand: Mapping[str, float], weight: Mapping[str, float],
                capacity: float) -> dict[str, float]:
    """Weighted max-min fair shares of `capacity` (water-filling).

    A tenant asking for less than its weighted share gets all it asked for; what it leaves is
    split among the others by weight.
    """
    share = {t: 0.0 for t in demand}
    active = {t for t, d in demand.items() if d > 0}
    left = capacity
    while active and left > 1e-12:
        total_w = math.fsum(weight[t] for t in active)
        level = left / total_w
        sated = {t for t in active if demand[t] - share[t] <= level * weight[t]}
        if not sated:
            for t in active:
                share[t] += level * weight[t]
            break
        for t in sated:
            left -= demand[t] - share[t]
            share[t] = demand[t]
        active -= sated
    return share


def entitlement_ratios(service: Mapping[str, float], demand: Mapping[str, float],
                       weight: Mapping[str, float]) -> dict[str, float]:
    """x_i = service_i / min(demand_i, weighted fair share_i): 1.0 = got all it was entitled to.

    The capacity shared is the total service actually delivered, so a light tenant that asked
    for little is not counted as treated unfairly for getting little.
    """
    shares = fair_shares(demand, weight, math.fsum(service.values()))
    return {t: service[t] / shares[t] for t in demand if shares[t] > 0}


def fairness_index(service: Mapping[str, float], demand: Mapping[str, float],
                   weight: Mapping[str, float]) -> float:
    """Jain's index over entitlement ratios: 1.0 when every tenant got what it was entitled to."""
    return jain_index(list(entitlement_ratios(service, demand, weight).values()))


def max_service_gap(samples: Iterable[tuple[Mapping[str, float], Collection[str]]]) -> float:
    """VTC's measure: the largest difference in service two tenants received over any window in
    which both stayed backlogged.

    `samples` are `(cumulative weighted service per tenant, tenants backlogged then)` in time
    order. For a pair, d(t) = S_a(t) - S_b(t); over a run of samples in which both are
    backlogged, the worst window is the range of d. A pair's run ends when either drains.
    """
    best = 0.0
    runs: dict[tuple[str, str], tuple[float, float]] = {}
    for service, backlogged in samples:
        names = sorted(backlogged)
        live = {}
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                d = service.get(a, 0.0) - service.get(b, 0.0)
                lo, hi = runs.get((a, b), (d, d))
                live[(a, b)] = lo, hi = min(lo, d), max(hi, d)
                best = max(best, hi - lo)
        runs = live
    return best


class RecentEnds:
    """Requests that ended in the last `window_s` seconds: how many a second, and how long each
    took. Back-pressure reads it to tell a refused client when to come back. Times must not
    decrease (they are the times requests ended)."""

    def __init__(self, window_s: float = 30.0):
        self.window_s = window_s
        self._ends: deque[tuple[float, float]] = deque()  # (ended at, seconds it took)
        self._total = 0.0

    def add(self, now: float, duration: float) -> None:
        self._ends.append((now, duration))
        self._total += duration
        self._trim(now)  # kept to the window whether or not anyone reads it

    def _trim(self, now: float) -> None:
        ends = self._ends
        while ends and ends[0][0] < now - self.window_s:
            self._total -= ends.popleft()[1]

    def time_for(self, n: int, now: float) -> float | None:
        """Seconds for `n` more requests to end at the recent rate (None: none ended lately)."""
        self._trim(now)
        return n * self.window_s / len(self._ends) if self._ends else None

    def mean_duration(self, now: float) -> float | None:
        self._trim(now)
        return self._total / len(self._ends) if self._ends else None
