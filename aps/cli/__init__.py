"""The `aps` command."""
from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="APS: a multi-tenant LLM inference scheduler.", no_args_is_help=True,
                  add_completion=False)
bench = typer.Typer(help="Benchmarks that print figures.", no_args_is_help=True)
app.add_typer(bench, name="bench")
console = Console()


@app.command()
def demo(policy: str = typer.Option("aps", help="fifo, priority, aps, vtc or class+vtc")) -> None:
    """Run the core on the seeds' stress test in miniature and show what each tenant got."""
    from aps.cli import core_demo as demo_mod
    result = demo_mod.run(policy)
    table = Table(title=f"policy {policy}: 100 requests at t=0, 16 seats, 20 ms per iteration")
    for col in ("tenant", "bid", "requests", "TTFT p50 s", "TTFT p99 s", "max wait s", "tokens"):
        table.add_column(col, justify="right")
    for tenant, r in result.items():
        table.add_row(tenant, str(r["bid"]), str(r["requests"]), f"{r['ttft_s']['p50']:.2f}",
                      f"{r['ttft_s']['p99']:.2f}", f"{r['max_wait_s']:.2f}", str(r["tokens"]))
    console.print(table)


@bench.command("core")
def bench_core_command(as_json: bool = typer.Option(False, "--json", help="print one JSON object")) -> None:
    """Push+pop cost per policy at 1k/100k/1M waiting, and one step with 256 running."""
    from aps.cli import bench_core as mod
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


def main() -> None:
    app()
