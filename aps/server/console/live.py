"""What the console shows, computed from the gateway's own counters: the scheduler, the
Prometheus histograms and counters of aps.server.metrics, the budgets' standing, the autoscaling
signal, the upstream pools, and the JSON summary of `/metrics?format=json` as it is.

The gateway samples only while someone asks (a console polling `/console/api/live`), at most
about once a second whoever asks, and keeps the last five minutes: a console that is not open
costs nothing, and a flood of polls costs one cached answer each. Rates, shares and quantiles
are differences between two samples, the way Prometheus computes them from the same counters:

- tokens/s: tokens computed for the tenant (prompt and output, as the fair-share policies count
  them) over the last `RATE_S` seconds;
- service share: the tenant's part of the tokens computed in the last `WINDOW_S` seconds, beside
  its entitlement, its weight over the weights of the tenants active in that window (waiting,
  running or served); a lower bid may get less than that while a higher bid's burst lasts;
- TTFT and TPOT p50/p99: interpolated in the buckets of `aps:time_to_first_token_seconds` and
  `aps:time_per_output_token_seconds` over the requests that ended in the last `WINDOW_S`
  seconds (as Prometheus's `histogram_quantile` does: a bucket's resolution);
- Jain's index: `live_jain`, over all service since the start (the figure of /metrics), and the
  same index over the last `WINDOW_S` seconds' service among the tenants active then.
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

from aps.core.stats import jain_index
from aps.server.metrics import live_jain
from aps.server.summary import summary

WINDOW_S = 60.0  # shares, quantiles and rejections: over the last minute
RATE_S = 5.0  # tokens per second: over the last five seconds
MIN_INTERVAL_S = 0.9  # at most about a sample a second, however many ask
KEEP_S = 300.0  # the charts' history: five minutes
QUANTILES = (0.5, 0.99)


@dataclass(slots=True)
class Counters:
    """The cumulative counters at one instant (monotonic seconds `t`)."""

    t: float
    service: dict[str, float]
    ttft: dict[str, list[tuple[float, float]]]  # tenant -> [(le, cumulative count)]
    tpot: dict[str, list[tuple[float, float]]]
    rejected: dict[str, dict[str, float]]  # tenant -> reason -> count
    batch: tuple[float, float] = (0.0, 0.0)  # iteration sizes: (sum, count)
    point: dict = field(default_factory=dict)  # what the charts plot at this instant


def histogram_buckets(histogram) -> dict[str, list[tuple[float, float]]]:
    """A labelled prometheus_client Histogram's cumulative buckets, per tenant."""
    out: dict[str, list[tuple[float, float]]] = {}
    for family in histogram.collect():
        for s in family.samples:
            if s.name.endswith("_bucket"):
                out.setdefault(s.labels.get("tenant", ""), []).append(
                    (float(s.labels["le"]), s.value))
    return out


def counter_values(counter, *labels: str) -> dict[tuple[str, ...], float]:
    """A labelled prometheus_client Counter's totals, by label values."""
    return {tuple(s.labels[k] for k in labels): s.value
            for family in counter.collect() for s in family.samples
            if s.name.endswith("_total")}


def histogram_sum_count(histogram) -> tuple[float, float]:
    """An unlabelled Histogram's sum and count."""
    total = count = 0.0
    for family in histogram.collect():
        for s in family.samples:
            if s.name.endswith("_sum"):
                total = s.value
            elif s.name.endswith("_count"):
                count = s.value
    return total, count


def quantile(q: float, now: list[tuple[float, float]],
             then: list[tuple[float, float]] | None) -> float | None:
    """The q-quantile of the observations between two readings of cumulative buckets, linearly
    interpolated within its bucket (Prometheus's `histogram_quantile`); None without any."""
    before = dict(then or ())
    buckets = [(le, count - before.get(le, 0.0)) for le, count in sorted(now)]
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    low, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):  # past the largest finite bound: say that bound
                return low
            return low + (le - low) * ((rank - below) / (count - below) if count > below else 1)
        low, below = le, count
    return low


class Console:
    """The console's live view of one gateway."""

    def __init__(self, gateway, clock=time.monotonic):
        self.gw, self.clock = gateway, clock
        self.samples: deque[Counters] = deque()
        self.view: dict | None = None

    def live(self, history: int = 0) -> dict:
        """The current view, and the last `history` chart points (oldest first)."""
        now = self.clock()
        if self.view is None or now - self.samples[-1].t >= MIN_INTERVAL_S:
            self._sample(now)
        points = [s.point for s in self.samples]
        return {**self.view, "history": points[-history:] if history > 0 else []}

    def _read(self, now: float) -> Counters:
        m = self.gw.metrics
        rejected: dict[str, dict[str, float]] = {}
        for (tenant, reason), n in counter_values(m.rejected, "tenant", "reason").items():
            rejected.setdefault(tenant, {})[reason] = n
        return Counters(now, {t: float(n) for t, n in self.gw.sched.service_tokens.items()},
                        histogram_buckets(m.ttft), histogram_buckets(m.tpot), rejected,
                        histogram_sum_count(m.batch))

    def _before(self, now: float, span: float) -> Counters | None:
        """The newest sample at least `span` seconds old, else the oldest there is."""
        chosen = None
        for s in self.samples:
            if now - s.t >= span or chosen is None:
                chosen = s
            else:
                break
        return chosen

    def _sample(self, now: float) -> None:
        cur = self._read(now)
        rate_then, window_then = self._before(now, RATE_S), self._before(now, WINDOW_S)
        self.view = self._view(cur, rate_then, window_then)
        self.samples.append(cur)
        while self.samples and now - self.samples[0].t > KEEP_S:
            self.samples.popleft()

    def _view(self, cur: Counters, rate_then: Counters | None,
              window_then: Counters | None) -> dict:
        gw, sched = self.gw, self.gw.sched
        waiting = sched.num_waiting_by_tenant
        running = sched.num_running_by_tenant
        rate_dt = cur.t - rate_then.t if rate_then else 0.0
        window_dt = cur.t - window_then.t if window_then else 0.0
        served = {t: n - (window_then.service.get(t, 0.0) if window_then else n)
                  for t, n in cur.service.items()}
        active = {t for t, state in sched.tenants.items()
                  if waiting.get(t) or running.get(t) or state.throttled or served.get(t, 0) > 0}
        active_weight = sum(sched.weights.get(t, 1.0) for t in active)
        served_total = sum(max(0.0, n) for n in served.values())
        tenants = []
        for tenant_id, state in sorted(sched.tenants.items()):
            t = state.tenant
            label = gw.metrics.label(tenant_id)
            rate = ((cur.service.get(tenant_id, 0.0) - rate_then.service.get(tenant_id, 0.0))
                    / rate_dt if rate_then and rate_dt > 0 else None)
            row = {"id": tenant_id, "weight": t.weight, "bid": t.bid, "max_bid": t.entitled_bid,
                   "waiting": waiting.get(tenant_id, 0), "running": running.get(tenant_id, 0),
                   "throttled": len(state.throttled), "in_flight": state.num_in_flight,
                   "tokens_per_s": rate, "service_tokens": cur.service.get(tenant_id, 0.0),
                   "share": (max(0.0, served.get(tenant_id, 0.0)) / served_total
                             if served_total > 0 else None),
                   "entitled_share": (t.weight / active_weight
                                      if tenant_id in active and active_weight > 0 else None),
                   "budget": self._budget(tenant_id),
                   "rejected": dict(sorted(cur.rejected.get(label, {}).items())),
                   "rejected_window": _diff(cur.rejected.get(label, {}),
                                            window_then.rejected.get(label, {})
                                            if window_then else {})}
            for name, buckets, old in (("ttft", cur.ttft, window_then and window_then.ttft),
                                       ("tpot", cur.tpot, window_then and window_then.tpot)):
                mine, before = buckets.get(label), (old or {}).get(label)
                for q in QUANTILES:
                    row[f"{name}_p{round(q * 100)}"] = quantile(q, mine, before) if mine else None
            tenants.append(row)
        fair = [max(0.0, served.get(t, 0.0)) / sched.weights.get(t, 1.0) for t in sorted(active)]
        batch = None
        if window_then is not None and cur.batch[1] > window_then.batch[1]:
            batch = (cur.batch[0] - window_then.batch[0]) / (cur.batch[1] - window_then.batch[1])
        total_rate = (sum(cur.service.values()) - sum(rate_then.service.values())) / rate_dt \
            if rate_then and rate_dt > 0 else None
        whole = {"jain": live_jain(sched), "jain_window": jain_index(fair) if fair else None,
                 "kv_cache_usage": sched.kv.usage, "running": sched.num_running,
                 "waiting": sched.num_waiting, "throttled": sched.num_throttled,
                 "max_num_seqs": sched.batch.max_num_seqs, "batch_mean": batch,
                 "tokens_per_s": total_rate, "active_tenants": len(active)}
        upstreams = self._upstreams()
        decision = gw.autoscale.decision
        autoscale = {"desired": decision.desired, "replicas": gw.autoscale.replicas,
                     "signal": decision.signal, "reason": decision.reason,
                     "min": gw.autoscale.settings.min, "max": gw.autoscale.settings.max}
        cur.point = {
            "time": time.time(), "jain": whole["jain"], "jain_window": whole["jain_window"],
            "kv_cache_usage": whole["kv_cache_usage"], "running": whole["running"],
            "waiting": whole["waiting"], "throttled": whole["throttled"],
            "batch_mean": batch, "tokens_per_s": total_rate, "desired": decision.desired,
            "in_flight": (sum(u["in_flight"] for u in upstreams) if upstreams is not None
                          else None),
            "tenants": {r["id"]: {"tokens_per_s": r["tokens_per_s"], "waiting": r["waiting"],
                                  "running": r["running"], "share": r["share"]}
                        for r in tenants}}
        return {"time": cur.point["time"], "mode": "upstream" if upstreams is not None
                else "simulated", "model": gw.backend.model_name, "policy": gw.config.policy,
                "window_s": WINDOW_S, "rate_window_s": RATE_S,
                "measured_s": {"window": window_dt, "rate": rate_dt},
                "admin_api": gw.config.admin_key is not None, "demo": gw.directory.demo,
                "summary": summary(gw, True), "whole": whole, "autoscale": autoscale,
                "upstreams": upstreams, "tenants": tenants}

    def _budget(self, tenant_id: str) -> dict | None:
        view = self.gw.budgets.standing.get(tenant_id)
        if view is None:
            return None
        spent = view["spent_usd"] + view["reserved_usd"]
        limit = view["budget_usd"]
        return {"budget_usd": limit, "spent_usd": spent, "remaining_usd": view["remaining_usd"],
                "fraction": spent / limit if limit > 0 else 1.0, "period": view["period"],
                "resets_at": view["resets_at"], "over_budget": view["over_budget"]}

    def _upstreams(self) -> list[dict] | None:
        """Each upstream replica: health, breaker, load (None in front of the simulated GPU)."""
        pools = getattr(self.gw.backend, "pools", None)
        if pools is None:
            return None
        out = []
        for pool in pools.values():
            now = pool.clock()
            for r in pool.replicas:
                out.append({"url": r.url, "model": r.model, "healthy": r.healthy,
                            "breaker": r.breaker.state(now).value,
                            "in_flight": r.num_in_flight, "max_in_flight": r.max_in_flight,
                            "tokens_in_flight": r.num_tokens_in_flight,
                            "max_tokens_in_flight": r.max_tokens_in_flight,
                            "errors": r.num_errors})
        return out


def _diff(now: dict[str, float], then: dict[str, float]) -> dict[str, float]:
    return {k: v - then.get(k, 0.0) for k, v in sorted(now.items()) if v - then.get(k, 0.0) > 0}
