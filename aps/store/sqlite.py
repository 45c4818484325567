"""The embedded store: tenants, API keys and the usage ledger in one SQLite file (WAL mode).

A ledger row is committed before the client hears its request ended: with WAL and
synchronous=NORMAL a commit survives the process being killed. A request has one row: a row
written again is ignored, as in PostgreSQL. The schema is versioned with
`PRAGMA user_version`; `MIGRATIONS[i]` upgrades version i to i+1 in place, so an operator's
file follows the code across upgrades.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from aps.store.base import (TENANT_FIELDS, USAGE_COLUMNS, KeyInfo, SqlStore, hash_key,
                            key_label, new_key)
from aps.store.errors import StoreError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Store", "KeyInfo", "TENANT_FIELDS",
           "USAGE_COLUMNS", "hash_key", "key_label", "new_key"]

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
    # 4: one row per request, as in PostgreSQL, so a batch written again (shutdown's last flush
    # after a commit whose answer was lost) bills nobody twice. A file that already holds such
    # a repeat keeps its first row: the later one billed the same request again.
    """
    DELETE FROM usage WHERE id NOT IN (SELECT MIN(id) FROM usage GROUP BY request_id);
    CREATE UNIQUE INDEX usage_request ON usage(request_id);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class Store(SqlStore):
    """One connection to the database file. Not thread-safe: one per process or thread."""

    unreachable = (sqlite3.Error,)  # locked past the busy timeout, disk full, ...
    rejected = (sqlite3.IntegrityError, sqlite3.InterfaceError)  # a NULL, a type it cannot bind
    _integrity = sqlite3.IntegrityError

    def __init__(self, path: str | Path, clock=time.time):
        super().__init__(clock)
        self.path = self.where = str(path)
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
                # another process opening the file at the same time took this step first
                if self.db.execute("PRAGMA user_version").fetchone()[0] > target:
                    continue
                raise

    def _transaction(self):
        return _Transaction(self.db)

    def _read(self, sql: str, args=()) -> list:
        return self.db.execute(sql, args).fetchall()

    def close(self) -> None:
        self.db.close()

    def data_version(self) -> int:
        """Changes whenever another connection commits: cheap polling for live reloads."""
        return self.db.execute("PRAGMA data_version").fetchone()[0]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an exception (autocommit connection)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.owner = True
        else:
            self.owner = False
        return self.db

    def __exit__(self, exc_type, exc, tb):
        if self.owner and self.db.in_transaction:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
