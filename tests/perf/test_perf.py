"""Specs, lookups, the factory, the seed toy and cost arithmetic of aps.perf."""

import ast
import math
from pathlib import Path

import pytest

from aps.perf import (
    GPUS,
    MODELS,
    BatchShape,
    ModelDoesNotFitError,
    ModelSpec,
    PerfModel,
    RooflineModel,
    SeedModel,
    UnknownSpecError,
    cost_per_1m_tokens,
    get_gpu,
    get_model,
    make_perf_model,
)

REQUIRED_GPUS = {"a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "h200", "l4", "a10g"}

# Parameter counts Hugging Face reports for these checkpoints (safetensors metadata).
PUBLISHED_PARAMS = {
    "llama-2-7b": 6_738_415_616,
    "llama-2-13b": 13_015_864_320,
    "llama-2-70b": 68_976_648_192,
    "llama-3-8b": 8_030_261_248,
    "llama-3-70b": 70_553_706_496,
    "mistral-7b": 7_241_732_096,
    "qwen2.5-7b": 7_615_616_512,
}


def test_gpu_table_has_the_required_gpus_with_sources():
    assert REQUIRED_GPUS <= set(GPUS)
    for g in GPUS.values():
        assert g.peak_flops > 0 and g.hbm_bandwidth > 0 and g.memory_bytes > 0
        assert g.price_per_hour > 0 and g.interconnect_bandwidth > 0
        assert "datasheet" in g.source and g.price_source
        assert 0 < g.allreduce_bus_eff <= 1


def test_datasheet_figures():
    assert get_gpu("a100-80gb").peak_flops == 312e12
    assert get_gpu("a100-80gb").hbm_bandwidth == 2.039e12
    assert get_gpu("a100-40gb").hbm_bandwidth == 1.555e12
    assert get_gpu("h100-sxm").peak_flops == 989e12
    assert get_gpu("h100-sxm").hbm_bandwidth == 3.35e12
    assert get_gpu("h200").hbm_bandwidth > get_gpu("h100-sxm").hbm_bandwidth


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_model_parameter_counts_match_published(name):
    assert get_model(name).num_params == PUBLISHED_PARAMS[name]


def test_model_derived_sizes():
    m = get_model("llama-2-7b")
    assert m.kv_bytes_per_token == 2 * 32 * 4096 * 2  # K and V, 32 layers, MHA, BF16
    assert get_model("llama-3-8b").kv_bytes_per_token == 2 * 32 * 8 * 128 * 2  # GQA: 8 KV heads
    assert m.weight_bytes == m.num_params * 2
    for spec in MODELS.values():
        assert spec.source.startswith("huggingface.co/")


def test_lookups_are_case_insensitive():
    assert get_gpu(" H100-SXM ") is GPUS["h100-sxm"]
    assert get_model("Llama-3-8B") is MODELS["llama-3-8b"]


def test_unknown_names_list_the_known_ones():
    with pytest.raises(UnknownSpecError, match=r"unknown GPU 'tpu'; known: a100-40gb, a100-80gb"):
        get_gpu("tpu")
    with pytest.raises(KeyError):
        get_model("gpt-5")
    with pytest.raises(ValueError, match="llama-2-7b"):
        get_model("gpt-5")
    with pytest.raises(UnknownSpecError, match="seed-a100"):
        make_perf_model(gpu="tpu")


def test_factory_builds_a_roofline_model():
    perf = make_perf_model("llama-3-8b", "h100-sxm", tp=2, gpu_mem_util=0.8)
    assert isinstance(perf, RooflineModel) and isinstance(perf, PerfModel)
    assert perf.tp == 2 and perf.name == "llama-3-8b@h100-sxmx2"
    assert perf.peak_flops == 2 * 989e12
    assert perf.peak_bandwidth == 2 * 3.35e12
    assert perf.price_per_hour == pytest.approx(2 * GPUS["h100-sxm"].price_per_hour)
    assert make_perf_model(price_per_hour=2.0, tp=2).price_per_hour == 4.0


def test_kv_capacity_follows_the_formula():
    perf = make_perf_model("llama-2-7b", "a100-80gb", gpu_mem_util=0.9)
    m, g = get_model("llama-2-7b"), get_gpu("a100-80gb")
    expected = (g.memory_bytes * 0.9 - m.weight_bytes) / m.kv_bytes_per_token
    assert perf.kv_capacity_tokens == math.floor(expected)
    tp4 = make_perf_model("llama-3-70b", "h100-sxm", tp=4)
    m70, h100 = get_model("llama-3-70b"), get_gpu("h100-sxm")
    expected = (h100.memory_bytes * 0.9 * 4 - m70.weight_bytes) / m70.kv_bytes_per_token
    assert abs(tp4.kv_capacity_tokens - expected) <= 1


def test_kv_heads_are_replicated_when_tp_exceeds_them():
    # 2 KV heads on 8 GPUs: each GPU stores one head (each head four times), so a token costs
    # every GPU half of the model's KV bytes, not an eighth.
    m = ModelSpec("toy", num_layers=4, hidden_size=1024, num_heads=16, num_kv_heads=2,
                  head_dim=64, intermediate_size=4096, vocab_size=1000)
    g = get_gpu("l4")
    tp8 = RooflineModel(m, g, tp=8)
    assert tp8.weight_bytes_per_gpu > m.weight_bytes / 8
    expected = (g.memory_bytes * 0.9 - tp8.weight_bytes_per_gpu) / (m.kv_bytes_per_token / 2)
    assert tp8.kv_capacity_tokens == math.floor(expected)
    with pytest.raises(ValueError, match="tp=3"):
        make_perf_model("llama-2-7b", "a100-80gb", tp=3)
    with pytest.raises(ValueError, match="tp=8"):
        make_perf_model("qwen2.5-7b", "h100-sxm", tp=8)  # 28 heads


def test_weights_that_do_not_fit_raise_a_clear_error():
    with pytest.raises(ModelDoesNotFitError, match=r"llama-3-70b needs .* GB .* a100-40gb"):
        make_perf_model("llama-3-70b", "a100-40gb")
    lazy = make_perf_model("llama-3-70b", "a100-40gb", check_memory=False)
    assert lazy.iteration_time(BatchShape(num_decode=1, decode_ctx_sum=10)) > 0
    with pytest.raises(ModelDoesNotFitError):
        _ = lazy.kv_capacity_tokens
    assert make_perf_model("llama-3-70b", "a100-40gb", tp=8).kv_capacity_tokens > 0


def test_seed_preset_reproduces_the_seed_documents():
    seed = make_perf_model(gpu="seed-a100")
    assert isinstance(seed, SeedModel) and isinstance(seed, PerfModel)
    assert make_perf_model("seed-a100").name == "seed-a100"
    assert seed.kv_capacity_tokens == 32_768 and seed.price_per_hour == 3.00
    assert seed.iteration_time(BatchShape(num_prefill_tokens=1024)) == pytest.approx(1.0)
    for batch in (1, 4, 16, 64):
        rate = 128 * (0.4 + 0.6 * math.sqrt(batch))
        shape = BatchShape(num_decode=batch, decode_ctx_sum=batch * 500)
        assert seed.iteration_time(shape) == pytest.approx(batch / rate)
        cb, cpc, mb, mpc = seed.decode_terms(batch)
        assert cpc == mpc == 0.0 and max(cb, mb) == pytest.approx(batch / rate)
    assert seed.iteration_time(BatchShape(num_decode=1)) == pytest.approx(1 / 128)
    mixed = BatchShape(num_prefill_tokens=512, num_decode=4, decode_ctx_sum=40)
    assert seed.iteration_time(mixed) == pytest.approx(0.5 + 4 / (128 * 1.6))
    assert seed.iteration_flops(mixed) == 0.0
    assert make_perf_model(gpu="seed-a100", price_per_hour=1.5).price_per_hour == 1.5


def test_cost_per_1m_tokens():
    assert cost_per_1m_tokens(3.00, tokens=1_000_000, seconds=3600) == pytest.approx(3.00)
    assert cost_per_1m_tokens(3.00, tokens=2_000_000, seconds=1800) == pytest.approx(0.75)
    assert cost_per_1m_tokens(3.00, tokens=0, seconds=10) == math.inf


def test_batch_shape_build_sums_chunks():
    shape = BatchShape.build(prefill=[(4, 0), (3, 10)], decode_ctx=[5, 7])
    assert shape.num_prefill_tokens == 7 and shape.num_decode == 2
    assert shape.prefill_kv_tokens == 4 + 13
    # First chunk: queries see 1..4 keys; second: 11..13.
    assert shape.prefill_attn_pairs == (1 + 2 + 3 + 4) + (11 + 12 + 13)
    assert shape.decode_ctx_sum == 12 and shape.num_tokens == 9
    with pytest.raises(AttributeError):
        shape.num_decode = 3  # frozen


def test_perf_imports_nothing_else_of_the_project():
    root = Path(__file__).resolve().parents[2] / "aps" / "perf"
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name == "aps" or name.startswith("aps."):
                    assert name.startswith("aps.perf"), f"{path.name} imports {name}"
