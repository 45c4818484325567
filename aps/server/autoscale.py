"""The gateway's autoscaling signal: `aps:desired_replicas`, and a log line on every change.

Every `interval_s` the core Autoscaler looks at the live scheduler: its waiting queue, its KV
usage and the SLO attainment of the requests that finished in the last `slo_window_s`. The
gateway does not start or stop anything itself: an external actuator (a Kubernetes HPA on
this gauge through a metrics adapter, KEDA's Prometheus scaler, a script) reads the count.

    autoscale:
      min: 1                 # bounds of the desired count
      max: 8
      interval_s: 5          # how often to look
      target_queue: 8        # waiting requests per replica before asking for another
      kv_high: 0.85          # KV usage above which to ask for more, below kv_low for fewer
      kv_low: 0.5
      slo_ttft_s: 2.0        # what a request that met its SLO looks like
      slo_tpot_s: 0.2
      slo_target: 0.9        # fraction of recent requests that should meet it
      slo_window_s: 60
      up_cooldown_s: 30      # damping: see aps/core/autoscale.py
      down_cooldown_s: 60
      stabilization_s: 300
      max_step_up: 4
      max_step_down: 1
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, ConfigDict, Field, model_validator

from aps.core import Request, Scheduler, Status
from aps.core.autoscale import AutoscaleConfig, Autoscaler, Decision, SloWindow
from aps.core.errors import ConfigError

log = logging.getLogger("aps.autoscale")


class AutoscaleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: int = 1
    max: int = 8
    interval_s: float = Field(5.0, gt=0)
    target_queue: float = 8.0
    kv_high: float = 0.85
    kv_low: float = 0.5
    slo_ttft_s: float = Field(2.0, gt=0)
    slo_tpot_s: float = Field(0.2, gt=0)
    slo_target: float = 0.9
    slo_window_s: float = Field(60.0, gt=0)
    up_cooldown_s: float = 30.0
    down_cooldown_s: float = 60.0
    stabilization_s: float = 300.0
    max_step_up: int = 4
    max_step_down: int = 1

    def policy(self) -> AutoscaleConfig:
        return AutoscaleConfig(
            min_replicas=self.min, max_replicas=self.max, target_queue_per_replica=self.target_queue,
            kv_high=self.kv_high, kv_low=self.kv_low, slo_target=self.slo_target,
            up_cooldown_s=self.up_cooldown_s, down_cooldown_s=self.down_cooldown_s,
            down_stabilization_s=self.stabilization_s, max_step_up=self.max_step_up,
            max_step_down=self.max_step_down)

    @model_validator(mode="after")
    def _check(self) -> "AutoscaleSettings":
        try:
            self.policy()
        except ConfigError as exc:  # pydantic reports a ValueError as a validation error
            raise ValueError(str(exc).removeprefix("autoscale: ")) from None
        return self


class AutoscaleSignal:
    """Observes the scheduler, holds the latest decision, logs when the count changes."""

    def __init__(self, settings: AutoscaleSettings, sched: Scheduler, now: Callable[[], float],
                 replicas: int = 1):
        self.settings, self.sched, self.now = settings, sched, now
        self.replicas = replicas  # engines this gateway serves with now
        self.autoscaler = Autoscaler(settings.policy())
        self.slo = SloWindow(settings.slo_window_s)
        self.decision = Decision(self.autoscaler.cfg.clamp(replicas), "no observation yet")

    def on_end(self, req: Request, now: float) -> None:
        if req.status is not Status.FINISHED or req.ttft is None:
            return  # cancelled, failed or refused requests say nothing about latency
        s, tpot = self.settings, req.tpot
        self.slo.add(now, req.ttft <= s.slo_ttft_s and (tpot is None or tpot <= s.slo_tpot_s))

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
