"""The `aps` command."""
from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="APS: a multi-tenant LLM inference scheduler.", no_args_is_help=True,
                  add_completion=False)
from aps.cli import admin, bench  # noqa: E402  (after `app`: the sub-commands attach to it)

app.add_typer(admin.tenants, name="tenants")
app.add_typer(admin.keys, name="keys")
app.add_typer(admin.usage, name="usage")
app.add_typer(bench.bench, name="bench")
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


def main() -> None:
    app()
