"""Who may call: the tenants and live API keys of the store, kept in memory and reloaded when
the database changes (the CLI or another gateway replica wrote to it)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from aps.core import Tenant
from aps.store.sqlite import KeyInfo, Store, hash_key

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

    def __init__(self, store: Store, seed: list[tuple[Tenant, list[str]]], demo: bool = False):
        self.store = store
        if not store.tenants():
            for tenant, keys in seed:
                store.put_tenant(tenant)
                for key in keys:
                    store.create_key(tenant.tenant_id, key)
            if demo:
                store.mark_demo(t.tenant_id for t, _ in seed)
            log.info("empty database %s: created %stenants %s", store.path,
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
        """Whether another connection has written since the last reload."""
        return self.store.data_version() != self._version

    def reload(self) -> list[Tenant]:
        """Read tenants and keys again. Returns the tenants added or changed (a removed
        tenant's keys are gone from the table: nothing else to do)."""
        self._version = self.store.data_version()
        tenants = {t.tenant_id: t for t in self.store.tenants()}
        self._keys = self.store.key_table()
        self.demo_tenants = self.store.demo_tenants()
        changed = [t for t in tenants.values() if self.tenants.get(t.tenant_id) != t]
        removed = [tid for tid in self.tenants if tid not in tenants]
        first, self.tenants = not self.tenants, tenants
        if (changed or removed) and not first:
            log.info("tenants reloaded: %d added or changed, %d removed%s", len(changed),
                     len(removed), f" ({', '.join(removed)})" if removed else "")
        return changed
