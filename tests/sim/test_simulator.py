"""The simulator: deterministic, fast mode equals step mode, conservation, metrics."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aps.core import BatchConfig, Tenant
from aps.core.policies import POLICIES
from aps.perf import make_perf_model
from aps.workload.scenarios import load_scenario
from aps.perf import BatchShape
from aps.sim.replica import decode_run
from aps.sim.simulator import SimConfig, Simulation, simulate
from aps.workload.workload import Workload

PERF = make_perf_model(model="llama-2-7b", gpu="a100-80gb")


def random_workload(seed: int, n: int = 120, tenants: int = 3, limits: bool = False) -> Workload:
    rng = np.random.default_rng(seed)
    ts = [Tenant(f"t{i}", weight=float(1 + i % 2), bid=1 + 4 * i % 10) for i in range(tenants)]
    if limits:  # one tenant delayed by its bucket, one rejected over a concurrency limit
        ts[0] = Tenant("t0", token_rate=1500, token_burst=8000, over_limit="delay")
        ts[1] = Tenant("t1", weight=2.0, max_concurrent=3, over_limit="reject")
    return Workload.build(
        "random", ts, np.sort(rng.uniform(0, 20, n)), rng.integers(0, tenants, n),
        rng.integers(1, 3000, n), rng.integers(1, 400, n), rng.integers(1, 11, n))


def run(w, fast, **cfg):
    sim = Simulation(w, PERF, SimConfig(fast=fast, **cfg))
    summary = sim.run()
    return sim.rec, summary


def test_a_decode_run_costs_the_sum_of_its_iterations():
    shape = BatchShape(0, 0, 0, 24, 24 * 700)
    seconds, flops = decode_run(PERF, shape, 50)
    steps = [BatchShape(0, 0, 0, 24, 24 * (700 + j)) for j in range(50)]
    assert seconds == pytest.approx(sum(PERF.iteration_time(s) for s in steps), rel=1e-12)
    assert flops == pytest.approx(sum(PERF.iteration_flops(s) for s in steps), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 1000), policy=st.sampled_from(POLICIES),
       mode=st.sampled_from(["continuous", "micro"]), kv=st.sampled_from([8_000, 40_000, 400_000]),
       replicas=st.integers(1, 2), router=st.sampled_from(["round-robin", "least-outstanding-tokens"]),
       limits=st.booleans())
def test_fast_mode_gives_the_same_per_request_times_as_step_mode(seed, policy, mode, kv, replicas,
                                                                 router, limits):
    w = random_workload(seed, limits=limits)
    cfg = dict(policy=policy, replicas=replicas, router=router,
               batch=BatchConfig(mode=mode, kv_capacity_tokens=kv, max_num_seqs=32))
    fast, s_fast = run(w, True, **cfg)
    step, s_step = run(w, False, **cfg)
    assert (fast.status == step.status).all()
    for col in ("queue_s", "ttft_s", "e2e_s", "tpot_s"):
        np.testing.assert_allclose(fast.cols[col], step.cols[col], rtol=1e-9, atol=1e-12)
    assert s_fast["iterations"] == s_step["iterations"]


def test_runs_are_deterministic_and_every_request_is_accounted_for():
    w = random_workload(3, n=300)
    a = simulate(w, PERF, SimConfig(policy="vtc"))
    b = simulate(w, PERF, SimConfig(policy="vtc"))
    for key in ("ttft_s", "e2e_s", "throughput_tokens_per_s", "jain_fairness", "iterations"):
        assert a[key] == b[key]
    assert a["finished"] + a["rejected"] + a["cancelled"] == a["requests"] == 300
    assert a["unfinished"] == 0
    assert sum(t["requests"] for t in a["per_tenant"].values()) == 300


def test_seed_stress_priority_serves_bid10_first():
    sc = load_scenario("seed-stress")
    seed = make_perf_model(gpu="seed-a100")
    cfg = lambda policy: SimConfig(policy=policy, batch=BatchConfig(
        mode="micro", max_batch=16, kv_capacity_tokens=32768))
    prio = simulate(sc.workload, seed, cfg("priority"))["per_tenant"]
    fifo = simulate(sc.workload, seed, cfg("fifo"))["per_tenant"]
    assert prio["tenant_a"]["ttft_s"]["p50"] < prio["tenant_b"]["ttft_s"]["p50"]
    assert prio["tenant_a"]["ttft_s"]["p50"] < fifo["tenant_a"]["ttft_s"]["p50"]


def test_summary_has_the_documented_keys_and_sane_values():
    r = simulate(load_scenario("vtc-lmsys").workload.head(300), PERF, SimConfig(policy="vtc"))
    for key in ("requests", "throughput_tokens_per_s", "ttft_s", "tpot_s", "e2e_s", "per_tenant",
                "jain_fairness", "gpu_utilization", "mfu", "cost_per_1m_tokens_usd", "wall_s"):
        assert key in r
    assert set(r["ttft_s"]) == {"p50", "p90", "p99", "mean"}
    t = next(iter(r["per_tenant"].values()))
    assert {"service_tokens", "max_wait_s", "ttft_s", "tpot_s", "e2e_s"} <= set(t)
    assert 0 < r["gpu_utilization"] <= 1 and 0 < r["mfu"] < 1
    assert 0 < r["jain_fairness"] <= 1 and r["cost_per_1m_tokens_usd"] > 0
    assert r["ttft_s"]["p50"] <= r["ttft_s"]["p90"] <= r["ttft_s"]["p99"]
    assert 0 <= r["slo_attainment"] <= 1


def test_goodput_counts_only_requests_within_the_slo():
    w = random_workload(5, n=200)
    loose = simulate(w, PERF, SimConfig(slo_ttft_s=1e9, slo_tpot_s=1e9))
    tight = simulate(w, PERF, SimConfig(slo_ttft_s=1e-6, slo_tpot_s=1e-6))
    assert loose["slo_attainment"] == pytest.approx(loose["finished"] / loose["requests"])
    assert tight["slo_attainment"] == 0 and tight["goodput_requests_per_s"] == 0


def test_vtc_protects_light_tenants_on_the_lmsys_trace():
    w = load_scenario("vtc-lmsys").workload
    gpu = make_perf_model(model="llama-2-7b", gpu="a10g")
    light = lambda r: np.nanmean([t["ttft_s"]["mean"] for t in r["per_tenant"].values()
                                  if t["requests"] <= 30])
    fifo = simulate(w.scale_rate(2.0), gpu, SimConfig(policy="fifo"))
    vtc = simulate(w.scale_rate(2.0), gpu, SimConfig(policy="vtc"))
    assert light(vtc) < light(fifo)
    assert vtc["throughput_tokens_per_s"] == pytest.approx(fifo["throughput_tokens_per_s"], rel=0.05)


def test_rate_limited_requests_are_rejected_and_reported():
    sc = load_scenario("seed-tenants", requests=400)
    r = simulate(sc.workload, PERF, SimConfig())
    assert r["rejected"] > 0 and r["finished"] + r["rejected"] == r["requests"]
    assert not math.isnan(r["jain_fairness"])


def test_csv_has_one_row_per_request(tmp_path):
    w = random_workload(1, n=50)
    sim = Simulation(w, PERF, SimConfig())
    sim.run()
    path = tmp_path / "r.csv"
    sim.rec.write_csv(str(path))
    lines = path.read_text().splitlines()
    assert len(lines) == 51 and lines[0].startswith("request,tenant,arrival_s")


CONTRACT = """
name: contract
prices: {input_per_1m: 1000, output_per_1m: 1000}
defaults: {duration_s: 60}
tenants:
  - id: flood
    traffic:
      arrival: {process: poisson, rate: 20}
      prompt: 400
      output: 400
  - id: patient
    max_queue_s: 2
    traffic: {arrival: {process: poisson, rate: 2}, prompt: 200, output: 100}
  - id: thrifty
    budget_usd: 3
    budget_period: total
    traffic: {arrival: {process: poisson, rate: 2}, prompt: 200, output: 100}
"""


def test_the_simulator_honours_deadlines_and_budgets():
    """What-if questions about the contract: a deadline expires waiting requests, a budget
    refuses what it cannot pay for, and the summary counts both per tenant."""
    from aps.workload.scenarios import parse_scenario
    sc = parse_scenario(CONTRACT, "contract.yaml")
    perf = make_perf_model("llama-3-8b", "a10g")
    cfg = SimConfig(policy="fifo", batch=BatchConfig(kv_capacity_tokens=int(perf.kv_capacity_tokens)),
                    price=sc.price)
    out = simulate(sc.workload, perf, cfg)
    per = out["per_tenant"]
    assert per["patient"]["expired"] > 0 and per["flood"]["expired"] == 0
    assert per["thrifty"]["rejected"] > 0  # $3 buys 10 requests of $0.30 at most
    assert per["thrifty"]["finished"] <= 10
    assert out["expired"] == per["patient"]["expired"]
    assert out["finished"] + out["rejected"] + out["expired"] == out["requests"]
