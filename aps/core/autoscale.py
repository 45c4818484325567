"""How many replicas the load asks for: a desired count from queue depth, KV usage and SLO
attainment, with the damping an autoscaler needs so that it does not flap.

    scaler = Autoscaler(AutoscaleConfig(min=1, max=8))
    decision = scaler.observe(now, replicas=2, queue_depth=40, kv_usage=0.9, slo_attainment=0.8)
    decision.desired, decision.reason      # 4, "queue depth 40 > 8 per replica x 2"

Each signal proposes a count, like one metric of a Kubernetes HPA:
- queue: `ceil(queue_depth / target_queue)`, a floor that holds while a backlog remains;
- KV usage (mean over the replicas serving): inside the band `[kv_low, kv_high]` it proposes
  the current count; outside, the count that brings usage back to `kv_high`;
- SLO attainment over a recent window: below target it proposes `replicas * target /
  attainment` (a missed SLO also forbids scaling down); at or above target it says nothing.
The largest proposal wins and names the reason. Then, as the HPA's `behavior` does:
- a scale-down takes the highest proposal of the last `stabilization_s` seconds, so a short
  lull does not release capacity a returning burst will need; the count in place when
  observation began counts as a proposal, so nothing is released before a full window;
- cool-downs: no scale-up within `up_cooldown_s` of the last change, no scale-down within
  `down_cooldown_s` of it;
- step limits: at most `max_step_up` replicas added and `max_step_down` removed at once.
Time is an argument: the same object runs in the simulator and, in wall time, in the server.

`AutoscaleConfig` is the `autoscale:` block of a scenario and of the gateway's configuration,
read by `parse_autoscale` (every field is optional; the defaults are the ones shown):

    autoscale:
      min: 1                  # replicas, at least and at most
      max: 8
      interval_s: 10          # how often the autoscaler looks
      target_queue: 8         # waiting requests per replica before adding one
      kv_high: 0.85           # mean KV usage above which to add replicas
      kv_low: 0.5             # ... below which to remove them
      slo_ttft_s: 2.0         # what a request that met its SLO looks like (default: the
      slo_tpot_s: 0.2         #   simulation's --slo-ttft/--slo-tpot; 2.0 and 0.2 s in the gateway)
      slo_target: 0.9         # fraction of requests ended in the last slo_window_s that
      slo_window_s: 60        #   should meet it
      up_cooldown_s: 30       # no scale-up within this long of the last change
      down_cooldown_s: 60     # no scale-down within this long of the last change
      stabilization_s: 300    # scale down only to the highest count proposed this long back
      max_step_up: 4          # replicas added at once, at most
      max_step_down: 1        # replicas drained at once, at most
      startup_s: 60           # simulator only: a new replica is routable this long after it
                              #   is asked for (the gateway starts nothing itself)
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, fields
from typing import Any, Callable

from aps.core.errors import ConfigError


@dataclass(slots=True)
class AutoscaleConfig:
    min: int = 1
    max: int = 8
    interval_s: float = 10.0
    target_queue: float = 8.0  # waiting requests one replica may hold
    kv_high: float = 0.85  # mean KV usage above which to add replicas
    kv_low: float = 0.5  # ... and below which replicas may go
    slo_ttft_s: float | None = None  # None: the SLO the caller judges by (`slo`)
    slo_tpot_s: float | None = None
    slo_target: float = 0.9  # fraction of recent requests meeting the SLO
    slo_window_s: float = 60.0
    up_cooldown_s: float = 30.0
    down_cooldown_s: float = 60.0
    stabilization_s: float = 300.0  # the HPA's default scale-down window
    max_step_up: int = 4
    max_step_down: int = 1
    startup_s: float = 60.0

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.max:
            raise ConfigError(f"autoscale: need 1 <= min <= max replicas, got "
                              f"{self.min} and {self.max}")
        if not 0 <= self.kv_low < self.kv_high <= 1:
            raise ConfigError(f"autoscale: need 0 <= kv_low < kv_high <= 1, got "
                              f"{self.kv_low} and {self.kv_high}")
        if not 0 < self.slo_target <= 1:
            raise ConfigError(f"autoscale: slo_target must be in (0, 1], got {self.slo_target}")
        if self.max_step_up < 1 or self.max_step_down < 1:
            raise ConfigError(f"autoscale: max_step_up and max_step_down must be >= 1, got "
                              f"{self.max_step_up} and {self.max_step_down}")
        for name in ("interval_s", "target_queue", "slo_ttft_s", "slo_tpot_s", "slo_window_s"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ConfigError(f"autoscale: {name} must be > 0, got {getattr(self, name)}")
        for name in ("up_cooldown_s", "down_cooldown_s", "stabilization_s", "startup_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"autoscale: {name} must be >= 0, got {getattr(self, name)}")

    def clamp(self, n: int) -> int:
        return max(self.min, min(self.max, n))

    def slo(self, ttft_s: float, tpot_s: float) -> tuple[float, float]:
        """The (TTFT, TPOT) a request must meet, this block's or else the ones given."""
        return (ttft_s if self.slo_ttft_s is None else self.slo_ttft_s,
                tpot_s if self.slo_tpot_s is None else self.slo_tpot_s)


_INTEGERS = frozenset({"min", "max", "max_step_up", "max_step_down"})


def parse_autoscale(data: dict[str, Any],
                    error: Callable[[str | None, str], Exception] | None = None) -> AutoscaleConfig:
    """Build the configuration from a plain mapping (YAML). `error(key, problem)` makes the
    exception (a scenario passes one that names the file and line); by default ConfigError."""
    def fail(key: str | None, problem: str) -> Exception:
        if error is not None:
            return error(key, problem)
        return ConfigError(f"autoscale{'.' + key if key else ''}: {problem}")

    known = [f.name for f in fields(AutoscaleConfig)]
    if not isinstance(data, dict):
        raise fail(None, f"expected a mapping, got {data!r}")
    for key, value in data.items():
        if key not in known:
            raise fail(key, f"unknown field (allowed: {', '.join(sorted(known))})")
        integer = key in _INTEGERS
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            raise fail(key, f"expected {'an integer' if integer else 'a number'}, got {value!r}")
    try:
        return AutoscaleConfig(**data)
    except ConfigError as exc:  # the message names the field: point at the key that set it
        named = next((k for k in data if f" {k} " in f" {exc} ".replace(",", " ")), None)
        raise fail(named, str(exc).removeprefix("autoscale: ")) from None


@dataclass(slots=True, frozen=True)
class Decision:
    desired: int
    reason: str  # which signal drove it, in words
    signal: str = "steady"  # queue | kv | slo | low-load | steady | hold


class Autoscaler:
    def __init__(self, config: AutoscaleConfig | None = None):
        self.cfg = config or AutoscaleConfig()
        self.desired: int | None = None  # the last decision's count; None before the first
        self._changed_at = -math.inf
        self._proposals: deque[tuple[float, int]] = deque()  # (time, count), for stabilisation

    def observe(self, now: float, replicas: int, queue_depth: int, kv_usage: float,
                slo_attainment: float | None = None) -> Decision:
        """The count to run, given `replicas` provisioned now. `slo_attainment` is None when
        no request ended recently (no evidence either way)."""
        cfg = self.cfg
        if self.desired is None:
            self.desired = cfg.clamp(replicas)
            self._proposals.append((now, self.desired))
        proposal, signal, reason = self._propose(replicas, queue_depth, kv_usage, slo_attainment)
        proposal = cfg.clamp(proposal)
        window = self._proposals
        window.append((now, proposal))
        while window[0][0] < now - cfg.stabilization_s:
            window.popleft()
        current = self.desired
        if proposal > current:
            if now - self._changed_at < cfg.up_cooldown_s:
                return self._hold(f"{reason}; scale-up cool-down until "
                                  f"t={self._changed_at + cfg.up_cooldown_s:.0f}s")
            return self._change(now, min(proposal, current + cfg.max_step_up), signal, reason)
        if proposal < current:
            stable = max(n for _, n in window)
            if stable >= current:
                return self._hold(f"{reason}; stabilising: {stable} proposed within "
                                  f"{cfg.stabilization_s:g}s")
            if now - self._changed_at < cfg.down_cooldown_s:
                return self._hold(f"{reason}; scale-down cool-down until "
                                  f"t={self._changed_at + cfg.down_cooldown_s:.0f}s")
            return self._change(now, max(stable, current - cfg.max_step_down), signal, reason)
        return Decision(current, reason, signal)

    def _change(self, now: float, desired: int, signal: str, reason: str) -> Decision:
        self.desired, self._changed_at = desired, now
        return Decision(desired, reason, signal)

    def _hold(self, reason: str) -> Decision:
        return Decision(self.desired, reason, "hold")

    def _propose(self, replicas: int, queue_depth: int, kv_usage: float,
                 slo: float | None) -> tuple[int, str, str]:
        """The count each signal asks for; the largest wins (ties: SLO, queue, KV)."""
        cfg, r = self.cfg, max(replicas, 1)
        by_queue = math.ceil(queue_depth / cfg.target_queue)
        by_kv = r if cfg.kv_low <= kv_usage <= cfg.kv_high else math.ceil(r * kv_usage / cfg.kv_high)
        by_slo = 0
        if slo is not None and slo < cfg.slo_target:
            by_slo = math.ceil(r * cfg.slo_target / max(slo, 0.01))
        best = max(by_slo, by_queue, by_kv)
        if best > r:
            if by_slo == best:
                return best, "slo", f"SLO attainment {slo:.1%} < {cfg.slo_target:.0%}"
            if by_queue == best:
                return best, "queue", (f"queue depth {queue_depth} > "
                                       f"{cfg.target_queue:g} per replica x {r}")
            return best, "kv", f"KV usage {kv_usage:.2f} > {cfg.kv_high:.2f}"
        if best < r:
            return best, "low-load", (f"KV usage {kv_usage:.2f} < {cfg.kv_low:.2f}, "
                                      f"queue depth {queue_depth}")
        attained = "-" if slo is None else f"{slo:.1%}"
        return r, "steady", (f"within targets: queue depth {queue_depth}, KV usage "
                             f"{kv_usage:.2f}, SLO attainment {attained}")


class SloWindow:
    """The fraction of requests that met their SLO among those ended in the last `window_s`
    seconds. Times must not decrease (they are the times requests ended)."""

    def __init__(self, window_s: float = 60.0):
        if window_s <= 0:
            raise ConfigError(f"autoscale: slo_window_s must be > 0, got {window_s}")
        self.window_s = window_s
        self._events: deque[tuple[float, bool]] = deque()
        self._met = 0

    def add(self, now: float, met: bool) -> None:
        self._events.append((now, met))
        self._met += met

    def attainment(self, now: float) -> float | None:
        events = self._events
        while events and events[0][0] < now - self.window_s:
            self._met -= events.popleft()[1]
        return self._met / len(events) if events else None
