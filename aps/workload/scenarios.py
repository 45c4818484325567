"""Named, reproducible workloads described in YAML (shipped in aps/data/scenarios/).

    name: my-scenario                 # optional, defaults to the file name
    description: ...
    defaults: {policy: vtc, duration_s: 300, requests: 1000, model: ..., gpu: ...}
    tenants:
      - id: tenant_a                  # Tenant settings: weight, bid, token_rate, token_burst,
        bid: 10                       #   request_rate, request_burst, max_concurrent,
        token_rate: 500               #   over_limit (reject | delay | demote), max_bid,
                                      #   max_queue_s, budget_usd, budget_period (day |
                                      #   week | month | total), over_budget (reject | demote)
        traffic:                      # generated traffic (omit when there is a source)
          arrival: {process: poisson, rate: 2.0}   # gamma (rate, cv), onoff (rate, on_s,
                                      #   off_s), diurnal (rate, period_s, amplitude, phase),
                                      #   burst (at_s)
          requests: 50                # a count, a duration_s, or both (first reached wins);
          start_s: 0                  #   duration_s defaults to defaults.duration_s
          prompt: {dist: lognormal, mean: 512, cv: 1.0, max: 4096}  # constant (value) or
          output: 128                 #   a bare int, uniform (low, high), empirical (trace:
                                      #   sharegpt, column: prompt|output)
          # lengths: sharegpt         # instead of prompt/output: (prompt, output) pairs
          # bids: {choices: [1, 10], weights: [3, 1]}   # per-request bids (else the tenant's)
    source:                           # instead of traffic: a trace and its reader's options
      trace: azure-conv               # azure-code | azure-conv | mooncake | sharegpt |
      rate_scale: 2.0                 #   servegen | vtc-lmsys; `path:` for another file
      assign: zipf                    # how listed tenants share an untenanted trace; a
                                      #   `share:` on every tenant means weighted random
    autoscale: {min: 1, max: 8, startup_s: 60}   # optional: replicas come and go (fields in
                                      #   aps/core/autoscale.py)
    prices: {input_per_1m: 0.2, output_per_1m: 0.6}   # optional: dollars, for budgets (the
                                      #   simulated time 0 is 1970-01-01 00:00 UTC)

With a source, the listed tenants either receive the trace's requests (traces without
tenants) or configure the trace's own tenants by id. `defaults` is handed on unchanged as
hints for whoever runs the scenario; only duration_s (the horizon of generated traffic) and
requests (the default request count) shape the workload, and duration_s never cuts a trace
(use the source's own duration_s).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aps.core.autoscale import AutoscaleConfig, parse_autoscale
from aps.core.errors import ConfigError
from aps.core.tenant import OverLimit, Tenant
from aps.workload import traffic
from aps.workload.spec import Spec, load_yaml
from aps.workload.traces import load_trace, trace_options
from aps.workload.workload import Workload, WorkloadError

SCENARIOS_DIR = Path(__file__).resolve().parent.parent / "data" / "scenarios"
TENANT_FIELDS = {"weight": "number", "bid": "int", "token_rate": "number",
                 "token_burst": "number", "request_rate": "number", "request_burst": "number",
                 "max_concurrent": "int", "over_limit": "str", "max_bid": "int",
                 "max_queue_s": "number", "budget_usd": "number", "budget_period": "str",
                 "over_budget": "str"}
OPTION_KINDS = {"rate_scale": "number", "duration_s": "number", "max_requests": "int",
                "assign": "str", "shares": "list", "zipf_s": "number", "jitter": "bool",
                "step_s": "number", "top_k": "int", "clients": "list", "start_s": "number",
                "max_prompt_tokens": "int", "max_output_tokens": "int"}


@dataclass(slots=True)
class Scenario:
    name: str
    description: str
    workload: Workload
    defaults: dict[str, Any]  # simulation hints, e.g. {"policy": "vtc", "duration_s": 600}
    path: Path | None = None
    autoscale: AutoscaleConfig | None = None  # replicas come and go (aps.sim.scaler)
    price: tuple[float, float] = (0.0, 0.0)  # dollars per prompt and per output token


def list_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIOS_DIR.glob("*.yaml"))


def scenario_path(name_or_path: str | Path) -> Path:
    """A shipped scenario's file by name, or the given path to a YAML file (or to a CSV trace
    in the vtc-lmsys format, such as `aps usage export --trace` writes)."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml", ".csv")) or "/" in text or Path(text).is_file():
        return Path(text)
    path = SCENARIOS_DIR / f"{text}.yaml"
    if not path.is_file():
        raise WorkloadError(f"unknown scenario {text!r} (known: {', '.join(list_scenarios())})")
    return path


def load_scenario(name_or_path: str | Path, seed: int = 0,
                  requests: int | None = None) -> Scenario:
    """Load and build a scenario. `requests` (else defaults.requests) sets the request count:
    generated traffic is extended or cut to it, a trace is cut or tiled in time to it."""
    path = scenario_path(name_or_path)
    if path.suffix == ".csv":  # a bare trace: its own tenants, with default settings
        if not path.is_file():
            raise WorkloadError(f"{path}: no such file")
        text = yaml.safe_dump({"name": path.stem, "source": {"trace": "vtc-lmsys",
                                                             "path": path.name}})
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise WorkloadError(f"{path.name}: cannot read scenario: {exc}") from None
    scenario = parse_scenario(text, path.name, seed=seed, requests=requests, base_dir=path.parent)
    scenario.path = path
    return scenario


def parse_scenario(text: str, source: str = "<scenario>", seed: int = 0,
                   requests: int | None = None, base_dir: Path | None = None) -> Scenario:
    spec = load_yaml(text, source)
    spec.allow({"name", "description", "defaults", "tenants", "source", "autoscale", "prices"})
    defaults = _defaults(spec)
    requests = requests if requests is not None else defaults.get("requests")
    if requests is not None and requests < 1:
        raise WorkloadError(f"{source}: requests must be >= 1, got {requests}")
    name = spec.get("name", "str", default=Path(source).stem)
    tenant_specs = spec.items("tenants")
    tenants = [_tenant(t) for t in tenant_specs]
    if len({t.tenant_id for t in tenants}) != len(tenants):
        raise spec.error("tenants", "tenant ids must be unique")
    if spec.has("source"):
        work = _from_trace(spec.sub("source"), tenant_specs, tenants, seed, requests, base_dir)
    else:
        if not tenants:
            raise spec.error(None, "a scenario needs tenants with traffic, or a source")
        plans = [traffic.plan(t, defaults.get("duration_s")) for t in tenant_specs]
        work = traffic.generate(plans, tenants, seed, requests, name)
    work.name = name
    scale = spec.sub("autoscale")
    autoscale = None if scale is None else parse_autoscale(scale.data, scale.error)
    return Scenario(name, spec.get("description", "str", default=""), work, defaults,
                    autoscale=autoscale, price=_price(spec.sub("prices")))


def _price(prices: Spec | None) -> tuple[float, float]:
    """`prices: {input_per_1m, output_per_1m}`: dollars per million tokens, for budgets."""
    if prices is None:
        return 0.0, 0.0
    prices.allow({"input_per_1m", "output_per_1m"})
    per_1m = []
    for key in ("input_per_1m", "output_per_1m"):
        value = prices.get(key, "number", default=0.0)
        if not 0 <= value < float("inf"):
            raise prices.error(key, f"must be a number >= 0, got {value}")
        per_1m.append(value / 1e6)
    return per_1m[0], per_1m[1]


def _defaults(spec: Spec) -> dict[str, Any]:
    hints = spec.sub("defaults")
    if hints is None:
        return {}
    for key, kind in (("duration_s", "number"), ("requests", "int"), ("policy", "str"),
                      ("model", "str"), ("gpu", "str")):
        value = hints.get(key, kind)
        if value is not None and kind in ("number", "int") and not value > 0:
            raise hints.error(key, f"must be > 0, got {value}")
    return hints.plain()


def _tenant(spec: Spec) -> Tenant:
    spec.allow({"id", "share", "traffic", *TENANT_FIELDS})
    tenant_id = spec.get("id", "str", required=True)
    values = {k: spec.get(k, kind) for k, kind in TENANT_FIELDS.items() if spec.has(k)}
    for key in ("over_limit", "over_budget"):
        if values.get(key, "reject") not in [o.value for o in OverLimit]:
            raise spec.error(key, f"expected reject, delay or demote, got {values[key]!r}")
    try:
        return Tenant(tenant_id, **values)
    except (ConfigError, ValueError) as exc:
        # The core names the offending setting in its message; point at that key's line.
        key = next((k for k in values if k in str(exc)), "id")
        raise spec.error(key, str(exc)) from None


def _from_trace(spec: Spec, tenant_specs: list[Spec], tenants: list[Tenant], seed: int,
                requests: int | None, base_dir: Path | None) -> Workload:
    trace = spec.get("trace", "str", required=True)
    try:
        allowed = trace_options(trace)
    except WorkloadError as exc:
        raise spec.error("trace", str(exc)) from None
    allowed -= {"seed", "tenants", "shares"}  # seed from the caller, tenants from the list
    spec.allow({"trace", "path", *allowed})
    options = {k: _option(spec, k, base_dir) for k in spec.data if k not in ("trace", "path")}
    for t in tenant_specs:
        if t.has("traffic"):
            raise t.error("traffic", "not allowed when the scenario has a trace source")
    if tenants:
        options["tenants"] = tenants
        _shares(tenant_specs, options)
    if requests is not None:
        options["max_requests"] = requests
    path = _option(spec, "path", base_dir) if spec.has("path") else None
    try:
        work = load_trace(trace, path, seed=seed, **options)
    except WorkloadError as exc:
        if exc.field and spec.has(exc.field):
            raise spec.error(exc.field, exc.problem) from None
        raise
    return work if requests is None or len(work) >= requests else work.repeat_to(requests)


def _shares(tenant_specs: list[Spec], options: dict[str, Any]) -> None:
    given = [t.get("share", "number") for t in tenant_specs]
    if all(s is None for s in given):
        return
    missing = next((t for t, s in zip(tenant_specs, given) if s is None or s < 0), None)
    if missing is not None:
        raise missing.error("share" if missing.has("share") else None,
                            "every tenant needs a share >= 0 when one has a share")
    options["shares"] = given
    options.setdefault("assign", "random")


def _option(spec: Spec, key: str, base_dir: Path | None) -> Any:
    if key in ("path", "stats_path"):
        path = Path(spec.get(key, "str"))
        return path if path.is_absolute() or base_dir is None else base_dir / path
    if key == "arrivals":
        return traffic.arrival(spec.sub(key))
    if key in ("default_prompt", "default_output"):
        return traffic.length(spec, key)
    return spec.get(key, OPTION_KINDS.get(key, "number"))
