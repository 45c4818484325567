"""Trace readers: the shipped samples, the common options, and errors on malformed files."""
import numpy as np
import pytest

from aps.core.tenant import Tenant
from aps.workload import traces
from aps.workload.generators import Gamma
from aps.workload.servegen import read_servegen
from aps.workload.workload import WorkloadError


@pytest.mark.parametrize("name, rows, tenants", [
    ("azure-code", 8819, 1), ("azure-conv", 19366, 1), ("mooncake", 5719, 1),
    ("vtc-lmsys", 1500, 27)])
def test_shipped_traces_load_whole(name, rows, tenants):
    w = traces.load_trace(name)
    assert len(w) == rows and len(w.tenants) == tenants
    assert w.arrival_s[0] == 0.0 and np.all(np.diff(w.arrival_s) >= 0)
    assert w.prompt_tokens.min() >= 1 and w.output_tokens.min() >= 1


def test_azure_values_and_timestamps():
    w = traces.read_azure(kind="conv")
    # First rows: 18:15:46.6805900, 18:15:50.9951690 (7 fractional digits).
    assert w.arrival_s[1] == pytest.approx(4.314579, abs=1e-6)
    assert (w.prompt_tokens[0], w.output_tokens[0]) == (374, 44)
    assert w.arrival_s[-1] == pytest.approx(3501.72, abs=0.01)


def test_vtc_lmsys_tenants_in_natural_order_with_counts():
    w = traces.read_vtc_lmsys()
    assert [t.tenant_id for t in w.tenants] == [f"tenant-{i}" for i in range(27)]
    counts = w.summary().requests_per_tenant
    assert counts["tenant-2"] == 296 and counts["tenant-26"] == 1
    configured = traces.read_vtc_lmsys(tenants=[Tenant("tenant-3", weight=4.0)])
    assert configured.tenants[3].weight == 4.0
    with pytest.raises(WorkloadError, match="tenants"):
        traces.read_vtc_lmsys(tenants=3)


def test_rate_scale_then_duration_then_max_requests():
    base = traces.read_azure(kind="conv")
    fast = traces.read_azure(kind="conv", rate_scale=2.0)
    assert np.allclose(fast.arrival_s, base.arrival_s / 2)
    cut = traces.read_azure(kind="conv", rate_scale=2.0, duration_s=100.0)
    assert cut.arrival_s[-1] < 100.0 and len(cut) == np.sum(base.arrival_s < 200.0)
    assert len(traces.read_azure(kind="conv", duration_s=100.0, max_requests=7)) == 7
    with pytest.raises(WorkloadError, match="rate_scale"):
        traces.read_azure(rate_scale=0)
    with pytest.raises(WorkloadError, match="unknown trace option"):
        traces.read_azure(rate=2)


def test_tenant_assignment_options():
    rr = traces.read_azure(kind="code", tenants=4)
    assert rr.tenant[:8].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    zipf = traces.read_azure(kind="code", tenants=4, assign="zipf", seed=3)
    counts = np.bincount(zipf.tenant)
    assert np.all(np.diff(counts) < 0)  # 1 : 1/2 : 1/3 : 1/4
    assert counts[0] / counts[1] == pytest.approx(2.0, rel=0.1)
    again = traces.read_azure(kind="code", tenants=4, assign="zipf", seed=3)
    assert np.array_equal(zipf.tenant, again.tenant)
    weighted = traces.read_azure(kind="code", tenants=["x", "y"], assign="random",
                                 shares=[3, 1])
    assert np.mean(weighted.tenant == 0) == pytest.approx(0.75, abs=0.02)
    # Cutting does not change which tenant a request belongs to.
    short = traces.read_azure(kind="code", tenants=4, assign="random", max_requests=100)
    full = traces.read_azure(kind="code", tenants=4, assign="random")
    assert np.array_equal(short.tenant, full.tenant[:100])
    with pytest.raises(WorkloadError, match="assign"):
        traces.read_azure(tenants=2, assign="bogus")


def test_mooncake_jitter_spreads_quantized_times():
    raw = traces.read_mooncake(jitter=False)
    assert np.mean(np.diff(raw.arrival_s) == 0) > 0.8  # 3 s quantization: mostly ties
    jit = traces.read_mooncake(seed=1)
    assert np.mean(np.diff(jit.arrival_s) == 0) < 0.01
    assert np.array_equal(jit.arrival_s, traces.read_mooncake(seed=1).arrival_s)
    assert not np.array_equal(jit.arrival_s, traces.read_mooncake(seed=2).arrival_s)
    assert sorted(jit.prompt_tokens.tolist()) == sorted(raw.prompt_tokens.tolist())


def test_sharegpt_lengths_with_generated_arrivals():
    prompt, output = traces.sharegpt_lengths()
    assert len(prompt) == len(output) == 30731
    w = traces.read_sharegpt(arrivals=Gamma(4.0, 2.0), max_requests=40_000, seed=5)
    assert len(w) == 40_000  # more than the file: rows cycle
    assert w.prompt_tokens[:3].tolist() == [74, 290, 1402]
    assert w.prompt_tokens[30731] == 74
    timed = traces.read_sharegpt(duration_s=100.0, rate_scale=3.0)  # Poisson 1/s, 3x faster
    assert timed.arrival_s[-1] < 100.0 and 230 < len(timed) < 370
    with pytest.raises(WorkloadError, match="max_requests"):
        traces.read_sharegpt()


def test_servegen_window_matches_the_fitted_rates():
    w = read_servegen()  # the first 600 s window, every client: ~128K requests expected
    assert 120_000 < len(w) < 136_000 and 40 <= len(w.tenants) <= 60
    assert w.arrival_s[-1] < 600.0
    assert all(t.tenant_id.startswith("client-") for t in w.tenants)


def test_servegen_top_k_rate_scale_and_subsets():
    w = read_servegen(top_k=5, rate_scale=0.05, seed=2)
    assert len(w.tenants) == 5
    assert 0.03 * 128_000 < len(w) < 0.07 * 128_000
    again = read_servegen(top_k=5, rate_scale=0.05, seed=2)
    assert np.array_equal(w.arrival_s, again.arrival_s)
    one = read_servegen(clients=[61], rate_scale=0.05, seed=2)
    mask = w.tenant_ids() == "client-61"
    assert np.array_equal(one.arrival_s, w.arrival_s[mask])  # a narrower pick is a subset
    later = read_servegen(top_k=3, start_s=3600.0, duration_s=1200.0, rate_scale=0.01)
    assert 0 <= later.arrival_s[0] and later.arrival_s[-1] < 1200.0


def test_servegen_lengths_follow_client_stats_or_defaults():
    w = read_servegen(clients=[4], rate_scale=1.0, seed=0)  # in median ~2029, out ~224
    assert len(w) > 10
    assert 1500 < np.median(w.prompt_tokens) < 2600
    assert 150 < np.median(w.output_tokens) < 300


def test_trace_path_and_unknown_names():
    assert traces.trace_path("vtc-lmsys").is_file()
    with pytest.raises(WorkloadError, match="known: azure-code"):
        traces.load_trace("nope")


# ---- malformed files ----

AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
GOOD_ROW = "2023-11-16 18:17:03.9799600,4808,10\n"


@pytest.mark.parametrize("body, expected", [
    (GOOD_ROW * 15 + "2023-11-16 18:17:04.0319600,abc,8\n",
     "azure.csv:17: field 'ContextTokens': expected a positive integer, got 'abc'"),
    (GOOD_ROW + "2023-11-16 18:17:04.0319600,5,0\n",
     "azure.csv:3: field 'GeneratedTokens': expected a positive integer, got '0'"),
    (GOOD_ROW + "yesterday,5,3\n", "azure.csv:3: field 'TIMESTAMP': expected a timestamp"),
    (GOOD_ROW + "2023-11-16 18:17:04.0319600,5\n",
     "azure.csv:3: expected 3 comma-separated fields, got 2"),
    (GOOD_ROW + "2023-11-16 18:17:04.0319600,1.5,3\n",
     "azure.csv:3: field 'ContextTokens': expected a positive integer, got '1.5'"),
])
def test_malformed_azure(tmp_path, body, expected):
    path = tmp_path / "azure.csv"
    path.write_text(AZURE_HEADER + body)
    with pytest.raises(WorkloadError) as info:
        traces.read_azure(path)
    assert str(info.value).startswith(expected)


def test_missing_column_and_empty_file(tmp_path):
    path = tmp_path / "azure.csv"
    path.write_text("TIMESTAMP,Context,GeneratedTokens\n" + GOOD_ROW)
    with pytest.raises(WorkloadError, match=r"azure.csv:1: field 'ContextTokens': missing column"):
        traces.read_azure(path)
    path.write_text("")
    with pytest.raises(WorkloadError, match="azure.csv:1: empty file"):
        traces.read_azure(path)
    with pytest.raises(WorkloadError, match="cannot read"):
        traces.read_azure(tmp_path / "absent.csv")


@pytest.mark.parametrize("line, expected", [
    ('{"timestamp": 0, "input_length": "12", "output_length": 5}',
     "moon.jsonl:2: field 'input_length': expected a positive integer, got '12'"),
    ('{"timestamp": -3, "input_length": 12, "output_length": 5}',
     "moon.jsonl:2: field 'timestamp': expected a number >= 0, got -3"),
    ('{"timestamp": 0, "input_length": 12}', "moon.jsonl:2: field 'output_length': missing"),
    ('{"timestamp": 0, "input_length": 12,', "moon.jsonl:2: invalid JSON"),
    ('[1, 2]', "moon.jsonl:2: expected a JSON object"),
])
def test_malformed_mooncake(tmp_path, line, expected):
    path = tmp_path / "moon.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 7, "output_length": 3}\n' + line + "\n")
    with pytest.raises(WorkloadError) as info:
        traces.read_mooncake(path)
    assert str(info.value).startswith(expected)


def test_malformed_vtc_and_servegen(tmp_path):
    vtc = tmp_path / "vtc.csv"
    vtc.write_text("arrival_s,tenant,prompt_tokens,output_tokens\n0.0,t1,5,5\n0.5,,5,5\n")
    with pytest.raises(WorkloadError, match="vtc.csv:3: field 'tenant': expected a non-empty"):
        traces.read_vtc_lmsys(vtc)
    sg = tmp_path / "sg.csv"
    sg.write_text("client_id,window_start_s,rate_rps,iat_cv,iat_dist,dist_param1,dist_param2\n"
                  "0,0,1.0,1.0,Gamma,1.0,1.0\n0,600,2.0,1.0,Lognormal,1.0,1.0\n")
    with pytest.raises(WorkloadError, match="sg.csv:3: field 'iat_dist': expected Gamma or"):
        read_servegen(sg)
    sg.write_text("client_id,window_start_s,rate_rps,iat_cv,iat_dist,dist_param1,dist_param2\n"
                  "0,0,1.0,1.0,Weibull,0,1.0\n")
    with pytest.raises(WorkloadError, match="sg.csv:2: field 'dist_param1': expected a number > 0"):
        read_servegen(sg)
    sg.write_text("client_id,window_start_s,rate_rps,iat_cv,iat_dist,dist_param1,dist_param2\n"
                  "0,0,fast,1.0,Weibull,1,1.0\n")
    with pytest.raises(WorkloadError, match="sg.csv:2: field 'rate_rps': expected a number >= 0"):
        read_servegen(sg)


def test_reader_accepts_any_path(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(AZURE_HEADER + GOOD_ROW + "2023-11-16 18:17:05.0000000,10,20\n")
    w = traces.read_azure(path, tenants=2)
    assert len(w) == 2 and w.name == "mine"
    assert w.arrival_s.tolist() == pytest.approx([0.0, 1.02004])
