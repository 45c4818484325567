"""The replay part of `aps bench upstream` (`run`): a real multi-tenant trace (the `vtc-lmsys` scenario,
27 LMSYS tenants with very unequal rates) sent to the upstream straight and through APS.

The trace is scaled to the engine before it is sent:
- lengths: a prompt is clipped to half the model's context (`max_model_len` as the upstream
  reports it on /v1/models), its output to what the context leaves; an upstream that reports
  no context (the simulated GPU) gets the trace's lengths;
- time: a short saturating probe straight to the engine measures the output tokens/s it serves
  on this mix; the trace is then compressed so that its requests ask for OVERLOAD times that;
- size: the first requests whose outputs take the engine about `seconds` to serve, so each run
  is bounded.

Each request is a streamed completion (`stream_options.include_usage`, `ignore_eos`, so the
output is as long as the trace says) sent by an open-loop asyncio client at its arrival time,
only to 127.0.0.1. Its time to first token counts from that arrival time; throughput is the
served output tokens over the run's duration (first arrival to last answer).
"""
from __future__ import annotations

import asyncio
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from aps.bench.local.processes import cpu_wait_s
from aps.bench.local.server import LocalServer
from aps.bench.upstream import Target, off_vllms_core, upstream
from aps.server.config import ServerConfig
from aps.workload.scenarios import load_scenario

SCENARIO = "vtc-lmsys"
OVERLOAD = 1.25  # arrivals ask for this many times what the engine serves
LIGHT_MAX_REQUESTS = 30  # a light tenant sends at most this many requests in the replayed cut
PROBE_S = 15.0  # the capacity probe's length; its first fifth, while the engine fills, is skipped


@dataclass
class Plan:
    """The scaled trace: one row per request, arrivals in seconds from the replay's start."""

    arrival_s: np.ndarray
    tenant: list[str]
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    context: int | None  # the model's context the lengths were clipped to (None: not clipped)
    capacity_tok_s: float  # output tokens/s the engine served in the probe
    rate_scale: float  # the trace's time divided by this

    @property
    def light(self) -> set[str]:
        counts: dict[str, int] = {}
        for t in self.tenant:
            counts[t] = counts.get(t, 0) + 1
        return {t for t, n in counts.items() if n <= LIGHT_MAX_REQUESTS}


def trace_lengths(context: int | None) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """The scenario's arrivals, tenants and lengths, clipped to `context`."""
    w = load_scenario(SCENARIO).workload
    prompt, output = w.prompt_tokens.astype(np.int64), w.output_tokens.astype(np.int64)
    if context is not None:
        # the prompt gets at most half the context, so that every request still has a long
        # output; a few tokens are left spare for the unique prefix that defeats prefix caching
        prompt = np.minimum(prompt, context // 2)
        output = np.maximum(1, np.minimum(output, context - prompt - 8))
    return w.arrival_s, list(w.tenant_ids()), prompt, output


def context_of(url: str, key: str) -> int | None:
    """The model's context as the server reports it (vLLM's `max_model_len`), else None."""
    r = httpx.get(url + "/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    r.raise_for_status()
    return next((m["max_model_len"] for m in r.json()["data"] if "max_model_len" in m), None)


class Prompts:
    """Prompts of a given token count: a unique start (the run's number and the request's, each
    digit a token in most vocabularies), so that no prefix cache serves one request, or one
    run, from another; then a filler unit repeated. How many tokens the start and the unit make
    is measured once on the server, from its own usage counts."""

    UNIT = " 1"

    def __init__(self, base: float = 0.0, per_unit: float = 1.0):
        self.base, self.per_unit = base, per_unit
        self.run = 0  # `next_run` before each run: the probe, straight, through APS

    def text(self, i: int, units: int) -> str:
        return " ".join(f"{self.run}.{i}") + ":" + self.UNIT * units

    def next_run(self) -> "Prompts":
        self.run += 1
        return self

    async def calibrate(self, client: httpx.AsyncClient, url: str, key: str, model: str) -> None:
        counts = []
        for units in (10, 110):
            body = {"model": model, "prompt": self.text(123, units), "max_tokens": 1}
            r = await client.post(url + "/completions", json=body,
                                  headers={"Authorization": f"Bearer {key}"})
            r.raise_for_status()
            counts.append(r.json()["usage"]["prompt_tokens"])
        self.per_unit = max(1e-3, (counts[1] - counts[0]) / 100)
        self.base = counts[0] - 10 * self.per_unit

    def make(self, i: int, tokens: int) -> str:
        return self.text(i, max(0, round((tokens - self.base) / self.per_unit)))


async def send(client: httpx.AsyncClient, url: str, key: str, model: str, prompt: str,
               max_tokens: int) -> tuple[float | None, float, int, int]:
    """One streamed completion: (first token, end) as perf_counter times, and the usage's
    prompt and output tokens (0, 0 when the server sent none)."""
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True,
            "temperature": 1.0, "stream": True, "stream_options": {"include_usage": True}}
    first, usage = None, {}
    async with client.stream("POST", url + "/completions", json=body,
                             headers={"Authorization": f"Bearer {key}"}) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                continue
            chunk = json.loads(line[5:])
            choices = chunk.get("choices") or []
            if first is None and choices and choices[0].get("text"):
                first = time.perf_counter()
            usage = chunk.get("usage") or usage
    return first, time.perf_counter(), usage.get("prompt_tokens", 0), \
        usage.get("completion_tokens", 0)


def _client() -> httpx.AsyncClient:
    # one connection per request in flight, however many; keep-alive shorter than uvicorn's 5 s
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None,
                          keepalive_expiry=2.0)
    return httpx.AsyncClient(timeout=httpx.Timeout(600, connect=10), limits=limits)


async def probe(url: str, key: str, model: str, seats: int, context: int | None,
                prompts: Prompts, seconds: float = PROBE_S) -> float:
    """Output tokens/s the engine serves on the trace's mix: 2 x `seats` closed-loop clients
    (so requests always wait at the engine) send the trace's requests in order for `seconds`;
    each request's output is spread evenly from its first token to its end, and what falls
    after the first fifth and before the clients stop is counted."""
    _, _, prompt, output = trace_lengths(context)
    prompts.next_run()
    served: list[tuple[float, float, int]] = []
    nxt = iter(range(len(prompt)))
    async with _client() as client:
        t0 = time.perf_counter()
        stop = t0 + seconds

        async def worker() -> None:
            while time.perf_counter() < stop:
                i = next(nxt)
                first, end, _, out = await send(client, url, key, model,
                                                prompts.make(i, int(prompt[i])), int(output[i]))
                served.append((first or end, end, out))
        await asyncio.gather(*(worker() for _ in range(2 * seats)))
    lo, hi = t0 + seconds / 5, stop
    tokens = sum(n * max(0.0, min(e, hi) - max(f, lo)) / (e - f) for f, e, n in served if e > f)
    return tokens / (hi - lo)


def plan(capacity_tok_s: float, context: int | None, seconds: float) -> Plan:
    """The first requests whose outputs the engine serves in about `seconds`, compressed in
    time so that they arrive at OVERLOAD x its capacity."""
    if not capacity_tok_s > 0:
        raise RuntimeError("the capacity probe saw no output tokens: is the upstream serving?")
    arrival, tenant, prompt, output = trace_lengths(context)
    n = int(np.searchsorted(np.cumsum(output), capacity_tok_s * seconds)) + 1
    n = max(2, min(n, len(arrival)))
    span = float(arrival[n - 1] - arrival[0])
    offered = float(output[:n].sum()) / span  # output tokens/s the cut asks for, uncompressed
    scale = OVERLOAD * capacity_tok_s / offered
    return Plan((arrival[:n] - arrival[0]) / scale, tenant[:n], prompt[:n], output[:n],
                context, capacity_tok_s, scale)


async def replay(p: Plan, url: str, keys: dict[str, str] | str, model: str,
                 prompts: Prompts, limit_s: float) -> dict:
    """Send every request of `p` at its arrival time (`keys`: each tenant's key, or one key
    for all); give up on what has not ended `limit_s` after the start (counted as errors)."""
    n = len(p.arrival_s)
    ttft = [float("nan")] * n
    ends = [float("nan")] * n
    tokens = np.zeros((n, 2), dtype=np.int64)
    errors: list[str] = []
    prompts.next_run()
    async with _client() as client:
        t0 = time.perf_counter()

        async def one(i: int) -> None:
            await asyncio.sleep(max(0.0, t0 + p.arrival_s[i] - time.perf_counter()))
            key = keys if isinstance(keys, str) else keys[p.tenant[i]]
            try:
                first, end, tokens[i, 0], tokens[i, 1] = await send(
                    client, url, key, model, prompts.make(i, int(p.prompt_tokens[i])),
                    int(p.output_tokens[i]))
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            arrived = t0 + p.arrival_s[i]
            ttft[i] = (first if first is not None else end) - arrived
            ends[i] = end - t0
        cpu0 = time.process_time()
        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        _, pending = await asyncio.wait(tasks, timeout=limit_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        client_cpu = time.process_time() - cpu0
    errors += ["not ended in time"] * len(pending)
    duration = float(np.nanmax(ends)) if not np.isnan(ends).all() else float("nan")
    return {"ttft": np.array(ttft), "duration_s": duration, "tokens": tokens,
            "errors": errors, "client_cpu_s": client_cpu}


def summarize(p: Plan, runs: list[dict]) -> dict:
    """One path's runs of `p` (what `replay` returns) pooled: every request's time to first
    token, throughput as all their tokens over all their durations, and each run's own."""
    lights = p.light
    light = np.tile([t in lights for t in p.tenant], len(runs))
    ttft = np.concatenate([r["ttft"] for r in runs])
    tokens = np.concatenate([r["tokens"] for r in runs])
    errors = [e for r in runs for e in r["errors"]]
    ok = ~np.isnan(ttft)
    duration = sum(r["duration_s"] for r in runs)
    out, total = int(tokens[:, 1].sum()), int(tokens.sum())

    def mean(mask: np.ndarray) -> float:
        return float(ttft[mask & ok].mean()) if (mask & ok).any() else float("nan")

    def q(mask: np.ndarray, pct: float) -> float:
        return float(np.percentile(ttft[mask & ok], pct)) if (mask & ok).any() else float("nan")
    return {"requests": len(p.tenant), "light_requests": int(light.sum()) // len(runs),
            "light_ttft_mean_s": mean(light), "light_ttft_p50_s": q(light, 50),
            "light_ttft_p90_s": q(light, 90), "heavy_ttft_mean_s": mean(~light),
            "heavy_ttft_p50_s": q(~light, 50), "heavy_ttft_p90_s": q(~light, 90),
            "output_tokens": out, "output_tokens_per_s": out / duration,
            "total_tokens_per_s": total / duration, "duration_s": duration,
            "runs_output_tokens_per_s": [int(r["tokens"][:, 1].sum()) / r["duration_s"]
                                         for r in runs],
            "errors": len(errors), "first_error": errors[0] if errors else None,
            "client_cpu_s": sum(r["client_cpu_s"] for r in runs),
            "upstream_cpu_wait_s": sum(r.get("upstream_cpu_wait_s", float("nan")) for r in runs)}


def gateway_config(root: str, model: str, tenants: list[str], seats: int,
                   policy: str | None = None, api_key: str | None = None,
                   extra: str = "") -> str:
    """The gateway in front of the engine: one key per tenant, `seats` in flight as the engine
    runs at once, and the default policy unless `policy` names one."""
    lines = [f"policy: {policy}"] if policy else []
    key = f", api_key: {api_key}" if api_key else ""
    lines += ["drain_timeout_s: 5", "tenants:"]
    lines += [f"  - {{id: {t}, keys: [sk-{t}]}}" for t in tenants]
    lines += ["upstreams:", f"  - {{url: {root}, model: {model}, max_in_flight: {seats}{key}}}"]
    return "\n".join(lines) + "\n" + extra


def _ttft(x: dict, who: str) -> str:
    return " / ".join(f"{x[f'{who}_ttft_{s}_s']:.2f}" for s in ("mean", "p50", "p90"))


def report(r: dict) -> list[str]:
    """The replay's result as lines of text (what `aps bench upstream` prints)."""
    clip = f"lengths clipped to the {r['context']}-token context" if r["context"] else \
        "lengths as the trace says (the upstream reports no context)"
    lines = [f"{r['scenario']} replay against {r['upstream']}: {r['requests']} requests from "
             f"{r['tenants']} tenants ({r['light_tenants']} light: at most {LIGHT_MAX_REQUESTS} "
             f"requests each); the engine served {r['capacity_tok_s']:,.0f} output tokens/s in "
             f"the probe, so the trace runs {r['rate_scale']:.2f}x faster (arrivals over "
             f"{r['arrivals_s']:.0f} s ask {r['overload']}x that); {clip}; the gateway has "
             f"{r['seats']} seats, {r['reserved_seats']} reserved for tenants with nothing "
             f"running; "
             f"{r['rounds']} runs on each path, alternating, pooled below",
             f"{'path':<24}{'light TTFT mean/p50/p90 s':>27}{'heavy TTFT mean/p50/p90 s':>27}"
             f"{'output tok/s':>14}{'total tok/s':>13}{'duration':>10}{'errors':>8}"
             f"{'upstream CPU wait':>19}"]
    for name, key in (("straight", "direct"), (f"through APS ({r['policy']})", "aps")):
        x = r[key]
        lines.append(f"{name:<24}{_ttft(x, 'light'):>27}{_ttft(x, 'heavy'):>27}"
                     f"{x['output_tokens_per_s']:>14,.0f}{x['total_tokens_per_s']:>13,.0f}"
                     f"{x['duration_s']:>9.1f}s{x['errors']:>8}"
                     f"{x['upstream_cpu_wait_s']:>18.1f}s")
    rounds = zip(r["direct"]["runs_output_tokens_per_s"], r["aps"]["runs_output_tokens_per_s"])
    each = ", ".join(f"{100 * a / d:.1f}%" for d, a in rounds)
    lines += [f"light tenants' mean TTFT: {r['light_ttft_ratio']:.1f}x shorter through APS; "
              f"throughput through APS: {100 * r['throughput_ratio']:.1f}% of straight "
              f"(output tokens/s; each round: {each})",
              "upstream CPU wait: seconds the upstream's threads were ready to run but waited "
              "for a core; where the two differ, other work slowed one path more than the other"]
    return lines


@off_vllms_core()  # the bench and every process it starts, but vLLM
def run(seats: int = 8, seconds: float = 120.0, policy: str | None = None,
        simulated: bool = False, probe_s: float = PROBE_S, rounds: int = 2,
        workdir: Path | None = None) -> dict:
    """The vtc-lmsys trace, scaled to the engine (see `plan`), straight to an engine
    that runs `seats` requests at once and through a gateway with as many seats, `rounds`
    times each. The order alternates (straight then APS, APS then straight, ...): on a shared
    machine the engine's speed drifts by tens of percent over minutes, and alternating keeps a
    steady drift from favouring either path."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="aps-bench-replay-"))
    with upstream(workdir, max_num_seqs=seats, simulated=simulated) as up:
        context = context_of(up.url, up.key)
        prompts = Prompts()

        async def capacity() -> float:
            async with httpx.AsyncClient(timeout=60) as c:
                await prompts.calibrate(c, up.url, up.key, up.model)
            return await probe(up.url, up.key, up.model, seats, context, prompts, probe_s)
        scaled = plan(asyncio.run(capacity()), context, seconds)
        tenants = sorted(set(scaled.tenant))
        result = {"upstream": up.name, "scenario": SCENARIO, "seats": seats,
                  "requests": len(scaled.tenant), "tenants": len(tenants),
                  "light_tenants": len(scaled.light), "context": context,
                  "capacity_tok_s": scaled.capacity_tok_s, "rate_scale": scaled.rate_scale,
                  "arrivals_s": float(scaled.arrival_s[-1]), "overload": OVERLOAD,
                  "policy": policy or ServerConfig.model_fields["policy"].default,
                  "reserved_seats": ServerConfig(upstreams=[{"url": up.url, "model": up.model,
                                                              "max_in_flight": seats}])
                  .batch_config(0).reserved_seats, "rounds": rounds}
        runs: dict[str, list[dict]] = {"direct": [], "aps": []}
        for i in range(rounds):
            for path in ("direct", "aps") if i % 2 == 0 else ("aps", "direct"):
                runs[path].append(_once(workdir, up, seats, scaled, tenants, prompts, path,
                                        policy, limit_s=3 * seconds + 60))
    for path, its_runs in runs.items():
        result[path] = summarize(scaled, its_runs)
    d, a = result["direct"], result["aps"]
    result["light_ttft_ratio"] = d["light_ttft_mean_s"] / a["light_ttft_mean_s"]
    result["throughput_ratio"] = a["output_tokens_per_s"] / d["output_tokens_per_s"]
    return result


def _once(workdir: Path, up: Target, seats: int, plan: Plan, tenants: list[str],
          prompts: Prompts, path: str, policy: str | None, limit_s: float) -> dict:
    """One run of the plan straight to the upstream (`path` "direct") or through a fresh
    gateway ("aps"), with how long the upstream waited for its cores meanwhile."""
    if path == "direct":
        waited = cpu_wait_s(up.pid)
        out = asyncio.run(replay(plan, up.url, up.key, up.model, prompts, limit_s))
        return {**out, "upstream_cpu_wait_s": cpu_wait_s(up.pid) - waited}
    config = gateway_config(up.url.removesuffix("/v1"), up.model, tenants, seats, policy,
                            None if up.key == "none" else up.key)
    gw = LocalServer(config, log_path=workdir / "replay-gateway.log")
    try:
        waited = cpu_wait_s(up.pid)
        out = asyncio.run(replay(plan, gw.url + "/v1", {t: f"sk-{t}" for t in tenants},
                                 up.model, prompts, limit_s))
        return {**out, "upstream_cpu_wait_s": cpu_wait_s(up.pid) - waited}
    finally:
        gw.stop()
