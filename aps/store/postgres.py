"""The shared store: tenants, API keys and the usage ledger in PostgreSQL (`store.url`), for
gateway replicas on several hosts.

Two psycopg connection pools: a small synchronous one for the operator's calls (CLI, admin
API) and the gateway's periodic reads, which `run` hands to a worker thread; and an async one,
opened on first use inside the gateway's event loop, for the ledger's group commit, where a
commit is awaited, and abandoned after the configured timeout, without blocking the loop.

Ledger rows are inserted with `ON CONFLICT (request_id) DO NOTHING`: a batch whose commit
answer was lost (the connection broke after it was sent) is written again without billing a
request twice.

Tenant and key changes bump `directory_version` (statement triggers, so a change made with
psql counts too, in the same transaction, so the new version is visible exactly when the
change is); replicas poll that one row every `store.reload_s`.

The schema is versioned in `aps_schema`; `MIGRATIONS[i]` upgrades version i to i+1, each step
with its version bump in one transaction (PostgreSQL's DDL is transactional), under an
advisory lock so that replicas starting together migrate once.
"""
from __future__ import annotations

import asyncio
import math
import time
from contextlib import contextmanager

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from aps.store.base import USAGE_COLUMNS, SqlStore
from aps.store.errors import StoreError
from aps.store.urls import redact

MIGRATIONS = [
    """
    CREATE TABLE tenants (
        id TEXT COLLATE "C" PRIMARY KEY,
        weight DOUBLE PRECISION NOT NULL DEFAULT 1.0,
        bid INTEGER NOT NULL DEFAULT 5,
        token_rate DOUBLE PRECISION, token_burst DOUBLE PRECISION,
        request_rate DOUBLE PRECISION, request_burst DOUBLE PRECISION,
        max_concurrent INTEGER,
        over_limit TEXT NOT NULL DEFAULT 'reject',
        created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
        demo INTEGER NOT NULL DEFAULT 0,
        max_bid INTEGER, max_queue_s DOUBLE PRECISION, budget_usd DOUBLE PRECISION,
        budget_period TEXT NOT NULL DEFAULT 'month',
        over_budget TEXT NOT NULL DEFAULT 'reject'
    );
    CREATE TABLE api_keys (
        hash TEXT PRIMARY KEY,
        prefix TEXT NOT NULL,
        tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        created_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION,
        expires_at DOUBLE PRECISION, models TEXT, max_bid INTEGER
    );
    CREATE INDEX api_keys_tenant ON api_keys(tenant_id);
    CREATE TABLE usage (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        request_id TEXT NOT NULL UNIQUE,
        tenant_id TEXT COLLATE "C" NOT NULL,
        key_prefix TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL,
        bid INTEGER,
        arrival DOUBLE PRECISION NOT NULL,
        first_token DOUBLE PRECISION,
        finished DOUBLE PRECISION NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        status TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        cost DOUBLE PRECISION NOT NULL DEFAULT 0
    );
    -- with the cost, a tenant's spend in a period is read from the index alone
    CREATE INDEX usage_tenant_time ON usage(tenant_id, finished) INCLUDE (cost);
    CREATE INDEX usage_time ON usage(finished);
    CREATE TABLE directory_version (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version BIGINT NOT NULL
    );
    INSERT INTO directory_version VALUES (1, 0);
    CREATE FUNCTION aps_directory_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE directory_version SET version = version + 1 WHERE id = 1;
        RETURN NULL;
    END $$;
    CREATE TRIGGER tenants_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenants
        FOR EACH STATEMENT EXECUTE FUNCTION aps_directory_changed();
    CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_keys
        FOR EACH STATEMENT EXECUTE FUNCTION aps_directory_changed();
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
_MIGRATION_LOCK = 0x617073  # pg_advisory_xact_lock key: "aps"


# Ledger rows go in as one array per column: one statement for the batch, not one per row
# (2.5 times the rows/s of executemany for 64 rows, measured with aps bench store's server)
_COLUMN_TYPES = ("text", "text", "text", "text", "int4", "float8", "float8", "float8", "int4",
                 "int4", "text", "text", "float8")
_INSERT_ROWS = (f"INSERT INTO usage ({', '.join(USAGE_COLUMNS)}) SELECT * FROM unnest("
                + ", ".join(f"%s::{t}[]" for t in _COLUMN_TYPES)
                + ") ON CONFLICT (request_id) DO NOTHING")
_CAST = {"text": lambda v: str(v).replace("\x00", "\ufffd"), "int4": int, "float8": float}


def _columns(rows: list[tuple]) -> list[list]:
    """Ledger rows as column arrays, each value of its column's type."""
    return [[None if r[i] is None else _CAST[t](r[i]) for r in rows]
            for i, t in enumerate(_COLUMN_TYPES)]


def _pg(sql: str) -> str:
    """The shared SQL's `?` placeholders as psycopg's (the shared SQL has no `%`)."""
    return sql.replace("?", "%s")


def _clean(args):
    """PostgreSQL text cannot hold NUL: one in a value to match or a ledger row (a reason an
    upstream server sent) becomes U+FFFD instead of failing the whole statement."""
    return tuple(a.replace("\x00", "\ufffd") if isinstance(a, str) else a for a in args)


class _Tx:
    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    def execute(self, sql: str, args=()):
        return self.conn.execute(_pg(sql), _clean(args)) if args else self.conn.execute(sql)

    def executemany(self, sql: str, rows):
        cur = self.conn.cursor()
        cur.executemany(_pg(sql), [_clean(r) for r in rows])
        return cur


class PgStore(SqlStore):
    """`timeout_s`: how long a call waits for a connection (and to connect) before it counts
    the database as unreachable."""

    shared = True
    unreachable = (psycopg.OperationalError, psycopg.InterfaceError)
    rejected = (psycopg.DataError, psycopg.IntegrityError)  # a value out of range, a NULL
    _integrity = psycopg.IntegrityError
    _for_update = " FOR UPDATE"

    def __init__(self, url: str, clock=time.time, timeout_s: float = 2.0, pool_size: int = 4,
                 open_timeout_s: float = 10.0):
        super().__init__(clock)
        self.url, self.where, self.timeout_s = url, redact(url), timeout_s
        # libpq counts connect_timeout in whole seconds, at least 2
        self._connect = {"autocommit": True, "row_factory": dict_row,
                         "connect_timeout": max(2, math.ceil(timeout_s))}
        # A short reconnect_timeout: the pool stops retrying in the background after it, and
        # the next call tries at once, so a database that comes back is used at once rather
        # than after the pool's growing back-off.
        self.pool = ConnectionPool(url, min_size=1, max_size=pool_size, timeout=timeout_s,
                                   reconnect_timeout=timeout_s, kwargs=self._connect,
                                   check=ConnectionPool.check_connection, open=False,
                                   name="aps-store")
        self._async_pool: AsyncConnectionPool | None = None
        try:
            self.pool.open(wait=True, timeout=open_timeout_s)
            self._migrate()
        except PoolTimeout:
            self.pool.close()
            raise StoreError(f"{self.where}: cannot connect to the database within "
                             f"{open_timeout_s:g} s") from None
        except psycopg.Error as exc:
            self.pool.close()
            raise StoreError(f"{self.where}: {exc}") from None

    def _migrate(self) -> None:
        while True:
            with self._transaction() as tx:
                tx.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
                tx.execute("CREATE TABLE IF NOT EXISTS aps_schema (version INTEGER NOT NULL)")
                row = tx.execute("SELECT version FROM aps_schema").fetchone()
                if row is None:
                    tx.execute("INSERT INTO aps_schema VALUES (0)")
                version = 0 if row is None else row["version"]
                if version > SCHEMA_VERSION:
                    raise StoreError(f"{self.where}: schema version {version} is newer than "
                                     f"this APS understands ({SCHEMA_VERSION}); upgrade APS")
                if version == SCHEMA_VERSION:
                    return
                tx.conn.execute(MIGRATIONS[version])
                tx.execute("UPDATE aps_schema SET version = ?", (version + 1,))

    @contextmanager
    def _transaction(self):
        with self.pool.connection() as conn, conn.transaction():
            yield _Tx(conn)

    def _read(self, sql: str, args=()) -> list:
        with self.pool.connection() as conn:
            return _Tx(conn).execute(sql, args).fetchall()

    def _lock_tenants(self, tx) -> None:
        tx.execute("LOCK TABLE tenants IN SHARE ROW EXCLUSIVE MODE")

    def data_version(self) -> int:
        return self._read("SELECT version FROM directory_version WHERE id = 1")[0]["version"]

    def close(self) -> None:
        self.pool.close()

    def record(self, rows) -> None:
        rows = list(rows)
        if rows:
            with self._transaction() as tx:
                tx.conn.execute(_INSERT_ROWS, _columns(rows))

    # -- the gateway's calls while serving -------------------------------------------------

    async def run(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

    async def write_usage(self, rows: list[tuple]) -> None:
        if self._async_pool is None:  # made here: it belongs to the running event loop
            self._async_pool = AsyncConnectionPool(
                self.url, min_size=1, max_size=2, timeout=self.timeout_s,
                reconnect_timeout=self.timeout_s, kwargs=self._connect, open=False,
                name="aps-ledger")
            await self._async_pool.open(wait=False)
        async with self._async_pool.connection() as conn:  # autocommit: one statement
            await conn.execute(_INSERT_ROWS, _columns(rows))

    async def aclose(self) -> None:
        if self._async_pool is not None:
            await self._async_pool.close()
            self._async_pool = None
