"""Build a performance model from names."""

from __future__ import annotations

from aps.perf.base import PerfModel
from aps.perf.roofline import RooflineModel
from aps.perf.seed import SEED_NAME, SeedModel
from aps.perf.specs import GPUS, UnknownSpecError, get_gpu, get_model


def make_perf_model(
    model: str = "llama-2-7b",
    gpu: str = "a100-80gb",
    tp: int = 1,
    gpu_mem_util: float = 0.9,
    *,
    price_per_hour: float | None = None,
    iteration_overhead_s: float = 1e-3,
    check_memory: bool = True,
) -> PerfModel:
    """A roofline model of `model` on `tp` x `gpu`, or the seeds' toy when either name is
    "seed-a100". `price_per_hour` (USD per GPU-hour) overrides the table's price.

    With `check_memory` (the default) a model whose weights do not fit raises
    `ModelDoesNotFitError` here rather than at the first use of `kv_capacity_tokens`.
    """
    if SEED_NAME in (model.strip().lower(), gpu.strip().lower()):
        seed = SeedModel()
        if price_per_hour is not None:
            seed.price = price_per_hour
        return seed
    try:
        gpu_spec = get_gpu(gpu)
    except UnknownSpecError:
        known = ", ".join([*sorted(GPUS), SEED_NAME])
        raise UnknownSpecError(f"unknown GPU {gpu!r}; known: {known}") from None
    perf = RooflineModel(
        get_model(model),
        gpu_spec,
        tp=tp,
        gpu_mem_util=gpu_mem_util,
        iteration_overhead_s=iteration_overhead_s,
        price_override=price_per_hour,
    )
    if check_memory:
        _ = perf.kv_capacity_tokens  # raises ModelDoesNotFitError with the numbers
    return perf
