"""`aps bench fidelity`: the simulator against published measurements of real GPUs.

Each row is one published figure (a real GPU serving a real model), its source and the
configuration it was measured in; the simulated figure is computed here, never stored. Rows of
one engine iteration or a static batch are priced with the performance model directly; rows
from serving benchmarks replay the benchmark's workload shape through a `Simulation` with the
engine's batching limits. The measured figures are kept as published: where a row misses, its
note says why (kernel choice, the engine's scheduler, the harness), and the model is not tuned
to it.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

import numpy as np

from aps.core import BatchConfig
from aps.core.tenant import Tenant
from aps.perf import BatchShape, make_perf_model
from aps.sim.simulator import SimConfig, Simulation
from aps.workload import Workload

# -- the workloads the serving benchmarks sent ---------------------------------------------

# vLLM's benchmark_serving.py on ShareGPT (seed 0, Llama-3 tokenizer, pairs with prompt <= 1024
# and prompt + completion <= 2048), as recorded in Lambda's raw results for 320 prompts
# (`input_lens`, `output_lens`; the run on 1x A100-80GB-SXM). Output lengths are what the model
# generated (EOS honoured); 0 means no text came back (one token is simulated).
_PROMPTS = """
13 25 27 10 329 29 399 328 4 205 16 372 403 9 12 770 227 8 14 390 659 59 76 744 619 279 344
9 10 45 11 4 80 768 317 40 619 8 298 16 17 696 575 11 7 281 12 147 481 770 336 6 331 9 45
222 802 481 93 641 22 15 16 77 32 689 178 9 628 480 42 336 24 515 761 112 113 348 82 467 245
11 24 343 13 387 258 32 28 225 248 35 133 98 27 23 58 363 203 140 140 230 310 521 768 317
298 336 491 19 10 59 48 20 20 54 107 53 72 18 10 768 7 933 239 277 26 35 462 386 25 23 17 20
44 661 631 349 53 71 37 10 21 37 496 8 9 353 10 595 5 49 286 305 56 43 52 310 35 7 7 238 10
143 660 191 72 39 258 312 49 9 15 561 76 561 501 8 66 15 303 19 455 27 143 688 9 31 361 21
117 8 12 775 338 176 349 166 419 401 307 169 647 21 9 34 12 37 45 154 8 10 18 253 486 611 96
19 62 529 15 30 10 445 680 762 441 77 12 276 178 22 159 95 366 4 7 770 8 45 480 90 32 329
768 72 86 53 83 419 44 14 56 28 707 235 27 668 17 427 44 370 8 674 455 185 68 19 132 304 9
34 39 54 768 661 404 240 25 95 60 24 12 85 66 62 462 22 241 25 32 13 175 31 342 43 339 144
233 16 10 11 269 587 8 233 10 48 9 335 22 61 29 692 7 332 512 13 128 24"""
_OUTPUTS = """
120 547 233 194 101 741 9 3 6 38 392 84 396 45 291 9 173 277 334 37 587 372 36 135 26 45 450
118 226 4 5 146 59 11 567 192 447 130 13 223 188 16 35 276 202 492 239 129 26 79 17 204 11
207 78 340 21 9 123 6 559 5 316 26 417 206 151 42 25 18 159 0 25 267 19 12 768 67 628 11 218
296 371 49 125 0 26 237 350 13 490 408 58 29 512 413 526 16 416 434 451 17 573 0 7 8 11 22 0
249 281 392 611 572 23 256 31 39 300 355 340 9 172 458 78 20 154 768 0 141 42 26 780 334 125
4 4 721 63 24 331 481 110 216 184 99 285 22 355 40 150 46 0 0 574 561 214 0 419 163 162 77
482 170 510 53 16 384 57 9 170 351 173 19 390 339 552 17 520 8 8 198 510 478 304 398 16 475
91 54 509 608 36 425 15 25 12 363 0 0 44 43 267 437 334 31 261 402 346 176 22 22 159 203 8
16 16 216 86 0 234 258 247 23 47 16 447 221 702 0 44 142 740 18 76 299 250 24 300 178 5 373
25 23 76 322 87 389 21 7 527 485 339 394 11 27 254 313 392 111 365 0 79 11 275 22 99 373 38
0 657 283 503 250 16 407 0 7 261 393 321 91 56 365 343 316 25 444 646 241 222 4 27 290 7 21
336 16 360 199 313 297 18 338 301 189 373 478 394 23 230 455 283 0 201 0 20 308 30 295"""
# Where the same 320 prompts on 1x H100-80GB-SXM generated another length (index: tokens).
_H100_OUTPUTS = {1: 613, 9: 31, 36: 476, 56: 17, 82: 382, 124: 147, 125: 240, 141: 482,
                 155: 572, 171: 356, 176: 77, 203: 474, 279: 322, 280: 322, 284: 342, 287: 441,
                 300: 381}
# The 10-prompt runs (the first 10 prompts above) generated these.
_BURST10_OUTPUTS = {"a100-80gb": (120, 507, 233, 194, 101, 741, 9, 3, 6, 31),
                    "h100-sxm": (120, 429, 233, 194, 101, 741, 9, 3, 6, 31)}


def _sharegpt(gpu: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n (prompt, output) pairs of the recorded run on `gpu`."""
    prompts = np.array(_PROMPTS.split(), dtype=np.int64)[:n]
    outputs = np.array(_OUTPUTS.split(), dtype=np.int64)
    if gpu == "h100-sxm":
        outputs[list(_H100_OUTPUTS)] = list(_H100_OUTPUTS.values())
    outputs = outputs[:n]
    if n == 10:
        outputs = np.array(_BURST10_OUTPUTS[gpu])
    return prompts, np.maximum(outputs, 1)


# -- the engines' batching limits ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Engine:
    name: str
    max_num_seqs: int
    max_num_batched_tokens: int
    chunked_prefill: bool
    gpu_mem_util: float


# vLLM 0.5.4 as Lambda ran it: --max-num-seqs 1024 --gpu-memory-utilization 0.95, max-model-len
# 2000/2048, so no chunked prefill and a token budget of max(max_model_len, 2048).
VLLM_054 = Engine("vLLM 0.5.4", 1024, 2048, False, 0.95)
# vLLM 0.6.0 as SGLang ran it: --num-scheduler-steps 10 (no chunked prefill with multi-step),
# --max_model_len 4096, defaults otherwise (256 sequences, 0.9 of memory).
VLLM_060 = Engine("vLLM 0.6.0", 256, 4096, False, 0.90)


@dataclass(frozen=True, slots=True)
class Serve:
    """A serving benchmark: `n` ShareGPT requests, all at once (rate None) or Poisson at
    `rate`; `recorded`: the recorded prompts and outputs of the run on `gpu`, else pairs drawn
    (seeded) from the 320 recorded ones."""

    model: str
    gpu: str
    tp: int
    engine: Engine
    n: int
    rate: float | None = None
    recorded: bool = False


def _serve_workload(s: Serve) -> Workload:
    rng = np.random.default_rng(0)
    if s.recorded:
        prompts, outputs = _sharegpt(s.gpu, s.n)
    else:
        pool_p, pool_o = _sharegpt("a100-80gb", 320)
        pick = rng.integers(0, len(pool_p), s.n)
        prompts, outputs = pool_p[pick], pool_o[pick]
    arrival = (np.zeros(s.n) if s.rate is None
               else np.cumsum(rng.exponential(1.0 / s.rate, s.n)))
    return Workload.build("sharegpt", [Tenant("bench")], arrival, np.zeros(len(prompts)),
                          prompts, outputs)


def _simulate(s: Serve) -> dict:
    perf = make_perf_model(s.model, s.gpu, s.tp, gpu_mem_util=s.engine.gpu_mem_util)
    e = s.engine
    batch = BatchConfig(max_num_seqs=e.max_num_seqs,
                        max_num_batched_tokens=e.max_num_batched_tokens,
                        chunked_prefill=e.chunked_prefill,
                        kv_capacity_tokens=int(perf.kv_capacity_tokens))
    # vLLM serves in arrival order
    return Simulation(_serve_workload(s), perf, SimConfig(policy="fifo", batch=batch)).run()


# -- single iterations and static batches, priced by the performance model ------------------


def _prefill_ms(perf, tokens: int) -> float:
    """One request's prompt in one iteration (its time to first token at batch 1)."""
    return perf.iteration_time(BatchShape.build(prefill=[(tokens, 0)])) * 1e3


def _static_steps(perf, batch: int, prompt: int, out: int) -> list[float]:
    """Iteration times of a static batch: every prompt in one iteration, then out - 1 decodes."""
    steps = [perf.iteration_time(BatchShape.build(prefill=[(prompt, 0)] * batch))]
    for j in range(1, out):
        steps.append(perf.iteration_time(BatchShape.build(decode_ctx=[prompt + j] * batch)))
    return steps


def _static_tok_s(perf, batch: int, prompt: int, out: int) -> float:
    """Output tokens over the batch's whole time, as both static benchmarks count them."""
    return batch * out / sum(_static_steps(perf, batch, prompt, out))


def _static_p50_ms(perf, batch: int, prompt: int, out: int) -> float:
    """Median time of the batch's decode steps: its per-token latency."""
    return statistics.median(_static_steps(perf, batch, prompt, out)[1:]) * 1e3


# -- the rows ------------------------------------------------------------------------------

LAMBDA = ("Lambda, 'LLMs inference benchmarks, using vLLM, on Lambda Cloud', "
          "github.com/LambdaLabsML/vllm-benchmark: benchmark_v0.md and the raw results "
          "results/prompt_{10,320}/1x{A100,H100}-80GB-SXM/Meta-Llama-3-8B-Instruct_tp1_"
          "len{2000,2048}.json (2024-09-07); vllm/vllm-openai:v0.5.4, BF16, TP1, "
          "benchmark_serving.py on ShareGPT, all prompts at once (request rate inf), "
          "--max-num-seqs 1024 --gpu-memory-utilization 0.95 --max-model-len 2000/2048")
SGLANG = ("SGLang, 'How to reproduce the benchmark results for SGLang v0.3.0 compared to vLLM "
          "v0.6.0', github.com/sgl-project/sglang benchmark/benchmark_vllm_060/README.md "
          "(2024-09): vLLM 0.6.0 --num-scheduler-steps 10 --max_model_len 4096 (0.9 of memory, "
          "256 sequences), BF16, sglang.bench_serving on ShareGPT, Poisson arrivals")
TRTLLM = ("NVIDIA, 'Performance of TensorRT-LLM', github.com/NVIDIA/TensorRT-LLM "
          "docs/source/performance.md (release 0.6.1; its first-token table is from 0.5): "
          "TensorRT-LLM (not vLLM), FP16, static batches (its C++ benchmark), A100 (80 GB: "
          "the batch of 384 needs it)")
LMDEPLOY = ("InternLM, 'Benchmark on A100 (FP16)', github.com/InternLM/lmdeploy "
            "docs/en/benchmark/a100_fp16.md: LMDeploy v0.1.0a1, TurboMind engine (not vLLM), "
            "A100-80G, CUDA 11.8, static inference benchmark")

_TURBOMIND = ("TurboMind fuses a layer's kernels; the model charges per-layer launch costs "
              "fitted on Vidur's PyTorch profiles plus 1 ms a step (2.5 of its 10.9 ms)")
_KV_READ = ("TensorRT-LLM's decode attention reads the KV cache faster than the 70% of HBM "
            "peak the model assumes for Ampere (kv_bw_eff, not fitted: no attention profiles)")
_CPU_054 = ("vLLM 0.5.4 does CPU work every step (scheduling, sampling, detokenizing ~300 "
            "requests) that the GPU waits for (the report saw ~60% GPU power under it and "
            "credits v0.6.0's 2x to removing it; the model charges 1 ms a step), and its "
            "prefill-only steps pause decodes where the simulator mixes them")
_TTFT = ("the model prices the one prefill iteration of 1,369 tokens; the published TTFT also "
         "holds the HTTP round trip, tokenizing, scheduling and detokenizing")
_PREFILL_FIRST = ("vLLM 0.6.0 without chunked prefill runs prefill-only steps that pause all "
                  "decodes and, with 10-step scheduling, refills seats only between groups; the "
                  "simulator puts whole prompts into decode steps and refills every step")
_DRAWN = ("lengths drawn from Lambda's 320 ShareGPT pairs (mean output 204 tokens; the max run's "
          "4,132 tokens/s at 21.27 requests/s is 194)")


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    gpu: str
    model: str
    tp: int
    shape: str  # decode at concurrency 1, at a batch, prefill-heavy, decode-heavy, curve
    config: str  # batch or load, prompt and output lengths
    metric: str
    unit: str
    measured: float
    engine: str
    source: str
    case: tuple  # ("serve", Serve, metric) or (pricing function, its arguments)
    note: str = ""


def _serve(model: str, gpu: str, tp: int, n: int, rate: float | None = None) -> Serve:
    if model == "llama-3-8b" and rate is None and n <= 320:  # Lambda's recorded runs
        return Serve(model, gpu, tp, VLLM_054, n, None, recorded=True)
    return Serve(model, gpu, tp, VLLM_060, n, rate)


def _row(key, gpu, model, tp, shape, config, metric, unit, measured, engine, source, case,
         note="") -> Row:
    if case[0] == "serve":
        case = ("serve", _serve(model, gpu, tp, *case[1:-1]), case[-1])
    return Row(key, gpu, model, tp, shape, config, metric, unit, measured, engine, source,
               case, note)


A100, H100, L2, L3, L70 = "a100-80gb", "h100-sxm", "llama-2-7b", "llama-3-8b", "llama-2-70b"
ROWS: tuple[Row, ...] = (
    _row("lmdeploy-a100-b1", A100, L2, 1, "decode, concurrency 1", "batch 1, prompt 1, output "
         "128", "output tokens/s", "tok/s", 100.02, "LMDeploy 0.1.0a1", LMDEPLOY,
         (_static_tok_s, 1, 1, 128), _TURBOMIND),
    _row("lambda-a100-10-tpot", A100, L3, 1, "decode, concurrency <= 10", "10 ShareGPT prompts "
         "at once", "median TPOT", "ms", 11.9557, "vLLM 0.5.4", LAMBDA,
         ("serve", 10, "tpot_p50"), "replays the run's own 10 prompt and output lengths"),
    _row("lambda-h100-10-tpot", H100, L3, 1, "decode, concurrency <= 10", "10 ShareGPT prompts "
         "at once", "median TPOT", "ms", 7.5583, "vLLM 0.5.4", LAMBDA,
         ("serve", 10, "tpot_p50"), "replays the run's own 10 prompt and output lengths"),
    _row("lmdeploy-a100-b64", A100, L2, 1, "decode, batch 64", "batch 64, prompt 1, output "
         "128", "p50 per-token latency", "ms", 12.0, "LMDeploy 0.1.0a1", LMDEPLOY,
         (_static_p50_ms, 64, 1, 128), "published to the millisecond (0.012 s)"),
    _row("trtllm-a100-b384", A100, L2, 1, "decode, batch 384", "batch 384, input 128, output "
         "128", "output tokens/s", "tok/s", 5586, "TensorRT-LLM 0.6.1", TRTLLM,
         (_static_tok_s, 384, 128, 128), "decode dominates: " + _KV_READ),
    _row("lambda-a100-320-thr", A100, L3, 1, "decode, batch up to 320", "320 ShareGPT prompts "
         "at once", "output tokens/s", "tok/s", 3107.49, "vLLM 0.5.4", LAMBDA,
         ("serve", 320, "out_tok_s"), _CPU_054),
    _row("lambda-a100-320-tpot", A100, L3, 1, "decode, batch up to 320", "320 ShareGPT prompts "
         "at once", "median TPOT", "ms", 40.858, "vLLM 0.5.4", LAMBDA,
         ("serve", 320, "tpot_p50"), _CPU_054),
    _row("lambda-h100-320-thr", H100, L3, 1, "decode, batch up to 320", "320 ShareGPT prompts "
         "at once", "output tokens/s", "tok/s", 6026.61, "vLLM 0.5.4", LAMBDA,
         ("serve", 320, "out_tok_s"), _CPU_054),
    _row("lambda-h100-320-tpot", H100, L3, 1, "decode, batch up to 320", "320 ShareGPT prompts "
         "at once", "median TPOT", "ms", 20.034, "vLLM 0.5.4", LAMBDA,
         ("serve", 320, "tpot_p50"), _CPU_054),
    _row("trtllm-a100-ttft-7b", A100, L2, 1, "prefill, long prompt", "batch 1, input 2048",
         "first-token latency", "ms", 133, "TensorRT-LLM 0.5", TRTLLM, (_prefill_ms, 2048)),
    _row("trtllm-a100-ttft-70b", A100, L70, 4, "prefill, long prompt", "batch 1, input 2048",
         "first-token latency", "ms", 377, "TensorRT-LLM 0.5", TRTLLM, (_prefill_ms, 2048)),
    _row("trtllm-a100-prefill-heavy", A100, L2, 1, "prefill-heavy", "batch 52, input 2048, "
         "output 128", "output tokens/s", "tok/s", 591, "TensorRT-LLM 0.6.1", TRTLLM,
         (_static_tok_s, 52, 2048, 128), "half the simulated time is the 106K-token prefill, half "
         "decode at 2K context: " + _KV_READ),
    _row("lambda-a100-10-ttft", A100, L3, 1, "prefill, 10 prompts at once", "10 ShareGPT "
         "prompts (1,369 tokens)", "median TTFT", "ms", 139.063, "vLLM 0.5.4", LAMBDA,
         ("serve", 10, "ttft_p50"), _TTFT),
    _row("lambda-h100-10-ttft", H100, L3, 1, "prefill, 10 prompts at once", "10 ShareGPT "
         "prompts (1,369 tokens)", "median TTFT", "ms", 62.195, "vLLM 0.5.4", LAMBDA,
         ("serve", 10, "ttft_p50"), _TTFT),
    _row("trtllm-a100-decode-heavy", A100, L2, 1, "decode-heavy", "batch 60, input 128, output "
         "2048", "output tokens/s", "tok/s", 1928, "TensorRT-LLM 0.6.1", TRTLLM,
         (_static_tok_s, 60, 128, 2048), "long-context decode dominates: " + _KV_READ),
    _row("sglang-a100-rps4", A100, L3, 1, "curve: request rate vs TPOT", "ShareGPT, 4 "
         "requests/s, 1,200 requests", "median TPOT", "ms", 14.14, "vLLM 0.6.0", SGLANG,
         ("serve", 1200, 4.0, "tpot_p50"), _DRAWN),
    _row("sglang-a100-rps8", A100, L3, 1, "curve: request rate vs TPOT", "ShareGPT, 8 "
         "requests/s, 2,400 requests", "median TPOT", "ms", 17.09, "vLLM 0.6.0", SGLANG,
         ("serve", 2400, 8.0, "tpot_p50"), _DRAWN + "; " + _PREFILL_FIRST),
    _row("sglang-a100-max", A100, L3, 1, "curve: request rate vs TPOT", "ShareGPT, 5,000 "
         "requests at once", "output tokens/s", "tok/s", 4132.37, "vLLM 0.6.0", SGLANG,
         ("serve", 5000, None, "out_tok_s"), _DRAWN + "; " + _PREFILL_FIRST),
    _row("sglang-h100-rps4", H100, "llama-3-70b", 4, "curve: request rate vs TPOT", "ShareGPT, "
         "4 requests/s, 1,200 requests", "median TPOT", "ms", 23.58, "vLLM 0.6.0", SGLANG,
         ("serve", 1200, 4.0, "tpot_p50"), _DRAWN),
    _row("sglang-h100-rps8", H100, "llama-3-70b", 4, "curve: request rate vs TPOT", "ShareGPT, "
         "8 requests/s, 2,400 requests", "median TPOT", "ms", 29.15, "vLLM 0.6.0", SGLANG,
         ("serve", 2400, 8.0, "tpot_p50"), _DRAWN + "; " + _PREFILL_FIRST),
    _row("sglang-h100-max", H100, "llama-3-70b", 4, "curve: request rate vs TPOT", "ShareGPT, "
         "5,000 requests at once", "output tokens/s", "tok/s", 3700.64, "vLLM 0.6.0", SGLANG,
         ("serve", 5000, None, "out_tok_s"), _DRAWN + "; " + _PREFILL_FIRST),
)

_METRICS = {"tpot_p50": lambda r: r["tpot_s"]["p50"] * 1e3,
            "ttft_p50": lambda r: r["ttft_s"]["p50"] * 1e3,
            "out_tok_s": lambda r: r["output_tokens_per_s"]}


def simulated(row: Row, cache: dict | None = None) -> float:
    """The simulator's figure for `row`; serving runs are shared between rows via `cache`."""
    cache = {} if cache is None else cache
    if row.case[0] == "serve":
        _, spec, metric = row.case
        if spec not in cache:
            cache[spec] = _simulate(spec)
        return _METRICS[metric](cache[spec])
    fn, *args = row.case
    perf = make_perf_model(row.model, row.gpu, row.tp)
    return fn(perf, *args)


def run(keys: list[str] | None = None) -> list[dict]:
    """Every row (or those named): measured, simulated and the signed error in percent."""
    cache: dict = {}
    out = []
    for row in ROWS:
        if keys and row.key not in keys:
            continue
        d = {k: v for k, v in asdict(row).items() if k != "case"}
        d["simulated"] = simulated(row, cache)
        d["error_pct"] = (d["simulated"] / row.measured - 1.0) * 100.0
        out.append(d)
    return out
