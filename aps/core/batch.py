"""What a scheduler step decides, its limits, and why admission stopped."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from aps.core.errors import ConfigError
from aps.core.request import Request


class StopReason(str, Enum):
    """Why the step admitted no more waiting requests."""

    NO_WAITING = "no_waiting"
    MAX_SEQS = "max_num_seqs"
    TOKEN_BUDGET = "token_budget"
    KV_CACHE = "kv_cache"
    PREEMPTED = "preempted"  # running requests were preempted this step: admit nothing
    WINDOW = "window"  # micro: the batching window is still open
    BATCH_RUNNING = "batch_running"  # micro: the current batch runs to completion
    IN_FLIGHT_TOKENS = "in_flight_tokens"  # upstream: the servers' token capacity is taken


MODES = ("continuous", "micro", "upstream")


@dataclass(slots=True)
class BatchConfig:
    """Batch formation limits.

    `continuous` (vLLM, SGLang, TGI): every iteration decodes the running requests and admits
    waiting ones in policy order while seats, the token budget and KV blocks allow; long prompts
    are prefilled in chunks. `micro` (the seed documents): gather requests for `window_s` or
    until `max_batch`, admit what fits the KV cache, run that batch to completion. `upstream`
    (a gateway in front of inference servers): admit waiting requests in policy order while
    seats (`max_num_seqs`: the servers' in-flight capacity) and tokens (`kv_capacity_tokens`:
    the in-flight token capacity, reserving prompt + max_tokens for a request's whole life)
    allow; the servers do the iterations, the driver reports progress as tokens stream back.
    """

    mode: str = "continuous"
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    chunked_prefill: bool = True
    priority_preemption: bool = False  # a waiting request may evict a lower-ranked running one
    window_s: float = 0.010
    max_batch: int = 16
    adaptive_window: bool = False  # micro: the entropy-driven governor sets the window
    # micro: wait for the window only while the GPU was busy more than this share of the last
    # second (the seeds' "only batch when utilization > 80%"); below it, dispatch at once
    batch_above_utilization: float | None = None
    kv_capacity_tokens: int = 32768
    block_size: int = 16
    max_waiting: int | None = None  # bound on queued requests (all tenants)
    max_waiting_per_tenant: int | None = None
    # upstream: the last seats go only to a request whose tenant has nothing running, so a
    # newcomer starts at once even while another tenant could fill every seat (a server's own
    # queue would otherwise make it wait for a whole request to finish)
    reserved_seats: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"batch mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("max_num_seqs", "max_num_batched_tokens", "max_batch",
                     "kv_capacity_tokens", "block_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.reserved_seats < self.max_num_seqs:
            raise ConfigError(f"reserved_seats must be in 0..max_num_seqs-1, got {self.reserved_seats}")
        if self.window_s < 0:
            raise ConfigError(f"window_s must be >= 0, got {self.window_s}")
        u = self.batch_above_utilization
        if u is not None and not 0 < u <= 1:
            raise ConfigError(f"batch_above_utilization must be in (0, 1], got {u}")
        if self.kv_capacity_tokens < self.block_size:
            raise ConfigError("kv_capacity_tokens must hold at least one block")


@dataclass(slots=True)
class StepPlan:
    """One iteration's decision: what runs now.

    `scheduled` pairs each request with the tokens to compute for it this iteration: the whole
    pending prompt or a chunk of it (prefill), or 1 (decode). Hand the plan back to
    `Scheduler.complete_step` once the iteration has run. (What ended is not in the plan: the
    scheduler reports every ending once, as it happens, through `Scheduler.pop_ended`.)
    """

    now: float
    scheduled: list[tuple[Request, int]] = field(default_factory=list)
    preempted: list[Request] = field(default_factory=list)
    stop_reason: StopReason = StopReason.NO_WAITING
    next_wakeup: float | None = None  # when idle: the earliest time a step could do something
    # `shape()`, once known: summed by the admission strategy as it formed the batch, or by
    # the first call
    sums: tuple[int, float, int, int, int] | None = field(default=None, repr=False)

    @property
    def num_tokens(self) -> dict[str, int]:
        return {req.request_id: n for req, n in self.scheduled}

    @property
    def num_batched_tokens(self) -> int:
        return sum(n for _, n in self.scheduled)

    def shape(self) -> tuple[int, float, int, int, int]:
        """What an iteration time model needs: `(prefill tokens, prefill attention pairs,
        prefill KV tokens read, decode requests, decode context sum)`, as planned (ask before
        the plan is accounted: accounting moves the requests' token counts).

        A prefill chunk of n tokens after c0 cached ones attends over n * (c0 + (n + 1) / 2)
        query-key pairs and reads c0 + n KV entries; a decode reads its whole context.
        """
        if self.sums is None:
            self.sums = shape_of(self.scheduled)
        return self.sums

    def __bool__(self) -> bool:
        return bool(self.scheduled)


def shape_of(scheduled: list[tuple[Request, int]],
             start: tuple[int, float, int, int, int] = (0, 0, 0, 0, 0)
             ) -> tuple[int, float, int, int, int]:
    """`StepPlan.shape` of these (request, tokens) pairs, added to `start` (the sums of the
    pairs planned before them)."""
    p, pairs, kv, d, ctx = start
    for req, n in scheduled:
        c0 = req.num_computed_tokens
        if n == 1 and req.num_output_tokens and c0 + 1 == req.prompt_tokens + req.num_output_tokens:
            d += 1  # a decode: the one token sampled last
            ctx += c0 + 1
        else:
            p += n
            pairs += n * (c0 + (n + 1) / 2)
            kv += c0 + n
    return p, pairs, kv, d, ctx
