"""The `aps` command."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="APS: a multi-tenant LLM inference scheduler.", no_args_is_help=True,
                  add_completion=False)
bench = typer.Typer(help="Benchmarks that print figures.", no_args_is_help=True)
app.add_typer(bench, name="bench")
from aps.cli import admin  # noqa: E402  (after `app`: the sub-commands attach to it)

app.add_typer(admin.tenants, name="tenants")
app.add_typer(admin.keys, name="keys")
app.add_typer(admin.usage, name="usage")
# Piped output would wrap tables at 80 columns; give it room.
console = Console() if sys.stdout.isatty() else Console(width=140)


@app.command("simulate")
def simulate_command(
    scenario: str = typer.Argument(..., help="a shipped scenario name or a YAML file"),
    policy: str = typer.Option(None, help="aps, fifo, priority, aging, vtc, class+vtc "
                               "(default: the scenario's, else aps)"),
    model: str = typer.Option(None, help="model preset, e.g. llama-3-8b"),
    gpu: str = typer.Option(None, help="GPU preset, e.g. a100-80gb, h100-sxm, seed-a100"),
    tp: int = typer.Option(1, help="tensor-parallel degree (1, 2, 4, 8)"),
    replicas: int = typer.Option(1, help="model replicas"),
    router: str = typer.Option("round-robin", help="round-robin or least-outstanding-tokens"),
    requests: int = typer.Option(None, help="number of requests (cut or tile the workload)"),
    seed: int = typer.Option(0, help="random seed for generated traffic"),
    batch: str = typer.Option("continuous", help="continuous or micro"),
    alpha: float = typer.Option(None, help="aps and aging: bid points per second of waiting"),
    step: bool = typer.Option(False, "--step", help="run every iteration (no fast-forward)"),
    slo_ttft: float = typer.Option(2.0, help="goodput SLO: time to first token, seconds"),
    slo_tpot: float = typer.Option(0.2, help="goodput SLO: time per output token, seconds"),
    autoscale: bool = typer.Option(True, help="follow the scenario's autoscale block, if any "
                                   "(--no-autoscale: a fixed --replicas)"),
    json_path: Path = typer.Option(None, "--json", help="write the summary as JSON"),
    csv_path: Path = typer.Option(None, "--csv", help="write one row per request"),
) -> None:
    """Simulate GPUs serving a workload under a policy and print what each tenant got."""
    from aps.cli import simulate as sim_cli
    from aps.core import ApsError
    try:
        sim_cli.run(console, scenario, json_path, csv_path, policy=policy, model=model, gpu=gpu,
                    tp=tp, replicas=replicas, router=router, requests=requests, seed=seed,
                    batch=batch, alpha=alpha, fast=not step, slo_ttft=slo_ttft, slo_tpot=slo_tpot,
                    autoscale=autoscale)
    except (ApsError, ValueError, KeyError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command("serve")
def serve_command(
    config: Path = typer.Option(None, help="YAML configuration (also APS_CONFIG)"),
    host: str = typer.Option(None, help="address to listen on (default 127.0.0.1)"),
    port: int = typer.Option(None, help="port (default 8002)"),
    policy: str = typer.Option(None, help="aps, fifo, priority, aging, vtc, class+vtc"),
    speed: float = typer.Option(None, help="run the simulated GPU this many times faster"),
    force: bool = typer.Option(False, help="serve on a network address although demo tenants "
                               "(which need no key) exist"),
) -> None:
    """Run the gateway: the seeds' API and an OpenAI-compatible API, on a simulated GPU or in
    front of upstream servers (`upstreams:` in the configuration)."""
    import logging

    from aps.core import ConfigError
    from aps.server.config import load_config
    from aps.server.serve import serve
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(config, host=host, port=port, policy=policy, speed=speed)
        serve(cfg, force=force)
    except (ConfigError, ValueError, KeyError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command("stress")
def stress_command(
    url: str = typer.Option("http://127.0.0.1:8002", help="a running `aps serve` (demo keys)"),
    per_tenant: int = typer.Option(50, help="requests per tenant, all sent at once"),
    tokens: int = typer.Option(20, help="tokens_requested per request"),
) -> None:
    """The seeds' stress test against a running gateway: tenant_a bids 10, tenant_b bids 1."""
    import asyncio

    import httpx

    from aps.bench import loadgen
    try:
        result = asyncio.run(loadgen.stress(url.rstrip("/"), per_tenant, tokens))
    except httpx.HTTPError as exc:
        console.print(f"[red]error:[/red] cannot reach {url}: {exc}; start it with `aps serve`")
        raise typer.Exit(2) from None
    table = Table(title=f"{2 * per_tenant} requests at once to {url}/infer")
    for col in ("tenant", "bid", "requests", "ok", "refused", "TTFT p50 s", "TTFT p99 s", "latency p50 s"):
        table.add_column(col, justify="right")
    for tenant, bid in (("tenant_a", 10), ("tenant_b", 1)):
        r = result[tenant]
        table.add_row(tenant, str(bid), str(r["requests"]), str(r["ok"]), str(r["refused"] or "-"),
                      f"{r['ttft_p50_s']:.3f}", f"{r['ttft_p99_s']:.3f}", f"{r['latency_p50_s']:.3f}")
    console.print(table)


@app.command("experiment")
def experiment_command(
    name: str = typer.Argument(..., help="static-vs-aps, fairness, governor, capacity, autoscale, or a YAML file"),
    out: Path = typer.Option(None, help="output folder (default: out/NAME)"),
    quick: bool = typer.Option(False, "--quick", help="a reduced grid that runs in under a minute"),
    workers: int = typer.Option(None, help="parallel processes (default: one per core)"),
) -> None:
    """Run a grid of simulations and write a report: markdown, HTML, PNG plots, JSON, CSV."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from aps.core import ApsError
    from aps.experiments import run_experiment
    out = out or Path("out") / Path(name).stem
    try:
        with Progress("[progress.description]{task.description}", BarColumn(),
                      MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task(f"experiment {name}", total=None)
            progress = lambda done, total: bar.update(task, completed=done, total=total)
            results = run_experiment(name, quick=quick, out_dir=out, workers=workers,
                                     progress=progress)
    except (ApsError, ValueError, KeyError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"[bold]{results['title']}[/bold]: {len(results['runs'])} runs")
    console.print(f"report: {out / 'report.md'} and {out / 'report.html'}")


@bench.command("core")
def bench_core_command(as_json: bool = typer.Option(False, "--json", help="print one JSON object")) -> None:
    """Push+pop cost per policy at 1k/100k/1M waiting, and one step with 256 running."""
    from aps.bench import core as mod
    result = mod.run()
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title="push+pop, microseconds per pair")
    table.add_column("policy")
    for depth in mod.DEPTHS:
        table.add_column(f"{depth:,} waiting", justify="right")
    for name, row in result["push_pop_us"].items():
        table.add_row(name, *(f"{v:.2f}" for v in row.values()))
    console.print(table)
    d = result["step_detail_us_256"]
    console.print(f"continuous batching, 256 running: step {d['step_us']:.0f} us + complete_step "
                  f"{d['complete_step_us']:.0f} us = {d['cycle_us']:.0f} us per iteration")


@bench.command("sim")
def bench_sim_command(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    policy: str = typer.Option("aps", help="policy to simulate"),
    scale: float = typer.Option(1.0, help="fraction of the request counts (for a quick look)"),
    quick: bool = typer.Option(False, "--quick", help="a twentieth of the requests: under a "
                               "minute, the same figures"),
) -> None:
    """Simulated requests per wall-second on azure-conv, overloaded and served, fast and step."""
    from aps.bench import sim as mod
    rows = mod.run(policy, mod.QUICK if quick else scale)
    if as_json:
        print(json.dumps({"runs": rows}))
        return
    table = Table(title="simulator speed: azure-conv trace, continuous batching, one GPU")
    table.add_column("model", no_wrap=True)
    for col in ("trace rate", "load", "mode", "requests", "mean batch", "wall s", "requests/s",
                "s per 1M", "peak RSS MB", "iterations", "simulated s"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["model"], f"{r['rate']:.0%}", r["load"], r["mode"], f"{r['requests']:,}",
                      f"{r['mean_batch']}", f"{r['wall_s']:.1f}", f"{r['requests_per_s']:,}",
                      f"{r['wall_s_per_1m']:,.0f}", str(r["peak_rss_mb"]),
                      f"{r['iterations']:,}", f"{r['simulated_s']:,}")
    console.print(table)


@bench.command("fidelity")
def bench_fidelity_command(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """The simulator against published measurements of A100s and H100s: each row's measured
    and simulated figure, the signed error and its source."""
    from aps.bench import fidelity as mod
    rows = mod.run()
    if as_json:
        print(json.dumps({"rows": rows}))
        return
    fmt = lambda v: f"{v:,.0f}" if v >= 1000 else f"{v:.1f}" if v >= 100 else f"{v:.2f}"
    table = Table(title="simulated vs measured (published runs; error = simulated / measured - 1)")
    for col in ("row", "model on GPU, engine", "load", "metric", "measured", "simulated", "error"):
        table.add_column(col, justify="left" if col in ("row", "model on GPU, engine", "load",
                                                        "metric") else "right")
    for r in rows:
        tp = f" x{r['tp']}" if r["tp"] > 1 else ""
        table.add_row(r["key"], f"{r['model']} on {r['gpu']}{tp}, {r['engine']}", r["config"],
                      f"{r['metric']} ({r['unit']})", fmt(r["measured"]), fmt(r["simulated"]),
                      f"{r['error_pct']:+.1f}%")
    console.print(table)
    within = sum(abs(r["error_pct"]) <= 15 for r in rows)
    console.print(f"{within} of {len(rows)} rows within 15%. Notes:", highlight=False)
    notes: dict[str, list[str]] = {}
    for r in rows:
        if r["note"]:
            notes.setdefault(r["note"], []).append(r["key"])
    for note, keys in notes.items():
        console.print(f"- {', '.join(keys)}: {note}.", markup=False, highlight=False)
    console.print("Sources:", highlight=False)
    for source in dict.fromkeys(r["source"] for r in rows):
        console.print(f"- {source}", markup=False, highlight=False)


@bench.command("policy")
def bench_policy_command(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """The default policy's three outcomes, simulated: bounded waits across bids, fair share
    within a bid, and light tenants on the VTC trace at FIFO's throughput."""
    from aps.bench import policy as mod
    result = mod.run()
    if as_json:
        print(json.dumps(result))
        return
    for line in mod.report(result):
        console.print(line, highlight=False)


@bench.command("cache")
def bench_cache_command(
    requests: int = typer.Option(300, help="requests sent to each gateway"),
    repeat: float = typer.Option(0.5, help="share of requests that repeat an earlier one"),
    clients: int = typer.Option(8, help="concurrent clients"),
    speed: float = typer.Option(10.0, help="the simulated GPU's speed"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Seed 004's cache experiment on the simulated GPU: hit ratio, latency of hits and misses,
    and the GPU time the cache saves, against the same requests without it."""
    from aps.bench import cache as mod
    if not 0 <= repeat < 1 or requests < 1 or clients < 1 or not speed > 0:
        console.print("[red]error:[/red] need 0 <= --repeat < 1, --requests >= 1, "
                      "--clients >= 1 and --speed > 0")
        raise typer.Exit(2)
    r = mod.run(requests, repeat, clients, speed)
    if as_json:
        print(json.dumps(r))
        return
    console.print(
        f"{r['requests']} requests ({r['distinct_prompts']} distinct, repeat {r['repeat']:g}), "
        f"{r['clients']} clients, simulated GPU at {r['speed']:g}x: hit ratio "
        f"{r['hit_ratio']:.1%}; hits p50 {r['hit_p50_ms']:.1f} ms, p99 {r['hit_p99_ms']:.1f} ms; "
        f"misses p50 {r['miss_p50_ms']:.0f} ms, p99 {r['miss_p99_ms']:.0f} ms; mean latency "
        f"{r['with_cache_mean_ms']:.0f} ms with the cache, {r['without_cache_mean_ms']:.0f} ms "
        f"without; GPU busy {r['gpu_busy_with_cache_s']:.1f} s with, "
        f"{r['gpu_busy_without_cache_s']:.1f} s without ({r['gpu_saved']:.1%} saved); "
        f"{r['errors']} errors", highlight=False)


@bench.command("serve")
def bench_serve_command(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    seconds: float = typer.Option(5.0, help="duration of each throughput run"),
) -> None:
    """What the gateway itself costs: added latency, requests/s, streamed tokens/s."""
    from aps.bench.serve import bench_serve
    result = bench_serve(seconds)
    if as_json:
        print(json.dumps(result))
        return
    console.print(f"gateway on 127.0.0.1, simulated GPU at 1000x: added latency p50 "
                  f"{result['added_p50_ms']:.2f} ms, p99 {result['added_p99_ms']:.2f} ms; "
                  f"{result['requests_per_s']:,.0f} requests/s (32 clients, 16 tokens each); "
                  f"{result['streamed_tokens_per_s']:,.0f} streamed tokens/s (32 streams); "
                  f"{result['errors']} errors")


@bench.command("store")
def bench_store_command(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    redis_url: str = typer.Option(None, help="a Redis to use (default: start redis-server on "
                                             "127.0.0.1 for the run)"),
    rows: int = typer.Option(20_000, help="ledger rows to write"),
) -> None:
    """The ledger in SQLite and PostgreSQL (rows/s, group-commit wait); the Redis path's added
    latency and admissions/s."""
    from aps.bench import store as bench_store
    result = bench_store.run(redis_url, rows)
    if as_json:
        print(json.dumps(result))
        return
    table = Table("measure", "value")
    for key, value in result.items():
        table.add_row(key.replace("_", " "), value if isinstance(value, str) else f"{value:,.2f}")
    console.print(table)


@bench.command("upstream")
def bench_upstream_command(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    seconds: float = typer.Option(5.0, help="duration of each requests/s run"),
    requests: int = typer.Option(200, help="sequential requests per added-latency run"),
    fairness: bool = typer.Option(True, help="also run the light-vs-heavy tenant comparison"),
    replay: bool = typer.Option(True, help="also replay the vtc-lmsys trace"),
    only_replay: bool = typer.Option(False, "--only-replay", help="run the replay alone"),
    replay_seconds: float = typer.Option(120.0, help="the cut replayed, in s of engine work"),
    replay_seqs: int = typer.Option(8, help="the engine's max-num-seqs (and seats) in the replay"),
    replay_policy: str = typer.Option(None, help="the replay gateway's policy (default aps)"),
    replay_rounds: int = typer.Option(2, min=1, help="replay runs on each path, alternating"),
) -> None:
    """APS in front of an upstream versus the upstream direct (and LiteLLM when installed)."""
    from aps.bench import upstream as mod
    result = mod.run(seconds, requests, fairness, replay, only_replay, replay_seconds,
                     replay_seqs, replay_policy, replay_rounds)
    if as_json:
        print(json.dumps(result))
        return
    for line in mod.replay.report(result["replay"]) if "replay" in result else ():
        console.print(line, markup=False, highlight=False)
    if only_replay:
        return
    table = Table(title=f"in front of {result['upstream']}: {mod.CLIENTS} clients, "
                        f"{result['tokens_per_request']} tokens a request")
    for col in ("path", "mode", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms", "requests/s",
                "CPU ms/request", "errors"):
        table.add_column(col, justify="right")

    def cell(value, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)
    for name, row in result["targets"].items():
        for mode in ("no_stream", "stream"):
            cpu = row.get(f"{mode}_cpu_s_per_request")
            table.add_row(name, mode.replace("_", "-"),
                          *(cell(row.get(f"{mode}_{k}_ms"), ".1f") for k in ("p50", "p99")),
                          *(cell(row.get(f"{mode}_added_{k}_ms"), "+.1f") for k in ("p50", "p99")),
                          f"{row[f'{mode}_requests_per_s']:,.0f}",
                          cell(None if cpu is None else cpu * 1000, ".2f"),
                          str(row[f"{mode}_errors"]))
    console.print(table)
    if "fairness" in result:
        f = result["fairness"]
        line = (f"light tenant p90 TTFT: {f['alone']['light_ttft_p90_s']:.3f} s alone; while a "
                f"heavy tenant floods 10x its requests: {f['direct']['light_ttft_p90_s']:.3f} s "
                f"straight to the upstream (FCFS), {f['aps_vtc']['light_ttft_p90_s']:.3f} s "
                f"through APS (vtc)")
        if "direct_priority" in f:
            line += (f", {f['direct_priority']['light_ttft_p90_s']:.3f} s straight to vLLM "
                     "with clients setting `priority`")
        console.print(line)


@bench.command("soak")
def bench_soak_command(
    minutes: float = typer.Option(5.0, help="how long the clients run"),
    streams: int = typer.Option(32, help="streaming clients"),
    speed: float = typer.Option(20.0, help="the simulated GPU's speed"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Streaming clients for minutes: errors, memory after warm-up and at the end, and what the
    gateway still holds after they stop (all zero)."""
    from aps.bench.reliability import soak
    result = soak(minutes, streams, speed)
    if as_json:
        print(json.dumps(result))
        return
    rss = result["rss_mb"]
    console.print(f"{streams} streams for {minutes:g} min: {result['requests']:,} requests, "
                  f"{result['errors']} errors; RSS {rss['after_warmup_mb']:.1f} MB after warm-up, "
                  f"{rss['end_mb']:.1f} MB at the end ({result['rss_growth_mb']:+.1f} MB; "
                  f"{result['rss_slope_mb_per_hour']:+.1f} MB/hour over the second half); held "
                  f"after: {result['held_after']}")


@bench.command("overload")
def bench_overload_command(
    factor: float = typer.Option(4.0, help="offered load, as a multiple of measured capacity"),
    seconds: float = typer.Option(10.0, help="how long the open-loop load runs"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Open-loop load past capacity: accepted, refused by code, refusal latency, 5xx, memory."""
    from aps.bench.reliability import overload
    result = overload(factor, seconds)
    if as_json:
        print(json.dumps(result))
        return
    fmt = lambda v: "-" if v is None else f"{v:.1f}"
    console.print(f"{factor:g}x capacity ({result['capacity_requests_per_s']:.0f} requests/s "
                  f"measured): {result['requests']} sent, {result['accepted']} accepted, refused "
                  f"{result['refused']}; refusal p50 {fmt(result['refusal_p50_ms'])} ms, p99 "
                  f"{fmt(result['refusal_p99_ms'])} ms; {result['server_errors']} server errors; "
                  f"RSS {result['rss_mb']['start']:.1f} -> {result['rss_mb']['end']:.1f} MB; "
                  f"held after: {result['held_after']}")


def main() -> None:
    app()
