"""Achievable-efficiency curves for one GPU architecture, fitted to measured kernel times.

A roofline with one constant efficiency cannot describe a transformer layer: a decode step
(a few tokens) streams the weights at ~75% of HBM peak, a 4096-token prefill chunk runs its GEMMs
at ~70-76% of peak FLOP/s, and in between cuBLAS tiles and small per-GPU matrices waste a
good part of the machine. So the GEMM efficiency here depends on the number of tokens and on
the size of the per-GPU weight matrices, as a handful of fitted points:

* token counts are rounded up to the GEMM tile height (`tile_tokens`): a 520-token GEMM costs
  about what a 576- or 640-token one does;
* efficiency = log-linear interpolation of `eff_knots` at
  `padded_tokens * (layer_params_per_gpu / WORK_REF_PARAMS) ** work_exponent`: the same token
  count runs better on larger matrices (more tiles to keep every SM busy);
* each layer's four GEMMs (QKV, O, gate/up, down) cost `gemm_overhead_s` on top
  (launch latency and tail effects that dominate small tensor-parallel shards).

The fits minimise (nearly) the worst relative error over every row of the public Vidur
operator profiles (`data/calibration/vidur-profiles/mlp_*.csv`, Agrawal et al., MLSys 2024),
weighting decode-sized rows (<= 64 tokens) 1.5x. Those profiles have cuBLAS kernel-selection
steps (e.g. +75% from 512 to 520 tokens for one Llama-2-70B shard on H100) that no function of
(tokens, matrix size) follows: even one free efficiency per token count misses some rows by
~18% (A100) and ~19% (H100). This fit's worst rows are ~20% and ~22% off, its mean error 4-7%;
`aps.perf.calibration` and `benchmarks/perf_calibration.py` report it per file.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass

# Reference per-GPU linear parameters of one layer (about one Llama-2-7B layer at TP1).
WORK_REF_PARAMS = 2.0e8


@dataclass(frozen=True, slots=True)
class KernelFit:
    """Efficiency factors of one GPU architecture (fractions of the datasheet peaks)."""

    name: str
    gemm_overhead_s: float  # per layer (four GEMMs)
    weight_bw_eff: float  # fraction of HBM peak when GEMMs stream weights (memory-bound side)
    tile_tokens: int  # GEMM tile height in tokens (the M dimension is padded to it)
    work_exponent: float  # how strongly matrix size shifts the efficiency curve
    eff_knots: tuple[tuple[int, float], ...]  # (effective tokens, fraction of peak FLOP/s)
    elementwise_fixed_s: float  # per layer: norms, rotary, activation, residual, attention launch
    elementwise_bw_eff: float  # fraction of HBM peak those memory-bound kernels reach
    attention_flops_eff: float  # prefill attention (FlashAttention-style) fraction of peak
    kv_bw_eff: float  # fraction of HBM peak when reading the KV cache
    source: str

    def padded_tokens(self, num_tokens: int) -> int:
        tile = self.tile_tokens
        return -(-num_tokens // tile) * tile

    def work_scale(self, layer_params_per_gpu: float) -> float:
        """Multiplier on the token count: larger matrices fill the GPU at fewer tokens."""
        return (layer_params_per_gpu / WORK_REF_PARAMS) ** self.work_exponent

    def gemm_efficiency(self, padded_tokens: int, work_scale: float) -> float:
        """Fraction of peak FLOP/s reached by GEMMs on `padded_tokens` rows."""
        return interp_log(self.eff_knots, max(padded_tokens, 1) * work_scale)


def interp_log(knots: tuple[tuple[int, float], ...], x: float) -> float:
    """Piecewise-linear interpolation in log(x), clamped to the end values."""
    xs = [k for k, _ in knots]
    if x <= xs[0]:
        return knots[0][1]
    if x >= xs[-1]:
        return knots[-1][1]
    i = bisect_right(xs, x)
    (x0, y0), (x1, y1) = knots[i - 1], knots[i]
    w = math.log(x / x0) / math.log(x1 / x0)
    return y0 + w * (y1 - y0)


def all_reduce_time(num_bytes: float, num_workers: int, latency_s: float, bus_bw: float) -> float:
    """Ring all-reduce: fixed latency plus 2(n-1)/n of the message over the bus bandwidth.

    `bus_bw` is the achieved NCCL "bus bandwidth" (nccl-tests' definition), which is what the
    Vidur all-reduce profiles measure against; 2(n-1)/n converts it to per-message time.
    """
    if num_workers <= 1 or num_bytes <= 0:
        return 0.0
    return latency_s + 2.0 * (num_workers - 1) / num_workers * num_bytes / bus_bw


_VIDUR = "fitted to data/calibration/vidur-profiles (microsoft/vidur, MIT)"

# Fitted on mlp_a100_{Llama-2-7b-hf,Llama-2-70b-hf,Meta-Llama-3-8B}.csv (A100-SXM4-80GB), TP 1-8.
# Elementwise terms: medians of input/post layernorm, rotary, activation and add in those files.
AMPERE = KernelFit(
    name="ampere",
    gemm_overhead_s=21.5e-6,
    weight_bw_eff=0.7744,
    tile_tokens=64,
    work_exponent=0.4556,
    eff_knots=(
        (64, 0.4435),
        (128, 0.5809),
        (256, 0.5994),
        (512, 0.7026),
        (1024, 0.7358),
        (4096, 0.7358),
    ),
    elementwise_fixed_s=25e-6,
    elementwise_bw_eff=0.64,
    # FlashAttention-2 forward reaches 50-73% of A100 peak (Dao, 2023); paged, causal,
    # variable-length serving kernels sit at the low end.
    attention_flops_eff=0.5,
    kv_bw_eff=0.7,
    source=_VIDUR + ", mlp_a100_*.csv",
)

# Fitted on mlp_h100_{Llama-2-7b-hf,Llama-2-70b-hf}.csv (H100 SXM), TP 1-8.
HOPPER = KernelFit(
    name="hopper",
    gemm_overhead_s=14.8e-6,
    weight_bw_eff=0.8148,
    tile_tokens=128,
    work_exponent=0.5121,
    eff_knots=(
        (64, 0.3876),
        (128, 0.4097),
        (256, 0.5092),
        (512, 0.5780),
        (1024, 0.6427),
        (2048, 0.6996),
        (4096, 0.7033),
    ),
    elementwise_fixed_s=20e-6,
    elementwise_bw_eff=0.72,
    # FlashAttention-3 reports ~75% of H100 peak in BF16 forward (Shah et al., 2024); serving
    # kernels (paged, variable length) reach less.
    attention_flops_eff=0.55,
    kv_bw_eff=0.75,
    source=_VIDUR + ", mlp_h100_*.csv",
)
