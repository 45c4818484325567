"""Autoscaling in the simulator: a surge adds replicas after the start-up delay, a lull drains
them, and no request is lost on a replica that drains."""
import pytest

from aps.core import BatchConfig
from aps.perf import make_perf_model
from aps.workload.scenarios import load_scenario, parse_scenario
from aps.sim.simulator import SimConfig, Simulation
from aps.workload.workload import WorkloadError

# A quiet tenant all along and a surge from 200 s to 400 s, then quiet again until 900 s.
SURGE = """
name: surge
defaults: {duration_s: 900}
tenants:
  - id: quiet
    traffic:
      arrival: {process: poisson, rate: 0.5}
      prompt: {dist: constant, value: 512}
      output: 128
  - id: surge
    traffic:
      arrival: {process: poisson, rate: 12.0}
      start_s: 200
      duration_s: 200
      prompt: {dist: constant, value: 512}
      output: 128
autoscale: {min: 1, max: 6, startup_s: 60, interval_s: 10, up_cooldown_s: 60,
            down_cooldown_s: 30, stabilization_s: 60, target_queue: 4}
"""
STARTUP_S = 60


def run(text: str = SURGE, fast: bool = True, autoscale: bool = True, replicas: int = 1):
    sc = parse_scenario(text, "surge.yaml", seed=3)
    perf = make_perf_model(model="llama-2-7b", gpu="a10g")
    cfg = SimConfig(policy="fifo", fast=fast, replicas=replicas, router="least-outstanding-tokens",
                    batch=BatchConfig(kv_capacity_tokens=int(perf.kv_capacity_tokens)),
                    autoscale=sc.autoscale if autoscale else None)
    sim = Simulation(sc.workload, perf, cfg)
    return sim, sim.run()


@pytest.fixture(scope="module")
def surge():
    return run()


def test_a_surge_adds_replicas_that_serve_only_after_the_start_up_delay(surge):
    sim, out = surge
    a = out["autoscale"]
    ups = [e for e in a["events"] if e["to"] > e["from"]]
    assert ups and 200 <= ups[0]["t"] < 300  # the surge is noticed, not anticipated
    tl = a["timeline"]
    # the first time a second replica is routable is exactly one start-up after it was asked for
    first_ready = next(t for t, n in zip(tl["t"], tl["ready"]) if n > 1)
    assert first_ready == pytest.approx(ups[0]["t"] + STARTUP_S)
    # no request reaches a new replica before it is ready
    arrivals, routed = sim.w.arrival_s, sim.rec.replica
    for index, since in sim.scaler.since.items():
        if index >= 1:  # replicas added by the autoscaler
            assert (arrivals[routed == index] >= since + STARTUP_S - 1e-9).all()
    assert a["max_replicas"] > 1 and (routed > 0).any()


def test_a_lull_drains_back_to_the_minimum_and_costs_less_than_the_peak(surge):
    _, out = surge
    a = out["autoscale"]
    downs = [e for e in a["events"] if e["to"] < e["from"]]
    assert downs and all(e["t"] > 400 for e in downs)  # only once the surge is over
    assert downs[-1]["reason"].startswith("KV usage") and a["timeline"]["provisioned"][-1] == 1
    assert 1 < a["mean_replicas"] < a["max_replicas"]
    assert a["replica_seconds"] < a["max_replicas"] * out["simulated_s"]


def test_no_request_is_lost_when_a_replica_drains(surge):
    sim, out = surge
    assert out["finished"] == out["requests"] == len(sim.w)
    assert (sim.rec.status == 1).all()
    drained = sim.scaler.drained_at
    assert drained
    busy_when_drained = 0
    for index, at in drained.items():
        mine = sim.rec.replica == index
        assert (sim.w.arrival_s[mine] <= at).all()  # nothing routed to it after the drain
        assert sim.scaler.until[index] >= at  # and it was removed only once empty
        if (sim.rec.cols["end_s"][mine] > at).any():
            busy_when_drained += 1
            assert sim.scaler.until[index] == pytest.approx(sim.rec.cols["end_s"][mine].max())
    assert busy_when_drained  # at least one replica still held work when it was drained
    for r in sim.replicas:  # and every replica ended with its KV cache empty
        assert r.sched.kv.num_free_blocks == r.sched.kv.num_blocks and not r.sched.requests


def test_step_and_fast_modes_agree_with_autoscaling():
    _, fast = run(fast=True)
    sim, step = run(fast=False)
    assert fast["autoscale"]["events"] == step["autoscale"]["events"]
    assert fast["ttft_s"] == pytest.approx(step["ttft_s"]) and fast["simulated_s"] == pytest.approx(
        step["simulated_s"])


def test_autoscaling_beats_the_minimum_on_slo_and_the_maximum_on_cost(surge):
    _, auto = surge
    _, one = run(autoscale=False, replicas=1)
    _, six = run(autoscale=False, replicas=6)
    assert "autoscale" not in one
    assert one["slo_attainment"] < auto["slo_attainment"]
    assert auto["cost_per_1m_tokens_usd"] < six["cost_per_1m_tokens_usd"]
    assert auto["simulated_s"] < one["simulated_s"]  # one replica is still catching up


def test_bad_autoscale_blocks_name_the_line_and_field():
    with pytest.raises(WorkloadError, match=r"surge.yaml:\d+: field .autoscale.(min|max).*min <= max"):
        parse_scenario(SURGE.replace("max: 6", "max: 0"), "surge.yaml")
    with pytest.raises(WorkloadError, match=r"field 'autoscale.start_s': unknown field"):
        parse_scenario(SURGE.replace("startup_s", "start_s"), "surge.yaml")
    with pytest.raises(WorkloadError, match=r"field 'autoscale.min': expected an integer"):
        parse_scenario(SURGE.replace("min: 1", "min: 1.5"), "surge.yaml")


def test_the_shipped_scenario_is_autoscaled():
    sc = load_scenario("autoscale-azure-code", requests=50)
    assert sc.autoscale is not None and sc.autoscale.max == 8
    assert sc.autoscale.startup_s == 60


def test_simulate_prints_the_replica_counts_and_json_has_them(tmp_path):
    import json

    from typer.testing import CliRunner

    from aps.cli import app
    out = tmp_path / "s.json"
    runner = CliRunner()
    result = runner.invoke(app, ["simulate", "autoscale-azure-code", "--requests", "1500",
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "autoscaled: replicas min 1, max" in result.output and "replica-seconds" in result.output
    s = json.loads(out.read_text())
    a = s["autoscale"]
    assert s["config"]["autoscale"] and a["max_replicas"] > 1 and a["events"]
    assert f"{a['scale_ups']} scale-ups" in result.output
    fixed = runner.invoke(app, ["simulate", "autoscale-azure-code", "--requests", "1500",
                                "--no-autoscale", "--replicas", "2", "--json", str(out)])
    assert fixed.exit_code == 0 and "autoscaled:" not in fixed.output
    assert "autoscale" not in json.loads(out.read_text())


def test_the_autoscale_experiment_compares_fixed_counts_with_the_autoscaler():
    from aps.experiments import run_experiment
    r = run_experiment("autoscale", quick=True, workers=1)
    rows = {row[0]: row for row in r["tables"][0]["rows"]}
    assert set(rows) == {"fixed 1", "fixed 2", "fixed 4", "fixed 6", "fixed 8", "autoscaled",
                         "autoscaled, 10 s start-up"}
    auto = rows["autoscaled"]
    assert 1 <= auto[1] <= auto[2] <= 8 and auto[8] > 0  # mean, max, scale events
    assert rows["fixed 8"][3] > auto[3]  # fewer GPU-hours than the maximum
    assert rows["fixed 1"][7] < auto[7]  # a better SLO than the minimum
    assert [f["name"] for f in r["figures"]] == ["autoscale_replicas", "autoscale_queue"]
    assert f"{auto[7]:.1%}" in r["description"]  # the findings quote the runs
