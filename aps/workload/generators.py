"""Synthetic traffic: arrival processes and token-length distributions.

Every sampler takes an explicit `numpy.random.Generator`, so a seed fixes a workload exactly.
An arrival process stops after `n` requests, at `duration_s` seconds, or at whichever comes
first when both are given. Parameter names match the scenario YAML keys.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from aps.workload.workload import WorkloadError

Rng = np.random.Generator


def _require(ok: bool, field: str, problem: str) -> None:
    if not ok:
        raise WorkloadError.bad_field(field, problem)


def _check_stop(n: int | None, duration_s: float | None) -> None:
    _require(n is not None or duration_s is not None, "requests", "give a count or a duration")
    _require(n is None or n >= 0, "requests", f"must be >= 0, got {n}")
    _require(duration_s is None or duration_s >= 0, "duration_s", f"must be >= 0, got {duration_s}")


def renewal_arrivals(draw: Callable[[int], np.ndarray], mean_iat: float, n: int | None,
             duration_s: float | None) -> np.ndarray:
    """Arrival times of a renewal process whose gaps come from draw(k), from t = 0."""
    _check_stop(n, duration_s)
    if duration_s is None:
        return np.cumsum(draw(n))
    # Draw in chunks sized to the expected count so one chunk usually suffices.
    chunk = int(duration_s / mean_iat * 1.1) + 16
    chunk = chunk if n is None else min(chunk, n + 1)
    parts, last, total = [], 0.0, 0
    while last < duration_s and (n is None or total < n):
        times = last + np.cumsum(draw(chunk))
        parts.append(times)
        last, total = float(times[-1]), total + chunk
    out = np.concatenate(parts) if parts else np.empty(0)
    out = out[out < duration_s]
    return out if n is None else out[:n]


class ArrivalProcess(Protocol):
    def sample(self, rng: Rng, n: int | None = None,
               duration_s: float | None = None) -> np.ndarray: ...

    def mean_rate(self) -> float: ...


@dataclass(slots=True, frozen=True)
class Poisson:
    """Exponential gaps: the memoryless baseline (IAT CV = 1)."""

    rate: float

    def __post_init__(self) -> None:
        _require(self.rate > 0, "rate", f"must be > 0, got {self.rate}")

    def sample(self, rng: Rng, n: int | None = None, duration_s: float | None = None):
        return renewal_arrivals(lambda k: rng.exponential(1.0 / self.rate, k), 1.0 / self.rate,
                        n, duration_s)

    def mean_rate(self) -> float:
        return self.rate


@dataclass(slots=True, frozen=True)
class Gamma:
    """Gamma gaps with a chosen CV: shape 1/cv^2, mean 1/rate. cv > 1 is burstier than Poisson,
    cv < 1 smoother, cv = 0 evenly spaced."""

    rate: float
    cv: float

    def __post_init__(self) -> None:
        _require(self.rate > 0, "rate", f"must be > 0, got {self.rate}")
        _require(self.cv >= 0, "cv", f"must be >= 0, got {self.cv}")

    def sample(self, rng: Rng, n: int | None = None, duration_s: float | None = None):
        mean = 1.0 / self.rate
        if self.cv == 0:
            return renewal_arrivals(lambda k: np.full(k, mean), mean, n, duration_s)
        shape = 1.0 / self.cv**2
        return renewal_arrivals(lambda k: rng.gamma(shape, mean / shape, k), mean, n, duration_s)

    def mean_rate(self) -> float:
        return self.rate


@dataclass(slots=True, frozen=True)
class OnOff:
    """Bursts: Poisson at `rate` for on_s seconds, then silence for off_s, repeating from an
    on period at t = 0."""

    rate: float
    on_s: float
    off_s: float

    def __post_init__(self) -> None:
        _require(self.rate > 0, "rate", f"must be > 0, got {self.rate}")
        _require(self.on_s > 0, "on_s", f"must be > 0, got {self.on_s}")
        _require(self.off_s >= 0, "off_s", f"must be >= 0, got {self.off_s}")

    def sample(self, rng: Rng, n: int | None = None, duration_s: float | None = None):
        # Sample in "on time" only, then stretch by the off periods that precede each arrival.
        on_budget = None
        if duration_s is not None:
            cycles, rest = divmod(duration_s, self.on_s + self.off_s)
            on_budget = cycles * self.on_s + min(rest, self.on_s)
        on_t = Poisson(self.rate).sample(rng, n, on_budget)
        return on_t + np.floor(on_t / self.on_s) * self.off_s

    def mean_rate(self) -> float:
        return self.rate * self.on_s / (self.on_s + self.off_s)


@dataclass(slots=True, frozen=True)
class Diurnal:
    """Poisson with rate(t) = rate * (1 + amplitude * sin(2 pi t / period_s + phase)), drawn
    by thinning a homogeneous process at the peak rate."""

    rate: float
    period_s: float = 86400.0
    amplitude: float = 0.5
    phase: float = 0.0

    def __post_init__(self) -> None:
        _require(self.rate > 0, "rate", f"must be > 0, got {self.rate}")
        _require(self.period_s > 0, "period_s", f"must be > 0, got {self.period_s}")
        _require(0 <= self.amplitude <= 1, "amplitude", f"must be in [0, 1], got {self.amplitude}")

    def sample(self, rng: Rng, n: int | None = None, duration_s: float | None = None):
        _check_stop(n, duration_s)
        peak = self.rate * (1 + self.amplitude)
        horizon = duration_s if duration_s is not None else n / self.rate
        kept, count, start = [], 0, 0.0
        while (n is None or count < n) and (duration_s is None or start < duration_s):
            cand = start + np.cumsum(rng.exponential(1.0 / peak, int(horizon * peak) + 16))
            keep = rng.random(len(cand)) * peak < self.rate_at(cand)
            kept.append(cand[keep])
            count, start = count + int(keep.sum()), float(cand[-1])
        out = np.concatenate(kept) if kept else np.empty(0)
        if duration_s is not None:
            out = out[out < duration_s]
        return out if n is None else out[:n]

    def rate_at(self, t: np.ndarray) -> np.ndarray:
        return self.rate * (1 + self.amplitude * np.sin(2 * math.pi * t / self.period_s
                                                        + self.phase))

    def mean_rate(self) -> float:
        return self.rate


@dataclass(slots=True, frozen=True)
class Burst:
    """All n requests at once (at_s), the seeds' stress test. Needs a count."""

    at_s: float = 0.0

    def __post_init__(self) -> None:
        _require(self.at_s >= 0, "at_s", f"must be >= 0, got {self.at_s}")

    def sample(self, rng: Rng, n: int | None = None, duration_s: float | None = None):
        _require(n is not None, "requests", "a burst needs a request count")
        if duration_s is not None and self.at_s >= duration_s:
            return np.empty(0)
        return np.full(n, self.at_s, dtype=np.float64)

    def mean_rate(self) -> float:
        return math.inf


ARRIVALS: dict[str, type] = {"poisson": Poisson, "gamma": Gamma, "onoff": OnOff,
                             "diurnal": Diurnal, "burst": Burst}


class LengthDist(Protocol):
    def sample(self, rng: Rng, n: int) -> np.ndarray: ...  # int32, >= 1

    def expected(self) -> float: ...


@dataclass(slots=True, frozen=True)
class Constant:
    value: int

    def __post_init__(self) -> None:
        _require(self.value >= 1, "value", f"must be >= 1, got {self.value}")

    def sample(self, rng: Rng, n: int) -> np.ndarray:
        return np.full(n, self.value, dtype=np.int32)

    def expected(self) -> float:
        return float(self.value)


@dataclass(slots=True, frozen=True)
class Uniform:
    """Integers uniform in [low, high], both included."""

    low: int
    high: int

    def __post_init__(self) -> None:
        _require(self.low >= 1, "low", f"must be >= 1, got {self.low}")
        _require(self.high >= self.low, "high", f"must be >= low ({self.low}), got {self.high}")

    def sample(self, rng: Rng, n: int) -> np.ndarray:
        return rng.integers(self.low, self.high + 1, n).astype(np.int32)

    def expected(self) -> float:
        return (self.low + self.high) / 2


@dataclass(slots=True, frozen=True)
class LogNormal:
    """Lognormal with the given mean and CV, rounded and clipped to [1, max]. Clipping trims
    the mean slightly when max cuts into the tail."""

    mean: float
    cv: float = 1.0
    max: int = 32768

    def __post_init__(self) -> None:
        _require(self.mean >= 1, "mean", f"must be >= 1, got {self.mean}")
        _require(self.cv >= 0, "cv", f"must be >= 0, got {self.cv}")
        _require(self.max >= 1, "max", f"must be >= 1, got {self.max}")

    def sample(self, rng: Rng, n: int) -> np.ndarray:
        sigma2 = math.log1p(self.cv**2)
        mu = math.log(self.mean) - sigma2 / 2
        draws = rng.lognormal(mu, math.sqrt(sigma2), n)
        return np.clip(np.rint(draws), 1, self.max).astype(np.int32)

    def expected(self) -> float:
        return self.mean


@dataclass(slots=True, frozen=True, eq=False)
class Empirical:
    """Resampling with replacement from observed lengths (e.g. a trace column)."""

    values: np.ndarray

    def __post_init__(self) -> None:
        _require(len(self.values) > 0, "values", "needs at least one value")
        _require(int(np.min(self.values)) >= 1, "values", "lengths must be >= 1")

    def sample(self, rng: Rng, n: int) -> np.ndarray:
        return np.asarray(self.values, dtype=np.int32)[rng.integers(0, len(self.values), n)]

    def expected(self) -> float:
        return float(np.mean(self.values))


@dataclass(slots=True, frozen=True, eq=False)
class EmpiricalPairs:
    """Resampling (prompt, output) pairs together, keeping their correlation."""

    prompt: np.ndarray
    output: np.ndarray

    def __post_init__(self) -> None:
        _require(len(self.prompt) == len(self.output) > 0, "lengths", "needs equal, non-empty "
                 "prompt and output columns")

    def sample(self, rng: Rng, n: int) -> tuple[np.ndarray, np.ndarray]:
        rows = rng.integers(0, len(self.prompt), n)
        return (np.asarray(self.prompt, dtype=np.int32)[rows],
                np.asarray(self.output, dtype=np.int32)[rows])


LENGTHS: dict[str, type] = {"constant": Constant, "uniform": Uniform, "lognormal": LogNormal,
                            "empirical": Empirical}
