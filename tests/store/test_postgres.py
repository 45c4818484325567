"""What only the PostgreSQL store does: migrations under a lock, seeding once by replicas that
start together, a change counter only tenants and keys move, and a database URL that is never shown with its password."""
import threading

import psycopg
import pytest

from aps.bench.local.processes import free_port
from aps.core import Tenant
from aps.store import StoreError, open_store, redact
from aps.store import postgres as store_pg


def row(rid, tenant="a", cost=0.5):
    return (rid, tenant, "sk-aps-abcde", "m", 5, 100.0, 100.1, 101.0, 10, 5, "finished", "", cost)


def test_a_new_database_is_migrated_and_a_newer_one_refused(pg_url, monkeypatch):
    with open_store(pg_url) as s:
        s.put_tenant(Tenant("a", bid=7))
    step = "ALTER TABLE tenants ADD COLUMN note TEXT NOT NULL DEFAULT 'kept'"
    monkeypatch.setattr(store_pg, "MIGRATIONS", store_pg.MIGRATIONS + [step])
    monkeypatch.setattr(store_pg, "SCHEMA_VERSION", len(store_pg.MIGRATIONS))
    with open_store(pg_url) as s:  # upgraded in place, the data kept
        assert s._read("SELECT version FROM aps_schema") == [{"version": store_pg.SCHEMA_VERSION}]
        assert s._read("SELECT bid, note FROM tenants") == [{"bid": 7, "note": "kept"}]
    newer = store_pg.SCHEMA_VERSION
    monkeypatch.undo()
    with pytest.raises(StoreError, match=f"schema version {newer} is newer than this APS"):
        open_store(pg_url)


def test_a_failed_migration_leaves_the_database_as_it_was(pg_url, monkeypatch):
    open_store(pg_url).close()
    current = store_pg.SCHEMA_VERSION
    monkeypatch.setattr(store_pg, "MIGRATIONS",
                        store_pg.MIGRATIONS + ["CREATE TABLE t (x INT); SELECT * FROM missing"])
    monkeypatch.setattr(store_pg, "SCHEMA_VERSION", current + 1)
    with pytest.raises(StoreError, match="missing"):
        open_store(pg_url)
    with psycopg.connect(pg_url) as db:
        assert db.execute("SELECT version FROM aps_schema").fetchone() == (current,)
        assert db.execute("SELECT to_regclass('t')").fetchone() == (None,)


def test_replicas_starting_together_migrate_and_seed_once(pg_url):
    seeded, errors = [], []

    def start():
        try:
            with open_store(pg_url) as s:
                seeded.append(s.seed([(Tenant("a"), ["sk-seed-a"]), (Tenant("b"), [])],
                                     demo=True))
        except Exception as exc:  # noqa: BLE001 (any failure fails the test below)
            errors.append(exc)
    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and sorted(seeded) == [False, False, False, True]
    with open_store(pg_url) as s:
        assert [t.tenant_id for t in s.tenants()] == ["a", "b"] and len(s.keys()) == 1
        assert s.demo_tenants() == {"a", "b"}


def test_only_tenant_and_key_changes_move_the_version_whoever_makes_them(pg_url):
    with open_store(pg_url) as s:
        v0 = s.data_version()
        s.record([row("r1")])
        assert s.data_version() == v0  # the ledger is not the directory
        s.put_tenant(Tenant("a"))
        v1 = s.data_version()
        assert v1 > v0
        with psycopg.connect(pg_url, autocommit=True) as other:  # psql, say
            with other.transaction():
                other.execute("UPDATE tenants SET weight = 2 WHERE id = 'a'")
                assert s.data_version() == v1  # not before the change is visible
            assert s.data_version() > v1
        v2 = s.data_version()
        key = s.create_key("a")
        s.revoke_key(key)
        assert s.data_version() > v2
        snapshot = s.snapshot()
        assert snapshot.version == s.data_version() and snapshot.tenants[0].weight == 2


def test_an_unreachable_database_is_a_clear_error_without_the_password():
    url = f"postgresql://aps:s3cret-pw@127.0.0.1:{free_port()}/aps"
    with pytest.raises(StoreError) as caught:
        open_store(url, timeout_s=0.5, open_timeout_s=1)
    assert "cannot connect" in str(caught.value) and "s3cret-pw" not in str(caught.value)
    assert "aps:***@127.0.0.1" in str(caught.value)


@pytest.mark.parametrize("url, shown", [
    ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("postgresql://u@h/db?password=pw&sslmode=require",
     "postgresql://u@h/db?password=%2A%2A%2A&sslmode=require"),
    ("postgres://h/db", "postgres://h/db"),
])
def test_a_url_is_shown_without_its_password(url, shown):
    assert redact(url) == shown
