"""The Scheduler: one object that owns the queue, the tenants' limits and the KV cache.

A driver (the simulator in simulated time, the server in wall time) repeats:

    plan = scheduler.step(now)        # decide what runs this iteration
    ... execute plan.scheduled ...    # elsewhere: a GPU, a model of one, an upstream server
    scheduler.complete_step(plan, t)  # account the tokens computed, finish what is done

and calls `submit`, `finish` and `cancel` as requests arrive, stop early or go away.
In upstream mode the servers run the iterations: `step` only admits, and the driver reports
`progress` as tokens stream back, then `finish`, `fail`, or `requeue` (a retry elsewhere).
"""
from __future__ import annotations

import heapq
import math
from typing import Callable, Iterable

from aps.core.batch import BatchConfig, StepPlan, StopReason
from aps.core.errors import InvalidRequest, NeverFits, UnknownRequest, UnknownTenant
from aps.core.governor import EntropyWindow
from aps.core.kv import BlockManager, blocks_for
from aps.core.limits import TenantState, Verdict
from aps.core.policies import Banded, Policy, make_policy
from aps.core.request import Request, Status
from aps.core.tenant import OverLimit, Tenant

RUNNING = Status.RUNNING
_ENDINGS = (Status.FINISHED, Status.REJECTED, Status.CANCELLED, Status.FAILED)
# Stop reasons that stay true while a batch only decodes: only a completion can lift them.
_BLOCKED = frozenset({StopReason.MAX_SEQS, StopReason.KV_CACHE, StopReason.TOKEN_BUDGET,
                      StopReason.BATCH_RUNNING})


class Scheduler:
    def __init__(self, tenants: Iterable[Tenant], policy: str | Policy = "aps",
                 batch: BatchConfig | None = None, **policy_params):
        self.batch = batch or BatchConfig()
        self.tenants: dict[str, TenantState] = {}
        self.weights: dict[str, float] = {}  # live view for the policy
        self.service_tokens: dict[str, int] = {}  # tokens computed per tenant, for statistics
        for tenant in tenants:
            self.set_tenant(tenant)
        self.policy: Policy = (make_policy(policy, self.weights, **policy_params)
                               if isinstance(policy, str) else policy)
        if any(s.tenant.over_limit is OverLimit.DEMOTE for s in self.tenants.values()):
            self.policy = Banded(self.policy)
        b = self.batch
        self.kv = BlockManager(b.kv_capacity_tokens // b.block_size, b.block_size)
        self.running: list[Request] = []
        self.requests: dict[str, Request] = {}  # every request not yet ended, by id
        self.governor = EntropyWindow(b.window_s) if b.adaptive_window else None
        self._window_opened: float | None = None
        self._waiting_per_tenant: dict[str, int] = {}
        self._ended: dict[Status, list[Request]] = {s: [] for s in _ENDINGS}

    # -- tenants ---------------------------------------------------------------------------

    def set_tenant(self, tenant: Tenant) -> None:
        """Add a tenant or replace its configuration; its usage so far carries over."""
        old = self.tenants.get(tenant.tenant_id)
        state = TenantState.of(tenant)
        if old is not None:
            state.num_in_flight, state.throttled = old.num_in_flight, old.throttled
        self.tenants[tenant.tenant_id] = state
        self.weights[tenant.tenant_id] = tenant.weight
        self.service_tokens.setdefault(tenant.tenant_id, 0)
        policy = getattr(self, "policy", None)  # None while __init__ adds the first tenants
        if tenant.over_limit is OverLimit.DEMOTE and policy is not None and \
                not isinstance(policy, Banded):
            self.policy = Banded(policy)  # queued requests stay where they are, in the main band

    # -- submit ----------------------------------------------------------------------------

    def submit(self, req: Request, now: float) -> Verdict:
        """Take a new request. Returns whether it was queued; if not, why and for how long.

        Bad input raises `InvalidRequest` (or its subclasses) and leaves no trace. A request
        over its tenant's limits is REJECTED or THROTTLED as the tenant is configured.
        """
        state = self._validate(req)
        if self.governor is not None:
            self.governor.observe(now)
        if not self._has_room(req):
            return self._reject(req, Verdict(False, "queue_full", None))
        verdict = Verdict(False, "throttled_backlog") if state.throttled else state.verdict(req, now)
        self.requests[req.request_id] = req
        if verdict.ok:
            state.admit(req, now)
            self._enqueue(req, now)
        elif state.tenant.over_limit is OverLimit.DELAY:
            req.status = Status.THROTTLED
            state.throttled.append(req)
        elif state.tenant.over_limit is OverLimit.DEMOTE and verdict.reason in ("tokens", "requests"):
            req.demoted = True  # not charged: it only uses capacity nobody else wants
            state.num_in_flight += 1
            self._enqueue(req, now)
        else:
            del self.requests[req.request_id]
            return self._reject(req, verdict)
        return verdict

    def _validate(self, req: Request) -> TenantState:
        rid = req.request_id
        state = self.tenants.get(req.tenant_id)
        if state is None:
            raise UnknownTenant(f"request {rid}: unknown tenant {req.tenant_id!r}")
        if req.prompt_tokens < 1 or req.max_tokens < 1:
            raise InvalidRequest(f"request {rid}: prompt_tokens and max_tokens must be >= 1, "
                                 f"got {req.prompt_tokens} and {req.max_tokens}")
        if req.bid is None:
            req.bid = state.tenant.bid
        if not (isinstance(req.bid, int) and 1 <= req.bid <= 10):
            raise InvalidRequest(f"request {rid}: bid must be an integer in 1..10, got {req.bid!r}")
        if rid in self.requests:
            raise InvalidRequest(f"request {rid}: id already in use")
        if req.status is not Status.WAITING or req.num_computed_tokens or req.num_output_tokens:
            raise InvalidRequest(f"request {rid}: already submitted ({req.status.value})")
        self._check_fits(req)
        state.check_fits(req)
        return state

    def _check_fits(self, req: Request) -> None:
        b, total = self.batch, req.prompt_tokens + req.max_tokens
        if blocks_for(total, b.block_size) > self.kv.num_blocks:
            raise NeverFits(f"request {req.request_id}: prompt {req.prompt_tokens} + max_tokens "
                            f"{req.max_tokens} = {total} tokens can never fit the KV cache of "
                            f"{self.kv.capacity_tokens} tokens")
        if b.mode == "continuous" and not b.chunked_prefill and total > b.max_num_batched_tokens:
            raise NeverFits(f"request {req.request_id}: {total} tokens exceed "
                            f"max_num_batched_tokens={b.max_num_batched_tokens} without chunked prefill")

    def _has_room(self, req: Request) -> bool:
        b = self.batch
        if b.max_waiting is not None and len(self.policy) >= b.max_waiting:
            return False
        per = b.max_waiting_per_tenant
        return per is None or self._waiting_per_tenant.get(req.tenant_id, 0) < per

    def _reject(self, req: Request, verdict: Verdict) -> Verdict:
        req.status, req.reason = Status.REJECTED, verdict.reason
        self._ended[Status.REJECTED].append(req)
        return verdict

    def _enqueue(self, req: Request, now: float) -> None:
        req.status = Status.WAITING
        self.policy.push(req)
        tenant = req.tenant_id
        self._waiting_per_tenant[tenant] = self._waiting_per_tenant.get(tenant, 0) + 1
        if self._window_opened is None:
            self._window_opened = now

    def _dequeue(self, req: Request) -> None:
        self._waiting_per_tenant[req.tenant_id] -= 1

    def _release_throttled(self, now: float) -> None:
        for state in self.tenants.values():
            while state.throttled and state.verdict(state.throttled[0], now).ok:
                req = state.throttled.popleft()
                state.admit(req, now)
                self._enqueue(req, now)

    def next_release(self, now: float) -> float:
        """The earliest time a THROTTLED request could be released (inf: on completions only)."""
        return min((s.next_release(now) for s in self.tenants.values() if s.throttled),
                   default=math.inf)

    # -- step ------------------------------------------------------------------------------

    def step(self, now: float) -> StepPlan:
        self._release_throttled(now)
        plan = StepPlan(now)
        ended = self._ended
        plan.finished, plan.rejected = ended[Status.FINISHED], ended[Status.REJECTED]
        plan.cancelled, plan.failed = ended[Status.CANCELLED], ended[Status.FAILED]
        self._ended = {s: [] for s in self._ended}
        if self.batch.mode == "micro":
            self._step_micro(plan, now)
        elif self.batch.mode == "upstream":
            plan.stop_reason = self._admit_upstream(plan, now)
        else:
            self._step_continuous(plan, now)
        if not plan.scheduled:
            wake = self.next_release(now)
            if plan.next_wakeup is not None:
                wake = min(wake, plan.next_wakeup)
            plan.next_wakeup = None if math.isinf(wake) else wake
        return plan

    def _start(self, req: Request, now: float) -> None:
        self._dequeue(req)
        req.status = RUNNING
        if req.first_scheduled is None:
            req.first_scheduled = now
        self.running.append(req)

    def _step_continuous(self, plan: StepPlan, now: float) -> None:
        b, kv = self.batch, self.kv
        budget = b.max_num_batched_tokens
        scheduled = plan.scheduled
        for req in list(self.running):
            if budget == 0:
                break
            if req.status is not RUNNING:  # preempted earlier in this loop
                continue
            pending = req.prompt_tokens + req.num_output_tokens - req.num_computed_tokens
            n = pending if pending < budget else budget
            target = req.num_computed_tokens + n
            if not kv.try_allocate(req.request_id, target):
                if not self._make_room(req, target, plan):
                    continue  # req itself was preempted
                kv.allocate(req.request_id, target)
            scheduled.append((req, n))
            budget -= n
        if plan.preempted:
            plan.stop_reason = StopReason.PREEMPTED
            return
        plan.stop_reason = self._admit(plan, budget, now)

    def _make_room(self, req: Request, target: int, plan: StepPlan) -> bool:
        """Preempt the lowest-ranked running requests until `req` can grow to `target` tokens.

        Returns False if `req` is itself the lowest ranked, and so was preempted.
        """
        rank = self.policy.rank
        while not self.kv.can_allocate(req.request_id, target):
            victim = max((r for r in self.running if r.status is RUNNING), key=rank)
            self._preempt(victim, plan)
            if victim is req:
                return False
        return True

    def _preempt(self, req: Request, plan: StepPlan) -> int:
        """Recompute preemption: drop its KV and requeue it; its output so far is kept.

        Returns the tokens it had in this step's plan."""
        self.kv.free(req.request_id)
        req.num_computed_tokens = 0
        req.num_preemptions += 1
        self.running.remove(req)
        planned = sum(n for r, n in plan.scheduled if r is req)
        if planned:
            plan.scheduled[:] = [(r, n) for r, n in plan.scheduled if r is not req]
        plan.preempted.append(req)
        req.status = Status.PREEMPTED
        self._enqueue(req, plan.now)
        return planned

    def _admit(self, plan: StepPlan, budget: int, now: float) -> StopReason:
        b, kv, policy = self.batch, self.kv, self.policy
        admitted: set[int] = set()
        while True:
            head = policy.peek()
            if head is None:
                return StopReason.NO_WAITING
            if len(self.running) >= b.max_num_seqs:
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
            self._start(head, now)
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
        if not self.batch.priority_preemption:
            return None
        rank = self.policy.rank
        # Never a request this step admitted: whatever the ranks say, a step then terminates.
        lower = [r for r in self.running if r.bid < head.bid and id(r) not in admitted]
        if not lower:
            return None
        victim = max(lower, key=rank)
        if not rank(head) < rank(victim):
            return None
        return self._preempt(victim, plan)

    def _step_micro(self, plan: StepPlan, now: float) -> None:
        if self.running:
            plan.scheduled.extend((r, r.num_pending_tokens) for r in self.running)
            plan.stop_reason = StopReason.BATCH_RUNNING
            return
        if not self.policy:
            plan.stop_reason, self._window_opened = StopReason.NO_WAITING, None
            return
        b = self.batch
        window = self.governor.window() if self.governor else b.window_s
        deadline = self._window_opened + window
        if len(self.policy) < b.max_batch and now < deadline:
            plan.stop_reason, plan.next_wakeup = StopReason.WINDOW, deadline
            return
        plan.stop_reason = self._form_micro_batch(plan, now)
        self._window_opened = now if self.policy else None

    def _form_micro_batch(self, plan: StepPlan, now: float) -> StopReason:
        """Admit up to `max_batch` requests whose whole lifetime fits the KV cache."""
        policy, kv = self.policy, self.kv
        while policy:
            if len(self.running) >= self.batch.max_batch:
                return StopReason.MAX_SEQS
            head = policy.peek()
            total = head.prompt_tokens + head.max_tokens
            if not kv.can_allocate(head.request_id, total):
                return StopReason.KV_CACHE
            policy.pop()
            self._start(head, now)
            kv.allocate(head.request_id, total)
            plan.scheduled.append((head, head.num_pending_tokens))
        return StopReason.NO_WAITING

    def _admit_upstream(self, plan: StepPlan, now: float) -> StopReason:
        """Admit in policy order while seats and in-flight tokens allow. A request reserves
        prompt + max_tokens for its whole life (the server's KV use is not visible from here).
        Running requests are the servers' business: they are not planned again, the driver
        reports on them with `progress`.

        The last `reserved_seats` seats go only to tenants with nothing running: the best
        ranked of their waiting requests (under fair share, even when a running tenant's
        request ranks first, as after a counter tie; under other policies, only the head).
        """
        policy, kv, b = self.policy, self.kv, self.batch
        open_seats = max(1, b.max_num_seqs - b.reserved_seats)
        while True:
            head = policy.peek()
            if head is None:
                return StopReason.NO_WAITING
            if len(self.running) >= b.max_num_seqs:
                return StopReason.MAX_SEQS
            if len(self.running) >= open_seats:
                head = self._newcomer()
                if head is None:
                    return StopReason.MAX_SEQS  # the reserved seats wait for a tenant with none
            total = head.prompt_tokens + head.max_tokens
            if not kv.can_allocate(head.request_id, total):
                return StopReason.IN_FLIGHT_TOKENS
            policy.remove(head)
            self._start(head, now)
            kv.allocate(head.request_id, total)
            plan.scheduled.append((head, head.prompt_tokens))

    def _newcomer(self) -> Request | None:
        """The best-ranked waiting request whose tenant has nothing running."""
        busy = {r.tenant_id for r in self.running}
        idle = [r for r in self.policy.heads() if r.tenant_id not in busy]
        return min(idle, key=self.policy.rank, default=None)

    def set_max_num_seqs(self, max_num_seqs: int) -> None:
        """Upstream: the seats follow the servers that can take requests now (0: none can).
        Running requests over a lowered limit finish normally; admission waits for them."""
        if self.batch.mode != "upstream":
            raise InvalidRequest("seats change at run time only in upstream mode")
        if max_num_seqs < 0:
            raise InvalidRequest(f"max_num_seqs must be >= 0, got {max_num_seqs}")
        self.batch.max_num_seqs = max_num_seqs

    def progress(self, request_id: str, prompt_tokens: int, output_tokens: int,
                 now: float) -> Request:
        """Upstream: the server has processed `prompt_tokens` of prompt and produced
        `output_tokens` so far (totals, not increments). The difference from what was reported
        before is charged to the fair-share policy and the tenant's service, so counters move
        as tokens actually stream. A prompt count from the server replaces the estimate made at
        submit (the refund at the end then uses it); the first output sets `first_token`."""
        req = self._live(request_id)
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
            self.policy.note_progress(req, d_in, d_out)
            self.service_tokens[req.tenant_id] += d_in + d_out
        return req

    def requeue(self, request_id: str, now: float) -> Request:
        """Upstream: the server failed the request before its first token; put it back in the
        queue to run elsewhere. It keeps its arrival, so its place in the policy's order (and
        any prompt charged for the failed try is taken back)."""
        req = self._live(request_id)
        if req.status is not RUNNING or req.num_output_tokens:
            raise InvalidRequest(f"request {request_id} cannot be requeued: {req.status.value}, "
                                 f"{req.num_output_tokens} tokens out")
        charged = req.num_computed_tokens
        if charged:
            self.policy.note_progress(req, -charged, 0)
            self.service_tokens[req.tenant_id] -= charged
        req.num_computed_tokens = 0
        self.kv.free(request_id)
        self.running.remove(req)
        self._enqueue(req, now)
        return req

    # -- account ---------------------------------------------------------------------------

    def complete_step(self, plan: StepPlan, now: float,
                      stopped: Callable[[Request], bool] | None = None) -> list[Request]:
        """Account an executed plan at time `now`; returns the requests that finished.

        Each request whose pending tokens are all computed samples one output token. It
        finishes at `max_tokens`, or earlier if `stopped(req)` says so (an EOS from a real
        engine). Requests cancelled while the iteration ran are skipped.
        """
        note, service = self.policy.note_progress, self.service_tokens
        finished: list[Request] = []
        for req, n in plan.scheduled:
            if req.status is not RUNNING:
                continue
            total = req.prompt_tokens + req.num_output_tokens
            prefill = n if total - req.num_computed_tokens > 1 else 0
            req.num_computed_tokens += n
            sampled = req.num_computed_tokens == total
            if sampled:
                req.num_output_tokens += 1
                if req.first_token is None:
                    req.first_token = now
            note(req, prefill, 1 if sampled else 0)
            service[req.tenant_id] += n
            if sampled and (req.num_output_tokens >= req.max_tokens or (stopped and stopped(req))):
                finished.append(req)
        return self._finish_all(finished, now)

    def _finish_all(self, finished: list[Request], now: float) -> list[Request]:
        for req in finished:
            self._end(req, Status.FINISHED, now)
        if finished:
            self.running = [r for r in self.running if r.status is RUNNING]
        return finished

    def finish(self, request_id: str, now: float, reason: str = "stop") -> Request:
        """End a running request early (the engine reported EOS or a stop string)."""
        req = self._live(request_id)
        if req.status is not RUNNING:
            raise InvalidRequest(f"request {request_id} is {req.status.value}, not running")
        req.reason = reason
        self._end(req, Status.FINISHED, now)
        self.running.remove(req)
        return req

    def cancel(self, request_id: str, now: float, reason: str = "cancelled") -> Request:
        """The client went away: drop the request wherever it is and free what it holds."""
        return self._drop(request_id, now, Status.CANCELLED, reason)

    def fail(self, request_id: str, now: float, reason: str) -> Request:
        """The executor could not run the request: drop it as FAILED, freeing what it holds."""
        return self._drop(request_id, now, Status.FAILED, reason)

    def _drop(self, request_id: str, now: float, status: Status, reason: str) -> Request:
        req = self._live(request_id)
        admitted = req.status is not Status.THROTTLED
        if not admitted:
            self.tenants[req.tenant_id].throttled.remove(req)
        elif req.status is RUNNING:
            self.running.remove(req)
        elif self.policy.remove(req):
            self._dequeue(req)
        req.reason = reason
        self._end(req, status, now, admitted)
        return req

    def _live(self, request_id: str) -> Request:
        req = self.requests.get(request_id)
        if req is None:
            raise UnknownRequest(f"no live request {request_id!r}")
        return req

    def _end(self, req: Request, status: Status, now: float, admitted: bool = True) -> None:
        req.status, req.finished = status, now
        self.kv.free(req.request_id)
        del self.requests[req.request_id]
        if admitted:  # a THROTTLED request was never charged
            self.tenants[req.tenant_id].release(req, now)
        self._ended[status].append(req)

    # -- fast forward ----------------------------------------------------------------------

    def decode_horizon(self, plan: StepPlan) -> int:
        """How many iterations, starting with `plan`, the running batch decodes unchanged.

        Valid right after `step` returned `plan`: 0 unless the plan decodes every running
        request one token and admission is blocked by something only a completion can lift
        (seats, KV blocks, the token budget, a running micro-batch). Over the horizon no request
        finishes before the last iteration and no block is needed that is not free, so a
        simulator may `advance_decode` that many iterations at once instead of stepping.
        """
        running, scheduled = self.running, plan.scheduled
        if plan.preempted or not running or len(scheduled) != len(running) or scheduled[-1][1] != 1:
            return 0  # admissions and prefill chunks come last in a plan: a quick no
        if self.policy and not self._stays_blocked(plan):
            return 0
        horizon = math.inf
        for req, n in scheduled:
            if n != 1 or req.num_pending_tokens != 1 or not req.num_output_tokens:
                return 0  # prefilling, or a 1-token prompt about to sample its first token
            left = req.max_tokens - req.num_output_tokens
            if left < horizon:
                horizon = left
        k = int(horizon)
        return self._kv_horizon(k)

    def _stays_blocked(self, plan: StepPlan) -> bool:
        """Whether admission stays blocked while the batch only decodes: seats stay taken, the
        budget left stays the same and free blocks only shrink, so a request that cannot be
        admitted now cannot be later. Under fair share the head may change as counters move,
        so every request that could become the head is checked."""
        b = self.batch
        if plan.stop_reason not in _BLOCKED or b.priority_preemption:
            return False
        if plan.stop_reason in (StopReason.MAX_SEQS, StopReason.BATCH_RUNNING):
            return True
        budget = b.max_num_batched_tokens - len(plan.scheduled)
        for head in self.policy.heads():
            n = head.num_pending_tokens
            if budget > 0 and (n <= budget or b.chunked_prefill) and \
                    self.kv.can_allocate(head.request_id, min(n, budget)):
                return False
        return True

    def _kv_horizon(self, upper: int) -> int:
        """The most decode iterations (<= upper) whose new blocks the free blocks cover.

        Running request i holds blocks up to `held_i * block_size` tokens; after j iterations
        it needs one more block each time `computed_i + j` passes a multiple of the block size.
        Serving the crossings in time order, the first one with no free block left ends the run.
        """
        bs, held, free = self.kv.block_size, self.kv.held, self.kv.num_free_blocks
        running = self.running
        if len(running) * (upper // bs + 1) <= free:
            return upper  # even the worst case fits
        # the plan being advanced has already allocated its first token
        crossings = [held(r.request_id) * bs - r.num_computed_tokens + 1 for r in running]
        heapq.heapify(crossings)
        for _ in range(free):
            if crossings[0] > upper:
                return upper
            heapq.heapreplace(crossings, crossings[0] + bs)
        return min(upper, crossings[0] - 1)

    def advance_decode(self, k: int, now: float) -> list[Request]:
        """Account the decode-only plan just made and the `k - 1` identical iterations after it
        (`1 <= k <= decode_horizon(plan)`), the last of them ending at `now`. Returns the
        requests that finished; `complete_step` must not also be called for that plan."""
        note, service, kv = self.policy.note_progress, self.service_tokens, self.kv
        finished = []
        for req in self.running:
            kv.allocate(req.request_id, req.num_computed_tokens + k)
            req.num_computed_tokens += k
            req.num_output_tokens += k
            note(req, 0, k)
            service[req.tenant_id] += k
            if req.num_output_tokens >= req.max_tokens:
                finished.append(req)
        return self._finish_all(finished, now)

    # -- state -----------------------------------------------------------------------------

    @property
    def num_waiting(self) -> int:
        return len(self.policy)

    @property
    def num_waiting_by_tenant(self) -> dict[str, int]:
        return {t: n for t, n in self._waiting_per_tenant.items() if n}

    @property
    def num_throttled(self) -> int:
        return sum(len(s.throttled) for s in self.tenants.values())

    @property
    def num_running(self) -> int:
        return len(self.running)
