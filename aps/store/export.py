"""The usage ledger as files: CSV for people and spreadsheets, and a trace the simulator
replays (`aps simulate PATH`), so last week's traffic can be run again under another policy."""
from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timezone
from pathlib import Path

import yaml

from aps.core import Tenant
from aps.store.errors import StoreError
from aps.store.sqlite import TENANT_FIELDS, USAGE_COLUMNS

TRACE_COLUMNS = ("arrival_s", "tenant", "prompt_tokens", "output_tokens")  # the vtc-lmsys format
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str | float | None, now: float, ahead: bool = False) -> float | None:
    """Unix seconds from a number, an ISO 8601 date or time (UTC unless it says), or a span
    like `90m`, `24h`, `7d`: that long before `now` (an age), or after it with `ahead` (an
    expiry)."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        return float(text)
    text = text.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", text)
    if match:
        span = float(match[1]) * _UNITS[match[2]]
        return now + span if ahead else now - span
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise StoreError(f"cannot read the time {text!r}: give unix seconds, an ISO date like "
                         "2026-11-24T09:00, or a span like 24h or 7d") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def usage_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, USAGE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_trace(rows: list[dict], path: str | Path, tenants: list[Tenant]) -> int:
    """Write ledger rows as a replayable trace; returns how many requests it holds.

    `PATH.csv` gets the requests (arrival in seconds from the first one, tenant, prompt and
    output tokens). `PATH.yaml` gets a scenario too: the trace plus the tenants' configuration
    (weights, bids, limits), with the CSV next to it. Requests that produced no token (cancelled
    or failed before it) are left out: they put no work on a GPU.
    """
    path = Path(path)
    kept = sorted((r for r in rows if r["completion_tokens"] > 0 and r["prompt_tokens"] > 0),
                  key=lambda r: r["arrival"])
    if not kept:
        raise StoreError("no requests with output in that range: nothing to replay")
    csv_path = path.with_suffix(".csv")
    t0 = kept[0]["arrival"]
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(TRACE_COLUMNS)
        for r in kept:
            writer.writerow((f"{r['arrival'] - t0:.6f}", r["tenant_id"], r["prompt_tokens"],
                             r["completion_tokens"]))
    if path.suffix in (".yaml", ".yml"):
        seen = {r["tenant_id"] for r in kept}
        configured = [_tenant_entry(t) for t in tenants if t.tenant_id in seen]
        scenario = {"name": path.stem,
                    "description": f"{len(kept)} requests replayed from the usage ledger",
                    "tenants": configured,
                    "source": {"trace": "vtc-lmsys", "path": csv_path.name}}
        path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return len(kept)


def _tenant_entry(tenant: Tenant) -> dict:
    entry = {"id": tenant.tenant_id}
    for field in TENANT_FIELDS:
        value = getattr(tenant, field)
        if value is not None and value != getattr(Tenant("x"), field):
            entry[field] = getattr(value, "value", value)  # an OverLimit as its name
    return entry
