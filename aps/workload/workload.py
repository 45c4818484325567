"""A workload: the requests a simulation replays, stored as columns.

One numpy array per field keeps a million requests at about 21 bytes each (~21 MB), and lets
every transformation (cut, scale, tile, merge) run vectorised.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from aps.core.errors import ConfigError
from aps.core.tenant import Tenant


class WorkloadError(ConfigError):
    """A trace, scenario or workload is malformed. Says where when it knows: file:line: field.

    `field` and `problem` are kept apart so that a caller holding the position (a scenario
    loader knows each YAML key's line) can re-raise the error with its location.
    """

    def __init__(self, message: str, field: str | None = None, problem: str | None = None):
        super().__init__(message)
        self.field = field
        self.problem = problem or message

    @classmethod
    def at(cls, source: str, line: int | None, field: str | None, problem: str) -> WorkloadError:
        where = source if line is None else f"{source}:{line}"
        what = f"field '{field}': " if field else ""
        return cls(f"{where}: {what}{problem}", field, problem)

    @classmethod
    def bad_field(cls, field: str, problem: str) -> WorkloadError:
        return cls(f"field '{field}': {problem}", field, problem)


@dataclass(slots=True)
class WorkloadSummary:
    name: str
    requests: int
    tenants: int
    span_s: float
    rate_rps: float
    iat_cv: float
    prompt_mean: float
    prompt_p50: float
    prompt_p99: float
    output_mean: float
    output_p50: float
    output_p99: float
    requests_per_tenant: dict[str, int]

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(slots=True)
class Workload:
    """Requests sorted by arrival. Row i is one request; `tenant[i]` indexes `tenants`."""

    name: str
    tenants: list[Tenant]
    arrival_s: np.ndarray  # float64, ascending, seconds from 0
    tenant: np.ndarray  # int32
    prompt_tokens: np.ndarray  # int32 >= 1
    output_tokens: np.ndarray  # int32 >= 1
    bid: np.ndarray  # int8, 1..10

    def __post_init__(self) -> None:
        self.arrival_s = np.ascontiguousarray(self.arrival_s, dtype=np.float64)
        self.tenant = np.ascontiguousarray(self.tenant, dtype=np.int32)
        self.prompt_tokens = np.ascontiguousarray(self.prompt_tokens, dtype=np.int32)
        self.output_tokens = np.ascontiguousarray(self.output_tokens, dtype=np.int32)
        self.bid = np.ascontiguousarray(self.bid, dtype=np.int8)
        self._check()

    def _check(self) -> None:
        n = len(self.arrival_s)
        for name in ("tenant", "prompt_tokens", "output_tokens", "bid"):
            if len(getattr(self, name)) != n:
                raise WorkloadError(f"workload {self.name!r}: column {name} has "
                                    f"{len(getattr(self, name))} rows, arrival_s has {n}")
        if n == 0:
            return
        if not np.all(np.isfinite(self.arrival_s)) or self.arrival_s[0] < 0:
            raise WorkloadError(f"workload {self.name!r}: arrival times must be finite and >= 0")
        if np.any(np.diff(self.arrival_s) < 0):
            raise WorkloadError(f"workload {self.name!r}: arrival times must be sorted")
        if self.tenant.min() < 0 or self.tenant.max() >= len(self.tenants):
            raise WorkloadError(f"workload {self.name!r}: tenant index out of range")
        if self.prompt_tokens.min() < 1 or self.output_tokens.min() < 1:
            raise WorkloadError(f"workload {self.name!r}: token counts must be >= 1")
        if self.bid.min() < 1 or self.bid.max() > 10:
            raise WorkloadError(f"workload {self.name!r}: bids must be in 1..10")

    def __len__(self) -> int:
        return len(self.arrival_s)

    @classmethod
    def build(cls, name: str, tenants: list[Tenant], arrival_s, tenant, prompt_tokens,
              output_tokens, bid=None) -> Workload:
        """Sorts rows by arrival (stable, so ties keep their given order); bids default to
        each tenant's own bid."""
        arrival_s = np.asarray(arrival_s, dtype=np.float64)
        tenant = np.asarray(tenant, dtype=np.int32)
        if bid is None:
            bid = np.array([t.bid for t in tenants], dtype=np.int8)[tenant] if tenants else []
        order = np.argsort(arrival_s, kind="stable")
        return cls(name, list(tenants), arrival_s[order], tenant[order],
                   np.asarray(prompt_tokens)[order], np.asarray(output_tokens)[order],
                   np.asarray(bid)[order])

    def _rows(self, index) -> Workload:
        return Workload(self.name, self.tenants, self.arrival_s[index], self.tenant[index],
                        self.prompt_tokens[index], self.output_tokens[index], self.bid[index])

    def head(self, n: int) -> Workload:
        """The first n requests (all of them if there are fewer)."""
        return self._rows(slice(0, max(0, n)))

    def time_slice(self, start_s: float = 0.0, end_s: float = float("inf")) -> Workload:
        """Requests arriving in [start_s, end_s), shifted so that start_s becomes 0."""
        lo, hi = np.searchsorted(self.arrival_s, [start_s, end_s], side="left")
        part = self._rows(slice(lo, hi))
        part.arrival_s = part.arrival_s - start_s
        return part

    def cut(self, duration_s: float) -> Workload:
        """Requests arriving before duration_s."""
        return self._rows(slice(0, int(np.searchsorted(self.arrival_s, duration_s, "left"))))

    def scale_rate(self, factor: float) -> Workload:
        """The same requests at `factor` times the rate: arrival times divided by factor."""
        if not factor > 0:
            raise WorkloadError(f"workload {self.name!r}: rate factor must be > 0, got {factor}")
        return Workload(self.name, self.tenants, self.arrival_s / factor, self.tenant,
                        self.prompt_tokens, self.output_tokens, self.bid)

    def repeat_to(self, n: int) -> Workload:
        """Exactly n requests by tiling this workload in time (or cutting it if longer).

        Each copy starts one mean inter-arrival gap after the previous copy's last request, so
        the long-run rate equals this workload's rate and the copies never overlap.
        """
        if n <= len(self):
            return self.head(n)
        if len(self) == 0:
            raise WorkloadError(f"workload {self.name!r}: cannot repeat an empty workload")
        copies = -(-n // len(self))
        rel = self.arrival_s - self.arrival_s[0]
        span = float(rel[-1])
        period = span + (span / (len(self) - 1) if len(self) > 1 and span > 0 else 1.0)
        offsets = np.repeat(np.arange(copies, dtype=np.float64) * period, len(self))
        return Workload(self.name, self.tenants, (np.tile(rel, copies) + offsets)[:n]
                        + self.arrival_s[0], np.tile(self.tenant, copies)[:n],
                        np.tile(self.prompt_tokens, copies)[:n],
                        np.tile(self.output_tokens, copies)[:n], np.tile(self.bid, copies)[:n])

    def shift(self, offset_s: float) -> Workload:
        """The same requests arriving offset_s later."""
        return Workload(self.name, self.tenants, self.arrival_s + offset_s, self.tenant,
                        self.prompt_tokens, self.output_tokens, self.bid)

    def with_tenants(self, tenants: list[Tenant]) -> Workload:
        """Replace tenant configurations by id (same ids, e.g. new limits or weights)."""
        by_id = {t.tenant_id: t for t in tenants}
        merged = [by_id.get(t.tenant_id, t) for t in self.tenants]
        return Workload(self.name, merged, self.arrival_s, self.tenant, self.prompt_tokens,
                        self.output_tokens, self.bid)

    def tenant_ids(self) -> np.ndarray:
        """Each request's tenant id (an object array; convenient, not for hot loops)."""
        ids = np.array([t.tenant_id for t in self.tenants], dtype=object)
        return ids[self.tenant]

    def summary(self) -> WorkloadSummary:
        n = len(self)
        span = float(self.arrival_s[-1] - self.arrival_s[0]) if n else 0.0
        iat = np.diff(self.arrival_s)
        cv = float(iat.std() / iat.mean()) if n > 2 and iat.mean() > 0 else float("nan")
        counts = np.bincount(self.tenant, minlength=len(self.tenants))

        def q(col: np.ndarray, p: float) -> float:
            return float(np.percentile(col, p)) if n else float("nan")

        return WorkloadSummary(
            self.name, n, len(self.tenants), span, (n - 1) / span if span > 0 else float("nan"),
            cv, float(self.prompt_tokens.mean()) if n else float("nan"),
            q(self.prompt_tokens, 50), q(self.prompt_tokens, 99),
            float(self.output_tokens.mean()) if n else float("nan"),
            q(self.output_tokens, 50), q(self.output_tokens, 99),
            {t.tenant_id: int(c) for t, c in zip(self.tenants, counts)})


def merge(workloads: Iterable[Workload], name: str | None = None) -> Workload:
    """One workload holding every request of the given ones, in arrival order.

    Tenants with the same id are the same tenant (the first configuration seen wins). Requests
    arriving at the same instant (a burst) are interleaved round-robin across the inputs, so
    no input is favoured by its position; within one input their order is kept.
    """
    parts = list(workloads)
    if not parts:
        raise WorkloadError("merge needs at least one workload")
    tenants: list[Tenant] = []
    index: dict[str, int] = {}
    remapped = []
    for part in parts:
        for t in part.tenants:
            if t.tenant_id not in index:
                index[t.tenant_id] = len(tenants)
                tenants.append(t)
        lut = np.array([index[t.tenant_id] for t in part.tenants], dtype=np.int32)
        remapped.append(lut[part.tenant] if len(part.tenants) else part.tenant)
    arrival = np.concatenate([p.arrival_s for p in parts])
    # Rank of each request among the same-instant requests of its own input.
    position = np.concatenate([np.arange(len(p)) - np.searchsorted(p.arrival_s, p.arrival_s)
                               for p in parts])
    source = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)])
    order = np.lexsort((source, position, arrival))
    return Workload(
        name or "+".join(p.name for p in parts), tenants, arrival[order],
        np.concatenate(remapped)[order], np.concatenate([p.prompt_tokens for p in parts])[order],
        np.concatenate([p.output_tokens for p in parts])[order],
        np.concatenate([p.bid for p in parts])[order])
