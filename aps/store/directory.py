"""Who may call: the tenants and live API keys of the store, kept in memory and read again when
the database changes (the CLI, the admin API or another gateway replica wrote to it)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from aps.core import Tenant
from aps.store.base import KeyInfo, Snapshot, SqlStore, hash_key

log = logging.getLogger("aps.tenants")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request acts for, and what its key allows."""

    tenant_id: str
    key_prefix: str
    expires_at: float | None = None  # unix seconds
    models: tuple[str, ...] | None = None  # None: any model
    max_bid: int | None = None  # a cap below the tenant's own


class Directory:
    """`seed` fills an empty database (`demo`: with the demo tenants, which may then be called
    without a key: no other tenant ever may)."""

    def __init__(self, store: SqlStore, seed: list[tuple[Tenant, list[str]]], demo: bool = False):
        self.store = store
        if store.seed(seed, demo):
            log.info("empty database %s: created %stenants %s", store.where,
                     "the demo " if demo else "", ", ".join(t.tenant_id for t, _ in seed))
        self.tenants: dict[str, Tenant] = {}
        self.demo_tenants: set[str] = set()
        self._keys: dict[str, KeyInfo] = {}
        self._version = None
        self.reload()

    @property
    def demo(self) -> bool:
        """Demo mode: every tenant is a demo tenant (then per-tenant figures are public too)."""
        return bool(self.tenants) and set(self.tenants) <= self.demo_tenants

    def lookup(self, key: str) -> Caller | None:
        found = self._keys.get(hash_key(key))
        if found is None:
            return None
        return Caller(found.tenant_id, found.prefix, found.expires_at, found.models, found.max_bid)

    def changed(self) -> bool:
        """Whether tenants or keys may have changed since the last reload."""
        return self.store.data_version() != self._version

    def reload(self) -> list[Tenant]:
        """Read tenants and keys again. Returns the tenants added or changed (a removed
        tenant's keys are gone from the table: nothing else to do)."""
        return self.apply(self.store.snapshot())

    async def refresh(self) -> list[Tenant] | None:
        """Reload if the database changed, reading it off the event loop where the store
        needs that; None if nothing changed."""
        if not await self.store.run(self.changed):
            return None
        return self.apply(await self.store.run(self.store.snapshot))

    def apply(self, snapshot: Snapshot) -> list[Tenant]:
        self._version = snapshot.version
        tenants = {t.tenant_id: t for t in snapshot.tenants}
        self._keys, self.demo_tenants = snapshot.keys, snapshot.demo
        changed = [t for t in tenants.values() if self.tenants.get(t.tenant_id) != t]
        removed = [tid for tid in self.tenants if tid not in tenants]
        first, self.tenants = not self.tenants, tenants
        if (changed or removed) and not first:
            log.info("tenants reloaded: %d added or changed, %d removed%s", len(changed),
                     len(removed), f" ({', '.join(removed)})" if removed else "")
        return changed
