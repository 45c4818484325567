"""A discrete-event simulation of GPU replicas serving a workload, each driven by a core Scheduler.

Events are arrivals (read in order from the workload's columns) and, per replica, the end of
an iteration or a wake-up (a closing batching window, a throttled request's release). Ties are
broken by sequence number, so a run is a deterministic function of its inputs.

Fast mode: when a replica's batch only decodes and nothing can join it (see
`aps.core.fastforward`), the iterations up to the next completion, block shortage or arrival
are summed in closed form and applied at once. Step mode runs every iteration. Both give the
same per-request times (tests/sim/test_simulator.py checks it).

With `SimConfig.autoscale`, replicas are added and drained during the run by
`aps.sim.scaler.ClusterScaler`; arrivals are routed among `routable` replicas only. Without it
nothing of that runs: the event loop pays one comparison per event.
"""
from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable

from aps.core import BatchConfig, Request, Scheduler, StepPlan
from aps.core.autoscale import AutoscaleConfig
from aps.core.fastforward import advance_decode, can_continue, decode_horizon
from aps.perf import BatchShape, decode_run_within
from aps.sim.events import Event
from aps.sim.recorder import Recorder
from aps.sim.replica import Replica, decode_run_flops
from aps.sim.scaler import ClusterScaler
from aps.sim.summary import RunTotals, summarize
from aps.workload import Workload

ROUTERS = ("round-robin", "least-outstanding-tokens")
END, KICK = Event.END, Event.KICK


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
    autoscale: AutoscaleConfig | None = None  # replicas come and go (aps.sim.scaler)
    price: tuple[float, float] = (0.0, 0.0)  # dollars per prompt and output token (budgets)

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {self.replicas}")
        if self.router not in ROUTERS:
            raise ValueError(f"unknown router {self.router!r}; known: {', '.join(ROUTERS)}")


class Simulation:
    def __init__(self, workload: Workload, perf, config: SimConfig | None = None,
                 progress: Callable[[int], None] | None = None):
        self.w, self.perf = workload, perf
        self.cfg = config or SimConfig()
        self.replicas: list[Replica] = []  # every replica the run had, for the summary
        scale = self.cfg.autoscale
        for _ in range(scale.clamp(self.cfg.replicas) if scale else self.cfg.replicas):
            self.new_replica()
        self.routable = self.replicas  # where arrivals may go; a copy once replicas can leave
        self.rec = Recorder(workload)
        self.scaler: ClusterScaler | None = None
        if scale is not None:
            self.scaler = ClusterScaler(self, scale, (self.cfg.slo_ttft_s, self.cfg.slo_tpot_s))
            self.routable = list(self.replicas)
        self._events: list[tuple[float, int, Event, Replica | None]] = []  # (time, seq, kind, replica)
        self._seq = itertools.count()
        self._rr = 0
        self._progress = progress
        self.now = 0.0

    # -- what the scaler uses --------------------------------------------------------------

    def new_replica(self) -> Replica:
        replica = Replica(len(self.replicas), Scheduler(self.w.tenants, self.cfg.policy,
                                                        self.cfg.batch, **self.cfg.policy_params))
        self.replicas.append(replica)
        return replica

    def schedule(self, t: float, event: Event, replica: Replica | None) -> None:
        heapq.heappush(self._events, (t, next(self._seq), event, replica))

    # -- the loop --------------------------------------------------------------------------

    def _kick(self, replica: Replica, t: float) -> None:
        if replica.plan is None and t < replica.kick_at:
            replica.kick_at = t
            self.schedule(t, KICK, replica)

    def run(self) -> dict:
        events = self._events
        arrivals = self.w.arrival_s.tolist()  # plain floats: numpy scalars are slow one at a time
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
            if kind > KICK:  # the autoscaler's (TICK, READY): they do not move the work's clock
                self.scaler.on_event(kind, replica, t, i < n)
                continue
            self.now = t
            if kind is END:
                if not self._end_iteration(replica, t, arrivals[i] if i < n else math.inf):
                    self._step(replica, t, arrivals[i] if i < n else math.inf)
            elif t == replica.kick_at:
                replica.kick_at = math.inf
                if replica.plan is None:
                    self._step(replica, t, arrivals[i] if i < n else math.inf)
        return summarize(self.rec, self._totals(time.perf_counter() - started))

    def _settle(self, replica: Replica) -> None:
        """Record what ended on `replica`, in the step where it ended."""
        ended = replica.sched.pop_ended()
        if not ended:
            return
        self.rec.ended(ended)
        if self.scaler is not None:
            self.scaler.ended(ended, self.now)
        for req in ended:
            replica.outstanding_tokens -= req.prompt_tokens + req.max_tokens

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
                      self.now, int(w.bid[i]), price=self.cfg.price)
        replica.outstanding_tokens += prompt + out
        replica.sched.submit(req, self.now)
        replica.submitted = True
        self._settle(replica)
        self.rec.routed(i, replica.index)
        self._kick(replica, self.now)

    # -- iterations ------------------------------------------------------------------------

    def _step(self, replica: Replica, now: float, next_arrival: float) -> None:
        sched = replica.sched
        plan = sched.step(now)
        self._settle(replica)  # a step may end requests: expired, or refused once released
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
        k = decode_horizon(sched, plan) if self.cfg.fast else 0
        self._start(replica, plan, shape, k, now, next_arrival)

    def _start(self, replica: Replica, plan: StepPlan, shape: BatchShape, k: int, now: float,
               next_arrival: float) -> None:
        """Run `plan`: one iteration, or when it is the first of `k` decode iterations of an
        unchanged batch, as many of them as end by the next event from outside the replica
        (an arrival, a throttled request's release, a deadline)."""
        j = 0  # decode iterations run at once; 0: one plain step
        if k > 1:
            horizon = min(next_arrival, replica.sched.next_release(now),
                          replica.sched.next_deadline())
            j, seconds, flops = self._jump(shape, k, now, horizon)
        if j <= 1:
            seconds, flops = self.perf.iteration_time(shape), self.perf.iteration_flops(shape)
            j = 1 if k else 0
        replica.plan, replica.shape, replica.jump = plan, shape, j
        replica.left, replica.submitted = k - j, False
        replica.busy_s += seconds
        replica.flops += flops
        iterations = j or 1
        replica.iterations += iterations
        replica.scheduled += iterations * len(plan.scheduled)
        self.schedule(now + seconds, END, replica)

    def _jump(self, shape: BatchShape, k: int, now: float,
              horizon: float) -> tuple[int, float, float]:
        """The most decode iterations (<= k) that end no later than `horizon`, the next event
        from outside the replica (an arrival, a throttled request's release)."""
        d = shape.num_decode
        j, seconds = decode_run_within(self.perf.decode_terms(d), shape.decode_ctx_sum, d, now,
                                       horizon, k)
        if j <= 1:
            return 1, 0.0, 0.0
        return j, seconds, decode_run_flops(self.perf, shape, j)

    def _end_iteration(self, replica: Replica, t: float, next_arrival: float) -> bool:
        """Account the iteration(s) that end at `t`. Returns whether the replica went on with
        the next decode iteration of the same batch, without a step (`can_continue`)."""
        plan, replica.plan = replica.plan, None
        sched, j = replica.sched, replica.jump
        if not j:
            sched.complete_step(plan, t)
            self._settle(replica)
            return False
        more = replica.left > 0 and not replica.submitted and can_continue(sched, t)
        advance_decode(sched, j, t, reserve=1 if more else 0)
        self._settle(replica)
        if more:  # nothing finished (the run was short of the horizon): the same batch decodes
            d = replica.shape.num_decode  # each request's context grew by j
            shape = BatchShape(0, 0, 0, d, replica.shape.decode_ctx_sum + j * d)
            self._start(replica, plan, shape, replica.left, t, next_arrival)
        return more

    # -- the summary -----------------------------------------------------------------------

    def _totals(self, wall_s: float) -> RunTotals:
        rs, scaler, w = self.replicas, self.scaler, self.w
        makespan = max(self.now - float(w.arrival_s[0]), 1e-12) if len(w) else 0.0
        return RunTotals(
            makespan_s=makespan, wall_s=wall_s, replicas=len(rs),
            replica_seconds=None if scaler is None else scaler.replica_seconds(self.now),
            busy_s=sum(r.busy_s for r in rs), flops=sum(r.flops for r in rs),
            iterations=sum(r.iterations for r in rs), scheduled=sum(r.scheduled for r in rs),
            service=self.rec.service(rs), price_per_hour=self.perf.price_per_hour,
            peak_flops=self.perf.peak_flops, slo_ttft_s=self.cfg.slo_ttft_s,
            slo_tpot_s=self.cfg.slo_tpot_s,
            autoscale=None if scaler is None else scaler.summary(self.now, makespan))


def _sample_interval(arrivals: list[float], points: int) -> float:
    if points <= 0 or len(arrivals) < 2:
        return math.inf
    return max((arrivals[-1] - arrivals[0]) / points, 1e-3)


def simulate(workload: Workload, perf, config: SimConfig | None = None, **kw) -> dict:
    return Simulation(workload, perf, config, **kw).run()
