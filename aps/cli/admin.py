"""`aps tenants|keys|usage`: the operator's commands, on the same database the gateway uses
(`--db`: a SQLite file or a postgresql:// URL; or APS_DATABASE_URL, APS_DB). Running gateways
pick the changes up within `store.reload_s`, on every host sharing a PostgreSQL database."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from aps.core import ConfigError, OverLimit, Tenant
from aps.core.periods import period_bounds
from aps.store import SqlStore, StoreError, is_url, open_store
from aps.store.export import parse_time, usage_csv, write_trace

tenants = typer.Typer(help="Add, list, change and remove tenants.", no_args_is_help=True)
keys = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
usage = typer.Typer(help="The usage ledger: one row per ended request.",
                    invoke_without_command=True)
console = Console() if sys.stdout.isatty() else Console(width=160)

DB = typer.Option("aps.db", "--db", envvar=["APS_DATABASE_URL", "APS_DB"],
                  help="the database: a SQLite file, or a postgresql://user@host/db URL (also "
                       "APS_DATABASE_URL, APS_DB)", show_envvar=False)


def _open(db: str) -> SqlStore:
    """The store, to use in a `with` block (a PostgreSQL store holds a connection pool)."""
    if not is_url(db) and db != ":memory:" and not Path(db).exists():
        console.print(f"[yellow]note:[/yellow] {db} does not exist yet: creating it")
    try:
        return open_store(db)
    except StoreError as exc:
        _fail(exc)


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(2)


def _given(**fields) -> dict:
    """The options given on the command line (typer passes None for the others)."""
    return {k: v for k, v in fields.items() if v is not None}


_WEIGHT = typer.Option(None, help="fair-share weight")
_BID = typer.Option(None, help="default priority bid, 1..10")
_TOKEN_RATE = typer.Option(None, help="tokens per second (prompt + max_tokens are reserved)")
_TOKEN_BURST = typer.Option(None, help="token bucket size (default: one second of rate)")
_REQUEST_RATE = typer.Option(None, help="requests per second")
_REQUEST_BURST = typer.Option(None, help="request bucket size")
_MAX_CONCURRENT = typer.Option(None, help="requests queued or running at once")
_OVER_LIMIT = typer.Option(None, help="reject, delay or demote (to the spare-capacity band)")
_MAX_BID = typer.Option(None, help="the highest bid its clients may ask for (default: --bid)")
_MAX_QUEUE_S = typer.Option(None, help="seconds a request may wait to start, then 503")
_BUDGET_USD = typer.Option(None, help="dollars it may spend per --budget-period")
_BUDGET_PERIOD = typer.Option(None, help="day, week, month (UTC calendar) or total")
_OVER_BUDGET = typer.Option(None, help="reject (429) or demote (to the spare-capacity band)")
CLEARABLE = ("token_rate", "request_rate", "max_concurrent", "max_bid", "max_queue_s",
             "budget_usd")


@tenants.command("add")
def tenants_add(tenant_id: str, weight: float = _WEIGHT, bid: int = _BID,
                token_rate: float = _TOKEN_RATE, token_burst: float = _TOKEN_BURST,
                request_rate: float = _REQUEST_RATE, request_burst: float = _REQUEST_BURST,
                max_concurrent: int = _MAX_CONCURRENT, over_limit: OverLimit = _OVER_LIMIT,
                max_bid: int = _MAX_BID, max_queue_s: float = _MAX_QUEUE_S,
                budget_usd: float = _BUDGET_USD, budget_period: str = _BUDGET_PERIOD,
                over_budget: str = _OVER_BUDGET,
                key: bool = typer.Option(True, help="also create an API key and print it"),
                db: str = DB) -> None:
    """Add a tenant (and, by default, its first API key)."""
    try:  # checked before the database is opened (or created)
        tenant = Tenant(tenant_id, **_given(
            weight=weight, bid=bid, token_rate=token_rate, token_burst=token_burst,
            request_rate=request_rate, request_burst=request_burst, max_concurrent=max_concurrent,
            over_limit=over_limit, max_bid=max_bid, max_queue_s=max_queue_s,
            budget_usd=budget_usd, budget_period=budget_period, over_budget=over_budget))
    except (ConfigError, ValueError) as exc:
        _fail(exc)
    with _open(db) as store:
        if store.tenant(tenant_id) is not None:
            _fail(StoreError(f"tenant {tenant_id!r} exists: use `aps tenants set`"))
        try:
            store.put_tenant(tenant)
        except ConfigError as exc:
            _fail(exc)
        console.print(f"added tenant {tenant_id}")
        if key:
            _print_key(tenant_id, store.create_key(tenant_id))


@tenants.command("set")
def tenants_set(tenant_id: str, weight: float = _WEIGHT, bid: int = _BID,
                token_rate: float = _TOKEN_RATE, token_burst: float = _TOKEN_BURST,
                request_rate: float = _REQUEST_RATE, request_burst: float = _REQUEST_BURST,
                max_concurrent: int = _MAX_CONCURRENT, over_limit: OverLimit = _OVER_LIMIT,
                max_bid: int = _MAX_BID, max_queue_s: float = _MAX_QUEUE_S,
                budget_usd: float = _BUDGET_USD, budget_period: str = _BUDGET_PERIOD,
                over_budget: str = _OVER_BUDGET,
                unlimited: list[str] = typer.Option(
                    [], help=f"clear a limit: {', '.join(CLEARABLE)}"),
                db: str = DB) -> None:
    """Change some of a tenant's settings; the others keep their values."""
    changes = _given(weight=weight, bid=bid, token_rate=token_rate, token_burst=token_burst,
                     request_rate=request_rate, request_burst=request_burst,
                     max_concurrent=max_concurrent, over_limit=over_limit, max_bid=max_bid,
                     max_queue_s=max_queue_s, budget_usd=budget_usd,
                     budget_period=budget_period, over_budget=over_budget)
    for name in unlimited:
        if name not in CLEARABLE:
            _fail(ConfigError(f"--unlimited takes {', '.join(CLEARABLE)}, not {name!r}"))
        changes[name] = None
        if name.endswith("_rate"):
            changes[name.replace("rate", "burst")] = None
    if not changes:
        _fail(ConfigError("nothing to change: give at least one option"))
    with _open(db) as store:
        try:
            tenant = store.update_tenant(tenant_id, **changes)
        except (StoreError, ConfigError, ValueError) as exc:  # ValueError: --over-budget bogus
            _fail(exc)
    shown = {k: getattr(tenant, k) for k in changes}
    console.print(f"tenant {tenant_id}: " + ", ".join(
        f"{k}={getattr(v, 'value', v)}" for k, v in shown.items()))


@tenants.command("list")
def tenants_list(as_json: bool = typer.Option(False, "--json"), db: str = DB) -> None:
    """The tenants and their limits."""
    with _open(db) as store:
        rows = store.tenants()
        spent = {t.tenant_id: _period_spend(store, t) for t in rows}
    if as_json:
        from aps.server.api.admin import tenant_json
        print(json.dumps([{**tenant_json(t), "spent_usd": spent[t.tenant_id]} for t in rows],
                         indent=2))
        return
    table = Table("tenant", "weight", "bid", "max bid", "tokens/s", "burst", "req/s",
                  "max concurrent", "over limit", "max queue s", "budget $", "spent $")
    for t in rows:
        budget = "-" if t.budget_usd is None else f"{t.budget_usd:g} a {t.budget_period}"
        table.add_row(t.tenant_id, f"{t.weight:g}", str(t.bid), str(t.entitled_bid),
                      _g(t.token_rate), _g(t.token_burst), _g(t.request_rate),
                      _g(t.max_concurrent), t.over_limit.value, _g(t.max_queue_s), budget,
                      f"{spent[t.tenant_id]:.4f}")
    console.print(table)


def _period_spend(store: SqlStore, tenant: Tenant) -> float:
    """What the ledger billed the tenant in its budget's current period (a month without a
    budget)."""
    start, _ = period_bounds(tenant.budget_period, time.time())
    return store.spend(tenant.tenant_id, None if start == float("-inf") else start)


@tenants.command("remove")
def tenants_remove(tenant_id: str, db: str = DB) -> None:
    """Remove a tenant and revoke its keys; its usage rows stay."""
    with _open(db) as store:
        if not store.remove_tenant(tenant_id):
            _fail(StoreError(f"unknown tenant {tenant_id!r}"))
    console.print(f"removed tenant {tenant_id}")


@keys.command("create")
def keys_create(tenant_id: str,
                expires: str = typer.Option(None, help="when it stops working: a span like 30d, "
                                                       "an ISO date, or unix seconds"),
                models: str = typer.Option(None, help="the models it may use, comma-separated "
                                                      "(default: any)"),
                max_bid: int = typer.Option(None, help="a bid cap below its tenant's"),
                db: str = DB) -> None:
    """A new API key for a tenant, printed this once."""
    try:
        expires_at = parse_time(expires, time.time(), ahead=True)
        names = None if models is None else [m.strip() for m in models.split(",") if m.strip()]
        with _open(db) as store:
            key = store.create_key(tenant_id, expires_at=expires_at, models=names,
                                   max_bid=max_bid)
    except StoreError as exc:
        _fail(exc)
    _print_key(tenant_id, key)


@keys.command("revoke")
def keys_revoke(prefix: str = typer.Argument(..., help="the key's prefix, or the whole key"),
                db: str = DB) -> None:
    """Revoke a key: requests with it are refused (401) from the next reload on."""
    with _open(db) as store:
        try:
            n = store.revoke_key(prefix)
        except StoreError as exc:
            _fail(exc)
    if not n:
        _fail(StoreError(f"no live key with prefix {prefix!r}"))
    console.print(f"revoked {prefix}")


@keys.command("list")
def keys_list(tenant: str = typer.Option(None, help="only this tenant's keys"),
              db: str = DB) -> None:
    """Keys by prefix (the keys themselves are not stored)."""
    table = Table("prefix", "tenant", "created (UTC)", "revoked (UTC)", "expires (UTC)",
                  "models", "max bid")
    with _open(db) as store:
        listed = store.keys(tenant)
    for k in listed:
        table.add_row(k.prefix, k.tenant_id, _when(k.created_at), _when(k.revoked_at),
                      _when(k.expires_at), "any" if k.models is None else ", ".join(k.models),
                      _g(k.max_bid))
    console.print(table)


@usage.callback()
def usage_show(ctx: typer.Context,
               tenant: str = typer.Option(None, help="one tenant's rows"),
               since: str = typer.Option(None, help="unix seconds, ISO date, or an age like 24h"),
               until: str = typer.Option(None, help="as --since"),
               as_csv: bool = typer.Option(False, "--csv", help="every row, as CSV"),
               db: str = DB) -> None:
    """Per-tenant totals, or every row with --csv."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        start, end = parse_time(since, time.time()), parse_time(until, time.time())
    except StoreError as exc:
        _fail(exc)
    with _open(db) as store:
        if as_csv:
            sys.stdout.write(usage_csv(store.usage(tenant, start, end)))
            return
        rows = store.usage_totals(tenant, start, end)
    table = Table("tenant", "requests", "finished", "failed", "cancelled", "prompt tokens",
                  "completion tokens", "cost $")
    for r in rows:
        table.add_row(r["tenant_id"], *(str(r[k]) for k in ("requests", "finished", "failed",
                      "cancelled", "prompt_tokens", "completion_tokens")), f"{r['cost']:.4f}")
    console.print(table)


@usage.command("export")
def usage_export(trace: Path = typer.Option(..., help="PATH.csv: the trace; PATH.yaml: a "
                                                      "scenario with the tenants, and the CSV"),
                 tenant: str = typer.Option(None, help="one tenant's requests"),
                 since: str = typer.Option(None, help="unix seconds, ISO date, or an age"),
                 until: str = typer.Option(None, help="as --since"),
                 db: str = DB) -> None:
    """Write the ledger as a trace that `aps simulate PATH` replays."""
    try:
        with _open(db) as store:
            rows = store.usage(tenant, parse_time(since, time.time()),
                               parse_time(until, time.time()))
            tenants_now = store.tenants()
        n = write_trace(rows, trace, tenants_now)
    except StoreError as exc:
        _fail(exc)
    console.print(f"wrote {n} requests to {trace}; replay with: aps simulate {trace} "
                  "--policy vtc")


def _print_key(tenant_id: str, key: str) -> None:
    console.print(f"API key for {tenant_id} (shown once; only its hash is stored):")
    print(key)


def _g(value) -> str:
    return "-" if value is None else f"{value:g}"


def _when(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))
