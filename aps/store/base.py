"""The store's one interface, and what SQLite and PostgreSQL share of it: tenants, hashed keys
and the usage ledger, written once as SQL both databases read (`?` placeholders, which the
PostgreSQL store turns into its own).

Keys are stored only as a SHA-256 hash (they are long random strings, so a fast hash is enough:
there is nothing to brute-force) with a visible label (head...tail) to tell them apart. The
ledger has one row per finished, failed, cancelled or expired request.

Operations are synchronous: the CLI, the admin API and the benchmarks call them as they are.
The gateway calls what it needs while serving through `run` (SQLite answers from a local file
in microseconds, so at once; PostgreSQL in a worker thread, so a slow network never stalls the
event loop) and writes ledger rows with the coroutine `write_usage` (PostgreSQL: its async
connection pool, so a commit can be waited for, and given up on, without a thread).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
from dataclasses import dataclass
from typing import Iterable

from aps.core import ConfigError, Tenant
from aps.store.errors import StoreError

log = logging.getLogger("aps.store")

TENANT_FIELDS = ("weight", "bid", "token_rate", "token_burst", "request_rate", "request_burst",
                 "max_concurrent", "over_limit", "max_bid", "max_queue_s", "budget_usd",
                 "budget_period", "over_budget")
USAGE_COLUMNS = ("request_id", "tenant_id", "key_prefix", "model", "bid", "arrival",
                 "first_token", "finished", "prompt_tokens", "completion_tokens", "status",
                 "reason", "cost")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "sk-aps-" + secrets.token_urlsafe(32)


def key_label(key: str) -> str:
    """How a key is shown, listed and revoked: its head and tail, at most half of it, so keys
    that share a beginning (sk-demo-tenant_a, sk-demo-tenant_b) still differ."""
    n = len(key)
    return key[:min(8, n // 3)] + "..." + key[n - min(4, n // 6):]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    prefix: str
    tenant_id: str
    created_at: float
    revoked_at: float | None
    expires_at: float | None = None  # unix seconds; None: never
    models: tuple[str, ...] | None = None  # the models it may ask for; None: any
    max_bid: int | None = None  # lower than its tenant's, if set


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Who may call, read at one `version` of the database (see `data_version`)."""

    version: int
    tenants: list[Tenant]
    keys: dict[str, KeyInfo]
    demo: set[str]


class SqlStore:
    """What both stores do. A subclass gives `_transaction` (a context manager yielding an
    object with `execute` and `executemany`, committed on exit), `_read`, `data_version`,
    `close`, the `unreachable` errors and the `_integrity` error of its driver."""

    where = ""  # for messages and logs: a file, or a URL without its password
    shared = False  # whether several hosts may use it
    unreachable: tuple[type[BaseException], ...] = ()  # a write may succeed later
    rejected: tuple[type[BaseException], ...] = ()  # this row can never be written
    _integrity: type[Exception] = Exception
    _for_update = ""  # lock a row read to be changed, where the database needs it
    _insert_usage = (f"INSERT INTO usage ({', '.join(USAGE_COLUMNS)}) "
                     f"VALUES ({', '.join('?' * len(USAGE_COLUMNS))}) "
                     "ON CONFLICT (request_id) DO NOTHING")  # written again: billed once

    def __init__(self, clock):
        self._clock = clock

    def _transaction(self):
        raise NotImplementedError

    def _read(self, sql: str, args=()) -> list:
        raise NotImplementedError

    def data_version(self) -> int:
        """A number that changes whenever tenants or keys may have changed."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _lock_tenants(self, tx) -> None:
        """Keep other writers of tenants out until the transaction ends (seeding)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the gateway's calls while serving -------------------------------------------------

    async def run(self, fn, *args):
        """`fn(*args)`, off the event loop where the database needs it."""
        return fn(*args)

    async def write_usage(self, rows: list[tuple]) -> None:
        """The ledger's group commit: `record`, as a coroutine."""
        self.record(rows)

    async def aclose(self) -> None:
        """Release what `write_usage` holds (the gateway's last call)."""

    # -- tenants ---------------------------------------------------------------------------

    def tenants(self) -> list[Tenant]:
        """Every tenant that can be used. One stored before values were checked (an infinite
        rate, ...) is left out, and the log says which and how to mend it."""
        out = []
        for row in self._read("SELECT * FROM tenants ORDER BY id"):
            try:
                out.append(_tenant(row))
            except ConfigError as exc:
                log.error("%s: left out: %s; mend it with `aps tenants set` or remove it",
                          self.where, exc)
        return out

    def tenant(self, tenant_id: str) -> Tenant | None:
        rows = self._read("SELECT * FROM tenants WHERE id = ?", (tenant_id,))
        return _tenant(rows[0]) if rows else None

    def put_tenant(self, tenant: Tenant) -> bool:
        """Add a tenant or replace its configuration. Returns True if it was new. Raises
        ConfigError, writing nothing, for a value it could not keep (`Tenant.check`: a
        tenant's fields may have been changed since it was made)."""
        _check(tenant)
        try:
            with self._transaction() as tx:
                return self._put(tx, tenant)
        except self._integrity:  # another writer added it between our UPDATE and INSERT
            with self._transaction() as tx:
                return self._put(tx, tenant)

    def _put(self, tx, tenant: Tenant) -> bool:
        values = [getattr(tenant, f) for f in TENANT_FIELDS]
        values = [getattr(v, "value", v) for v in values]  # over_limit, over_budget: names
        now = self._clock()
        cur = tx.execute(f"UPDATE tenants SET {', '.join(f'{f} = ?' for f in TENANT_FIELDS)}, "
                         "updated_at = ? WHERE id = ?", (*values, now, tenant.tenant_id))
        if cur.rowcount:
            return False
        tx.execute(f"INSERT INTO tenants (id, {', '.join(TENANT_FIELDS)}, created_at, updated_at) "
                   f"VALUES ({', '.join('?' * (len(TENANT_FIELDS) + 3))})",
                   (tenant.tenant_id, *values, now, now))
        return True

    def update_tenant(self, tenant_id: str, **changes) -> Tenant:
        """Change some fields of a tenant (None clears a limit). Raises StoreError if there is
        no such tenant, ConfigError if the result is not a valid tenant."""
        unknown = set(changes) - set(TENANT_FIELDS)
        if unknown:
            raise StoreError(f"unknown tenant fields: {', '.join(sorted(unknown))}")
        with self._transaction() as tx:  # from the row: a tenant stored unusable can be mended
            current = tx.execute("SELECT * FROM tenants WHERE id = ?" + self._for_update,
                                 (tenant_id,)).fetchone()
            if current is None:
                raise StoreError(f"unknown tenant {tenant_id!r}")
            fields = {f: current[f] for f in TENANT_FIELDS}
            if "token_rate" in changes and "token_burst" not in changes:
                fields["token_burst"] = None  # follows the new rate, as for a new tenant
            if "request_rate" in changes and "request_burst" not in changes:
                fields["request_burst"] = None
            updated = Tenant(tenant_id, **{**fields, **changes})
            _check(updated)
            self._put(tx, updated)
            return updated

    def mark_demo(self, tenant_ids: Iterable[str]) -> None:
        """These tenants were made by demo seeding: they may be called without a key."""
        with self._transaction() as tx:
            tx.executemany("UPDATE tenants SET demo = 1 WHERE id = ?", [(t,) for t in tenant_ids])

    def demo_tenants(self) -> set[str]:
        return {r["id"] for r in self._read("SELECT id FROM tenants WHERE demo = 1")}

    def remove_tenant(self, tenant_id: str) -> bool:
        """Remove a tenant and its keys; its ledger rows stay (they are the bill)."""
        with self._transaction() as tx:
            return tx.execute("DELETE FROM tenants WHERE id = ?", (tenant_id,)).rowcount > 0

    def seed(self, tenants: list[tuple[Tenant, list[str]]], demo: bool = False) -> bool:
        """Fill an empty database with these tenants and keys (`demo`: as demo tenants), all
        in one transaction; False, changing nothing, if it has tenants (replicas starting
        together on a new database seed it once)."""
        for tenant, _ in tenants:
            _check(tenant)
        with self._transaction() as tx:
            self._lock_tenants(tx)
            if tx.execute("SELECT id FROM tenants LIMIT 1").fetchone() is not None:
                return False
            for tenant, keys in tenants:
                self._put(tx, tenant)
                for key in keys:
                    self._insert_key(tx, tenant.tenant_id, key, None, None, None)
            if demo:
                tx.executemany("UPDATE tenants SET demo = 1 WHERE id = ?",
                               [(t.tenant_id,) for t, _ in tenants])
        return True

    # -- keys ------------------------------------------------------------------------------

    def create_key(self, tenant_id: str, key: str | None = None, *,
                   expires_at: float | None = None, models: Iterable[str] | None = None,
                   max_bid: int | None = None) -> str:
        """A new key for the tenant, returned in full this once; only its hash is kept. It may
        expire (unix seconds), be limited to some models, and carry a bid cap below the
        tenant's."""
        key = key or new_key()
        models = None if models is None else sorted(set(models))
        if models is not None and (not models or not all(isinstance(m, str) and m for m in models)):
            raise StoreError("a key's models must be a non-empty list of model names")
        if max_bid is not None and (isinstance(max_bid, bool) or not isinstance(max_bid, int)
                                    or not 1 <= max_bid <= 10):
            raise StoreError(f"a key's max_bid must be a whole number from 1 to 10, got {max_bid!r}")
        if expires_at is not None and not math.isfinite(expires_at):
            raise StoreError(f"a key's expiry must be a time, got {expires_at!r}")
        if "\x00" in key:
            raise StoreError("a key may not contain a NUL character")
        try:
            with self._transaction() as tx:
                self._insert_key(tx, tenant_id, key, expires_at, models, max_bid)
        except self._integrity:
            if self.tenant(tenant_id) is None:
                raise StoreError(f"unknown tenant {tenant_id!r}") from None
            raise StoreError("that key already exists") from None
        return key

    def _insert_key(self, tx, tenant_id, key, expires_at, models, max_bid) -> None:
        tx.execute("INSERT INTO api_keys (hash, prefix, tenant_id, created_at, expires_at, "
                   "models, max_bid) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (hash_key(key), key_label(key), tenant_id, self._clock(), expires_at,
                    None if models is None else json.dumps(models), max_bid))

    def revoke_key(self, prefix_or_key: str) -> int:
        """Revoke the live keys shown with this prefix (`key_label`), or the key given whole.
        Returns how many. An ambiguous prefix revokes nothing and says so."""
        with self._transaction() as tx:
            live = tx.execute("SELECT hash FROM api_keys WHERE (prefix = ? OR hash = ?) "
                              "AND revoked_at IS NULL" + self._for_update,
                              (prefix_or_key, hash_key(prefix_or_key))).fetchall()
            if len(live) > 1:
                raise StoreError(f"prefix {prefix_or_key!r} matches {len(live)} keys: give the "
                                 "full key")
            for row in live:
                tx.execute("UPDATE api_keys SET revoked_at = ? WHERE hash = ?",
                           (self._clock(), row["hash"]))
        return len(live)

    def keys(self, tenant_id: str | None = None) -> list[KeyInfo]:
        sql, args = "SELECT * FROM api_keys", ()
        if tenant_id is not None:
            sql, args = sql + " WHERE tenant_id = ?", (tenant_id,)
        return [_key(r) for r in self._read(sql + " ORDER BY created_at", args)]

    def key_table(self) -> dict[str, KeyInfo]:
        """Live keys by hash. The gateway keeps this in memory (an expired key stays: it is
        refused as expired, not as unknown)."""
        rows = self._read("SELECT * FROM api_keys WHERE revoked_at IS NULL")
        return {r["hash"]: _key(r) for r in rows}

    def snapshot(self) -> Snapshot:
        """Tenants, live keys and demo tenants, with the version read first: a change made
        while they are read shows as a newer version, so it is read again next time."""
        version = self.data_version()
        return Snapshot(version, self.tenants(), self.key_table(), self.demo_tenants())

    # -- usage ledger ----------------------------------------------------------------------

    def record(self, rows: Iterable[tuple]) -> None:
        """Append ledger rows (tuples in USAGE_COLUMNS order) in one committed transaction."""
        with self._transaction() as tx:
            tx.executemany(self._insert_usage, list(rows))

    def usage(self, tenant_id: str | None = None, since: float | None = None,
              until: float | None = None, limit: int | None = None) -> list[dict]:
        """Ledger rows in the order they were written, optionally for one tenant and a time
        range (unix seconds, on the time each request ended)."""
        where, args = _where(tenant_id, since, until)
        sql = f"SELECT {', '.join(USAGE_COLUMNS)} FROM usage {where} ORDER BY id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [dict(r) for r in self._read(sql, args)]

    def spend(self, tenant_id: str, since: float | None = None) -> float:
        """Dollars the ledger bills a tenant for requests that ended since `since` (unix)."""
        where, args = _where(tenant_id, since, None)
        rows = self._read(f"SELECT COALESCE(SUM(cost), 0) AS spent FROM usage {where}", args)
        return float(rows[0]["spent"])

    def usage_totals(self, tenant_id: str | None = None, since: float | None = None,
                     until: float | None = None) -> list[dict]:
        """Per tenant: requests by status, tokens and cost."""
        where, args = _where(tenant_id, since, until)
        counts = ", ".join(f"SUM(CASE WHEN status = '{s}' THEN 1 ELSE 0 END) AS {s}"
                           for s in ("finished", "failed", "cancelled"))
        rows = self._read(
            f"SELECT tenant_id, COUNT(*) AS requests, {counts}, "
            "SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, "
            f"SUM(cost) AS cost FROM usage {where} GROUP BY tenant_id ORDER BY tenant_id", args)
        return [dict(r) for r in rows]


def _check(tenant: Tenant) -> None:
    tenant.check()
    if "\x00" in tenant.tenant_id:  # PostgreSQL cannot keep it; no store should differ
        raise ConfigError("tenant_id may not contain a NUL character")


def _where(tenant_id: str | None, since: float | None, until: float | None) -> tuple[str, list]:
    clauses, args = [], []
    for clause, value in (("tenant_id = ?", tenant_id), ("finished >= ?", since),
                          ("finished < ?", until)):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), args


def _tenant(row) -> Tenant:
    return Tenant(row["id"], **{f: row[f] for f in TENANT_FIELDS})


def _key(row) -> KeyInfo:
    models = None if row["models"] is None else tuple(json.loads(row["models"]))
    return KeyInfo(row["prefix"], row["tenant_id"], row["created_at"], row["revoked_at"],
                   row["expires_at"], models, row["max_bid"])
