"""Continuous batching (vLLM, SGLang, TGI): every iteration decodes the running requests and
admits waiting ones in policy order while seats, the token budget and KV blocks allow.

Long prompts are prefilled in chunks. When a running request cannot grow, the running request
with the policy's largest `preempt_key` is preempted (recompute): the newest of the lowest
priority, as in vLLM, or under fair share the cheapest of the tenant furthest past its share. With `priority_preemption`, a waiting request
may also evict a running one that bids less and ranks after it.
"""
from __future__ import annotations

from aps.core.batch import StepPlan, StopReason, shape_of
from aps.core.batching.base import Admission
from aps.core.errors import NeverFits
from aps.core.request import Request, Status

RUNNING = Status.RUNNING


class ContinuousBatching(Admission):
    def check_fits(self, req: Request) -> None:
        b, total = self.sched.batch, req.prompt_tokens + req.max_tokens
        if not b.chunked_prefill and total > b.max_num_batched_tokens:
            raise NeverFits(f"request {req.request_id}: {total} tokens exceed "
                            f"max_num_batched_tokens={b.max_num_batched_tokens} without chunked prefill")

    def schedule(self, plan: StepPlan, now: float) -> StopReason:
        s = self.sched
        kv, budget = s.kv, s.batch.max_num_batched_tokens
        scheduled = plan.scheduled
        blocks, block_size = kv.blocks.get, kv.block_size
        # the plan's shape is summed on the way (one pass less): decodes and their context;
        # a prefill chunk of a running request is rare, and leaves it to `StepPlan.shape`
        decodes = context = chunks = 0
        for req in list(s.running):
            if budget == 0:
                break
            if req.status is not RUNNING:  # preempted earlier in this loop
                continue
            pending = req.prompt_tokens + req.num_output_tokens - req.num_computed_tokens
            n = pending if pending < budget else budget
            target = req.num_computed_tokens + n
            # most steps need no new block: only a request that crosses one asks the manager
            if target > blocks(req.request_id, 0) * block_size and \
                    not kv.try_allocate(req.request_id, target):
                if not self._make_room(req, target, plan):
                    continue  # req itself was preempted
                kv.allocate(req.request_id, target)
            scheduled.append((req, n))
            budget -= n
            if pending == 1 and req.num_output_tokens:
                decodes += 1
                context += target
            else:
                chunks += 1
        if plan.preempted:
            return StopReason.PREEMPTED
        first_admitted = len(scheduled)
        reason = self._admit(plan, budget, now)
        if not chunks and not plan.preempted:  # (priority preemption may have moved `scheduled`)
            plan.sums = shape_of(scheduled[first_admitted:], (0, 0, 0, decodes, context))
        return reason

    def _make_room(self, req: Request, target: int, plan: StepPlan) -> bool:
        """Preempt running requests, largest `preempt_key` first, until `req` can grow to
        `target` tokens. Returns False if `req` itself was preempted.
        """
        s = self.sched
        key = s.policy.preempt_key
        while not s.kv.can_allocate(req.request_id, target):
            victim = max((r for r in s.running if r.status is RUNNING), key=key)
            s.preempt(victim, plan)
            if victim is req:
                return False
        return True

    def _admit(self, plan: StepPlan, budget: int, now: float) -> StopReason:
        s = self.sched
        b, kv, policy = s.batch, s.kv, s.policy
        admitted: set[int] = set()
        while True:
            head = policy.peek()
            if head is None:
                return StopReason.NO_WAITING
            if len(s.running) >= b.max_num_seqs:
                freed = self._evict_for(head, plan, admitted)
                if freed is None:
                    return StopReason.MAX_SEQS
                budget += freed
                continue
            if budget == 0:
                return StopReason.TOKEN_BUDGET
            n = head.num_pending_tokens
            if n > budget:
                if not b.chunked_prefill:
                    return StopReason.TOKEN_BUDGET
                n = budget
            if not kv.can_allocate(head.request_id, n):
                freed = self._evict_for(head, plan, admitted)
                if freed is None:
                    return StopReason.KV_CACHE
                budget += freed
                continue
            policy.pop()
            s.start(head, now)
            kv.allocate(head.request_id, n)
            plan.scheduled.append((head, n))
            admitted.add(id(head))
            budget -= n

    def _evict_for(self, head: Request, plan: StepPlan, admitted: set[int]) -> int | None:
        """Priority preemption: evict a running request that bids less than `head` and that the
        policy ranks after it (the last-ranked such one). Returns the tokens the victim had in
        this step's plan (back into the budget), or None if nothing was evicted.

        Ranking after `head` means the victim queues behind it, so `head` is admitted next and
        the victim is not re-admitted in its place. Bidding less means two requests can never
        evict each other in turn, however a fair-share rank moves.
        """
        s = self.sched
        if not s.batch.priority_preemption:
            return None
        rank = s.policy.rank
        # Never a request this step admitted: whatever the ranks say, a step then terminates.
        lower = [r for r in s.running if r.bid < head.bid and id(r) not in admitted]
        if not lower:
            return None
        victim = max(lower, key=rank)
        if not rank(head) < rank(victim):
            return None
        return s.preempt(victim, plan)
