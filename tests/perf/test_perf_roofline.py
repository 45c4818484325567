"""Properties of the roofline model: the closed-form decode hook, bounds, monotonicity, TP."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aps.perf import (BatchShape, decode_iters_within, decode_run_time, decode_run_within,
                      decode_time, make_perf_model)

CONFIGS = [
    ("llama-2-7b", "a100-80gb", 1),
    ("llama-2-7b", "a100-40gb", 2),
    ("llama-2-13b", "l4", 4),
    ("llama-3-8b", "h100-sxm", 1),
    ("mistral-7b", "a10g", 2),
    ("qwen2.5-7b", "h100-pcie", 4),
    ("llama-2-70b", "a100-80gb", 8),
    ("llama-3-70b", "h200", 4),
    ("seed-a100", "seed-a100", 1),
]
MODELS = {cfg: make_perf_model(*cfg) for cfg in CONFIGS}

configs = st.sampled_from(CONFIGS)
roofline_configs = st.sampled_from(CONFIGS[:-1])


@st.composite
def shapes(draw) -> BatchShape:
    chunks = draw(st.lists(st.tuples(st.integers(1, 4096), st.integers(0, 32_000)), max_size=4))
    ctx = draw(st.lists(st.integers(1, 32_000), max_size=300))
    return BatchShape.build(prefill=chunks, decode_ctx=ctx)


@settings(max_examples=300, deadline=None)
@given(configs, st.integers(1, 4096), st.integers(0, 10**8))
def test_decode_terms_reproduce_iteration_time(cfg, num_decode, extra_ctx):
    perf = MODELS[cfg]
    ctx = num_decode + extra_ctx  # each request has at least one token of context
    cb, cpc, mb, mpc = perf.decode_terms(num_decode)
    expected = max(cb + cpc * ctx, mb + mpc * ctx)
    actual = perf.iteration_time(BatchShape(num_decode=num_decode, decode_ctx_sum=ctx))
    assert actual == pytest.approx(expected, rel=1e-12, abs=0.0)
    assert decode_time((cb, cpc, mb, mpc), ctx) == actual


@settings(max_examples=300, deadline=None)
@given(roofline_configs, shapes())
def test_throughput_never_beats_the_roofline(cfg, shape):
    perf = MODELS[cfg]
    t = perf.iteration_time(shape)
    if shape.num_tokens == 0:
        assert t == 0.0
        return
    compute_bound = perf.iteration_flops(shape) / perf.peak_flops
    memory_bound = perf.iteration_bytes(shape) / perf.peak_bandwidth
    assert t >= max(compute_bound, memory_bound) > 0
    # The same statement as throughput: tokens per second under the roofline's limit.
    assert shape.num_tokens / t <= shape.num_tokens / max(compute_bound, memory_bound)
    assert 0 < perf.iteration_flops(shape) / (perf.peak_flops * t) < 1  # MFU
    assert 0 < perf.iteration_bytes(shape) / (perf.peak_bandwidth * t) < 1  # MBU


@settings(max_examples=200, deadline=None)
@given(configs, shapes(), st.integers(1, 512), st.integers(1, 20_000))
def test_more_work_never_takes_less_time(cfg, shape, more_tokens, more_ctx):
    perf = MODELS[cfg]
    t = perf.iteration_time(shape)
    longer_prompt = BatchShape.build(prefill=[(more_tokens, 0)])
    bigger = BatchShape(
        shape.num_prefill_tokens + more_tokens,
        shape.prefill_attn_pairs + longer_prompt.prefill_attn_pairs,
        shape.prefill_kv_tokens + more_tokens,
        shape.num_decode,
        shape.decode_ctx_sum,
    )
    assert perf.iteration_time(bigger) >= t
    longer_ctx = BatchShape(
        shape.num_prefill_tokens,
        shape.prefill_attn_pairs,
        shape.prefill_kv_tokens,
        shape.num_decode + 1,
        shape.decode_ctx_sum + more_ctx,
    )
    assert perf.iteration_time(longer_ctx) >= t


@settings(max_examples=200, deadline=None)
@given(configs, st.integers(1, 512), st.integers(0, 10**6), st.integers(0, 300))
def test_decode_run_time_sums_the_iterations(cfg, num_decode, extra_ctx, iters):
    terms = MODELS[cfg].decode_terms(num_decode)
    ctx = num_decode + extra_ctx
    loop = sum(decode_time(terms, ctx + j * num_decode) for j in range(iters))
    assert decode_run_time(terms, ctx, num_decode, iters) == pytest.approx(loop, rel=1e-9)


def test_decode_run_time_handles_a_crossing_of_the_two_lines():
    terms = (1.0, 1e-3, 0.5, 2e-3)  # memory line starts lower, grows faster: crosses at 500
    loop = sum(decode_time(terms, 100 + 4 * j) for j in range(300))
    assert decode_run_time(terms, 100, 4, 300) == pytest.approx(loop, rel=1e-12)


def test_decode_is_memory_bound_and_prefill_compute_bound():
    perf = make_perf_model("llama-2-7b", "a100-80gb")
    decode = BatchShape(num_decode=8, decode_ctx_sum=8 * 1000)
    t = perf.iteration_time(decode)
    assert perf.iteration_bytes(decode) / (perf.peak_bandwidth * t) > 0.5  # MBU
    assert perf.iteration_flops(decode) / (perf.peak_flops * t) < 0.05  # MFU
    prefill = BatchShape.build(prefill=[(4096, 0)])
    t = perf.iteration_time(prefill)
    assert 0.5 < perf.iteration_flops(prefill) / (perf.peak_flops * t) < 0.8


def test_single_stream_decode_speed_is_plausible():
    # Weight streaming bounds batch-1 decode: ~13.5 GB of Llama-2-7B at 2 TB/s is >= 6.6 ms.
    perf = make_perf_model("llama-2-7b", "a100-80gb")
    t = perf.iteration_time(BatchShape(num_decode=1, decode_ctx_sum=1000))
    assert 60 < 1 / t < 130  # tokens/s


def test_batching_raises_decode_throughput():
    perf = make_perf_model("llama-3-8b", "h100-sxm")
    rates = [b / perf.iteration_time(BatchShape(num_decode=b, decode_ctx_sum=b * 500))
             for b in (1, 8, 64, 256)]
    assert rates == sorted(rates) and rates[-1] > 20 * rates[0]


def test_tensor_parallelism_adds_all_reduce_and_splits_work():
    tp1 = make_perf_model("llama-2-7b", "a100-80gb", tp=1)
    tp2 = make_perf_model("llama-2-7b", "a100-80gb", tp=2)
    assert tp1.all_reduce_time(256) == 0.0
    msg = 256 * 4096 * 2
    bus = tp2.gpu.allreduce_bus_bandwidth
    one = tp2.gpu.allreduce_latency_s + msg / bus  # 2(n-1)/n = 1 for two GPUs
    assert tp2.all_reduce_time(256) == pytest.approx(2 * 32 * one)
    assert tp2.linear_layer_time(2048) < tp1.linear_layer_time(2048)
    prefill = BatchShape.build(prefill=[(2048, 0)])
    assert tp2.iteration_time(prefill) < tp1.iteration_time(prefill)
    assert tp2.iteration_flops(prefill) == tp1.iteration_flops(prefill)
    assert tp2.kv_capacity_tokens > 2 * tp1.kv_capacity_tokens  # weights split, memory doubles


def test_attention_cost_is_counted():
    perf = make_perf_model("llama-3-8b", "h100-sxm")
    short = BatchShape.build(prefill=[(2048, 0)])
    long = BatchShape.build(prefill=[(2048, 30_000)])  # same chunk, long cached prefix
    m = perf.model
    extra_pairs = long.prefill_attn_pairs - short.prefill_attn_pairs
    assert perf.iteration_flops(long) - perf.iteration_flops(short) == pytest.approx(
        4 * m.num_layers * m.num_heads * m.head_dim * extra_pairs
    )
    assert perf.iteration_time(long) > perf.iteration_time(short)


def test_empty_batch_costs_nothing():
    for perf in MODELS.values():
        assert perf.iteration_time(BatchShape()) == 0.0
        assert perf.decode_terms(0) == (0.0, 0.0, 0.0, 0.0)


def test_faster_gpu_is_faster():
    shape = BatchShape(num_prefill_tokens=512, prefill_attn_pairs=512 * 256.5,
                       prefill_kv_tokens=512, num_decode=32, decode_ctx_sum=32_000)
    times = {g: make_perf_model("llama-3-8b", g).iteration_time(shape)
             for g in ("a10g", "a100-80gb", "h100-sxm", "h200")}
    assert times["h200"] <= times["h100-sxm"] < times["a100-80gb"] < times["a10g"]
    assert math.isfinite(times["a10g"])


@settings(max_examples=200, deadline=None)
@given(num_decode=st.integers(1, 256), ctx=st.integers(1, 4_000_000),
       budget=st.floats(-1.0, 30.0), upper=st.integers(0, 3000))
def test_decode_run_within_is_the_most_iterations_that_end_in_time(num_decode, ctx, budget, upper):
    terms = make_perf_model(model="llama-3-8b", gpu="h100-sxm").decode_terms(num_decode)
    start = 100.0
    n, seconds = decode_run_within(terms, ctx, num_decode, start, start + budget, upper)
    fits = [k for k in range(upper + 1) if start + decode_run_time(terms, ctx, num_decode, k) <= start + budget]
    assert n == (max(fits) if fits and max(fits) > 0 else 0)
    assert seconds == (decode_run_time(terms, ctx, num_decode, n) if n else 0.0)
    assert decode_iters_within(terms, ctx, num_decode, start, start + budget, upper) == n
