"""Fast-forward: advance a decode-only stretch of iterations in one call.

Between two events (an arrival, an admission, a completion, a block boundary) a batch that
only decodes does not change, so a simulator may account many iterations at once:

    k = decode_horizon(sched, plan)    # right after `plan = sched.step(now)`
    if k > 1:
        advance_decode(sched, k, t)    # instead of `complete_step(plan, t)`; t: the k-th end

A run that stops short of the horizon, at the last iteration that ends before an outside
event (an arrival), is usually followed by one more iteration of the same batch, the one during
which the event happens: `can_continue` says when it may run without a new step.

Both give exactly what stepping k times would (tests/sim/test_simulator.py checks it to 1e-9).
"""
from __future__ import annotations

import heapq

from aps.core.batch import StepPlan, StopReason
from aps.core.request import Request
from aps.core.scheduler import Scheduler

# Stop reasons that stay true while a batch only decodes: only a completion can lift them.
_BLOCKED = frozenset({StopReason.MAX_SEQS, StopReason.KV_CACHE, StopReason.TOKEN_BUDGET,
                      StopReason.BATCH_RUNNING})


def decode_horizon(sched: Scheduler, plan: StepPlan) -> int:
    """How many iterations, starting with `plan`, the running batch decodes unchanged.

    Valid right after `step` returned `plan`: 0 unless the plan decodes every running request
    one token and admission is blocked by something only a completion can lift (seats, KV
    blocks, the token budget, a running micro-batch). Over the horizon no request finishes
    before the last iteration and no block is needed that is not free.
    """
    running, scheduled = sched.running, plan.scheduled
    if plan.preempted or not running or len(scheduled) != len(running) or \
            plan.shape()[3] != len(scheduled):
        return 0  # something prefills (or a 1-token prompt samples its first token)
    if sched.policy and not _stays_blocked(sched, plan):
        return 0
    return _kv_horizon(sched, min(req.max_tokens - req.num_output_tokens for req in running))


def _stays_blocked(sched: Scheduler, plan: StepPlan) -> bool:
    """Whether admission stays blocked while the batch only decodes: seats stay taken, the
    budget left stays the same and free blocks only shrink, so a request that cannot be
    admitted now cannot be later. Under fair share the head may change as counters move, so
    every request that could become the head is checked."""
    b = sched.batch
    if plan.stop_reason not in _BLOCKED or b.priority_preemption:
        return False
    if plan.stop_reason in (StopReason.MAX_SEQS, StopReason.BATCH_RUNNING):
        return True
    budget = b.max_num_batched_tokens - len(plan.scheduled)
    for head in sched.policy.heads():
        n = head.num_pending_tokens
        if budget > 0 and (n <= budget or b.chunked_prefill) and \
                sched.kv.can_allocate(head.request_id, min(n, budget)):
            return False
    return True


def _kv_horizon(sched: Scheduler, upper: int) -> int:
    """The most decode iterations (<= upper) whose new blocks the free blocks cover.

    Running request i holds blocks up to `held_i * block_size` tokens; after j iterations it
    needs one more block each time `computed_i + j` passes a multiple of the block size.
    Serving the crossings in time order, the first one with no free block left ends the run.
    """
    kv = sched.kv
    bs, held, free = kv.block_size, kv.blocks.get, kv.num_free_blocks
    running = sched.running
    if len(running) * (upper // bs + 1) <= free:
        return upper  # even the worst case fits
    # the plan being advanced has already allocated its first token
    crossings = [held(r.request_id, 0) * bs - r.num_computed_tokens + 1 for r in running]
    heapq.heapify(crossings)
    for _ in range(free):
        if crossings[0] > upper:
            return upper
        heapq.heapreplace(crossings, crossings[0] + bs)
    return min(upper, crossings[0] - 1)


def advance_decode(sched: Scheduler, k: int, now: float, reserve: int = 0) -> None:
    """Account the decode-only plan just made and the `k - 1` identical iterations after it
    (`1 <= k <= decode_horizon(sched, plan)`), the last of them ending at `now`. Requests that
    finish are reported by `sched.pop_ended()`; `complete_step` must not also be called.

    `reserve`: also take the KV blocks of that many more tokens per request, as the step that
    plans the next iteration would (see `can_continue`)."""
    kv = sched.kv
    allocate, blocks, block_size = kv.allocate, kv.blocks.get, kv.block_size
    finished: list[Request] = []
    # service is linear in tokens: each tenant's is noted once, for all its requests
    per_tenant: dict[str, list] = {}
    grow = k + reserve
    for req in sched.running:
        if req.num_computed_tokens + grow > blocks(req.request_id, 0) * block_size:
            allocate(req.request_id, req.num_computed_tokens + grow)
        req.num_computed_tokens += k
        req.num_output_tokens += k
        mine = per_tenant.get(req.tenant_id)
        if mine is None:
            per_tenant[req.tenant_id] = [req, k]
        else:
            mine[1] += k
        if req.num_output_tokens >= req.max_tokens:
            finished.append(req)
    note, service = sched.policy.note_progress, sched.service_tokens
    for tenant, (req, tokens) in per_tenant.items():
        note(req, 0, tokens)
        service[tenant] += tokens
    sched.finish_all(finished, now)


def can_continue(sched: Scheduler, now: float) -> bool:
    """Whether `step(now)` would plan the running batch decoding once more, in order, with
    nothing admitted: valid right after `advance_decode` ended a run short of the horizon
    `decode_horizon` gave, when no request was submitted since. The batch is then unchanged
    and still blocked, so only a throttled request's release (or refusal) or a waiting
    request's expiry could make the step differ. A driver may then skip the step: advance with
    `reserve=1` (the blocks the step would take) and run the next iteration as the same plan.
    """
    return sched.batch.mode != "upstream" and not sched.num_throttled and \
        sched.next_deadline() > now
