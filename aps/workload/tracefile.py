"""Shared machinery of the trace readers: column parsing with precise errors, the options every
reader accepts, and assigning tenants to traces that have none.

Parsing is vectorised (numpy converts whole columns at C speed); only when a column fails does
a row-by-row scan run, to name the first bad line and value.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from aps.core.errors import ConfigError
from aps.core.tenant import Tenant
from aps.workload.workload import Workload, WorkloadError

TRACES_DIR = Path(__file__).resolve().parent.parent / "data" / "traces"
MAX_TOKENS = 10_000_000  # far above any context window; guards the int32 columns

# column kind -> what an error message says was expected
_KINDS = {
    "pos_int": "a positive integer",
    "nonneg_int": "an integer >= 0",
    "nonneg_float": "a number >= 0",
    "timestamp": "a timestamp like 2023-11-16 18:17:03.9799600",
    "str": "a non-empty string",
    "text": "text",
}


def _convert(values: Sequence[str], kind: str) -> np.ndarray:
    """Convert a column; raises ValueError (or TypeError) when any value is bad."""
    if kind in ("pos_int", "nonneg_int"):
        arr = np.array(values).astype(np.int64)
        if len(arr) and (arr.min() < (kind == "pos_int") or arr.max() > MAX_TOKENS):
            raise ValueError("out of range")
    elif kind == "nonneg_float":
        arr = np.array(values).astype(np.float64)
        if not np.all(np.isfinite(arr)) or (len(arr) and arr.min() < 0):
            raise ValueError("out of range")
    elif kind == "timestamp":
        arr = np.array(values, dtype="datetime64[ns]")
        if np.any(np.isnat(arr)):
            raise ValueError("not a time")
    else:
        arr = np.array([str(v).strip() for v in values], dtype=object)
        if kind == "str" and not all(arr):
            raise ValueError("empty")
    return arr


def convert_column(values: Sequence, kind: str, source: str, field: str,
                   first_line: int = 2) -> np.ndarray:
    """A typed column; on a bad value, a WorkloadError naming source, line and field."""
    try:
        return _convert(values, kind)
    except (ValueError, TypeError, OverflowError):
        pass
    for i, value in enumerate(values):
        try:
            _convert([value], kind)
        except (ValueError, TypeError, OverflowError):
            raise WorkloadError.at(source, first_line + i, field,
                                   f"expected {_KINDS[kind]}, got {value!r}") from None
    raise WorkloadError.at(source, None, field, f"expected {_KINDS[kind]}")


def read_csv(path: Path, columns: dict[str, str]) -> dict[str, np.ndarray]:
    """Typed columns of a comma-separated file with a header (no quoting: trace files have
    none). Extra columns are ignored; missing ones are an error."""
    source = path.name
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkloadError.at(source, None, None, f"cannot read trace: {exc}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise WorkloadError.at(source, 1, None, "empty file, expected a header line")
    header = [h.strip() for h in lines[0].split(",")]
    for name in columns:
        if name not in header:
            raise WorkloadError.at(source, 1, name, f"missing column (header is {header})")
    rows = [line.split(",") for line in lines[1:]]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise WorkloadError.at(source, i + 2, None,
                                   f"expected {len(header)} comma-separated fields, got {len(row)}")
    cols = list(zip(*rows)) if rows else [()] * len(header)
    return {name: convert_column(cols[header.index(name)], kind, source, name)
            for name, kind in columns.items()}


def read_jsonl(path: Path, columns: dict[str, str]) -> dict[str, np.ndarray]:
    """Typed fields of a JSON-lines file (one object per line)."""
    source, raw = path.name, {name: [] for name in columns}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkloadError.at(source, None, None, f"cannot read trace: {exc}") from None
    lines = [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]
    for number, line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WorkloadError.at(source, number, None, f"invalid JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            raise WorkloadError.at(source, number, None, "expected a JSON object")
        for name in columns:
            if name not in record:
                raise WorkloadError.at(source, number, name, "missing field")
            raw[name].append(record[name])
    out = {}
    for name, kind in columns.items():
        bad = next((i for i, v in enumerate(raw[name]) if not _json_ok(v, kind)), None)
        if bad is not None:
            raise WorkloadError.at(source, lines[bad][0], name,
                                   f"expected {_KINDS[kind]}, got {raw[name][bad]!r}")
        out[name] = _convert(raw[name], kind)
    return out


def _json_ok(value: Any, kind: str) -> bool:
    if kind == "pos_int":
        return type(value) is int and 1 <= value <= MAX_TOKENS
    if kind == "nonneg_float":
        return type(value) in (int, float) and np.isfinite(value) and value >= 0
    return isinstance(value, str) and bool(value.strip())


@dataclass(slots=True)
class TraceOptions:
    """What every reader accepts. Order of effect: rate_scale, then duration_s (in scaled
    time), then max_requests. Tenants are assigned before cutting, so a shorter cut of the
    same trace gives the same requests the same tenants."""

    rate_scale: float = 1.0  # >1 replays faster (times divided), <1 slower
    duration_s: float | None = None  # keep requests arriving before this (after scaling)
    max_requests: int | None = None
    tenants: int | Sequence[str | Tenant] | None = None  # for traces without tenants
    assign: str = "round_robin"  # round_robin | random | zipf
    shares: Sequence[float] | None = None  # relative request shares for assign=random
    zipf_s: float = 1.0  # skew for assign=zipf: tenant i gets a share ~ 1/(i+1)^s
    seed: int = 0

    @classmethod
    def of(cls, options: dict[str, Any]) -> TraceOptions:
        known = [f.name for f in fields(cls)]
        for key in options:
            if key not in known:
                raise WorkloadError.bad_field(key, f"unknown trace option (known: {known})")
        opts = cls(**options)
        if not opts.rate_scale > 0:
            raise WorkloadError.bad_field("rate_scale", f"must be > 0, got {opts.rate_scale}")
        if opts.duration_s is not None and not opts.duration_s > 0:
            raise WorkloadError.bad_field("duration_s", f"must be > 0, got {opts.duration_s}")
        if opts.max_requests is not None and opts.max_requests < 0:
            raise WorkloadError.bad_field("max_requests", f"must be >= 0, got {opts.max_requests}")
        return opts


def make_tenants(spec: int | Sequence[str | Tenant] | None) -> list[Tenant]:
    if spec is None:
        return [Tenant("default")]
    if isinstance(spec, int):
        if spec < 1:
            raise WorkloadError.bad_field("tenants", f"must be >= 1, got {spec}")
        return [Tenant(f"tenant-{i}") for i in range(spec)]
    try:
        return [t if isinstance(t, Tenant) else Tenant(str(t)) for t in spec]
    except ConfigError as exc:
        raise WorkloadError.bad_field("tenants", str(exc)) from None


def assign_tenants(n: int, k: int, opts: TraceOptions) -> np.ndarray:
    """Tenant index of each of n requests among k tenants, as opts.assign says."""
    if opts.assign == "round_robin":
        return (np.arange(n) % k).astype(np.int32)
    rng = np.random.default_rng(opts.seed)
    if opts.assign == "zipf":
        weights = 1.0 / np.arange(1, k + 1, dtype=np.float64) ** opts.zipf_s
    elif opts.assign == "random":
        weights = np.ones(k) if opts.shares is None else np.asarray(opts.shares, dtype=float)
        if len(weights) != k or np.any(weights < 0) or not weights.sum() > 0:
            raise WorkloadError.bad_field("shares", f"need {k} non-negative shares, not all 0")
    else:
        raise WorkloadError.bad_field("assign", f"expected round_robin, random or zipf, "
                                      f"got {opts.assign!r}")
    return rng.choice(k, size=n, p=weights / weights.sum()).astype(np.int32)


def finish(name: str, tenants: list[Tenant], arrival_s: np.ndarray, tenant: np.ndarray,
           prompt: np.ndarray, output: np.ndarray, opts: TraceOptions) -> Workload:
    """Build the workload (times from 0) and apply rate_scale, duration_s and max_requests."""
    work = Workload.build(name, tenants, arrival_s - (arrival_s.min() if len(arrival_s) else 0),
                          tenant, prompt, output)
    if opts.rate_scale != 1.0:
        work = work.scale_rate(opts.rate_scale)
    if opts.duration_s is not None:
        work = work.cut(opts.duration_s)
    if opts.max_requests is not None:
        work = work.head(opts.max_requests)
    return work
