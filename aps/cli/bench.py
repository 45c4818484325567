"""`aps bench ...`: the benchmarks, each printing figures (a table, or one JSON object with
`--json`); the measuring is in aps/bench."""
from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

bench = typer.Typer(help="Benchmarks that print figures.", no_args_is_help=True)
# Piped output would wrap tables at 80 columns; give it room.
console = Console() if sys.stdout.isatty() else Console(width=140)


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
    from aps.bench import replay as trace
    from aps.bench import upstream as mod
    result = {} if only_replay else mod.run(seconds, requests, fairness)
    if replay or only_replay:
        result["replay"] = trace.run(replay_seqs, replay_seconds, replay_policy,
                                     rounds=replay_rounds)
    if as_json:
        print(json.dumps(result))
        return
    for line in trace.report(result["replay"]) if "replay" in result else ():
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
