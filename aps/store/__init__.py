"""Tenants, hashed API keys and the usage ledger, in SQLite (the embedded default) or
PostgreSQL (several hosts), behind one interface; the gateway's view of them (the directory,
the ledger's group commit); and cluster mode, where replicas share limits and fair-share
counters through Redis."""
from aps.store.base import KeyInfo, SqlStore, hash_key, new_key
from aps.store.errors import StoreError
from aps.store.sqlite import Store
from aps.store.urls import is_url, redact

__all__ = ["KeyInfo", "SqlStore", "Store", "StoreError", "hash_key", "is_url", "new_key",
           "open_store", "redact"]


def open_store(target, **options) -> SqlStore:
    """The store `target` names: PostgreSQL for a postgresql:// URL (`options` go to it:
    `timeout_s`, ...), otherwise the SQLite file at that path."""
    if is_url(target):
        from aps.store.postgres import PgStore  # psycopg is loaded only where it is used
        return PgStore(str(target), **options)
    return Store(target)
