"""ServeGen per-client traffic (Xiang et al., arXiv:2505.09999) turned into requests.

The files hold, per client and 600 s window, a mean rate and a fitted inter-arrival
distribution (Gamma or Weibull). As ServeGen's own generator does, arrivals are sampled per
client and window from that distribution, rescaled so its mean gap is 1 / rate_rps (the shape,
hence the burstiness, is kept). One tenant per client_id.

Token lengths come from the derived per-client token statistics when the client has them: a
lognormal with the window's median, spread to match its mean (or its p99 when the mean is not
above the median). Otherwise, default distributions apply.

Each (client, window) draws from its own seeded stream, so a narrower selection (fewer
clients, a shorter range) yields exactly a subset of a wider one.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aps.core.tenant import Tenant
from aps.workload.generators import LengthDist, LogNormal, renewal_arrivals
from aps.workload.tracefile import TRACES_DIR, make_tenants, read_csv
from aps.workload.workload import Workload, WorkloadError

WINDOW_S = 600.0
CLIENTS_FILE = "servegen_language_m-large_clients_day0.csv"
STATS_FILE = "servegen_language_m-large_client_token_stats_day0.csv"
Z99 = 2.326  # standard normal 99th percentile


def _read_clients(path: Path) -> dict[str, np.ndarray]:
    cols = read_csv(path, {"client_id": "nonneg_int", "window_start_s": "nonneg_float",
                           "rate_rps": "nonneg_float", "iat_cv": "nonneg_float",
                           "iat_dist": "text", "dist_param1": "nonneg_float",
                           "dist_param2": "nonneg_float"})
    dist = cols["iat_dist"]
    for i in range(len(dist)):
        active = cols["rate_rps"][i] > 0
        if dist[i] not in ("Gamma", "Weibull", "") or (active and dist[i] == ""):
            raise WorkloadError.at(path.name, i + 2, "iat_dist", f"expected Gamma or Weibull "
                                   f"(empty only when rate_rps is 0), got {dist[i]!r}")
        for field in ("dist_param1", "dist_param2"):
            if active and not cols[field][i] > 0:
                raise WorkloadError.at(path.name, i + 2, field,
                                       f"expected a number > 0, got {cols[field][i]!r}")
    return cols


Stats = dict[int, list[tuple[float, tuple[float, ...]]]]  # client -> [(window start, values)]


def _read_stats(path: Path) -> Stats:
    names = ["in_mean", "in_p50", "in_p99", "out_mean", "out_p50", "out_p99"]
    cols = read_csv(path, {"client_id": "nonneg_int", "window_start_s": "nonneg_float",
                           **{n: "nonneg_float" for n in names}})
    stats: Stats = {}
    for i, (c, w) in enumerate(zip(cols["client_id"], cols["window_start_s"])):
        stats.setdefault(int(c), []).append((float(w), tuple(float(cols[n][i]) for n in names)))
    for rows in stats.values():
        rows.sort()
    return stats


def _lognormal(mean: float, p50: float, p99: float) -> tuple[float, float]:
    """(mu, sigma) of a lognormal with median p50 and the given mean (or p99)."""
    median = max(p50, 1.0)
    if mean > median:
        sigma = math.sqrt(2 * math.log(mean / median))
    else:
        sigma = math.log(max(p99, median) / median) / Z99
    return math.log(median), min(sigma, 3.0)  # cap: a wider fit is noise from few samples


def _iat_draw(rng: np.random.Generator, dist: str, shape: float, rate: float):
    if dist == "Gamma":
        return lambda k: rng.gamma(shape, 1.0 / (rate * shape), k)
    scale = 1.0 / (rate * math.gamma(1.0 + 1.0 / shape))  # Weibull mean = scale * G(1 + 1/k)
    return lambda k: scale * rng.weibull(shape, k)


def _stats_for(stats: Stats, client: int, t: float) -> tuple[float, ...] | None:
    """The client's latest stats window starting at or before t, else its earliest one."""
    rows = stats.get(client)
    if not rows:
        return None
    before = [values for start, values in rows if start <= t]
    return before[-1] if before else rows[0][1]


def _window_requests(seed: int, row: int, cols: dict, stats: Stats, rate_scale: float,
                     defaults: tuple[LengthDist, LengthDist], max_tokens: tuple[int, int]):
    client, start = int(cols["client_id"][row]), float(cols["window_start_s"][row])
    rng = np.random.default_rng([seed, client, int(start)])
    rate = float(cols["rate_rps"][row]) * rate_scale
    draw = _iat_draw(rng, cols["iat_dist"][row], float(cols["dist_param1"][row]), rate)
    times = renewal_arrivals(draw, 1.0 / rate, None, WINDOW_S) + start
    n, found = len(times), _stats_for(stats, client, start)
    if found is None:
        return times, defaults[0].sample(rng, n), defaults[1].sample(rng, n)
    lengths = []
    for (mean, p50, p99), cap in zip((found[:3], found[3:]), max_tokens):
        mu, sigma = _lognormal(mean, p50, p99)
        lengths.append(np.clip(np.rint(rng.lognormal(mu, sigma, n)), 1, cap).astype(np.int32))
    return times, lengths[0], lengths[1]


def _select_rows(cols: dict, start_s: float, end_s: float, top_k: int | None,
                 clients: Sequence[int] | None) -> tuple[np.ndarray, list[int]]:
    starts, rates, ids = cols["window_start_s"], cols["rate_rps"], cols["client_id"]
    overlap = np.clip(np.minimum(starts + WINDOW_S, end_s) - np.maximum(starts, start_s), 0, None)
    rows = np.flatnonzero((overlap > 0) & (rates > 0))
    expected = np.bincount(ids[rows], weights=rates[rows] * overlap[rows])
    active = [int(c) for c in np.flatnonzero(expected > 0)]
    if clients is not None:
        active = [c for c in active if c in set(clients)]
    if top_k is not None:
        active = sorted(active, key=lambda c: (-expected[c], c))[:top_k]
    chosen = np.isin(ids[rows], active)
    return rows[chosen], sorted(active)


def read_servegen(path: str | Path | None = None, *, stats_path: str | Path | None = None,
                  top_k: int | None = None, clients: Sequence[int] | None = None,
                  start_s: float = 0.0, duration_s: float | None = WINDOW_S,
                  rate_scale: float = 1.0, max_requests: int | None = None, seed: int = 0,
                  tenants: Sequence[str | Tenant] | None = None,
                  default_prompt: LengthDist = LogNormal(800, 1.5),
                  default_output: LengthDist = LogNormal(100, 1.5),
                  max_prompt_tokens: int = 32768, max_output_tokens: int = 8192) -> Workload:
    """Requests of the ServeGen clients in [start_s, start_s + duration_s) of the file's time,
    shifted to start at 0.

    rate_scale multiplies every window's rate (the time span stays; there are more or fewer
    requests). top_k keeps the clients with most expected requests in the range; `clients`
    keeps the given ids. Tenants are named client-<id>; `tenants` may configure them by id.
    The token statistics file is used by default only with the shipped clients file.
    """
    if not rate_scale > 0:
        raise WorkloadError.bad_field("rate_scale", f"must be > 0, got {rate_scale}")
    if duration_s is not None and not duration_s > 0:
        raise WorkloadError.bad_field("duration_s", f"must be > 0, got {duration_s}")
    if top_k is not None and top_k < 1:
        raise WorkloadError.bad_field("top_k", f"must be >= 1, got {top_k}")
    cols = _read_clients(TRACES_DIR / CLIENTS_FILE if path is None else Path(path))
    if stats_path is None and path is None:
        stats_path = TRACES_DIR / STATS_FILE
    stats = _read_stats(Path(stats_path)) if stats_path is not None else {}
    end_s = math.inf if duration_s is None else start_s + duration_s
    rows, active = _select_rows(cols, start_s, end_s, top_k, clients)
    parts = [_window_requests(seed, int(r), cols, stats, rate_scale,
                              (default_prompt, default_output),
                              (max_prompt_tokens, max_output_tokens)) for r in rows]
    index = {c: i for i, c in enumerate(active)}
    owner = [np.full(len(p[0]), index[int(cols["client_id"][r])], np.int32)
             for p, r in zip(parts, rows)]
    name = "servegen" if path is None else Path(path).stem
    work = _assemble(name, [Tenant(f"client-{c}") for c in active], parts, owner, start_s, end_s)
    if max_requests is not None:
        work = work.head(max_requests)
    return work if tenants is None else work.with_tenants(make_tenants(tenants))


def _assemble(name: str, tenants: list[Tenant], parts: list, owner: list, start_s: float,
              end_s: float) -> Workload:
    if not parts:
        return Workload.build(name, tenants, [], [], [], [])
    arrival = np.concatenate([p[0] for p in parts])
    keep = (arrival >= start_s) & (arrival < end_s)
    return Workload.build(name, tenants, arrival[keep] - start_s, np.concatenate(owner)[keep],
                          np.concatenate([p[1] for p in parts])[keep],
                          np.concatenate([p[2] for p in parts])[keep])
