"""Upstream admission (a gateway in front of inference servers): the servers run the
iterations; the gateway owns the queue and admits in policy order while the servers have seats
and in-flight tokens.

A request reserves prompt + max_tokens for its whole life (the server's KV use is not visible
from here). Running requests are the servers' business: they are not planned again; the driver
reports on them with `progress`, then ends them with the Scheduler's `finish` or `fail`, or
puts them back with `requeue` (a retry elsewhere).
"""
from __future__ import annotations

from dataclasses import dataclass

from aps.core.batch import StepPlan, StopReason
from aps.core.batching.base import Admission
from aps.core.errors import InvalidRequest
from aps.core.request import Request, Status

RUNNING = Status.RUNNING


@dataclass(slots=True)
class PoolRoom:
    """What one model's pool of servers can take: seats (requests) and in-flight tokens."""

    seats: int
    tokens: int


class UpstreamAdmission(Admission):
    """With `set_pools`, each model's requests are admitted against its own pool's room, from
    its own queue (`ByModel`); otherwise against the scheduler's seats and token capacity."""

    def __init__(self, sched):
        super().__init__(sched)
        self.pools: dict[str, PoolRoom] = {}

    def schedule(self, plan: StepPlan, now: float) -> StopReason:
        """The last `reserved_seats` seats go only to tenants with nothing running: the best
        ranked of their waiting requests (under fair share, even when a running tenant's
        request ranks first, as after a counter tie; under other policies, only the head).
        """
        s = self.sched
        if not self.pools:
            return self._admit(plan, now, s.policy, s.batch.max_num_seqs, None, s.running)
        reasons = [self._admit(plan, now, s.policy.part(model), room.seats, room.tokens,
                               [r for r in s.running if r.model == model])
                   for model, room in self.pools.items()]
        blocked = [r for r in reasons if r is not StopReason.NO_WAITING]
        return blocked[0] if blocked else StopReason.NO_WAITING

    def _admit(self, plan: StepPlan, now: float, queue, seats: int, tokens: int | None,
               running: list[Request]) -> StopReason:
        """Admit from `queue` while `seats` and `tokens` in flight allow (None: the
        scheduler's token capacity), `running` holding what is there already."""
        s = self.sched
        kv, b = s.kv, s.batch
        open_seats = max(1, seats - b.reserved_seats)
        in_flight = sum(r.prompt_tokens + r.max_tokens for r in running)
        running = list(running)
        while True:
            head = queue.peek()
            if head is None:
                return StopReason.NO_WAITING
            if len(running) >= seats:
                return StopReason.MAX_SEQS
            if len(running) >= open_seats:
                head = self._newcomer(queue, running)
                if head is None:
                    return StopReason.MAX_SEQS  # the reserved seats wait for a tenant with none
            total = head.prompt_tokens + head.max_tokens
            if not kv.can_allocate(head.request_id, total) or \
                    (tokens is not None and in_flight + total > tokens):
                return StopReason.IN_FLIGHT_TOKENS
            s.policy.remove(head)  # the whole queue's: it counts what waits
            s.start(head, now)
            kv.allocate(head.request_id, total)
            plan.scheduled.append((head, head.prompt_tokens))
            running.append(head)
            in_flight += total

    @staticmethod
    def _newcomer(queue, running: list[Request]) -> Request | None:
        """The best-ranked waiting request whose tenant has nothing running."""
        busy = {r.tenant_id for r in running}
        idle = [r for r in queue.heads() if r.tenant_id not in busy]
        return min(idle, key=queue.rank, default=None)

    # -- what the driver reports -----------------------------------------------------------

    def set_seats(self, max_num_seqs: int) -> None:
        """The seats follow the servers that can take requests now (0: none can). Running
        requests over a lowered limit finish normally; admission waits for them."""
        if max_num_seqs < 0:
            raise InvalidRequest(f"max_num_seqs must be >= 0, got {max_num_seqs}")
        self.sched.batch.max_num_seqs = max_num_seqs

    def set_pools(self, rooms: dict[str, tuple[int, int]]) -> None:
        """Each model's pool: the seats its servers can take now (following their health) and
        its in-flight token capacity."""
        for model, (seats, tokens) in rooms.items():
            if seats < 0 or tokens < 1:
                raise InvalidRequest(f"pool {model!r}: seats >= 0 and tokens >= 1, got "
                                     f"{seats} and {tokens}")
        self.pools = {model: PoolRoom(seats, tokens) for model, (seats, tokens) in rooms.items()}

    def progress(self, request_id: str, prompt_tokens: int, output_tokens: int,
                 now: float) -> Request:
        """The server has processed `prompt_tokens` of prompt and produced `output_tokens` so
        far (totals, not increments). The difference from what was reported before is charged
        to the fair-share policy and the tenant's service, so counters move as tokens actually
        stream. A prompt count from the server replaces the estimate made at submit (the refund
        at the end then uses it); the first output sets `first_token`."""
        s = self.sched
        req = s.get(request_id)
        if req.status is not RUNNING:
            raise InvalidRequest(f"request {request_id} is {req.status.value}, not running")
        if prompt_tokens < 0 or output_tokens < req.num_output_tokens:
            raise InvalidRequest(f"request {request_id}: progress must not go back: prompt "
                                 f"{prompt_tokens}, output {output_tokens} < {req.num_output_tokens}")
        charged_prompt = req.num_computed_tokens - req.num_output_tokens
        d_in, d_out = prompt_tokens - charged_prompt, output_tokens - req.num_output_tokens
        if prompt_tokens:
            req.prompt_tokens = prompt_tokens
        req.num_computed_tokens = prompt_tokens + output_tokens
        req.num_output_tokens = output_tokens
        if d_out and req.first_token is None:
            req.first_token = now
        if d_in or d_out:  # d_in < 0 corrects an estimate that was too high
            s.policy.note_progress(req, d_in, d_out)
            s.service_tokens[req.tenant_id] += d_in + d_out
        return req

    def requeue(self, request_id: str, now: float) -> Request:
        """The server failed the request before its first token; put it back in the queue to
        run elsewhere. It keeps its arrival, so its place in the policy's order (and any prompt
        charged for the failed try is taken back)."""
        s = self.sched
        req = s.get(request_id)
        if req.status is not RUNNING or req.num_output_tokens:
            raise InvalidRequest(f"request {request_id} cannot be requeued: {req.status.value}, "
                                 f"{req.num_output_tokens} tokens out")
        charged = req.num_computed_tokens
        if charged:
            s.policy.note_progress(req, -charged, 0)
            s.service_tokens[req.tenant_id] -= charged
        req.num_computed_tokens = 0
        s.kv.free(request_id)
        s.running.remove(req)
        s.enqueue(req, now)
        return req
