"""Scenarios: the shipped YAML files and errors that point at file, line and field."""
import textwrap

import numpy as np
import pytest

from aps.core.tenant import OverLimit
from aps.workload.scenarios import list_scenarios, load_scenario, parse_scenario
from aps.workload.workload import WorkloadError

SHIPPED = ["azure-code", "azure-conv", "mooncake", "noisy-neighbour", "seed-stress",
           "seed-tenants", "servegen", "vtc-lmsys"]


def test_every_named_scenario_is_shipped_and_loads():
    assert set(SHIPPED) <= set(list_scenarios())
    for name in list_scenarios():
        s = load_scenario(name, seed=0)
        assert s.name == name and len(s.workload) > 0 and s.description
        assert isinstance(s.defaults, dict) and s.path.name == f"{name}.yaml"


@pytest.mark.parametrize("name", SHIPPED)
def test_same_seed_same_workload(name):
    a, b = load_scenario(name, seed=4).workload, load_scenario(name, seed=4).workload
    for col in ("arrival_s", "tenant", "prompt_tokens", "output_tokens", "bid"):
        assert np.array_equal(getattr(a, col), getattr(b, col))


def test_seed_stress():
    w = load_scenario("seed-stress").workload
    assert len(w) == 100 and np.all(w.arrival_s == 0.0)
    assert w.summary().requests_per_tenant == {"tenant_a": 50, "tenant_b": 50}
    assert set(w.bid[w.tenant == 0].tolist()) == {10} and set(w.bid[w.tenant == 1].tolist()) == {1}
    assert 50 <= w.prompt_tokens.min() and w.prompt_tokens.max() <= 200
    assert 100 <= w.output_tokens.min() and w.output_tokens.max() <= 200
    more = load_scenario("seed-stress", requests=1000).workload
    assert more.summary().requests_per_tenant == {"tenant_a": 500, "tenant_b": 500}


def test_seed_tenants_limits_and_overasking():
    s = load_scenario("seed-tenants", seed=1)
    limits = {t.tenant_id: (t.token_rate, t.token_burst) for t in s.workload.tenants}
    assert limits == {"tenant_a": (500, 5000), "tenant_b": (300, 3000),
                      "tenant_c": (1000, 10000)}
    w, span = s.workload, s.defaults["duration_s"]
    asked = np.bincount(w.tenant, weights=w.prompt_tokens + w.output_tokens) / span
    rates = np.array([t.token_rate for t in w.tenants])
    assert (asked > rates).tolist() == [True, False, True]
    assert w.tenants[2].over_limit is OverLimit.DELAY


def test_noisy_neighbour_floods_at_five_times():
    w = load_scenario("noisy-neighbour", seed=2).workload
    counts = w.summary().requests_per_tenant
    steady = np.mean([counts[f"steady-{i}"] for i in range(1, 5)])
    noisy_rate = counts["noisy"] / (300 - 30)
    assert noisy_rate / (steady / 300) == pytest.approx(5.0, rel=0.15)
    assert w.arrival_s[w.tenant_ids() == "noisy"].min() >= 30.0


def test_trace_scenarios():
    vtc = load_scenario("vtc-lmsys").workload
    assert len(vtc) == 1500 and len(vtc.tenants) == 27
    conv = load_scenario("azure-conv").workload
    assert len(conv) == 19366 and [t.tenant_id for t in conv.tenants] == [
        "team-1", "team-2", "team-3", "team-4"]
    sg = load_scenario("servegen").workload
    assert len(sg.tenants) == 10 and sg.arrival_s[-1] < 600.0
    assert 2 < len(sg) / 600.0 < 6  # scaled for one replica


def test_requests_cut_or_tile_a_trace():
    small = load_scenario("azure-conv", requests=500).workload
    assert len(small) == 500
    big = load_scenario("azure-conv", requests=1_000_000).workload
    assert len(big) == 1_000_000 and np.all(np.diff(big.arrival_s) >= 0)
    assert big.summary().rate_rps == pytest.approx(5.53, rel=0.01)
    assert np.array_equal(big.prompt_tokens[19366:19376], small.prompt_tokens[:10])


def test_requests_extend_generated_traffic():
    w = load_scenario("seed-tenants", requests=3000).workload
    assert len(w) == 3000


def test_unknown_scenario_lists_known_ones():
    with pytest.raises(WorkloadError, match="unknown scenario 'nope'.*seed-stress"):
        load_scenario("nope")


def test_scenario_from_a_path_with_a_relative_trace(tmp_path):
    (tmp_path / "t.csv").write_text("arrival_s,tenant,prompt_tokens,output_tokens\n"
                                    "0.0,x,5,6\n1.0,y,7,8\n")
    path = tmp_path / "mine.yaml"
    path.write_text("source: {trace: vtc-lmsys, path: t.csv}\n"
                    "tenants: [{id: y, weight: 2}]\n")
    s = load_scenario(path)
    assert s.name == "mine" and len(s.workload) == 2
    assert [(t.tenant_id, t.weight) for t in s.workload.tenants] == [("x", 1.0), ("y", 2.0)]


def test_generated_traffic_features():
    s = parse_scenario(textwrap.dedent("""\
        defaults: {duration_s: 100}
        tenants:
          - id: a
            traffic:
              arrival: {process: gamma, rate: 4, cv: 2}
              lengths: sharegpt
              bids: {choices: [1, 10], weights: [3, 1]}
          - id: b
            traffic:
              arrival: {process: onoff, rate: 10, on_s: 5, off_s: 5}
              requests: 20
              prompt: 64
              output: {dist: empirical, trace: sharegpt, column: output}
        """), seed=3)
    w = s.workload
    a, b = w.tenant == 0, w.tenant == 1
    assert 250 < a.sum() < 550 and b.sum() == 20
    assert np.mean(w.bid[a] == 1) == pytest.approx(0.75, abs=0.1)
    assert set(w.prompt_tokens[b].tolist()) == {64}


def test_adding_a_tenant_leaves_the_others_unchanged():
    one = "tenants:\n  - id: a\n    traffic: {arrival: {process: poisson, rate: 2}, " \
          "requests: 30, prompt: 5, output: 5}\n"
    two = one + "  - id: b\n    traffic: {arrival: {process: poisson, rate: 3}, " \
                "requests: 30, prompt: 5, output: 5}\n"
    w1, w2 = parse_scenario(one).workload, parse_scenario(two).workload
    assert np.array_equal(w1.arrival_s, w2.arrival_s[w2.tenant == 0])


BASE = """\
tenants:
  - id: a
    bid: 3
    traffic:
      arrival: {process: poisson, rate: 2}
      requests: 10
      prompt: {dist: uniform, low: 5, high: 9}
      output: 7
"""


@pytest.mark.parametrize("old, new, expected", [
    ("bid: 3", "bid: 12", "s.yaml:3: field 'tenants[0].bid': tenant 'a': bid must be a whole number from 1 to 10"),
    ("bid: 3", "bid: high", "s.yaml:3: field 'tenants[0].bid': expected an integer, got 'high'"),
    ("bid: 3", "colour: red", "s.yaml:3: field 'tenants[0].colour': unknown field"),
    ("rate: 2", "rate: -2", "s.yaml:5: field 'tenants[0].traffic.arrival.rate': must be > 0"),
    ("poisson", "pareto", "s.yaml:5: field 'tenants[0].traffic.arrival.process': unknown process"),
    ("requests: 10", "requests: many",
     "s.yaml:6: field 'tenants[0].traffic.requests': expected an integer, got 'many'"),
    ("low: 5, high: 9", "low: 5, high: 2",
     "s.yaml:7: field 'tenants[0].traffic.prompt.high': must be >= low"),
    ("low: 5, high: 9", "low: 5", "s.yaml:7: field 'tenants[0].traffic.prompt': uniform needs"),
    ("output: 7", "output: 0", "s.yaml:8: field 'tenants[0].traffic.output': must be >= 1"),
    ("  - id: a\n", "  - id: a\n    over_limit: later\n",
     "s.yaml:3: field 'tenants[0].over_limit': expected reject, delay or demote"),
    ("    traffic:\n", "    token_rate: 0\n    traffic:\n",
     "s.yaml:4: field 'tenants[0].token_rate': tenant 'a': token_rate must be a number from 1e-06 to 1e+12"),
    ("      requests: 10\n", "", "s.yaml:4: field 'tenants[0].traffic': give 'requests' or"),
])
def test_malformed_scenario_names_file_line_and_field(old, new, expected):
    with pytest.raises(WorkloadError) as info:
        parse_scenario(BASE.replace(old, new, 1), "s.yaml")
    assert str(info.value).startswith(expected)


@pytest.mark.parametrize("text, expected", [
    ("tenants:\n  - id: a\n    bid: [1\n", "s.yaml:4: invalid YAML"),
    ("- 1\n- 2\n", "s.yaml:1: expected a mapping at the top level"),
    ("tenants:\n  - id: a\n  - id: a\n", "s.yaml:1: field 'tenants': tenant ids must be unique"),
    ("tenants: [3]\n", "s.yaml:1: field 'tenants[0]': expected a mapping, got 3"),
    ("defaults: {duration_s: 0}\ntenants: []\n",
     "s.yaml:1: field 'defaults.duration_s': must be > 0"),
    ("name: x\nname: y\n", "s.yaml:2: field 'name': duplicate key"),
    ("source: {trace: azure-conv, rate_scale: fast}\n",
     "s.yaml:1: field 'source.rate_scale': expected a number, got 'fast'"),
    ("source:\n  trace: azure-conv\n  speed: 2\n", "s.yaml:3: field 'source.speed': unknown field"),
    ("source:\n  trace: nope\n", "s.yaml:2: field 'source.trace': unknown trace 'nope'"),
    ("source:\n  trace: azure-conv\n  assign: sideways\n",
     "s.yaml:3: field 'source.assign': expected round_robin, random or zipf"),
    ("source: {trace: azure-conv}\ntenants:\n  - {id: a, share: 1}\n  - {id: b}\n",
     "s.yaml:4: field 'tenants[1]': every tenant needs a share"),
    ("tenants:\n  - id: a\n    traffic:\n      arrival: {process: burst}\n"
     "      requests: 2\n      lengths: alpaca\n",
     "s.yaml:6: field 'tenants[0].traffic.lengths': expected 'sharegpt'"),
])
def test_malformed_scenario_structure(text, expected):
    with pytest.raises(WorkloadError) as info:
        parse_scenario(text, "s.yaml")
    assert str(info.value).startswith(expected)


def test_shares_assign_weighted_tenants():
    s = parse_scenario("source: {trace: azure-conv}\n"
                       "tenants: [{id: a, share: 9}, {id: b, share: 1}]\n", seed=1)
    assert np.mean(s.workload.tenant == 0) == pytest.approx(0.9, abs=0.01)
