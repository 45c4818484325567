"""A discrete-event simulation of GPU replicas serving a workload, each driven by a core Scheduler.

Events are arrivals (read in order from the workload's columns) and, per replica, the end of
an iteration or a wake-up (a closing batching window, a throttled request's release). Ties are
broken by sequence number, so a run is a deterministic function of its inputs.

Fast mode: when a replica's batch only decodes and nothing can join it (see
`Scheduler.decode_horizon`), the iterations up to the next completion, block shortage or
arrival are summed in closed form and applied at once. Step mode runs every iteration. Both
give the same per-request times (tests/test_simulator.py checks it).

With `SimConfig.autoscale`, replicas are added and drained during the run by
`aps.sim.autoscaling.ClusterScaler`; arrivals are routed among `routable` replicas only.
Without it nothing of that runs: the event loop pays one comparison per event.
"""
from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable

from aps.core import BatchConfig, Request, Scheduler, Status, StepPlan
from aps.perf import BatchShape, decode_run_time
from aps.sim.autoscale_spec import ScaleSettings
from aps.sim.autoscaling import ClusterScaler
from aps.sim.metrics import Recorder
from aps.sim.workload import Workload

ROUTERS = ("round-robin", "least-outstanding-tokens")


@dataclass(slots=True)
class SimConfig:
    policy: str = "aps"
    policy_params: dict = field(default_factory=dict)
    batch: BatchConfig = field(default_factory=BatchConfig)
    replicas: int = 1
    router: str = "round-robin"
    fast: bool = True
    slo_ttft_s: float = 2.0  # what counts as good service, for goodput
    slo_tpot_s: float = 0.2
    timeline_points: int = 0  # > 0: sample queue depth and service about this many times
    autoscale: ScaleSettings | None = None  # replicas come and go (aps.sim.autoscaling)

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {self.replicas}")
        if self.router not in ROUTERS:
            raise ValueError(f"unknown router {self.router!r}; known: {', '.join(ROUTERS)}")


@dataclass(slots=True, eq=False)
class Replica:
    index: int
    sched: Scheduler
    plan: StepPlan | None = None  # the iteration in flight
    jump: int = 0  # iterations the plan stands for (fast mode), 0: one step
    kick_at: float = math.inf  # a pending wake-up
    outstanding_tokens: int = 0
    busy_s: float = 0.0
    flops: float = 0.0
    iterations: int = 0
    scheduled: int = 0  # requests summed over iterations, for the mean batch size
    draining: bool = False  # takes no new requests; removed once empty (autoscaling)


def decode_run(perf, shape: BatchShape, k: int) -> tuple[float, float]:
    """Seconds and FLOPs of `k` decode iterations starting from `shape`, each adding one
    token to every request's context, in closed form (both are linear in the context)."""
    d, c0 = shape.num_decode, shape.decode_ctx_sum
    seconds = decode_run_time(perf.decode_terms(d), c0, d, k)
    f0 = perf.iteration_flops(shape)
    f1 = perf.iteration_flops(BatchShape(0, 0, 0, d, c0 + d)) - f0
    return seconds, k * f0 + f1 * k * (k - 1) / 2


class Simulation:
    def __init__(self, workload: Workload, perf, config: SimConfig | None = None,
                 progress: Callable[[int], None] | None = None):
        self.w, self.perf = workload, perf
        self.cfg = config or SimConfig()
        self.replicas: list[Replica] = []  # every replica the run had, for the summary
        scale = self.cfg.autoscale
        for _ in range(scale.policy.clamp(self.cfg.replicas) if scale else self.cfg.replicas):
            self._new_replica()
        self.routable = self.replicas  # where arrivals may go; a copy once replicas can leave
        self.rec = Recorder(workload)
        self._record = self.rec.plan
        self.scaler: ClusterScaler | None = None
        if scale is not None:
            self.scaler = ClusterScaler(self, scale)
            self.routable = list(self.replicas)
            self._record = self._record_and_scale
        self._events: list[tuple[float, int, int, Replica]] = []  # (time, seq, kind, replica)
        self._seq = itertools.count()
        self._rr = 0
        self._progress = progress
        self.now = 0.0

    def _new_replica(self) -> Replica:
        replica = Replica(len(self.replicas), Scheduler(self.w.tenants, self.cfg.policy,
                                                        self.cfg.batch, **self.cfg.policy_params))
        self.replicas.append(replica)
        return replica

    def _record_and_scale(self, plan: StepPlan) -> None:
        self.rec.plan(plan)
        self.scaler.ended(plan)

    # -- event plumbing --------------------------------------------------------------------

    def _push(self, t: float, kind: int, replica: Replica) -> None:
        heapq.heappush(self._events, (t, next(self._seq), kind, replica))

    def _kick(self, replica: Replica, t: float) -> None:
        if replica.plan is None and t < replica.kick_at:
            replica.kick_at = t
            self._push(t, _KICK, replica)

    def run(self) -> dict:
        w, events = self.w, self._events
        arrivals = w.arrival_s.tolist()  # plain floats: numpy scalars are slow one at a time
        n, i = len(arrivals), 0
        started = time.perf_counter()
        every = _sample_interval(arrivals, self.cfg.timeline_points)
        next_sample = arrivals[0] if n and every < math.inf else math.inf
        if self.scaler is not None and n:
            self.scaler.begin(arrivals[0])
        while i < n or events:
            if (arrivals[i] if i < n else math.inf) >= next_sample <= (events[0][0] if events else math.inf):
                self.rec.sample(next_sample, self.replicas)
                next_sample += every
                continue
            if i < n and (not events or arrivals[i] <= events[0][0]):
                self.now = arrivals[i]
                self._arrive(i)
                i += 1
                if i == n:
                    self.rec.note_last_arrival(self.replicas)
                if self._progress and i % 4096 == 0:
                    self._progress(i)
                continue
            t, _, kind, replica = heapq.heappop(events)
            if kind > _KICK:  # the autoscaler's: they do not move the clock of the work
                self.scaler.on_event(kind, replica, t, i < n)
                continue
            self.now = t
            if kind == _END:
                self._end_iteration(replica, t)
                self._step(replica, t, arrivals[i] if i < n else math.inf)
            elif t == replica.kick_at:
                replica.kick_at = math.inf
                if replica.plan is None:
                    self._step(replica, t, arrivals[i] if i < n else math.inf)
        for replica in self.replicas:  # collect what ended in the last iterations
            self.rec.plan(replica.sched.step(self.now))
        return self.rec.summary(self, time.perf_counter() - started)

    # -- arrivals and routing --------------------------------------------------------------

    def _route(self) -> Replica:
        if self.cfg.router == "round-robin":
            self._rr = (self._rr + 1) % len(self.routable)
            return self.routable[self._rr]
        return min(self.routable, key=lambda r: (r.outstanding_tokens, r.index))

    def _arrive(self, i: int) -> None:
        w = self.w
        replica = self._route() if len(self.routable) > 1 else self.routable[0]
        prompt, out = int(w.prompt_tokens[i]), int(w.output_tokens[i])
        req = Request(str(i), w.tenants[w.tenant[i]].tenant_id, prompt, out,
                      self.now, int(w.bid[i]))
        replica.sched.submit(req, self.now)
        if req.status is not Status.REJECTED:
            replica.outstanding_tokens += prompt + out
        self.rec.routed(i, replica.index)
        self._kick(replica, self.now)

    # -- iterations ------------------------------------------------------------------------

    def _step(self, replica: Replica, now: float, next_arrival: float) -> None:
        sched = replica.sched
        plan = sched.step(now)
        self._record(plan)
        if not plan:
            if replica.draining and not sched.requests:
                self.scaler.retire(replica, now)
            if plan.next_wakeup is not None:
                if plan.next_wakeup <= now:  # it would be woken at this instant again, forever
                    raise RuntimeError(f"replica {replica.index} idle at t={now} but asks to be "
                                       f"woken at t={plan.next_wakeup}")
                self._kick(replica, plan.next_wakeup)
            return
        shape = BatchShape(*plan.shape())
        k = sched.decode_horizon(plan) if self.cfg.fast else 0
        if k > 1:
            horizon = min(next_arrival, sched.next_release(now))
            k, seconds, flops = self._jump(shape, k, now, horizon)
        if k > 1:
            replica.jump = k
        else:
            seconds, flops = self.perf.iteration_time(shape), self.perf.iteration_flops(shape)
            replica.jump, k = 0, 1
        replica.plan = plan
        replica.busy_s += seconds
        replica.flops += flops
        replica.iterations += k
        replica.scheduled += k * len(plan.scheduled)
        self._push(now + seconds, _END, replica)

    def _jump(self, shape: BatchShape, k: int, now: float,
              horizon: float) -> tuple[int, float, float]:
        """The most decode iterations (<= k) that end no later than `horizon`, the next event
        from outside the replica (an arrival, a throttled request's release)."""
        seconds, flops = decode_run(self.perf, shape, k)
        if now + seconds <= horizon:
            return k, seconds, flops
        lo, hi = 1, k - 1  # largest j whose end <= horizon; 1 if even one passes it
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if now + decode_run(self.perf, shape, mid)[0] <= horizon:
                lo = mid
            else:
                hi = mid - 1
        if lo == 1:
            return 1, 0.0, 0.0
        return (lo, *decode_run(self.perf, shape, lo))

    def _end_iteration(self, replica: Replica, t: float) -> None:
        plan, replica.plan = replica.plan, None
        if replica.jump:
            done = replica.sched.advance_decode(replica.jump, t)
        else:
            done = replica.sched.complete_step(plan, t)
        for req in done:
            replica.outstanding_tokens -= req.prompt_tokens + req.max_tokens


_END, _KICK = 0, 1


def _sample_interval(arrivals: list[float], points: int) -> float:
    if points <= 0 or len(arrivals) < 2:
        return math.inf
    return max((arrivals[-1] - arrivals[0]) / points, 1e-3)


def simulate(workload: Workload, perf, config: SimConfig | None = None, **kw) -> dict:
    return Simulation(workload, perf, config, **kw).run()
