"""A request and its lifecycle.

    WAITING ──> RUNNING ──> FINISHED
       │  ^        │
       │  └── PREEMPTED (recompute: its KV is dropped, it waits again)
       v
    THROTTLED (over its tenant's limits, outside the run queue) ──> WAITING

Any live state may end in CANCELLED; a request refused at submit is REJECTED; a request the
executor could not run is FAILED; one still waiting to start at its deadline is EXPIRED. Those
five are terminal and each request reaches one of them exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Status(str, Enum):
    WAITING = "waiting"
    THROTTLED = "throttled"
    RUNNING = "running"
    PREEMPTED = "preempted"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    FAILED = "failed"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({Status.FINISHED, Status.CANCELLED, Status.REJECTED, Status.FAILED,
                       Status.EXPIRED})


@dataclass(slots=True, eq=False)
class Request:
    """One inference request. Token counts are what the scheduler plans with.

    `max_tokens` is the most output tokens the request may produce; in the simulator it is
    the trace's true output length, in the server the engine may stop earlier (EOS).
    """

    request_id: str
    tenant_id: str
    prompt_tokens: int
    max_tokens: int
    arrival: float
    bid: int | None = None  # None: the tenant's default bid; above its max_bid: clamped to it
    model: str = ""  # what it asks for: picks its prices (and, upstream, its pool)
    max_queue_s: float | None = None  # the client's limit on waiting to start (the tenant's may
    #                                   be shorter: the shorter one counts)

    status: Status = Status.WAITING
    num_computed_tokens: int = 0  # tokens whose KV is in the cache
    num_output_tokens: int = 0
    num_preemptions: int = 0
    reserved_tokens: int = 0  # taken from the tenant's bucket, refunded in part at the end
    first_scheduled: float | None = None
    first_token: float | None = None
    finished: float | None = None
    reason: str = ""  # why it was rejected, failed or stopped
    queue_seq: int = -1  # set by the waiting queue: its entry, for O(1) lazy removal
    demoted: bool = False  # over its tenant's limits: waits in the spare-capacity band
    deadline: float | None = None  # when it must have started, or it expires (set at submit)
    price: tuple[float, float] = (0.0, 0.0)  # dollars per prompt and per output token
    reserved_usd: float = 0.0  # held from its tenant's budget, settled at the end

    def cost_usd(self, prompt_tokens: int, output_tokens: int) -> float:
        return prompt_tokens * self.price[0] + output_tokens * self.price[1]

    @property
    def num_pending_tokens(self) -> int:
        """Tokens to compute before the next output token can be sampled."""
        return self.prompt_tokens + self.num_output_tokens - self.num_computed_tokens

    @property
    def is_prefilling(self) -> bool:
        return self.num_pending_tokens > 1

    @property
    def queue_time(self) -> float | None:
        return None if self.first_scheduled is None else self.first_scheduled - self.arrival

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.arrival

    @property
    def e2e(self) -> float | None:
        return None if self.finished is None else self.finished - self.arrival

    @property
    def tpot(self) -> float | None:
        """Mean time per output token after the first."""
        if self.finished is None or self.first_token is None or self.num_output_tokens < 2:
            return None
        return (self.finished - self.first_token) / (self.num_output_tokens - 1)
