"""Hardware and model specifications as data, each entry with where its numbers come from.

GPU figures are NVIDIA datasheet values: dense BF16 tensor-core FLOP/s (the datasheets print
the 2:4-sparsity figure first; dense is half of it) and HBM bandwidth. Memory is the capacity
`nvidia-smi` reports (e.g. 81920 MiB for an "80 GB" A100), which is what a serving engine can
allocate from. Model shapes are the public `config.json` values on Hugging Face.

Prices are typical public on-demand prices per GPU-hour in USD (instance price / GPUs per
instance, US regions, 2024 list prices; hyperscalers where they list the GPU). They differ 2-5x
between providers and change often: pass `price_per_hour=` to `make_perf_model` for your own.
"""

from __future__ import annotations

from dataclasses import dataclass

from aps.perf.kernels import AMPERE, HOPPER, KernelFit, all_reduce_time

MiB = 1 << 20
GB = 1e9
TB = 1e12


class UnknownSpecError(KeyError, ValueError):
    """An unknown GPU or model name; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class GpuSpec:
    name: str
    peak_flops: float  # dense BF16 tensor-core FLOP/s
    hbm_bandwidth: float  # bytes/s
    memory_bytes: float
    price_per_hour: float  # USD per GPU-hour, on demand
    interconnect: str  # what a tensor-parallel all-reduce runs over
    interconnect_bandwidth: float  # bytes/s per direction, nominal
    allreduce_latency_s: float  # NCCL all-reduce latency (fitted, or assumed when no profile)
    allreduce_bus_eff: float  # achieved NCCL bus bandwidth / nominal per-direction bandwidth
    kernels: KernelFit
    source: str
    price_source: str

    @property
    def allreduce_bus_bandwidth(self) -> float:
        return self.interconnect_bandwidth * self.allreduce_bus_eff

    def all_reduce_time(self, num_bytes: float, num_workers: int) -> float:
        return all_reduce_time(
            num_bytes, num_workers, self.allreduce_latency_s, self.allreduce_bus_bandwidth
        )


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    gated_mlp: bool = True  # SwiGLU: gate and up projections
    dtype_bytes: int = 2  # BF16 weights and KV cache
    tied_embeddings: bool = False
    qkv_bias: bool = False
    source: str = ""

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def mlp_matrices(self) -> int:
        return 3 if self.gated_mlp else 2

    @property
    def layer_linear_params(self) -> int:
        """Weights of QKV, O, and the MLP in one layer: the GEMMs every token goes through."""
        h = self.hidden_size
        attn = h * (self.q_dim + 2 * self.kv_dim) + self.q_dim * h
        return attn + self.mlp_matrices * h * self.intermediate_size

    @property
    def layer_params(self) -> int:
        bias = self.q_dim + 2 * self.kv_dim if self.qkv_bias else 0
        return self.layer_linear_params + bias + 2 * self.hidden_size  # + two RMSNorm scales

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tied_embeddings else self.vocab_size * self.hidden_size

    @property
    def num_params(self) -> int:
        body = self.num_layers * self.layer_params + self.hidden_size  # + final norm
        return body + self.embedding_params + self.lm_head_params

    @property
    def weight_bytes(self) -> int:
        return self.num_params * self.dtype_bytes

    @property
    def kv_bytes_per_token(self) -> int:
        """K and V of every layer for one token."""
        return 2 * self.num_layers * self.kv_dim * self.dtype_bytes


def _sheet(name: str) -> str:
    return f"NVIDIA {name} datasheet"


GPUS: dict[str, GpuSpec] = {
    g.name: g
    for g in (
        GpuSpec(
            "a100-40gb", 312 * TB, 1555 * GB, 40960 * MiB, 3.67,
            "nvlink", 300 * GB, 38.2e-6, 0.517, AMPERE,
            source=_sheet("A100 (SXM4 40GB)") + "; NVLink 3 600 GB/s bidirectional",
            price_source="GCP a2-highgpu-1g on demand, us-central1",
        ),
        GpuSpec(
            "a100-80gb", 312 * TB, 2039 * GB, 81920 * MiB, 5.07,
            "nvlink", 300 * GB, 38.2e-6, 0.517, AMPERE,
            # all-reduce latency/efficiency fitted to all_reduce_a100_dgx.csv (intra-node rows)
            source=_sheet("A100 (SXM4 80GB)") + "; NVLink 3 600 GB/s bidirectional",
            price_source="GCP a2-ultragpu-1g on demand, us-central1",
        ),
        GpuSpec(
            "h100-sxm", 989 * TB, 3350 * GB, 81559 * MiB, 12.29,
            "nvlink", 450 * GB, 27.0e-6, 0.809, HOPPER,
            # all-reduce latency/efficiency fitted to all_reduce_h100_dgx.csv
            source=_sheet("H100 (SXM5 80GB)") + "; NVLink 4 900 GB/s bidirectional",
            price_source="AWS p5.48xlarge on demand ($98.32/h) / 8, us-east-1, 2024 list",
        ),
        GpuSpec(
            "h100-pcie", 756 * TB, 2000 * GB, 81559 * MiB, 2.49,
            # PCIe Gen5 x16; latency and efficiency assumed (no profile)
            "pcie", 64 * GB, 30e-6, 0.7, HOPPER,
            source=_sheet("H100 (PCIe 80GB)") + "; PCIe Gen5 128 GB/s bidirectional",
            price_source="Lambda on-demand 1x H100 PCIe",
        ),
        GpuSpec(
            "h200", 989 * TB, 4800 * GB, 143771 * MiB, 13.52,
            "nvlink", 450 * GB, 27.0e-6, 0.809, HOPPER,  # same NVLink 4 fabric as H100 SXM
            source=_sheet("H200 (SXM 141GB)") + "; NVLink 4 900 GB/s bidirectional",
            # No widely listed per-GPU on-demand price: AWS's H100 price x 1.10, the H200/H100
            # ratio in AWS's EC2 Capacity Blocks list (p5e $5.408 vs p5 $4.916 per GPU-hour).
            price_source="derived: AWS p5 on demand per GPU x 1.10 (Capacity Blocks ratio)",
        ),
        GpuSpec(
            "l4", 121 * TB, 300 * GB, 23034 * MiB, 0.71,
            # PCIe Gen4 x16, no NVLink; latency and efficiency assumed. Ada: Ampere fit assumed.
            "pcie", 32 * GB, 30e-6, 0.7, AMPERE,
            source=_sheet("L4") + "; PCIe Gen4 64 GB/s bidirectional",
            price_source="GCP g2-standard-4 (1x L4) on demand, us-central1",
        ),
        GpuSpec(
            # NVIDIA publishes no A10G datasheet: memory and bandwidth are the A10's (24 GB
            # GDDR6, 600 GB/s); tensor throughput is lower than the A10's 125 TFLOP/s
            # (Baseten, "NVIDIA A10 vs A10G for ML model inference": 70 TFLOP/s BF16).
            "a10g", 70 * TB, 600 * GB, 23028 * MiB, 1.006,
            "pcie", 32 * GB, 30e-6, 0.7, AMPERE,
            source=_sheet("A10") + " and Baseten's A10G comparison; PCIe Gen4",
            price_source="AWS g5.xlarge on demand, us-east-1",
        ),
    )
}


def _hf(repo: str) -> str:
    return f"huggingface.co/{repo}/blob/main/config.json"


MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec("llama-2-7b", 32, 4096, 32, 32, 128, 11008, 32000,
                  source=_hf("meta-llama/Llama-2-7b-hf")),
        ModelSpec("llama-2-13b", 40, 5120, 40, 40, 128, 13824, 32000,
                  source=_hf("meta-llama/Llama-2-13b-hf")),
        ModelSpec("llama-2-70b", 80, 8192, 64, 8, 128, 28672, 32000,
                  source=_hf("meta-llama/Llama-2-70b-hf")),
        ModelSpec("llama-3-8b", 32, 4096, 32, 8, 128, 14336, 128256,
                  source=_hf("meta-llama/Meta-Llama-3-8B")),
        ModelSpec("llama-3-70b", 80, 8192, 64, 8, 128, 28672, 128256,
                  source=_hf("meta-llama/Meta-Llama-3-70B")),
        ModelSpec("mistral-7b", 32, 4096, 32, 8, 128, 14336, 32000,
                  source=_hf("mistralai/Mistral-7B-v0.1")),
        ModelSpec("qwen2.5-7b", 28, 3584, 28, 4, 128, 18944, 152064, qkv_bias=True,
                  source=_hf("Qwen/Qwen2.5-7B")),
    )
}


def _lookup(table: dict, kind: str, name: str):
    spec = table.get(name.strip().lower())
    if spec is None:
        raise UnknownSpecError(f"unknown {kind} {name!r}; known: {', '.join(sorted(table))}")
    return spec


def get_gpu(name: str) -> GpuSpec:
    return _lookup(GPUS, "GPU", name)


def get_model(name: str) -> ModelSpec:
    return _lookup(MODELS, "model", name)
