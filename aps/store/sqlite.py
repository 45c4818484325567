"""Tenants, API keys and the usage ledger in one SQLite file (WAL mode).

Keys are stored only as a SHA-256 hash (they are long random strings, so a fast hash is enough:
there is nothing to brute-force) with a visible label (head...tail) to tell them apart. The ledger has one row
per finished, failed or cancelled request, committed before the client hears the request ended:
a crash of the server loses no acknowledged request.

The schema is versioned with `PRAGMA user_version`; `MIGRATIONS[i]` upgrades version i to i+1
in place, so an operator's file follows the code across upgrades.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from aps.core import ConfigError, Tenant
from aps.store.errors import StoreError

log = logging.getLogger("aps.store")

MIGRATIONS = [
    """
    CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        weight REAL NOT NULL DEFAULT 1.0,
        bid INTEGER NOT NULL DEFAULT 5,
        token_rate REAL, token_burst REAL,
        request_rate REAL, request_burst REAL,
        max_concurrent INTEGER,
        over_limit TEXT NOT NULL DEFAULT 'reject',
        created_at REAL NOT NULL, updated_at REAL NOT NULL
    );
    CREATE TABLE api_keys (
        hash TEXT PRIMARY KEY,
        prefix TEXT NOT NULL,
        tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE INDEX api_keys_tenant ON api_keys(tenant_id);
    CREATE TABLE usage (
        id INTEGER PRIMARY KEY,
        request_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        key_prefix TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL,
        bid INTEGER,
        arrival REAL NOT NULL,
        first_token REAL,
        finished REAL NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        status TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        cost REAL NOT NULL DEFAULT 0
    );
    CREATE INDEX usage_tenant_time ON usage(tenant_id, finished);
    CREATE INDEX usage_time ON usage(finished);
    """,
    # 2: the tenants demo seeding created, the only ones that may be called without a key
    "ALTER TABLE tenants ADD COLUMN demo INTEGER NOT NULL DEFAULT 0",
    # 3: the tenant contract (entitled bid, deadline, budget) and scoped keys
    """
    ALTER TABLE tenants ADD COLUMN max_bid INTEGER;
    ALTER TABLE tenants ADD COLUMN max_queue_s REAL;
    ALTER TABLE tenants ADD COLUMN budget_usd REAL;
    ALTER TABLE tenants ADD COLUMN budget_period TEXT NOT NULL DEFAULT 'month';
    ALTER TABLE tenants ADD COLUMN over_budget TEXT NOT NULL DEFAULT 'reject';
    ALTER TABLE api_keys ADD COLUMN expires_at REAL;
    ALTER TABLE api_keys ADD COLUMN models TEXT;
    ALTER TABLE api_keys ADD COLUMN max_bid INTEGER;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

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


class Store:
    """One connection to the database file. Not thread-safe: one per process or thread."""

    def __init__(self, path: str | Path, clock=time.time):
        self.path, self._clock = str(path), clock
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA busy_timeout = 5000")  # another process (the CLI) may write
            if self.path != ":memory:":
                self.db.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a commit survives the process dying (SIGKILL, a crash); only a power
            # loss can take back the last commits. FULL would fsync every ledger row.
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open the database: {exc}") from None

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {version} is newer than this APS "
                             f"understands ({SCHEMA_VERSION}); upgrade APS")
        for target in range(version, SCHEMA_VERSION):
            try:  # each step and its version bump commit together or not at all
                self.db.executescript(f"BEGIN IMMEDIATE; {MIGRATIONS[target]}; "
                                      f"PRAGMA user_version = {target + 1}; COMMIT;")
            except sqlite3.DatabaseError:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise

    def _transaction(self):
        return _Transaction(self.db)

    def close(self) -> None:
        self.db.close()

    def data_version(self) -> int:
        """Changes whenever another connection commits: cheap polling for live reloads."""
        return self.db.execute("PRAGMA data_version").fetchone()[0]

    # -- tenants ---------------------------------------------------------------------------

    def tenants(self) -> list[Tenant]:
        """Every tenant that can be used. One stored before values were checked (an infinite
        rate, ...) is left out, and the log says which and how to mend it."""
        rows = self.db.execute("SELECT * FROM tenants ORDER BY id").fetchall()
        out = []
        for row in rows:
            try:
                out.append(_tenant(row))
            except ConfigError as exc:
                log.error("%s: left out: %s; mend it with `aps tenants set` or remove it",
                          self.path, exc)
        return out

    def tenant(self, tenant_id: str) -> Tenant | None:
        row = self.db.execute("SELECT * FROM tenants WHERE id = ?", (tenant_id,)).fetchone()
        return None if row is None else _tenant(row)

    def put_tenant(self, tenant: Tenant) -> bool:
        """Add a tenant or replace its configuration. Returns True if it was new. Raises
        ConfigError, writing nothing, for a value it could not keep (`Tenant.check`: a
        tenant's fields may have been changed since it was made)."""
        tenant.check()
        values = {f: getattr(tenant, f) for f in TENANT_FIELDS}
        values["over_limit"], values["over_budget"] = tenant.over_limit.value, tenant.over_budget.value
        now = self._clock()
        with self._transaction():
            cur = self.db.execute(
                f"UPDATE tenants SET {', '.join(f'{f} = :{f}' for f in TENANT_FIELDS)}, "
                "updated_at = :now WHERE id = :id", {**values, "id": tenant.tenant_id, "now": now})
            if cur.rowcount:
                return False
            self.db.execute(
                f"INSERT INTO tenants (id, {', '.join(TENANT_FIELDS)}, created_at, updated_at) "
                f"VALUES (:id, {', '.join(':' + f for f in TENANT_FIELDS)}, :now, :now)",
                {**values, "id": tenant.tenant_id, "now": now})
            return True

    def update_tenant(self, tenant_id: str, **changes) -> Tenant:
        """Change some fields of a tenant (None clears a limit). Raises StoreError if there is
        no such tenant, ConfigError if the result is not a valid tenant."""
        with self._transaction():  # from the row: a tenant stored unusable can be mended
            current = self.db.execute("SELECT * FROM tenants WHERE id = ?",
                                      (tenant_id,)).fetchone()
            if current is None:
                raise StoreError(f"unknown tenant {tenant_id!r}")
            unknown = set(changes) - set(TENANT_FIELDS)
            if unknown:
                raise StoreError(f"unknown tenant fields: {', '.join(sorted(unknown))}")
            fields = {f: current[f] for f in TENANT_FIELDS}
            if "token_rate" in changes and "token_burst" not in changes:
                fields["token_burst"] = None  # follows the new rate, as for a new tenant
            if "request_rate" in changes and "request_burst" not in changes:
                fields["request_burst"] = None
            updated = Tenant(tenant_id, **{**fields, **changes})
            self.put_tenant(updated)
            return updated

    def mark_demo(self, tenant_ids: Iterable[str]) -> None:
        """These tenants were made by demo seeding: they may be called without a key."""
        with self._transaction():
            self.db.executemany("UPDATE tenants SET demo = 1 WHERE id = ?",
                                [(t,) for t in tenant_ids])

    def demo_tenants(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT id FROM tenants WHERE demo = 1")}

    def remove_tenant(self, tenant_id: str) -> bool:
        """Remove a tenant and its keys; its ledger rows stay (they are the bill)."""
        with self._transaction():
            return self.db.execute("DELETE FROM tenants WHERE id = ?", (tenant_id,)).rowcount > 0

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
        try:
            with self._transaction():
                self.db.execute(
                    "INSERT INTO api_keys (hash, prefix, tenant_id, created_at, expires_at, "
                    "models, max_bid) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (hash_key(key), key_label(key), tenant_id, self._clock(), expires_at,
                     None if models is None else json.dumps(models), max_bid))
        except sqlite3.IntegrityError:
            if self.tenant(tenant_id) is None:
                raise StoreError(f"unknown tenant {tenant_id!r}") from None
            raise StoreError("that key already exists") from None
        return key

    def revoke_key(self, prefix_or_key: str) -> int:
        """Revoke the live keys shown with this prefix (`key_label`), or the key given whole.
        Returns how many. An ambiguous prefix revokes nothing and says so."""
        with self._transaction():
            live = self.db.execute("SELECT hash FROM api_keys WHERE (prefix = ? OR hash = ?) "
                                   "AND revoked_at IS NULL",
                                   (prefix_or_key, hash_key(prefix_or_key))).fetchall()
            if len(live) > 1:
                raise StoreError(f"prefix {prefix_or_key!r} matches {len(live)} keys: give the "
                                 "full key")
            for row in live:
                self.db.execute("UPDATE api_keys SET revoked_at = ? WHERE hash = ?",
                                (self._clock(), row["hash"]))
        return len(live)

    def keys(self, tenant_id: str | None = None) -> list[KeyInfo]:
        sql, args = "SELECT * FROM api_keys", ()
        if tenant_id is not None:
            sql, args = sql + " WHERE tenant_id = ?", (tenant_id,)
        rows = self.db.execute(sql + " ORDER BY created_at", args).fetchall()
        return [_key(r) for r in rows]

    def key_table(self) -> dict[str, KeyInfo]:
        """Live keys by hash. The gateway keeps this in memory (an expired key stays: it is
        refused as expired, not as unknown)."""
        rows = self.db.execute("SELECT * FROM api_keys WHERE revoked_at IS NULL").fetchall()
        return {r["hash"]: _key(r) for r in rows}

    # -- usage ledger ----------------------------------------------------------------------

    def record(self, rows: Iterable[tuple]) -> None:
        """Append ledger rows (tuples in USAGE_COLUMNS order) in one committed transaction."""
        with self._transaction():
            self.db.executemany(
                f"INSERT INTO usage ({', '.join(USAGE_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(USAGE_COLUMNS))})", rows)

    def usage(self, tenant_id: str | None = None, since: float | None = None,
              until: float | None = None, limit: int | None = None) -> list[dict]:
        """Ledger rows in the order they ended, optionally for one tenant and a time range
        (unix seconds, on the time each request ended)."""
        where, args = _where(tenant_id, since, until)
        sql = f"SELECT {', '.join(USAGE_COLUMNS)} FROM usage {where} ORDER BY id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [dict(r) for r in self.db.execute(sql, args)]

    def spend(self, tenant_id: str, since: float | None = None) -> float:
        """Dollars the ledger bills a tenant for requests that ended since `since` (unix)."""
        where, args = _where(tenant_id, since, None)
        return float(self.db.execute(f"SELECT COALESCE(SUM(cost), 0) FROM usage {where}",
                                     args).fetchone()[0])

    def usage_totals(self, tenant_id: str | None = None, since: float | None = None,
                     until: float | None = None) -> list[dict]:
        """Per tenant: requests by status, tokens and cost."""
        where, args = _where(tenant_id, since, until)
        rows = self.db.execute(
            "SELECT tenant_id, COUNT(*) AS requests, "
            "SUM(status = 'finished') AS finished, SUM(status = 'failed') AS failed, "
            "SUM(status = 'cancelled') AS cancelled, SUM(prompt_tokens) AS prompt_tokens, "
            "SUM(completion_tokens) AS completion_tokens, SUM(cost) AS cost "
            f"FROM usage {where} GROUP BY tenant_id ORDER BY tenant_id", args).fetchall()
        return [dict(r) for r in rows]


def _where(tenant_id: str | None, since: float | None, until: float | None) -> tuple[str, list]:
    clauses, args = [], []
    for clause, value in (("tenant_id = ?", tenant_id), ("finished >= ?", since),
                          ("finished < ?", until)):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), args


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an exception (autocommit connection)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.owner = True
        else:
            self.owner = False
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.owner and self.db.in_transaction:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def _tenant(row: sqlite3.Row) -> Tenant:
    return Tenant(row["id"], **{f: row[f] for f in TENANT_FIELDS})


def _key(row: sqlite3.Row) -> KeyInfo:
    models = None if row["models"] is None else tuple(json.loads(row["models"]))
    return KeyInfo(row["prefix"], row["tenant_id"], row["created_at"], row["revoked_at"],
                   row["expires_at"], models, row["max_bid"])
