"""The gateway's autoscaling signal: `aps:desired_replicas`, and a log line on every change.

Every `interval_s` the core Autoscaler looks at the live scheduler: its waiting queue, its KV
usage and the SLO attainment of the requests that finished in the last `slo_window_s`. The
gateway does not start or stop anything itself: an external actuator (a Kubernetes HPA on
this gauge through a metrics adapter, KEDA's Prometheus scaler, a script) reads the count.
The `autoscale:` block is the simulator's too (`aps.core.autoscale.AutoscaleConfig`, every
field documented there); `startup_s` is the simulator's only.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from prometheus_client.core import GaugeMetricFamily

from aps.core import Request, Scheduler, Status
from aps.core.autoscale import AutoscaleConfig, Autoscaler, Decision, SloWindow

log = logging.getLogger("aps.autoscale")
SLO = (2.0, 0.2)  # (TTFT, TPOT) seconds a request must meet when the block names none


class AutoscaleSignal:
    """Observes the scheduler, holds the latest decision, logs when the count changes."""

    def __init__(self, settings: AutoscaleConfig, sched: Scheduler, now: Callable[[], float],
                 replicas: int = 1):
        self.settings, self.sched, self.now = settings, sched, now
        self.replicas = replicas  # engines this gateway serves with now
        self.autoscaler = Autoscaler(settings)
        self.slo = SloWindow(settings.slo_window_s)
        self.slo_ttft_s, self.slo_tpot_s = settings.slo(*SLO)
        self.decision = Decision(settings.clamp(replicas), "no observation yet")

    def on_end(self, req: Request, now: float) -> None:
        if req.status is not Status.FINISHED or req.ttft is None:
            return  # cancelled, failed or refused requests say nothing about latency
        tpot = req.tpot
        self.slo.add(now, req.ttft <= self.slo_ttft_s and (tpot is None or tpot <= self.slo_tpot_s))

    def tick(self) -> Decision:
        now = self.now()
        d = self.autoscaler.observe(now, self.replicas, self.sched.num_waiting,
                                    self.sched.kv.usage, self.slo.attainment(now))
        if d.desired != self.decision.desired:
            log.info("desired replicas %d -> %d: %s", self.decision.desired, d.desired, d.reason)
        self.decision = d
        return d

    async def run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # a bad observation must not end the signal for good
                log.exception("autoscaling signal failed; trying again next interval")
            await asyncio.sleep(self.settings.interval_s)

    def collect(self):
        """Prometheus collector protocol: the gauge, read at scrape time."""
        yield GaugeMetricFamily("aps:desired_replicas", "Replicas the autoscaling signal asks "
                                "for (queue depth, KV usage, SLO attainment)",
                                value=self.decision.desired)
