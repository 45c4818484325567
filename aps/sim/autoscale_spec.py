"""A scenario's `autoscale:` block: when present, the simulated cluster grows and shrinks.

    autoscale:
      min: 1                  # replicas, at least and at most
      max: 8
      startup_s: 60           # a new replica takes this long before it is routable
      interval_s: 10          # how often the autoscaler looks
      target_queue: 8         # waiting requests per replica before adding one
      kv_high: 0.85           # mean KV usage above which to add replicas
      kv_low: 0.5             # ... below which to remove them
      slo_target: 0.9         # fraction of requests ended in the last slo_window_s that met
      slo_window_s: 60        #   the run's SLO (--slo-ttft, --slo-tpot)
      up_cooldown_s: 30       # no scale-up within this long of the last change
      down_cooldown_s: 60     # no scale-down within this long of the last change
      stabilization_s: 300    # scale down only to the highest count proposed this long back
      max_step_up: 4          # replicas added at once, at most
      max_step_down: 1        # replicas drained at once, at most

Every field is optional; the defaults are the ones shown.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from aps.core.autoscale import AutoscaleConfig
from aps.core.errors import ConfigError

# YAML key -> (AutoscaleConfig field, or None for the simulator's own settings; kind)
FIELDS: dict[str, tuple[str | None, str]] = {
    "min": ("min_replicas", "int"), "max": ("max_replicas", "int"),
    "startup_s": (None, "number"), "interval_s": (None, "number"),
    "slo_window_s": (None, "number"),
    "target_queue": ("target_queue_per_replica", "number"),
    "kv_high": ("kv_high", "number"), "kv_low": ("kv_low", "number"),
    "slo_target": ("slo_target", "number"),
    "up_cooldown_s": ("up_cooldown_s", "number"), "down_cooldown_s": ("down_cooldown_s", "number"),
    "stabilization_s": ("down_stabilization_s", "number"),
    "max_step_up": ("max_step_up", "int"), "max_step_down": ("max_step_down", "int"),
}


@dataclass(slots=True)
class ScaleSettings:
    policy: AutoscaleConfig = field(default_factory=AutoscaleConfig)
    startup_s: float = 60.0
    interval_s: float = 10.0
    slo_window_s: float = 60.0

    def __post_init__(self) -> None:
        if self.startup_s < 0:
            raise ConfigError(f"autoscale: startup_s must be >= 0, got {self.startup_s}")
        for name in ("interval_s", "slo_window_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"autoscale: {name} must be > 0, got {getattr(self, name)}")


def settings_from(data: dict[str, Any],
                  error: Callable[[str | None, str], Exception] | None = None) -> ScaleSettings:
    """Build the settings from the plain mapping; `error(key, problem)` makes the exception
    (a scenario passes one that names the file and line)."""
    def fail(key: str | None, problem: str) -> Exception:
        if error is not None:
            return error(key, problem)
        return ConfigError(f"autoscale{'.' + key if key else ''}: {problem}")

    policy, own = {}, {}
    for key, value in data.items():
        if key not in FIELDS:
            raise fail(key, f"unknown field (allowed: {', '.join(sorted(FIELDS))})")
        target, kind = FIELDS[key]
        if isinstance(value, bool) or not isinstance(value, int if kind == "int" else (int, float)):
            raise fail(key, f"expected {'an integer' if kind == 'int' else 'a number'}, got {value!r}")
        (policy if target else own)[target or key] = value
    try:
        return ScaleSettings(AutoscaleConfig(**policy), **own)
    except ConfigError as exc:
        # The message names the config field; point at the YAML key that set it.
        named = next((k for k, (f, _) in FIELDS.items() if k in data and (f or k) in str(exc)), None)
        raise fail(named, str(exc).removeprefix("autoscale: ")) from None
