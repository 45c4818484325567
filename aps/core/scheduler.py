"""The Scheduler: one object that owns the queue, the tenants' limits and the KV cache.

A driver (the simulator in simulated time, the server in wall time) repeats:

    plan = scheduler.step(now)        # decide what runs this iteration
    ... execute plan.scheduled ...    # elsewhere: a GPU, a model of one, an upstream server
    scheduler.complete_step(plan, t)  # account the tokens computed, finish what is done
    for req in scheduler.pop_ended(): # every request that ended, once, as it ended
        ...

and calls `submit`, `finish`, `cancel` and `fail` as requests arrive, stop early, go away or
cannot run. Ended requests wait in the scheduler until `pop_ended` takes them: a driver calls it
after each of those calls and each step. How a step's batch is formed is the batch mode's admission strategy
(`aps.core.batching`); in upstream mode the servers run the iterations and the driver reports
through the strategy (`scheduler.admission`: `progress`, `requeue`, `set_seats`). A simulator
may skip decode-only stretches with `aps.core.fastforward`.
"""
from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter
from typing import Callable, Iterable

from aps.core.batch import BatchConfig, StepPlan
from aps.core.batching import make_admission
from aps.core.errors import InvalidRequest, NeverFits, UnknownRequest, UnknownTenant
from aps.core.kv import BlockManager, blocks_for
from aps.core.limits import Bounds, TenantState, Verdict
from aps.core.periods import period_bounds
from aps.core.policies import Banded, ByModel, Policy, make_policy
from aps.core.request import Request, Status
from aps.core.tenant import OverLimit, Tenant

RUNNING = Status.RUNNING


class Scheduler:
    def __init__(self, tenants: Iterable[Tenant], policy: str | Policy = "aps",
                 batch: BatchConfig | None = None, period_bounds: Bounds = period_bounds,
                 **policy_params):
        """`period_bounds(period, now)`: where a budget period starts and ends in this
        scheduler's time (by default `now` counts seconds since the epoch, UTC)."""
        self.batch = batch or BatchConfig()
        self.period_bounds = period_bounds
        self.tenants: dict[str, TenantState] = {}
        self.weights: dict[str, float] = {}  # live view for the policy
        self.service_tokens: dict[str, int] = {}  # tokens computed per tenant, for statistics
        self.policy: Policy | None = None  # the waiting queue
        for tenant in tenants:
            self.set_tenant(tenant)
        self.policy = (make_policy(policy, self.weights, **policy_params)
                       if isinstance(policy, str) else policy)
        upstream = self.batch.mode == "upstream"
        if upstream or any(_demotes(s.tenant) for s in self.tenants.values()):
            self.policy = Banded(self.policy)
        if upstream:  # one queue per model, for pools of servers (`UpstreamAdmission.set_pools`)
            self.policy = ByModel(self.policy)
        b = self.batch
        self.kv = BlockManager(b.kv_capacity_tokens // b.block_size, b.block_size)
        self.running: list[Request] = []
        self.requests: dict[str, Request] = {}  # every request not yet ended, by id
        self.admission = make_admission(self)
        self._waiting_per_tenant: dict[str, int] = {}
        self._ended: list[Request] = []
        self._deadlines: list[tuple[float, int, Request]] = []  # waiting requests that may expire
        self._seq = itertools.count()

    # -- tenants ---------------------------------------------------------------------------

    def set_tenant(self, tenant: Tenant) -> None:
        """Add a tenant or replace its configuration; its usage so far carries over."""
        old = self.tenants.get(tenant.tenant_id)
        state = TenantState.of(tenant, self.period_bounds)
        if old is not None:
            state.num_in_flight, state.throttled = old.num_in_flight, old.throttled
            if old.budget is not None and state.budget is not None and \
                    old.budget.period == state.budget.period:  # spend carries over; a new limit
                b, o = state.budget, old.budget                  # applies to it at once
                b.spent_usd, b.reserved_usd, b.start, b.end = o.spent_usd, o.reserved_usd, o.start, o.end
        self.tenants[tenant.tenant_id] = state
        self.weights[tenant.tenant_id] = tenant.weight
        self.service_tokens.setdefault(tenant.tenant_id, 0)
        if _demotes(tenant) and self.policy is not None and \
                not isinstance(self.policy, (Banded, ByModel)):  # ByModel's queues are banded
            self.policy = Banded(self.policy)  # queued requests stay where they are, in the main band

    # -- submit ----------------------------------------------------------------------------

    def submit(self, req: Request, now: float) -> Verdict:
        """Take a new request. Returns whether it was queued; if not, why and for how long.

        Bad input raises `InvalidRequest` (or its subclasses) and leaves no trace. A bid above
        the tenant's `max_bid` is lowered to it. A request over its tenant's limits is REJECTED,
        THROTTLED or demoted as the tenant is configured.
        """
        state = self._validate(req)
        self.admission.note_arrival(now)
        if not self._has_room(req):
            return self._reject(req, Verdict(False, "queue_full", None))
        tenant = state.tenant
        limit = tenant.max_queue_s
        if req.max_queue_s is not None:
            limit = req.max_queue_s if limit is None else min(limit, req.max_queue_s)
        if limit is not None:
            req.deadline = now + limit
            heapq.heappush(self._deadlines, (req.deadline, next(self._seq), req))
        verdict = Verdict(False, "throttled_backlog") if state.throttled else state.verdict(req, now)
        self.requests[req.request_id] = req
        if verdict.ok:
            state.admit(req, now)
            self.enqueue(req, now)
        elif self._over(state, verdict) is OverLimit.DELAY:
            req.status = Status.THROTTLED
            state.throttled.append(req)
        elif self._over(state, verdict) is OverLimit.DEMOTE:
            self._demote(req, state, now)
        else:
            del self.requests[req.request_id]
            return self._reject(req, verdict)
        return verdict

    @staticmethod
    def _over(state: TenantState, verdict: Verdict) -> OverLimit:
        """What the tenant wants done with a request a limit refused: a budget has its own
        action; only a bucket's refusal may demote (a seat or a backlog cannot be borrowed)."""
        if verdict.reason == "budget":
            return state.tenant.over_budget
        action = state.tenant.over_limit
        if action is OverLimit.DEMOTE and verdict.reason not in ("tokens", "requests"):
            return OverLimit.REJECT
        return action

    def _demote(self, req: Request, state: TenantState, now: float) -> None:
        req.demoted = True  # not charged to its limits: it only uses capacity nobody else wants
        state.num_in_flight += 1
        self.enqueue(req, now)

    def entitle(self, req: Request) -> None:
        """Set the request's bid: its tenant's when it asks none, capped at what the tenant
        bought (priority is sold, not claimed). Also for requests answered without the queue
        (a cache hit), so that what they report and bill is the entitled bid."""
        state = self.tenants.get(req.tenant_id)
        if state is None:
            raise UnknownTenant(f"request {req.request_id}: unknown tenant {req.tenant_id!r}")
        if req.bid is None:
            req.bid = state.tenant.bid
        if not (isinstance(req.bid, int) and 1 <= req.bid <= 10):
            raise InvalidRequest(f"request {req.request_id}: bid must be an integer in 1..10, "
                                 f"got {req.bid!r}")
        req.bid = min(req.bid, state.tenant.entitled_bid)

    def _validate(self, req: Request) -> TenantState:
        rid = req.request_id
        state = self.tenants.get(req.tenant_id)
        if state is None:
            raise UnknownTenant(f"request {rid}: unknown tenant {req.tenant_id!r}")
        if req.prompt_tokens < 1 or req.max_tokens < 1:
            raise InvalidRequest(f"request {rid}: prompt_tokens and max_tokens must be >= 1, "
                                 f"got {req.prompt_tokens} and {req.max_tokens}")
        self.entitle(req)
        if req.max_queue_s is not None and not req.max_queue_s > 0:
            raise InvalidRequest(f"request {rid}: max_queue_s must be > 0, got {req.max_queue_s}")
        if rid in self.requests:
            raise InvalidRequest(f"request {rid}: id already in use")
        if req.status is not Status.WAITING or req.num_computed_tokens or req.num_output_tokens:
            raise InvalidRequest(f"request {rid}: already submitted ({req.status.value})")
        total = req.prompt_tokens + req.max_tokens
        if blocks_for(total, self.kv.block_size) > self.kv.num_blocks:
            raise NeverFits(f"request {rid}: prompt {req.prompt_tokens} + max_tokens "
                            f"{req.max_tokens} = {total} tokens can never fit the KV cache of "
                            f"{self.kv.capacity_tokens} tokens")
        self.admission.check_fits(req)
        state.check_fits(req)
        return state

    def _has_room(self, req: Request) -> bool:
        b = self.batch
        if b.max_waiting is not None and len(self.policy) >= b.max_waiting:
            return False
        per = b.max_waiting_per_tenant
        return per is None or self._waiting_per_tenant.get(req.tenant_id, 0) < per

    def _reject(self, req: Request, verdict: Verdict) -> Verdict:
        req.status, req.reason = Status.REJECTED, verdict.reason
        self._ended.append(req)
        return verdict

    def _release_throttled(self, now: float) -> None:
        for state in self.tenants.values():
            while state.throttled:
                req = state.throttled[0]
                verdict = state.verdict(req, now)
                if not verdict.ok and self._over(state, verdict) is OverLimit.DELAY:
                    break  # it waits on: a bucket refills with time
                state.throttled.popleft()
                if verdict.ok:
                    state.admit(req, now)
                    self.enqueue(req, now)
                elif self._over(state, verdict) is OverLimit.DEMOTE:
                    self._demote(req, state, now)
                else:  # its budget ran out while it waited: held, it was never charged
                    req.reason = verdict.reason
                    self._end(req, Status.REJECTED, now, admitted=False)

    def _expire(self, now: float) -> None:
        """Requests still waiting to start at their deadline leave (EXPIRED, `queue_timeout`)."""
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, _, req = heapq.heappop(heap)
            live = req.status in (Status.WAITING, Status.THROTTLED) and req.first_scheduled is None
            if live and self.requests.get(req.request_id) is req:
                self._drop(req.request_id, now, Status.EXPIRED, "queue_timeout")

    def next_deadline(self) -> float:
        """When the next waiting request would expire (inf: none would)."""
        heap = self._deadlines
        while heap and (heap[0][2].first_scheduled is not None or heap[0][2].status.is_terminal):
            heapq.heappop(heap)  # started or ended: its deadline no longer matters
        return heap[0][0] if heap else math.inf

    def next_release(self, now: float) -> float:
        """The earliest time a THROTTLED request could be released (inf: on completions only)."""
        return min((s.next_release(now) for s in self.tenants.values() if s.throttled),
                   default=math.inf)

    # -- step ------------------------------------------------------------------------------

    def step(self, now: float) -> StepPlan:
        """Decide what runs in the next iteration (the admission strategy of the batch mode)."""
        if self._deadlines:
            self._expire(now)
        self._release_throttled(now)
        plan = StepPlan(now)
        plan.stop_reason = self.admission.schedule(plan, now)
        if not plan.scheduled:
            wake = min(self.next_release(now), self.next_deadline())
            if plan.next_wakeup is not None:
                wake = min(wake, plan.next_wakeup)
            plan.next_wakeup = None if math.isinf(wake) else wake
        return plan

    # -- what the admission strategies move requests with ---------------------------------

    def get(self, request_id: str) -> Request:
        """The live request with this id."""
        req = self.requests.get(request_id)
        if req is None:
            raise UnknownRequest(f"no live request {request_id!r}")
        return req

    def enqueue(self, req: Request, now: float) -> None:
        req.status = Status.WAITING
        self.policy.push(req)
        tenant = req.tenant_id
        self._waiting_per_tenant[tenant] = self._waiting_per_tenant.get(tenant, 0) + 1
        self.admission.note_queued(now)

    def start(self, req: Request, now: float) -> None:
        self._waiting_per_tenant[req.tenant_id] -= 1
        req.status = RUNNING
        if req.first_scheduled is None:
            req.first_scheduled = now
        self.running.append(req)

    def preempt(self, req: Request, plan: StepPlan) -> int:
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
        self.enqueue(req, plan.now)
        return planned

    # -- account ---------------------------------------------------------------------------

    def complete_step(self, plan: StepPlan, now: float,
                      stopped: Callable[[Request], bool] | None = None) -> None:
        """Account an executed plan at time `now`.

        Each request whose pending tokens are all computed samples one output token. It
        finishes at `max_tokens`, or earlier if `stopped(req)` says so (an EOS from a real
        engine). Requests cancelled while the iteration ran are skipped.
        """
        finished: list[Request] = []
        # service is linear in tokens: each tenant's is noted once per step, for all its
        # requests (per tenant: a request, prefill tokens, decode tokens, tokens computed)
        per_tenant: dict[str, list] = {}
        for req, n in plan.scheduled:
            if req.status is not RUNNING:
                continue
            total = req.prompt_tokens + req.num_output_tokens
            prefill = n if total - req.num_computed_tokens > 1 else 0
            req.num_computed_tokens += n
            mine = per_tenant.get(req.tenant_id)
            if mine is None:
                mine = per_tenant[req.tenant_id] = [req, 0, 0, 0]
            mine[3] += n
            if prefill:  # (most entries are decodes: one sum to move, not three)
                mine[1] += prefill
            if req.num_computed_tokens == total:  # it samples a token
                mine[2] += 1
                req.num_output_tokens += 1
                if req.first_token is None:
                    req.first_token = now
                if req.num_output_tokens >= req.max_tokens or (stopped and stopped(req)):
                    finished.append(req)
        note, service = self.policy.note_progress, self.service_tokens
        for tenant, (req, prefill, decoded, computed) in per_tenant.items():
            note(req, prefill, decoded)
            service[tenant] += computed
        self.finish_all(finished, now)

    def finish_all(self, finished: list[Request], now: float) -> None:
        """End running requests that produced all their tokens."""
        for req in finished:
            self._end(req, Status.FINISHED, now)
        if finished:
            self.running = [r for r in self.running if r.status is RUNNING]

    def finish(self, request_id: str, now: float, reason: str = "stop") -> Request:
        """End a running request early (the engine reported EOS or a stop string)."""
        req = self.get(request_id)
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
        req = self.get(request_id)
        admitted = req.status is not Status.THROTTLED
        if not admitted:
            self.tenants[req.tenant_id].throttled.remove(req)
        elif req.status is RUNNING:
            self.running.remove(req)
        elif self.policy.remove(req):
            self._waiting_per_tenant[req.tenant_id] -= 1
        req.reason = reason
        self._end(req, status, now, admitted)
        return req

    def _end(self, req: Request, status: Status, now: float, admitted: bool = True) -> None:
        req.status, req.finished = status, now
        self.kv.free(req.request_id)
        del self.requests[req.request_id]
        if admitted:  # a THROTTLED request was never charged
            self.tenants[req.tenant_id].release(req, now)
        self._ended.append(req)

    def pop_ended(self) -> list[Request]:
        """Every request that ended (finished, rejected, cancelled, failed) since the last
        call, in the order they ended. Each is reported exactly once."""
        ended, self._ended = self._ended, []
        return ended

    # -- state -----------------------------------------------------------------------------

    @property
    def num_waiting(self) -> int:
        return len(self.policy)

    @property
    def num_waiting_by_tenant(self) -> dict[str, int]:
        return {t: n for t, n in self._waiting_per_tenant.items() if n}

    @property
    def num_running_by_tenant(self) -> dict[str, int]:
        return dict(Counter(req.tenant_id for req in self.running))

    @property
    def num_throttled(self) -> int:
        return sum(len(s.throttled) for s in self.tenants.values())

    @property
    def num_running(self) -> int:
        return len(self.running)


def _demotes(tenant: Tenant) -> bool:
    """Whether the tenant's requests may wait in the spare-capacity band."""
    return OverLimit.DEMOTE in (tenant.over_limit, tenant.over_budget)
