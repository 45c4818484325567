"""Roofline iteration time of a decoder-only transformer on a tensor-parallel GPU group.

One iteration runs, per layer and in sequence: the four GEMMs (QKV, O, gate/up, down),
attention over the KV cache, a few memory-bound elementwise kernels, and with tensor
parallelism two all-reduces of the hidden states. Kernels run one after another, so each gets
its own roofline and the times add:

    time = gemm + attention + elementwise + all-reduce + fixed overhead
    gemm      = max(GEMM FLOPs / (peak * eff(tokens)), (weights + activations) / (bw * mbu))
    attention = max(4 * L * heads * head_dim * pairs / (peak * attn_eff),
                    KV bytes read / (bw * kv_bw_eff))

(A single max over the whole iteration would let a compute-bound prefill chunk hide the
memory-bound decode attention batched with it, which the GPU cannot do.) All quantities are
per GPU: tensor parallelism splits heads, the MLP and the KV cache `tp` ways.

For a decode-only batch everything except attention depends on the number of requests only,
and attention is linear in the summed context C, so an iteration takes
`max(base + compute_per_ctx * C, base + memory_per_ctx * C)`. `decode_terms` returns those
four numbers and `iteration_time` is computed from the same terms, so the two agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aps.perf.base import BatchShape, DecodeTerms
from aps.perf.specs import GpuSpec, ModelSpec


class ModelDoesNotFitError(ValueError):
    """The weights (per GPU) exceed the memory the engine may use."""


@dataclass(frozen=True, slots=True)
class _Shard:
    """One GPU's share of the model and the unit costs derived from it."""

    layer_params: float  # linear weights of one layer on this GPU
    layer_scale: float  # KernelFit.work_scale of those
    act_per_token: float  # GEMM input + output elements per token per layer
    lm_head_params: float
    lm_scale: float
    weights_read_bytes: float  # what one iteration streams: layers + logits head
    weights_stored_bytes: float  # everything resident, embeddings included
    kv_bytes_per_token: float  # all layers, this GPU's heads
    pair_s: float  # attention compute seconds per query-key pair
    kv_token_s: float  # seconds to read one token's KV entries
    elementwise_token_s: float
    fixed_s: float  # per iteration: overheads of every layer's kernels and of the step


def _shard(m: ModelSpec, g: GpuSpec, tp: int, iteration_overhead_s: float) -> _Shard:
    k, h, dt, layers = g.kernels, m.hidden_size, m.dtype_bytes, m.num_layers
    kv_heads = max(1, m.num_kv_heads // tp)  # replicated when tp > KV heads
    q_dim, kv_dim, ffn = m.q_dim // tp, kv_heads * m.head_dim, m.intermediate_size // tp
    w = h * (q_dim + 2 * kv_dim) + q_dim * h + m.mlp_matrices * h * ffn
    act = (h + q_dim + 2 * kv_dim) + (q_dim + h) + (h + (m.mlp_matrices - 1) * ffn) + (ffn + h)
    kv_layer = 2 * kv_dim * dt
    # Norms, residual adds, rotary on q/k, activation, and writing the new K/V entries.
    elementwise = (10 * h + 3 * ffn + 2 * (q_dim + kv_dim)) * dt + kv_layer
    lm_head = m.vocab_size * h / tp
    replicated = (kv_heads * tp - m.num_kv_heads) * 2 * m.head_dim * h * layers
    bw, peak = g.hbm_bandwidth, g.peak_flops
    return _Shard(
        layer_params=w,
        layer_scale=k.work_scale(w),
        act_per_token=act,
        lm_head_params=lm_head,
        lm_scale=k.work_scale(lm_head),
        weights_read_bytes=(layers * w + lm_head) * dt,
        weights_stored_bytes=(m.num_params + replicated) * dt / tp,
        kv_bytes_per_token=layers * kv_layer,
        pair_s=4 * layers * q_dim / (peak * k.attention_flops_eff),
        kv_token_s=layers * kv_layer / (bw * k.kv_bw_eff),
        elementwise_token_s=layers * elementwise / (bw * k.elementwise_bw_eff),
        fixed_s=iteration_overhead_s + layers * (k.gemm_overhead_s + k.elementwise_fixed_s),
    )


@dataclass(slots=True)
class RooflineModel:
    """Performance model of `model` served on `tp` GPUs of kind `gpu` with tensor parallelism."""

    model: ModelSpec
    gpu: GpuSpec
    tp: int = 1
    gpu_mem_util: float = 0.9  # fraction of GPU memory for weights + KV cache (vLLM's default)
    iteration_overhead_s: float = 1e-3  # scheduling, input preparation, sampling per step
    price_override: float | None = None  # USD per GPU-hour
    name: str = ""
    _s: _Shard = field(init=False, repr=False)
    _terms: dict[int, DecodeTerms] = field(default_factory=dict, init=False, repr=False)
    # useful FLOPs per token (GEMMs), per sampled token (logits) and per attention pair:
    # fixed for the model, and the simulator asks for them at every iteration
    _flops: tuple[float, float, float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        m, tp = self.model, self.tp
        if tp < 1 or m.num_heads % tp:
            raise ValueError(f"tp={tp} must be >= 1 and divide {m.num_heads} attention heads")
        if m.num_kv_heads % tp and tp % m.num_kv_heads:
            raise ValueError(f"tp={tp} and {m.num_kv_heads} KV heads cannot be split evenly")
        if not 0 < self.gpu_mem_util <= 1:
            raise ValueError(f"gpu_mem_util={self.gpu_mem_util} must be in (0, 1]")
        if not self.name:
            self.name = f"{m.name}@{self.gpu.name}" + (f"x{tp}" if tp > 1 else "")
        self._s = _shard(m, self.gpu, tp, self.iteration_overhead_s)
        self._flops = (2.0 * m.num_layers * m.layer_linear_params,
                       2.0 * m.vocab_size * m.hidden_size, 4.0 * m.num_layers * m.q_dim)

    # -- GEMMs (the calibrated part) -------------------------------------------------------

    def linear_layer_time(self, num_tokens: int) -> float:
        """Seconds for one layer's QKV, O, gate/up and down GEMMs on `num_tokens` tokens."""
        compute, memory = self._layer_lines(num_tokens)
        return self.gpu.kernels.gemm_overhead_s + max(compute, memory)

    def _layer_lines(self, num_tokens: int) -> tuple[float, float]:
        """(compute, memory) seconds of one layer's GEMMs on one GPU, before the max."""
        s, k, g = self._s, self.gpu.kernels, self.gpu
        padded = k.padded_tokens(num_tokens)
        eff = k.gemm_efficiency(padded, s.layer_scale)
        compute = 2.0 * padded * s.layer_params / (g.peak_flops * eff)
        memory = (s.layer_params + num_tokens * s.act_per_token) * self.model.dtype_bytes
        return compute, memory / (g.hbm_bandwidth * k.weight_bw_eff)

    def _gemm_time(self, num_tokens: int, num_sampled: int) -> float:
        """Every layer's GEMMs plus the logits of the sampled tokens (same efficiency curve);
        the per-layer kernel overheads are in `_Shard.fixed_s`."""
        s, k, g, layers = self._s, self.gpu.kernels, self.gpu, self.model.num_layers
        compute, memory = self._layer_lines(num_tokens)
        padded = k.padded_tokens(num_sampled)
        lm_compute = 0.0
        if padded:
            lm_eff = k.gemm_efficiency(padded, s.lm_scale)
            lm_compute = 2.0 * padded * s.lm_head_params / (g.peak_flops * lm_eff)
        m = self.model
        lm_bytes = (s.lm_head_params + num_sampled * m.hidden_size) * m.dtype_bytes
        lm_memory = lm_bytes / (g.hbm_bandwidth * k.weight_bw_eff)
        return max(layers * compute + lm_compute, layers * memory + lm_memory)

    # -- one iteration ---------------------------------------------------------------------

    def all_reduce_time(self, num_tokens: int) -> float:
        """Two all-reduces of the hidden states per layer (after attention and after the MLP)."""
        msg = num_tokens * self.model.hidden_size * self.model.dtype_bytes
        return 2 * self.model.num_layers * self.gpu.all_reduce_time(msg, self.tp)

    def _base(self, num_tokens: int, num_sampled: int) -> float:
        """Everything that does not depend on context lengths."""
        s = self._s
        return (
            self._gemm_time(num_tokens, num_sampled)
            + num_tokens * s.elementwise_token_s
            + self.all_reduce_time(num_tokens)
            + s.fixed_s
        )

    def decode_terms(self, num_decode: int) -> DecodeTerms:
        """(compute_base, compute_per_ctx, memory_base, memory_per_ctx) of a decode-only batch."""
        terms = self._terms.get(num_decode)
        if terms is None:
            if num_decode <= 0:
                terms = (0.0, 0.0, 0.0, 0.0)
            else:
                base = self._base(num_decode, num_decode)
                terms = (base, self._s.pair_s, base, self._s.kv_token_s)
            self._terms[num_decode] = terms
        return terms

    def iteration_time(self, shape: BatchShape) -> float:
        n = shape.num_prefill_tokens + shape.num_decode
        if n <= 0:
            return 0.0
        if shape.num_prefill_tokens == 0:
            cb, cpc, mb, mpc = self.decode_terms(n)
        else:
            base = self._base(n, shape.num_decode)
            cb, cpc, mb, mpc = base, self._s.pair_s, base, self._s.kv_token_s
        pairs = shape.prefill_attn_pairs + shape.decode_ctx_sum
        kv_tokens = shape.prefill_kv_tokens + shape.decode_ctx_sum
        return max(cb + cpc * pairs, mb + mpc * kv_tokens)

    def iteration_flops(self, shape: BatchShape) -> float:
        """Useful FLOPs of the whole group (unpadded): GEMMs, sampled logits, attention."""
        per_token, per_sampled, per_pair = self._flops
        pairs = shape.prefill_attn_pairs + shape.decode_ctx_sum
        return (per_token * shape.num_tokens + per_sampled * shape.num_decode
                + per_pair * pairs)

    def iteration_bytes(self, shape: BatchShape) -> float:
        """HBM bytes the group moves at least: weights once, KV entries read and written."""
        if shape.num_tokens <= 0:
            return 0.0
        s = self._s
        kv_tokens = shape.prefill_kv_tokens + shape.decode_ctx_sum + shape.num_tokens
        return self.tp * (s.weights_read_bytes + kv_tokens * s.kv_bytes_per_token)

    # -- capacity and money ----------------------------------------------------------------

    @property
    def peak_flops(self) -> float:
        return self.gpu.peak_flops * self.tp

    @property
    def peak_bandwidth(self) -> float:
        return self.gpu.hbm_bandwidth * self.tp

    @property
    def weight_bytes_per_gpu(self) -> float:
        return self._s.weights_stored_bytes

    @property
    def kv_capacity_tokens(self) -> int:
        """Tokens of KV cache that fit next to the weights, for the whole group."""
        budget = self.gpu.memory_bytes * self.gpu_mem_util
        free = budget - self._s.weights_stored_bytes
        if free <= 0:
            raise ModelDoesNotFitError(
                f"{self.model.name} needs {self._s.weights_stored_bytes / 1e9:.1f} GB of weights "
                f"per GPU but {self.gpu.name} x{self.tp} at gpu_mem_util={self.gpu_mem_util} "
                f"allows {budget / 1e9:.1f} GB; use more GPUs (tp) or a larger GPU"
            )
        return int(free // self._s.kv_bytes_per_token)

    @property
    def price_per_hour(self) -> float:
        per_gpu = self.gpu.price_per_hour if self.price_override is None else self.price_override
        return per_gpu * self.tp
