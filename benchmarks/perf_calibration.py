"""Print how far the roofline model is from Vidur's measured operator times.

    python benchmarks/perf_calibration.py [profile_dir]

One line per profile: rows, mean/median/worst relative error, share of rows within 15% (GEMMs)
or 25% (all-reduce, 1-100 MB, single node). Then a few derived figures per configuration.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aps.perf import BatchShape, cost_per_1m_tokens, make_perf_model
from aps.perf.calibration import (
    all_reduce_errors,
    default_profile_dir,
    linear_layer_errors,
    summarize,
    within,
)


def report_profiles(directory: Path) -> None:
    for path in sorted(directory.glob("mlp_*.csv")):
        errors = linear_layer_errors(path)
        print(f"{path.name:32s} {summarize(errors)}; within 15%: {within(errors, 0.15):.1%}")
    for path in sorted(directory.glob("all_reduce_*.csv")):
        errors = all_reduce_errors(path)
        print(f"{path.name:32s} {summarize(errors)}; within 25%: {within(errors, 0.25):.1%}")


def report_configs() -> None:
    print("\nconfig                      batch  ms/iter  tok/s     MFU   MBU   $/1M tok")
    for model, gpu, tp in [
        ("llama-2-7b", "a100-80gb", 1),
        ("llama-3-8b", "h100-sxm", 1),
        ("llama-3-70b", "h100-sxm", 4),
        ("llama-2-70b", "a100-80gb", 8),
    ]:
        perf = make_perf_model(model, gpu, tp)
        for batch in (1, 32, 256):
            shape = BatchShape(num_decode=batch, decode_ctx_sum=batch * 1000)
            t = perf.iteration_time(shape)
            mfu = perf.iteration_flops(shape) / (perf.peak_flops * t)
            mbu = perf.iteration_bytes(shape) / (perf.peak_bandwidth * t)
            cost = cost_per_1m_tokens(perf.price_per_hour, batch, t)
            print(f"{perf.name:28s}{batch:5d} {t * 1e3:8.2f} {batch / t:6.0f} "
                  f"{mfu:7.3f} {mbu:5.2f} {cost:9.2f}")


if __name__ == "__main__":
    report_profiles(Path(sys.argv[1]) if len(sys.argv) > 1 else default_profile_dir())
    report_configs()
