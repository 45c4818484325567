"""Readers of the public LLM serving traces shipped in aps/data/traces (see its README).

Each reader returns a Workload and accepts any path in the same format; the path defaults to
the shipped sample. Common keyword options (TraceOptions): rate_scale, duration_s,
max_requests, and for traces without tenants: tenants (a count, ids or Tenant objects),
assign (round_robin | random | zipf), shares, zipf_s, seed.
"""
from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from aps.core.tenant import Tenant
from aps.workload.generators import ArrivalProcess, Poisson
from aps.workload.servegen import read_servegen
from aps.workload.tracefile import (TRACES_DIR, TraceOptions, assign_tenants, finish, make_tenants,
                               read_csv, read_jsonl)
from aps.workload.workload import Workload, WorkloadError

FILES = {
    "azure-code": "azure_llm_2023_code.csv",
    "azure-conv": "azure_llm_2023_conv.csv",
    "mooncake": "mooncake_conversation_first30min.jsonl",
    "sharegpt": "sharegpt_8k_filtered_stats_llama2_tokenizer.csv",
    "servegen": "servegen_language_m-large_clients_day0.csv",
    "servegen-reason": "servegen_reason_deepseek-r1_clients_day0.csv",
    "vtc-lmsys": "vtc_lmsys_27tenants.csv",
}


def trace_path(name: str) -> Path:
    """The shipped file of a named trace."""
    if name not in FILES:
        raise WorkloadError(f"unknown trace {name!r} (known: {', '.join(sorted(FILES))})")
    return TRACES_DIR / FILES[name]


def _path(path: str | Path | None, default: str) -> Path:
    return trace_path(default) if path is None else Path(path)


def _untenanted(name: str, arrival_s: np.ndarray, prompt: np.ndarray, output: np.ndarray,
                opts: TraceOptions) -> Workload:
    tenants = make_tenants(opts.tenants)
    tenant = assign_tenants(len(arrival_s), len(tenants), opts)
    return finish(name, tenants, arrival_s, tenant, prompt, output, opts)


def read_azure(path: str | Path | None = None, *, kind: str = "conv", **options: Any) -> Workload:
    """Azure LLM inference trace (2023 format: TIMESTAMP,ContextTokens,GeneratedTokens).

    kind picks the shipped file (code or conv) when no path is given. Timestamps are naive
    wall-clock strings with 7 fractional digits; numpy parses them at nanosecond precision.
    """
    if kind not in ("code", "conv"):
        raise WorkloadError.bad_field("kind", f"expected 'code' or 'conv', got {kind!r}")
    opts = TraceOptions.of(options)
    p = _path(path, f"azure-{kind}")
    cols = read_csv(p, {"TIMESTAMP": "timestamp", "ContextTokens": "pos_int",
                        "GeneratedTokens": "pos_int"})
    ts = cols["TIMESTAMP"]
    arrival = (ts - ts.min()).astype(np.float64) / 1e9 if len(ts) else np.empty(0)
    return _untenanted(f"azure-{kind}" if path is None else p.stem, arrival,
                       cols["ContextTokens"], cols["GeneratedTokens"], opts)


def read_mooncake(path: str | Path | None = None, *, jitter: bool = True, step_s: float = 3.0,
                  **options: Any) -> Workload:
    """Mooncake JSONL trace (timestamp in ms, input_length, output_length, hash_ids).

    The shipped sample's timestamps are quantized to 3 s steps (most gaps are 0), so by default
    each arrival gets a seeded uniform offset within its step; jitter=False keeps the raw
    times, with their ties.
    """
    opts = TraceOptions.of(options)
    p = _path(path, "mooncake")
    cols = read_jsonl(p, {"timestamp": "nonneg_float", "input_length": "pos_int",
                          "output_length": "pos_int"})
    arrival = cols["timestamp"] / 1000.0
    if jitter and len(arrival):
        if not step_s > 0:
            raise WorkloadError.bad_field("step_s", f"must be > 0, got {step_s}")
        # A stream of its own, so jitter does not change the tenants drawn from `seed`.
        rng = np.random.default_rng([opts.seed, 1])
        arrival = arrival + rng.uniform(0.0, step_s, len(arrival))
    return _untenanted("mooncake" if path is None else p.stem, arrival, cols["input_length"],
                       cols["output_length"], opts)


@lru_cache(maxsize=4)
def _sharegpt_columns(path: Path) -> tuple[np.ndarray, np.ndarray]:
    cols = read_csv(path, {"num_prefill_tokens": "pos_int", "num_decode_tokens": "pos_int"})
    prompt, output = cols["num_prefill_tokens"], cols["num_decode_tokens"]
    prompt.flags.writeable = output.flags.writeable = False  # shared by the cache
    return prompt, output


def sharegpt_lengths(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(prompt, output) token counts of the ShareGPT conversations (read-only arrays)."""
    return _sharegpt_columns(_path(path, "sharegpt").resolve())


def read_sharegpt(path: str | Path | None = None, *, arrivals: ArrivalProcess | None = None,
                  **options: Any) -> Workload:
    """ShareGPT lengths (no timestamps) with arrivals from a generated process.

    Rows are taken in file order, cycling when more requests are wanted than rows exist.
    Needs max_requests or duration_s; arrivals default to Poisson at 1 request/s.
    """
    opts = TraceOptions.of(options)
    if opts.max_requests is None and opts.duration_s is None:
        raise WorkloadError.bad_field("max_requests", "ShareGPT has no timestamps: give "
                                      "max_requests or duration_s")
    prompt, output = sharegpt_lengths(path)
    rng = np.random.default_rng([opts.seed, 2])
    # Generate in unscaled time so that rate_scale and duration_s mean what they do elsewhere.
    horizon = None if opts.duration_s is None else opts.duration_s * opts.rate_scale
    arrival = (arrivals or Poisson(1.0)).sample(rng, opts.max_requests, horizon)
    rows = np.arange(len(arrival)) % len(prompt)
    name = "sharegpt" if path is None else Path(path).stem
    return _untenanted(name, arrival, prompt[rows], output[rows], opts)


def _natural_key(text: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def read_vtc_lmsys(path: str | Path | None = None, **options: Any) -> Workload:
    """The 27-tenant LMSYS stream of the VTC artifact: arrival_s,tenant,prompt_tokens,
    output_tokens. Tenants come from the trace (in natural order: tenant-0 ... tenant-26);
    `tenants` may give Tenant objects to configure some of them by id."""
    opts = TraceOptions.of(options)
    p = _path(path, "vtc-lmsys")
    cols = read_csv(p, {"arrival_s": "nonneg_float", "tenant": "str", "prompt_tokens": "pos_int",
                        "output_tokens": "pos_int"})
    ids, index = np.unique(np.array([s.strip() for s in cols["tenant"]], dtype=str),
                           return_inverse=True)
    order = sorted(range(len(ids)), key=lambda i: _natural_key(str(ids[i])))
    rank = np.empty(len(ids), dtype=np.int32)
    rank[order] = np.arange(len(ids), dtype=np.int32)
    tenants = [Tenant(str(ids[i])) for i in order]
    work = finish("vtc-lmsys" if path is None else p.stem, tenants, cols["arrival_s"],
                  rank[index], cols["prompt_tokens"], cols["output_tokens"], opts)
    if opts.tenants is None:
        return work
    if isinstance(opts.tenants, int):
        raise WorkloadError.bad_field("tenants", "this trace names its tenants; give Tenant "
                                      "configurations by id, not a count")
    return work.with_tenants(make_tenants(opts.tenants))


# name -> (reader, arguments fixed by the name)
READERS: dict[str, tuple[Callable[..., Workload], dict[str, Any]]] = {
    "azure-code": (read_azure, {"kind": "code"}),
    "azure-conv": (read_azure, {"kind": "conv"}),
    "mooncake": (read_mooncake, {}),
    "sharegpt": (read_sharegpt, {}),
    "servegen": (read_servegen, {}),
    "vtc-lmsys": (read_vtc_lmsys, {}),
}


def _reader(name: str) -> tuple[Callable[..., Workload], dict[str, Any]]:
    if name not in READERS:
        raise WorkloadError(f"unknown trace {name!r} (known: {', '.join(sorted(READERS))})")
    return READERS[name]


def trace_options(name: str) -> set[str]:
    """The keyword options the named trace's reader accepts."""
    func, fixed = _reader(name)
    params = inspect.signature(func).parameters.values()
    named = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
    if any(p.kind is p.VAR_KEYWORD for p in params):
        named |= {f.name for f in fields(TraceOptions)}
    return named - set(fixed)


def load_trace(name: str, path: str | Path | None = None, **options: Any) -> Workload:
    """Read a trace by format name (azure-code, azure-conv, mooncake, sharegpt, servegen,
    vtc-lmsys), from the shipped sample or from `path`."""
    func, fixed = _reader(name)
    return func(path, **fixed, **options)
