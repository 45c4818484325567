"""Compare the model with measured operator times (Vidur's public profiles).

`linear_layer_errors(path)` prices every row of an `mlp_<gpu>_<model>.csv` file (one layer's
QKV + O + gate/up + down GEMM medians, ms) with `linear_layer_time`; `all_reduce_errors(path)`
prices every single-node row of an `all_reduce_<node>.csv` file with the GPU's all-reduce model.
Rows where workers span several nodes (`devices_per_node < num_workers`) are left out: tensor
parallelism here stays inside one NVLink node. See data/calibration/README.md for the files.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from aps.perf.roofline import RooflineModel
from aps.perf.specs import get_gpu, get_model

# Vidur's profiling devices: A100 80GB SXM4 and H100 80GB SXM5 in DGX nodes.
PROFILE_GPUS = {"a100": "a100-80gb", "h100": "h100-sxm"}
PROFILE_MODELS = {
    "Llama-2-7b-hf": "llama-2-7b",
    "Llama-2-70b-hf": "llama-2-70b",
    "Meta-Llama-3-8B": "llama-3-8b",
}
LINEAR_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")


@dataclass(frozen=True, slots=True)
class RowError:
    label: str  # e.g. "tokens=520 tp=2" or "bytes=1048576 workers=8"
    measured_s: float
    predicted_s: float

    @property
    def rel_error(self) -> float:
        return self.predicted_s / self.measured_s - 1.0


@dataclass(frozen=True, slots=True)
class ErrorSummary:
    rows: int
    worst: RowError
    mean_abs: float
    median_abs: float

    def __str__(self) -> str:
        w = self.worst
        return (
            f"{self.rows} rows, mean |err| {self.mean_abs:.1%}, median {self.median_abs:.1%}, "
            f"worst {w.rel_error:+.1%} ({w.label}: measured {w.measured_s * 1e3:.3f} ms, "
            f"model {w.predicted_s * 1e3:.3f} ms)"
        )


def default_profile_dir() -> Path:
    """data/calibration/vidur-profiles of the source tree this package sits in."""
    return Path(__file__).resolve().parents[2] / "data" / "calibration" / "vidur-profiles"


def summarize(errors: list[RowError]) -> ErrorSummary:
    if not errors:
        raise ValueError("no rows to summarize")
    abs_errs = sorted(abs(e.rel_error) for e in errors)
    worst = max(errors, key=lambda e: abs(e.rel_error))
    return ErrorSummary(
        len(errors), worst, sum(abs_errs) / len(abs_errs), abs_errs[len(abs_errs) // 2]
    )


def within(errors: list[RowError], tolerance: float) -> float:
    """Fraction of rows whose relative error is at most `tolerance`."""
    return sum(abs(e.rel_error) <= tolerance for e in errors) / len(errors)


def _profile_key(path: Path, prefix: str) -> tuple[str, str]:
    stem = path.stem.removeprefix(prefix)
    device, _, rest = stem.partition("_")
    return device, rest


def linear_layer_errors(path: str | Path) -> list[RowError]:
    """Model vs measured linear-layer time for every row of one mlp_*.csv profile."""
    path = Path(path)
    device, model_name = _profile_key(path, "mlp_")
    model = get_model(PROFILE_MODELS[model_name])
    gpu = get_gpu(PROFILE_GPUS[device])
    perfs: dict[int, RooflineModel] = {}
    errors = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            _check_shape(row, model, path)
            tp = int(row["num_tensor_parallel_workers"])
            n = int(row["num_tokens"])
            perf = perfs.get(tp) or perfs.setdefault(tp, RooflineModel(model, gpu, tp=tp))
            measured = sum(float(row[f"time_stats.{op}.median"]) for op in LINEAR_OPS) / 1e3
            errors.append(RowError(f"tokens={n} tp={tp}", measured, perf.linear_layer_time(n)))
    return errors


def _check_shape(row: dict[str, str], model, path: Path) -> None:
    """The profile's layer must be the spec's layer, or the comparison means nothing."""
    shape = (int(row["n_embd"]), int(row["n_head"]), int(row["n_kv_head"]),
             int(row["n_expanded_embd"]))
    spec = (model.hidden_size, model.num_heads, model.num_kv_heads, model.intermediate_size)
    if shape != spec:
        raise ValueError(f"{path.name}: layer shape {shape} does not match {model.name} {spec}")


def all_reduce_errors(
    path: str | Path, min_bytes: float = 1e6, max_bytes: float = 100e6
) -> list[RowError]:
    """Model vs measured all-reduce time, single-node rows with min_bytes <= size <= max_bytes."""
    path = Path(path)
    device, _ = _profile_key(path, "all_reduce_")
    gpu = get_gpu(PROFILE_GPUS[device])
    errors = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            workers, size = int(row["num_workers"]), int(row["size"])
            if int(row["devices_per_node"]) != workers or not min_bytes <= size <= max_bytes:
                continue
            measured = float(row["time_stats.all_reduce.median"]) / 1e3
            label = f"bytes={size} workers={workers}"
            errors.append(RowError(label, measured, gpu.all_reduce_time(size, workers)))
    return errors
