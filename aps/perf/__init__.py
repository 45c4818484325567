"""GPU performance models: specs as data, roofline iteration time, KV capacity, cost.

    perf = make_perf_model("llama-3-8b", "h100-sxm", tp=1)
    t = perf.iteration_time(BatchShape.build(prefill=[(512, 0)], decode_ctx=[300, 1200]))
    mfu = perf.iteration_flops(shape) / (perf.peak_flops * t)

Pure functions of numbers; nothing here imports the rest of the project.
"""

from aps.perf.base import (
    BatchShape,
    DecodeTerms,
    PerfModel,
    cost_per_1m_tokens,
    decode_iters_within,
    decode_run_within,
    decode_run_time,
    decode_time,
)
from aps.perf.factory import make_perf_model
from aps.perf.kernels import KernelFit
from aps.perf.roofline import ModelDoesNotFitError, RooflineModel
from aps.perf.seed import SEED_NAME, SeedModel
from aps.perf.specs import GPUS, MODELS, GpuSpec, ModelSpec, UnknownSpecError, get_gpu, get_model

__all__ = [
    "GPUS",
    "MODELS",
    "SEED_NAME",
    "BatchShape",
    "DecodeTerms",
    "GpuSpec",
    "KernelFit",
    "ModelDoesNotFitError",
    "ModelSpec",
    "PerfModel",
    "RooflineModel",
    "SeedModel",
    "UnknownSpecError",
    "cost_per_1m_tokens",
    "decode_iters_within", "decode_run_time", "decode_run_within",
    "decode_time",
    "get_gpu",
    "get_model",
    "make_perf_model",
]
