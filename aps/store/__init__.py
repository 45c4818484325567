"""Tenants, hashed API keys and the usage ledger (SQLite, the embedded default); the gateway's
view of them (the directory, the ledger's group commit); and cluster mode, where replicas share
limits and fair-share counters through Redis."""
from aps.store.errors import StoreError
from aps.store.sqlite import KeyInfo, Store, hash_key, new_key

__all__ = ["KeyInfo", "Store", "StoreError", "hash_key", "new_key"]
