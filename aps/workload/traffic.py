"""Generated traffic of a scenario: per-tenant arrival processes and length distributions,
parsed from YAML once (`plan`) and generated at any scale (`generate`).
"""
from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from typing import Any

import numpy as np

from aps.core.tenant import Tenant
from aps.workload import generators as gen
from aps.workload.spec import Spec
from aps.workload.traces import sharegpt_lengths
from aps.workload.workload import Workload, WorkloadError, merge

TRAFFIC_KEYS = {"arrival", "requests", "duration_s", "start_s", "prompt", "output", "lengths",
                "bids"}
MAX_ROUNDS = 30  # growth steps when a request count is asked of generated traffic


def _construct(spec: Spec, kind_key: str, table: dict[str, type]) -> Any:
    """An arrival process or length distribution from {kind_key: name, its parameters}."""
    kind = spec.get(kind_key, "str", required=True)
    if kind not in table:
        raise spec.error(kind_key, f"unknown {kind_key} {kind!r} (known: {', '.join(table)})")
    cls, params = table[kind], {}
    known = {f.name: f for f in fields(cls)}
    spec.allow({kind_key, *known})
    for name, f in known.items():
        if spec.has(name):
            params[name] = spec.get(name, "int" if f.type == "int" else "number")
        elif f.default is MISSING:
            raise spec.error(None, f"{kind} needs field '{name}'")
    try:
        return cls(**params)
    except WorkloadError as exc:
        raise spec.error(exc.field if spec.has(exc.field or "") else None, exc.problem) from None


def arrival(spec: Spec) -> gen.ArrivalProcess:
    return _construct(spec, "process", gen.ARRIVALS)


def length(parent: Spec, key: str) -> gen.LengthDist:
    if isinstance(parent.data.get(key), int) and not isinstance(parent.data[key], bool):
        value = parent.get(key, "int")
        if value < 1:
            raise parent.error(key, f"must be >= 1, got {value}")
        return gen.Constant(value)
    spec = parent.sub(key, required=True)
    if spec.get("dist", "str") != "empirical":
        return _construct(spec, "dist", gen.LENGTHS)
    spec.allow({"dist", "trace", "column"})
    if spec.get("trace", "str", required=True) != "sharegpt":
        raise spec.error("trace", "empirical lengths come from trace 'sharegpt'")
    column = spec.get("column", "str", required=True)
    if column not in ("prompt", "output"):
        raise spec.error("column", f"expected prompt or output, got {column!r}")
    prompt, output = sharegpt_lengths()
    return gen.Empirical(prompt if column == "prompt" else output)


@dataclass(slots=True)
class Plan:
    """One tenant's parsed traffic: everything needed to generate it at any scale."""

    arrival: gen.ArrivalProcess
    requests: int | None
    duration_s: float | None
    start_s: float
    prompt: gen.LengthDist | None
    output: gen.LengthDist | None
    pairs: gen.EmpiricalPairs | None
    bids: tuple[np.ndarray, np.ndarray] | None  # (choices, probabilities)


def plan(tenant: Spec, default_duration: float | None) -> Plan:
    spec = tenant.sub("traffic", required=True)
    spec.allow(TRAFFIC_KEYS)
    n = spec.get("requests", "int")
    duration = spec.get("duration_s", "number", default=default_duration)
    if n is None and duration is None:
        raise spec.error(None, "give 'requests' or 'duration_s' (here or in defaults)")
    if n is not None and n < 0:
        raise spec.error("requests", f"must be >= 0, got {n}")
    if duration is not None and not duration > 0:
        raise spec.error("duration_s" if spec.has("duration_s") else None,
                         f"duration_s must be > 0, got {duration}")
    start = spec.get("start_s", "number", default=0.0)
    if start < 0:
        raise spec.error("start_s", f"must be >= 0, got {start}")
    pairs = prompt = output = None
    if spec.has("lengths"):
        if spec.get("lengths", "str") != "sharegpt" or spec.has("prompt") or spec.has("output"):
            raise spec.error("lengths", "expected 'sharegpt' (instead of prompt and output)")
        pairs = gen.EmpiricalPairs(*sharegpt_lengths())
    else:
        prompt, output = length(spec, "prompt"), length(spec, "output")
    return Plan(arrival(spec.sub("arrival", required=True)), n, duration, start, prompt,
                output, pairs, _bids(spec))


def _bids(spec: Spec) -> tuple[np.ndarray, np.ndarray] | None:
    """Optional per-request bids: {choices: [1, 10], weights: [3, 1]}."""
    bids = spec.sub("bids")
    if bids is None:
        return None
    bids.allow({"choices", "weights"})
    choices = bids.get("choices", "list", required=True)
    weights = bids.get("weights", "list", default=[1] * len(choices))
    if not choices or any(type(c) is not int or not 1 <= c <= 10 for c in choices):
        raise bids.error("choices", f"expected bids in 1..10, got {list(choices)}")
    if len(weights) != len(choices) or any(type(w) not in (int, float) or w < 0
                                           for w in weights) or not sum(weights) > 0:
        raise bids.error("weights", "expected one non-negative weight per choice, not all 0")
    p = np.asarray(weights, dtype=float)
    return np.asarray(choices, dtype=np.int8), p / p.sum()


def _tenant_traffic(traffic: Plan, tenant: Tenant, seed: int, index: int,
                    scale: float) -> Workload:
    # One stream per tenant and purpose: adding a tenant or a length setting leaves the
    # other tenants' requests unchanged.
    rngs = [np.random.default_rng([seed, index, k]) for k in range(3)]
    n = None if traffic.requests is None else math.ceil(traffic.requests * scale)
    d = None if traffic.duration_s is None else traffic.duration_s * scale
    times = traffic.arrival.sample(rngs[0], n, d) + traffic.start_s
    count = len(times)
    if traffic.pairs is not None:
        prompt, output = traffic.pairs.sample(rngs[1], count)
    else:
        prompt = traffic.prompt.sample(rngs[1], count)
        output = traffic.output.sample(rngs[1], count)
    bid = (np.full(count, tenant.bid, np.int8) if traffic.bids is None
           else rngs[2].choice(traffic.bids[0], count, p=traffic.bids[1]))
    return Workload.build(tenant.tenant_id, [tenant], times, np.zeros(count, np.int32),
                          prompt, output, bid)


def generate(plans: list[Plan], tenants: list[Tenant], seed: int, requests: int | None,
             name: str) -> Workload:
    def build(scale: float) -> Workload:
        return merge([_tenant_traffic(p, t, seed, i, scale)
                      for i, (p, t) in enumerate(zip(plans, tenants))], name)

    scale, work = 1.0, build(1.0)
    for _ in range(MAX_ROUNDS):
        if requests is None or len(work) >= requests:
            return work if requests is None else work.head(requests)
        if len(work) == 0:
            break
        # Generate longer (counts and durations alike) until there are enough requests.
        scale *= max(requests / len(work), 1.05)
        work = build(scale)
    raise WorkloadError(f"scenario {name!r}: cannot generate {requests} requests")
