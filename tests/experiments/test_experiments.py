"""Shipped experiments on their quick grids: the shapes of the results, and what they show."""
import math

import pytest

from aps.experiments.capacity import meets_slo
from aps.experiments.priority import bound
from aps.experiments.kit import by, light_heavy
from aps.experiments import experiments, run_experiment

NAMES = ["static-vs-aps", "fairness", "governor", "capacity"]


@pytest.fixture(scope="module")
def results():
    return {name: run_experiment(name, quick=True, workers=1) for name in NAMES}


def test_every_shipped_experiment_is_registered():
    assert set(NAMES) <= set(experiments())


@pytest.mark.parametrize("name", NAMES)
def test_results_have_tables_figures_and_computed_findings(results, name):
    r = results[name]
    assert r["experiment"] == name and r["quick"] and r["command"].endswith("--quick")
    assert r["runs"] and r["tables"] and r["figures"]
    assert "What the runs say" in r["description"]
    for table in r["tables"]:
        assert table["rows"] and all(len(row) == len(table["columns"]) for row in table["rows"])
    for fig in r["figures"]:
        assert fig["kind"] in {"cdf", "line", "bar", "step"} and fig["panels"]
        assert any(s.get("x") for p in fig["panels"] for s in p["series"])
    for run in r["runs"]:
        s = run["summary"]
        assert s["finished"] + s["rejected"] == s["requests"] > 0


def test_aps_bounds_the_bid1_wait_that_static_priority_lets_grow(results):
    burst = by(results["static-vs-aps"]["runs"], workload="bid-burst", load=1.5)
    run = {(r["labels"]["policy"], r["labels"]["alpha"]): r for r in burst}
    wait = {k: r["summary"]["per_tenant"]["bid-1"]["max_wait_s"] for k, r in run.items()}
    fifo = run["fifo", None]
    for alpha in (0.1, 1.0):
        assert wait["fifo", None] <= wait["aps", alpha] <= bound(fifo, alpha)
        assert wait["aps", alpha] < wait["priority", None]
    assert wait["aps", 1.0] < wait["aps", 0.1]
    light = {k: r["summary"]["per_tenant"]["bid-10-light"]["ttft_s"]["p99"] for k, r in run.items()}
    assert light["aps", 0.1] < light["aging", 0.1] / 10  # fair share within the bid


def test_vtc_shortens_light_tenants_wait_on_servegen(results):
    runs = {r["labels"]["policy"]: r for r in by(results["fairness"]["runs"], workload="servegen")}
    assert light_heavy(runs["vtc"])[0] < light_heavy(runs["fifo"])[0]


def test_capacity_marks_slo_and_costs(results):
    rows = results["capacity"]["tables"][0]["rows"]
    assert {row[0] for row in rows} == {"a10g", "h100-sxm"}
    met = [r for r in results["capacity"]["runs"] if meets_slo(r)]
    assert met and all(r["summary"]["ttft_s"]["p90"] < 2.0 for r in met)
    assert all(math.isfinite(r["summary"]["cost_per_1m_tokens_usd"]) for r in met)


def test_governor_compares_every_window_on_every_workload(results):
    runs = results["governor"]["runs"]
    h100 = [r for r in runs if r["labels"]["workload"] != "seed-burst"]
    assert {r["labels"]["workload"] for r in h100} == {"azure-code", "patterned", "burst50"}
    assert len({r["labels"]["window"] for r in h100}) == 7


def test_governor_logs_every_batch_of_the_seeds_burst(results, tmp_path):
    from aps.experiments.report import write_report
    burst = by(results["governor"]["runs"], workload="seed-burst")
    assert burst and all(r["batches"] for r in burst)
    for r in burst:
        sizes = [b["requests"] for b in r["batches"]]
        assert sum(sizes) == r["summary"]["finished"] and max(sizes) <= 16
        assert all(0 < b["kv_share"] <= b["kv_used"] <= 1 for b in r["batches"])
    fixed, governed = (by(burst, rate=4.0, window=w)[0] for w in ("fixed 10 ms", "entropy (base 10 ms)"))
    assert {b["window_s"] for b in fixed["batches"]} == {0.010}
    assert all(b["window_s"] < 0.010 for b in governed["batches"] if b["entropy_bits"] > 0)
    written = write_report(results["governor"], tmp_path)
    log = written["seed-burst-4rps-governor.csv"].read_text().splitlines()
    assert log[0].startswith("t_s,arrival_entropy_bits,window_ms") and len(log) == len(governed["batches"]) + 1


def test_a_yaml_experiment_runs_its_grid(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("title: mine\ngrid:\n  scenario: [seed-stress]\n  policy: [fifo, priority]\n"
                    "  gpu: [seed-a100]\n")
    r = run_experiment(str(path), quick=True, workers=1)
    assert [run["labels"]["policy"] for run in r["runs"]] == ["fifo", "priority"]
    assert r["tables"][0]["rows"][0][:2] == ["seed-stress", "fifo"]


@pytest.mark.parametrize("text, message", [
    ("grid: 3\n", "field 'grid'"),
    ("grid:\n  colour: [red]\n", "field 'grid.colour': unknown axis"),
    ("grid:\n  policy: [fifo]\n", "field 'grid.scenario': required"),
])
def test_a_malformed_yaml_experiment_says_where(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        run_experiment(str(path), quick=True, workers=1)


def test_unknown_experiment_lists_the_known_ones():
    with pytest.raises(ValueError, match="known: autoscale, capacity, fairness, governor, static-vs-aps"):
        run_experiment("nope")
