"""Tenant configuration and the usage ledger: SQLite by default, Redis for shared limits."""
from aps.store.errors import StoreError
from aps.store.sqlite import KeyInfo, Store, hash_key, new_key

__all__ = ["KeyInfo", "Store", "StoreError", "hash_key", "new_key"]
