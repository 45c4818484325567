"""The `aps` command, run as a user would (typer's runner, same process)."""
import json

from typer.testing import CliRunner

from aps.cli import app

runner = CliRunner()


def test_simulate_seed_stress_writes_json_and_csv(tmp_path):
    out, rows = tmp_path / "s.json", tmp_path / "r.csv"
    result = runner.invoke(app, ["simulate", "seed-stress", "--json", str(out), "--csv", str(rows)])
    assert result.exit_code == 0, result.output
    assert "tenant_a" in result.output and "tenant_b" in result.output
    summary = json.loads(out.read_text())
    assert summary["requests"] == 100 and summary["finished"] == 100
    assert summary["config"]["policy"] == "aps"
    assert len(rows.read_text().splitlines()) == 101


def test_simulate_options_reach_the_simulation(tmp_path):
    out = tmp_path / "s.json"
    result = runner.invoke(app, ["simulate", "vtc-lmsys", "--policy", "fifo", "--gpu", "h100-sxm",
                                 "--replicas", "2", "--router", "least-outstanding-tokens",
                                 "--requests", "200", "--json", str(out)])
    assert result.exit_code == 0, result.output
    s = json.loads(out.read_text())
    assert s["requests"] == 200 and s["config"]["replicas"] == 2
    assert s["config"]["policy"] == "fifo" and "h100-sxm" in s["config"]["model"]


def test_simulate_bad_input_says_what_is_wrong(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntenants:\n  - id: a\n    bid: 12\n    traffic:\n"
                   "      arrival: {process: poisson, rate: 1}\n      requests: 5\n"
                   "      prompt: 10\n      output: 10\n")
    cases = [
        (["simulate", str(bad)], "bad.yaml:4: field 'tenants[0].bid'"),
        (["simulate", "nope"], "unknown scenario 'nope'"),
        (["simulate", "seed-stress", "--policy", "lottery"], "unknown policy 'lottery'"),
        (["simulate", "seed-stress", "--gpu", "z80"], "unknown GPU 'z80'"),
        (["simulate", "seed-stress", "--model", "llama-3-70b", "--gpu", "a100-40gb"], "use more GPUs"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), (args, result.output)


def test_bench_core_reports_every_policy_and_the_step_cost():
    from aps.bench import core as bench_core
    from aps.core.policies import POLICIES
    result = bench_core.run(depths=(1_000,))
    assert set(result["push_pop_us"]) == set(POLICIES)
    assert all(v["1000"] > 0 for v in result["push_pop_us"].values())
    assert result["step_us_256"] > 0
