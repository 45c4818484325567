"""Replicas that come and go in a simulation, as the core Autoscaler decides.

Every `interval_s` the autoscaler observes the cluster: the provisioned count (routable plus
starting replicas, so a replica still starting is not asked for twice), the waiting requests
of every live replica, the mean KV usage of the routable ones and the SLO attainment of the
requests that ended in the last `slo_window_s`. Then:
- more replicas wanted: new ones start, and become routable `startup_s` later;
- fewer: replicas still starting are cancelled first (newest first: nothing runs on them),
  then routable ones are drained: no new request is routed to them, those they hold run to
  the end, and the replica is removed once empty. No request moves or is lost.
A replica costs from the moment it is asked for (a starting GPU is paid for) until removed.
The scaler's own events never move the simulation's clock, so the run's makespan and
throughput are measured as in a fixed-size run.
"""
from __future__ import annotations

import math
from typing import Protocol

from aps.core import Request, Status
from aps.core.autoscale import AutoscaleConfig, Autoscaler, SloWindow
from aps.sim.events import Event
from aps.sim.replica import Replica

MAX_EVENTS = 500  # scale events kept for the summary


class Cluster(Protocol):
    """What the scaler needs of the simulation."""

    replicas: list[Replica]  # every replica the run had
    routable: list[Replica]  # where arrivals may go

    def new_replica(self) -> Replica: ...
    def schedule(self, t: float, event: Event, replica: Replica | None) -> None: ...


class ClusterScaler:
    def __init__(self, sim: Cluster, settings: AutoscaleConfig, slo: tuple[float, float]):
        """`slo`: the (TTFT, TPOT) a request must meet, unless the settings name their own."""
        self.sim, self.s = sim, settings
        self.autoscaler = Autoscaler(settings)
        self.slo = SloWindow(settings.slo_window_s)
        self.slo_ttft_s, self.slo_tpot_s = settings.slo(*slo)
        self.starting: list[Replica] = []
        self.since: dict[int, float] = {}  # replica index -> provisioned at
        self.until: dict[int, float] = {}  # replica index -> removed at
        self.drained_at: dict[int, float] = {}  # replica index -> stopped taking requests
        self.events: list[dict] = []
        self.timeline: dict[str, list] = {"t": [], "provisioned": [], "ready": []}
        self._ups = self._downs = 0
        self._done = False

    # -- what the simulation calls ---------------------------------------------------------

    def begin(self, t: float) -> None:
        for r in self.sim.replicas:
            self.since[r.index] = t
        self._note(t)
        self.sim.schedule(t, Event.TICK, None)

    def on_event(self, kind: Event, replica: Replica | None, t: float, more_arrivals: bool) -> None:
        if kind is Event.READY:
            if replica in self.starting:  # else it was cancelled while starting
                self.starting.remove(replica)
                self.sim.routable.append(replica)
                self._note(t)
            return
        self._tick(t)
        if more_arrivals or self.starting or any(r.sched.requests for r in self._live()):
            self.sim.schedule(t + self.s.interval_s, Event.TICK, None)
        else:  # the work is done: stop looking, or the clock would never stop
            self._done = True

    def ended(self, requests: list[Request], now: float) -> None:
        """Feed the SLO window with the requests that finished."""
        for req in requests:
            if req.status is Status.FINISHED:
                tpot = req.tpot
                self.slo.add(now, req.ttft <= self.slo_ttft_s and
                             (tpot is None or tpot <= self.slo_tpot_s))

    def retire(self, replica: Replica, t: float) -> None:
        """A draining replica has emptied: it is removed."""
        if replica.index not in self.until:
            self.until[replica.index] = t
            self._note(t)

    # -- deciding and acting ---------------------------------------------------------------

    def _live(self) -> list[Replica]:
        return [r for r in self.sim.replicas if r.index not in self.until]

    def _tick(self, t: float) -> None:
        routable = self.sim.routable
        provisioned = len(routable) + len(self.starting)
        queue = sum(r.sched.num_waiting for r in self._live())
        blocks = sum(r.sched.kv.num_blocks for r in routable)
        kv = sum(r.sched.kv.num_used_blocks for r in routable) / blocks if blocks else 0.0
        d = self.autoscaler.observe(t, provisioned, queue, kv, self.slo.attainment(t))
        if d.desired > provisioned:
            for _ in range(d.desired - provisioned):
                self._start(t)
            self._ups += 1
        elif d.desired < provisioned:
            for _ in range(provisioned - d.desired):
                self._stop_one(t)
            self._downs += 1
        else:
            return
        if len(self.events) < MAX_EVENTS:
            self.events.append({"t": t, "from": provisioned, "to": d.desired,
                                "signal": d.signal, "reason": d.reason})
        self._note(t)

    def _start(self, t: float) -> None:
        replica = self.sim.new_replica()
        self.since[replica.index] = t
        self.starting.append(replica)
        self.sim.schedule(t + self.s.startup_s, Event.READY, replica)

    def _stop_one(self, t: float) -> None:
        if self.starting:
            replica = self.starting.pop()
            self.until[replica.index] = t
            return
        routable = self.sim.routable
        # the one with the least work left empties soonest
        replica = min(routable, key=lambda r: (r.outstanding_tokens, -r.index))
        routable.remove(replica)
        replica.draining = True
        self.drained_at[replica.index] = t
        if replica.plan is None and not replica.sched.requests:
            self.retire(replica, t)

    def _note(self, t: float) -> None:
        tl = self.timeline
        provisioned = len(self.sim.routable) + len(self.starting)
        if tl["t"] and tl["t"][-1] == t:  # several changes at one instant: keep the last
            tl["provisioned"][-1], tl["ready"][-1] = provisioned, len(self.sim.routable)
            return
        tl["t"].append(t)
        tl["provisioned"].append(provisioned)
        tl["ready"].append(len(self.sim.routable))

    # -- what the run reports --------------------------------------------------------------

    def replica_seconds(self, end: float) -> float:
        return sum(max(0.0, self.until.get(i, end) - t0) for i, t0 in self.since.items())

    def summary(self, end: float, makespan: float) -> dict:
        counts = self.timeline["provisioned"]
        replica_s = self.replica_seconds(end)
        timeline = {k: list(v) for k, v in self.timeline.items()}
        if timeline["t"][-1] < end:  # the last count holds to the end of the run
            for k, v in (("t", end), ("provisioned", counts[-1]), ("ready", timeline["ready"][-1])):
                timeline[k].append(v)
        return {
            "min_replicas": min(counts), "max_replicas": max(counts),
            "mean_replicas": replica_s / makespan if makespan else math.nan,
            "replica_seconds": replica_s, "startup_s": self.s.startup_s,
            "scale_ups": self._ups, "scale_downs": self._downs,
            "events": self.events, "timeline": timeline,
        }

