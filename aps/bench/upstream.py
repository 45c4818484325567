"""`aps bench upstream`: what APS costs in front of a real upstream, and what it buys.

- Added latency: one request at a time, the targets taken in turn, the client-seen latency
  through a proxy minus straight to the upstream (p50 and p99 of each, subtracted), streaming
  and not.
- Max requests/s: 32 concurrent clients for a few seconds, each request 8 tokens, and the CPU
  seconds each proxy spent per request meanwhile (user + system, from the kernel's accounting
  of its processes), which does not depend on how the cores were shared. Beside them, the same
  load on an `aps serve` with the simulated GPU: the gateway's CPU per request when it runs the
  model itself, the reference for what the upstream path costs on top.
- Fairness (the headline): a heavy tenant sends 10x the light tenant's requests; the light
  tenant's p90 time to first token straight to the upstream (its FCFS queue) versus through APS
  under `vtc`, where APS holds the queue and the upstream gets only what it can run.
- Replay: the vtc-lmsys trace (27 real tenants), scaled to overload the engine 1.25x, straight
  and through APS under its default policy (aps.bench.replay): light and heavy tenants' time
  to first token, and throughput.

The upstream is a real vLLM serving the tiny local model when `.engines/vllm` exists, else an
`aps serve` with the simulated GPU (the output says which); LiteLLM's proxy is measured on the
same upstream when `.engines/litellm` exists. Everything runs on 127.0.0.1 on this machine.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx

from aps.bench.local import engines
from aps.bench.local.processes import cpu_seconds, free_port
from aps.bench.local.server import LocalServer

CLIENTS = 32
TENANTS = """
  - {id: heavy, keys: [sk-heavy]}
  - {id: light, keys: [sk-light]}
  - {id: bench, keys: [sk-bench]}
"""


@dataclass
class Target:
    name: str
    url: str  # the API root, ending in /v1
    key: str
    model: str
    pid: int | None = None  # the process whose CPU is counted, or whose waits are (with its
                            # children)


def _q(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else float("nan")


def _body(t: Target, stream: bool, max_tokens: int, prompt: str = "Hello, how are you today?",
          **extra) -> dict:
    body = {"model": t.model, "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True,
            "temperature": 1.0, **extra}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


async def one(session: aiohttp.ClientSession, t: Target, body: dict) -> tuple[float, float]:
    """(seconds to the first token, seconds to the end) of one completion request."""
    t0 = time.perf_counter()
    first = None
    headers = {"Authorization": f"Bearer {t.key}"}
    async with session.post(t.url + "/completions", json=body, headers=headers) as r:
        r.raise_for_status()
        if not body.get("stream"):
            await r.read()
            end = time.perf_counter() - t0
            return end, end
        async for line in r.content:
            if first is None and line.startswith(b"data:") and _has_text(line[5:].decode()):
                first = time.perf_counter() - t0
    end = time.perf_counter() - t0
    return (first if first is not None else end), end


def _has_text(data: str) -> bool:
    data = data.strip()
    if data == "[DONE]":
        return False
    choices = json.loads(data).get("choices") or []
    return bool(choices and choices[0].get("text"))


def _session(connections: int) -> aiohttp.ClientSession:
    """The load generator's client: aiohttp, which costs a fifth of httpx's CPU per request.
    On a small machine the generator shares a core with the proxy measured, so a heavy one
    would take that proxy's CPU. Idle connections are dropped after 2 s, before the servers'
    5 s, so a reused connection is never one the server is closing at that moment."""
    connector = aiohttp.TCPConnector(limit=connections, keepalive_timeout=2.0)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))


async def latency(t: Target, stream: bool, n: int) -> list[float]:
    return (await latencies([t], stream, n))[t.name]


async def latencies(targets: list[Target], stream: bool, n: int) -> dict[str, list[float]]:
    """Seconds to the end of `n` requests to each target, one at a time, taking the targets in
    turn: the upstream's speed drifts over a run, and so affects each the same."""
    sessions = [_session(1) for _ in targets]
    try:
        for session, t in zip(sessions, targets):
            await one(session, t, _body(t, stream, 1))  # warm the connection
        out: dict[str, list[float]] = {t.name: [] for t in targets}
        for _ in range(n):
            for session, t in zip(sessions, targets):
                out[t.name].append((await one(session, t, _body(t, stream, 8)))[1])
        return out
    finally:
        for session in sessions:
            await session.close()


async def throughput(t: Target, stream: bool, seconds: float) -> dict:
    """Requests/s at CLIENTS concurrent clients, and (when `t.pid` is known) CPU s/request."""
    done, errors = 0, 0
    cpu0 = cpu_seconds(t.pid) if t.pid else None
    async with _session(CLIENTS * 2) as session:
        stop = time.perf_counter() + seconds

        async def worker():
            nonlocal done, errors
            while time.perf_counter() < stop:
                try:
                    await one(session, t, _body(t, stream, 8))
                    done += 1
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    errors += 1
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
        wall = time.perf_counter() - t0
    result = {"requests_per_s": done / wall, "errors": errors}
    if cpu0 is not None and done:
        result["cpu_s_per_request"] = (cpu_seconds(t.pid) - cpu0) / done
    return result


LIGHT_REQUESTS, FLOOD_FACTOR, FLOOD_TOKENS = 10, 10, 256


def fairness(t: Target, heavy_key: str | None, light_key: str, flood: bool = True,
             heavy_priority: int | None = None, light_priority: int | None = None) -> dict:
    """The light tenant's time to first token while a heavy tenant floods.

    The heavy tenant sends FLOOD_FACTOR x LIGHT_REQUESTS requests at once (batch jobs: not
    streamed, FLOOD_TOKENS tokens each); from 0.3 s later the light tenant sends one streamed
    16-token request every 0.3 s, each on its own thread so that none waits for another (the
    heavy flood only awaits its answers, so the threads get the CPU they need)."""
    light_ttft: list[float | None] = [None] * LIGHT_REQUESTS

    def light_one(i: int) -> None:
        body = _body(Target(t.name, t.url, light_key, t.model), True, 16,
                     prompt=f"light request {i}")
        if light_priority is not None:
            body["priority"] = light_priority
        with httpx.Client(timeout=300) as c:
            t0 = time.perf_counter()
            with c.stream("POST", t.url + "/completions", json=body,
                          headers={"Authorization": f"Bearer {light_key}"}) as r:
                r.raise_for_status()
                for line in r.iter_lines():
                    if line.startswith("data:") and _has_text(line[5:]):
                        light_ttft[i] = time.perf_counter() - t0
                        break

    def light_all() -> None:
        time.sleep(0.3)
        threads = []
        for i in range(LIGHT_REQUESTS):
            threads.append(threading.Thread(target=light_one, args=(i,)))
            threads[-1].start()
            time.sleep(0.3)
        for th in threads:
            th.join()

    async def heavy_all() -> list[int]:
        body = _body(Target(t.name, t.url, heavy_key, t.model), False, FLOOD_TOKENS,
                     prompt="a heavy batch job")
        if heavy_priority is not None:
            body["priority"] = heavy_priority
        headers = {"Authorization": f"Bearer {heavy_key}"}
        async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=None)) as c:
            n = FLOOD_FACTOR * LIGHT_REQUESTS
            replies = await asyncio.gather(*(c.post(t.url + "/completions", json=body,
                                                    headers=headers) for _ in range(n)))
        return [r.status_code for r in replies]

    lights = threading.Thread(target=light_all)
    t0 = time.perf_counter()
    lights.start()
    codes = asyncio.run(heavy_all()) if flood else []
    lights.join()
    wall = time.perf_counter() - t0
    if None in light_ttft or any(code != 200 for code in codes):
        raise RuntimeError(f"{t.name}: light requests without a token or heavy errors: "
                           f"{light_ttft}, {sorted(set(codes))}")
    return {"light_ttft_p50_s": _q(light_ttft, 50), "light_ttft_p90_s": _q(light_ttft, 90),
            "light_ttft_max_s": max(light_ttft), "light_requests": LIGHT_REQUESTS,
            "heavy_requests": len(codes), "wall_s": wall}


def gateway_config(upstream_urls: list[str], model: str, api_key: str | None = None,
                   policy: str = "vtc", max_in_flight: int = 16, extra: str = "") -> str:
    key = f", api_key: {api_key}" if api_key else ""
    replicas = "".join(f"  - {{url: {u}, model: {model}, max_in_flight: {max_in_flight}{key}}}\n"
                       for u in upstream_urls)
    return f"policy: {policy}\ndrain_timeout_s: 5\ntenants:{TENANTS}upstreams:\n{replicas}{extra}"


def vllm_cpus() -> str | None:
    """The core vLLM is pinned to: the last one. Its engine loop spins on a core; unpinned, its
    processes take CPU from the gateway and the load generator measured beside it."""
    n = os.cpu_count() or 1
    return str(n - 1) if n >= 2 and shutil.which("taskset") else None


@contextlib.contextmanager
def off_vllms_core():
    """This process, and the proxies it starts, kept off vLLM's core while inside: otherwise
    the scheduler moves them onto it now and then, and vLLM's figures move with them."""
    cpus = vllm_cpus()
    if cpus is None or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    others = before - {int(cpus)}
    if others:
        os.sched_setaffinity(0, others)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextlib.contextmanager
def upstream(workdir: Path, max_num_seqs: int = 16, priority: bool = False,
             simulated: bool = False):
    """A real vLLM when installed (and not `simulated`), else `aps serve` with the simulated
    GPU. Yields a Target."""
    if not simulated and engines.vllm_available() and engines.tiny_model_available():
        cpus = vllm_cpus()
        proc = engines.start_vllm(free_port(), None, "tiny", workdir / "vllm.log",
                                max_num_seqs=max_num_seqs, priority=priority, cpus=cpus)
        try:
            yield Target(f"vLLM {_vllm_version()} (CPU, tiny model, max-num-seqs {max_num_seqs})",
                         proc.base_url, "none", "tiny", proc.pid)
        finally:
            proc.stop()
    else:
        server = LocalServer(f"speed: 1\nbatch: {{max_num_seqs: {max_num_seqs}}}\n"
                             f"tenants:{TENANTS}", log_path=workdir / "upstream.log")
        try:
            why = "" if simulated else " (vLLM not installed)"
            yield Target(f"aps serve, simulated A100 in real time{why}",
                         server.url + "/v1", "sk-bench", "sim-llama-3-8b", server.proc.pid)
        finally:
            server.stop()


def _throughput_row(row: dict, mode: str, tp: dict) -> None:
    row[f"{mode}_requests_per_s"] = tp["requests_per_s"]
    row[f"{mode}_errors"] = tp["errors"]
    if "cpu_s_per_request" in tp:
        row[f"{mode}_cpu_s_per_request"] = tp["cpu_s_per_request"]


# Fast enough that the simulated GPU is never what limits the clients: the gateway's own CPU is.
SIMULATED_SPEED = 20


def simulated(workdir: Path, seconds: float) -> dict:
    """The reference: the same load on `aps serve` running the simulated GPU itself."""
    server = LocalServer(f"speed: {SIMULATED_SPEED}\ntenants:{TENANTS}",
                         log_path=workdir / "simulated.log")
    try:
        t = Target("aps_simulated", server.url + "/v1", "sk-bench", "sim-llama-3-8b",
                   server.proc.pid)
        row: dict = {}
        for stream in (False, True):
            asyncio.run(latency(t, stream, 5))  # warm up
            _throughput_row(row, "stream" if stream else "no_stream",
                            asyncio.run(throughput(t, stream, seconds)))
        return row
    finally:
        server.stop()


def _vllm_version() -> str:
    python = engines.vllm_available()
    import subprocess
    out = subprocess.run([python, "-c", "import vllm; print(vllm.__version__)"],
                         capture_output=True, text=True, timeout=120)
    return out.stdout.strip() or "?"


@off_vllms_core()  # the bench and every process it starts, but vLLM
def run(seconds: float = 5.0, n_latency: int = 200, with_fairness: bool = True) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="aps-bench-upstream-"))
    result: dict = {"clients": CLIENTS, "tokens_per_request": 8}
    with upstream(workdir) as up:
        result["upstream"] = up.name
        root = up.url.removesuffix("/v1")
        gw = LocalServer(gateway_config([root], up.model, None if up.key == "none" else up.key),
                         log_path=workdir / "gateway.log")
        targets = [Target("direct", up.url, up.key, up.model),
                   Target("aps", gw.url + "/v1", "sk-bench", up.model, gw.proc.pid)]
        litellm = None
        if engines.litellm_available():
            litellm = engines.start_litellm(free_port(), up.url, up.model,
                                          workdir / "litellm.log")
            targets.append(Target("litellm", litellm.base_url, "none", up.model, litellm.pid))
        try:
            result["targets"] = {}
            for stream in (False, True):
                mode = "stream" if stream else "no_stream"
                lat = asyncio.run(latencies(targets, stream, n_latency))
                for t in targets:
                    row = result["targets"].setdefault(t.name, {})
                    row[f"{mode}_p50_ms"] = _q(lat[t.name], 50) * 1000
                    row[f"{mode}_p99_ms"] = _q(lat[t.name], 99) * 1000
                    if t.name != "direct":
                        row[f"{mode}_added_p50_ms"] = (_q(lat[t.name], 50) - _q(lat["direct"], 50)) * 1000
                        row[f"{mode}_added_p99_ms"] = (_q(lat[t.name], 99) - _q(lat["direct"], 99)) * 1000
                    _throughput_row(row, mode, asyncio.run(throughput(t, stream, seconds)))
            if with_fairness:
                aps = Target("aps", gw.url + "/v1", "", up.model)
                result["fairness"] = {
                    "alone": fairness(targets[0], None, up.key, flood=False),
                    "direct": fairness(targets[0], up.key, up.key),  # one FCFS queue
                    "aps_vtc": fairness(aps, "sk-heavy", "sk-light"),
                }
        finally:
            gw.stop()
            if litellm is not None:
                litellm.stop()
    result["targets"]["aps_simulated"] = simulated(workdir, seconds)
    if with_fairness and engines.vllm_available() and engines.tiny_model_available():
        with upstream(workdir, priority=True) as up:  # vLLM's own answer: clients set priority
            result["fairness"]["direct_priority"] = fairness(
                Target("direct", up.url, up.key, up.model), up.key, up.key,
                heavy_priority=10, light_priority=0)
    return result
