"""The store, SQLite's and PostgreSQL's alike: tenants, hashed keys, the ledger, the CLI on
either; SQLite's migrations; export and replay."""
import asyncio
import json
import sqlite3

import pytest

from aps.store.sqlite import key_label

from aps.core import ConfigError, OverLimit, Tenant
from aps.workload.scenarios import load_scenario
from aps.store import Store, StoreError, hash_key, open_store
from aps.store import sqlite as store_sqlite
from aps.store.export import parse_time, usage_csv, write_trace


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """Where a store keeps its data: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "a.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def opened(database):
    """Opens stores on `database` (a second one reads what the first wrote); closes them."""
    stores = []

    def open_one():
        stores.append(open_store(database))
        return stores[-1]
    yield open_one
    for store in stores:
        store.close()


def row(rid, tenant="a", arrival=100.0, prompt=10, out=5, status="finished", finished=None):
    return (rid, tenant, "sk-aps-abcde", "m", 5, arrival, arrival + 0.1,
            finished or arrival + 1, prompt, out, status, "", 0.001)


def test_tenants_round_trip_and_partial_updates(opened):
    s = opened()
    assert s.put_tenant(Tenant("a", weight=2, bid=9, token_rate=10, over_limit="demote"))
    assert not s.put_tenant(Tenant("a", weight=3))  # replaced, not added
    assert s.tenant("a") == Tenant("a", weight=3)
    t = s.update_tenant("a", token_rate=50)
    assert (t.token_rate, t.token_burst, t.weight) == (50, 50, 3)  # burst follows a new rate
    assert s.update_tenant("a", token_rate=None).token_rate is None
    with pytest.raises(StoreError, match="unknown tenant 'zz'"):
        s.update_tenant("zz", bid=3)
    with pytest.raises(ConfigError, match="bid must be a whole number from 1 to 10"):
        s.update_tenant("a", bid=11)
    assert s.tenant("a").bid == 5  # a refused change changes nothing
    assert opened().tenants() == s.tenants()  # stored
    with pytest.raises(ConfigError, match="NUL"):
        s.put_tenant(Tenant("nul\x00id"))
    assert s.tenant("nul\x00id") is None and s.usage("nul\x00id") == []


def test_keys_are_stored_only_as_hashes_and_revocation_is_precise(opened, database):
    s = opened()
    s.put_tenant(Tenant("a"))
    key = s.create_key("a")
    if database.endswith(".db"):  # every byte of the file
        raw = open(database, "rb").read() + open(database + "-wal", "rb").read()
    else:  # every value of the table
        raw = json.dumps(s._read("SELECT * FROM api_keys"), default=str).encode()
    assert key.encode() not in raw and hash_key(key).encode() in raw
    assert [(k.tenant_id, k.prefix) for k in s.key_table().values()] == [("a", key_label(key))]
    assert list(s.key_table()) == [hash_key(key)]
    with pytest.raises(StoreError, match="unknown tenant"):
        s.create_key("nobody")
    first, second = "sk-aps-same-AAAAAA-end", "sk-aps-same-BBBBBB-end"
    assert key_label(first) == key_label(second)  # shown alike: only the whole key tells
    s.create_key("a", first)
    s.create_key("a", second)
    with pytest.raises(StoreError, match="matches 2 keys"):
        s.revoke_key(key_label(first))
    assert s.revoke_key(first) == 1  # the full key picks one
    assert s.revoke_key(key_label(key)) == 1 and s.revoke_key(key_label(key)) == 0
    assert [(k.tenant_id, k.prefix) for k in s.key_table().values()] == [("a", key_label(second))]
    s.remove_tenant("a")
    assert s.keys() == [] and s.key_table() == {}


def test_ledger_rows_survive_and_filter_by_tenant_and_time(opened):
    s = opened()
    s.record([row("r1", "a", 100), row("r2", "b", 200), row("r3", "a", 300, status="failed")])
    s.close()
    s = opened()
    assert [r["request_id"] for r in s.usage("a")] == ["r1", "r3"]
    assert [r["request_id"] for r in s.usage(since=150, until=301)] == ["r2"]
    totals = {r["tenant_id"]: r for r in s.usage_totals()}
    assert totals["a"]["requests"] == 2 and totals["a"]["failed"] == 1
    assert totals["a"]["prompt_tokens"] == 20
    text = usage_csv(s.usage())
    assert text.splitlines()[0].startswith("request_id,tenant_id,key_prefix,model")
    assert len(text.splitlines()) == 4
    assert s.spend("a") == pytest.approx(0.002) and s.spend("a", since=250) == pytest.approx(0.001)
    assert [r["request_id"] for r in s.usage(limit=2)] == ["r1", "r2"]


def test_a_ledger_batch_written_twice_bills_each_request_once(opened):
    """Shutdown's last flush may write again a batch whose commit answer was lost."""
    async def main(s):
        await s.write_usage([row("r1"), row("r2")])
        await s.write_usage([row("r1"), row("r2"), row("r3")])
        await s.aclose()
    s = opened()
    asyncio.run(main(s))
    s.record([row("r3"), row("r4")])
    assert [r["request_id"] for r in s.usage()] == ["r1", "r2", "r3", "r4"]
    assert s.spend("a") == pytest.approx(0.004)


def test_a_file_with_a_request_billed_twice_keeps_its_first_row(tmp_path, monkeypatch):
    """Before version 4 a SQLite ledger could hold a request twice; the upgrade keeps one."""
    path = tmp_path / "a.db"
    monkeypatch.setattr(store_sqlite, "SCHEMA_VERSION", 3)
    old = Store(path)
    old.db.executemany(f"INSERT INTO usage ({', '.join(store_sqlite.USAGE_COLUMNS)}) VALUES "
                       f"({', '.join('?' * len(store_sqlite.USAGE_COLUMNS))})",
                       [row("r1", prompt=10), row("r2"), row("r1", prompt=99)])
    assert len(old.usage()) == 3
    old.close()
    monkeypatch.undo()
    s = Store(path)
    assert [(r["request_id"], r["prompt_tokens"]) for r in s.usage()] == [("r1", 10), ("r2", 10)]
    s.record([row("r1")])
    assert len(s.usage()) == 2
    s.close()


def test_two_processes_upgrading_one_file_at_once_both_start(tmp_path, monkeypatch):
    """The second reads the old version, then finds the step taken when it comes to take it."""
    path = tmp_path / "a.db"
    monkeypatch.setattr(store_sqlite, "SCHEMA_VERSION", 3)
    Store(path).close()
    monkeypatch.undo()
    last = store_sqlite.MIGRATIONS[-1]

    class TakenMeanwhile(str):
        """The last step's text; reading it first lets another process upgrade the file."""
        def __format__(self, spec):
            if not asked:
                asked.append(True)
                others.append(Store(path))  # migrates the file through the last step
            return str.__format__(self, spec)
    asked: list = []
    others: list = []
    monkeypatch.setattr(store_sqlite, "MIGRATIONS",
                        [*store_sqlite.MIGRATIONS[:-1], TakenMeanwhile(last)])
    s = Store(path)
    assert others and s.db.execute("PRAGMA user_version").fetchone()[0] == store_sqlite.SCHEMA_VERSION
    s.record([row("r1")])
    assert [r["request_id"] for r in others[0].usage()] == ["r1"]
    s.close()
    others[0].close()


def test_migrations_upgrade_in_place_and_refuse_a_newer_schema(tmp_path, monkeypatch):
    path = tmp_path / "a.db"
    s = Store(path)
    s.put_tenant(Tenant("a", bid=7))
    s.close()
    step = "ALTER TABLE tenants ADD COLUMN note TEXT NOT NULL DEFAULT 'kept'"
    monkeypatch.setattr(store_sqlite, "MIGRATIONS", store_sqlite.MIGRATIONS + [step])
    monkeypatch.setattr(store_sqlite, "SCHEMA_VERSION", len(store_sqlite.MIGRATIONS))
    s = Store(path)
    newer = store_sqlite.SCHEMA_VERSION
    assert s.db.execute("PRAGMA user_version").fetchone()[0] == newer
    assert s.db.execute("SELECT bid, note FROM tenants").fetchone()[:] == (7, "kept")
    s.close()
    monkeypatch.undo()
    with pytest.raises(StoreError, match=f"schema version {newer} is newer than this APS understands"):
        Store(path)


def test_a_failed_migration_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "a.db"
    Store(path).close()
    current = store_sqlite.SCHEMA_VERSION
    monkeypatch.setattr(store_sqlite, "MIGRATIONS",
                        store_sqlite.MIGRATIONS + ["CREATE TABLE t (x); SELECT * FROM missing"])
    monkeypatch.setattr(store_sqlite, "SCHEMA_VERSION", current + 1)
    with pytest.raises(StoreError, match="no such table: missing"):
        Store(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == current
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 't'").fetchone() is None


def test_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_text("hello, not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open the database"):
        Store(bad)


@pytest.mark.parametrize("text, expected", [
    ("1700000000", 1700000000.0), ("2h", 10_000 - 7200), ("90m", 10_000 - 5400),
    ("1970-01-01T01:00:00", 3600.0), ("1970-01-01T01:00:00+01:00", 0.0), (None, None),
])
def test_parse_time(text, expected):
    assert parse_time(text, now=10_000) == expected


def test_parse_time_says_what_it_accepts():
    with pytest.raises(StoreError, match="a span like 24h"):
        parse_time("yesterday", 0)


def test_a_span_ahead_is_an_expiry():
    assert parse_time("30d", now=10_000, ahead=True) == 10_000 + 30 * 86400


def test_export_writes_a_trace_and_a_scenario_the_simulator_replays(tmp_path):
    rows = [dict(zip(store_sqlite.USAGE_COLUMNS, r)) for r in (
        row("r1", "a", 1000.0, prompt=30, out=7), row("r2", "b", 1000.5, prompt=12, out=3),
        row("r3", "a", 1002.0, out=0, status="cancelled"))]  # produced nothing: left out
    tenants = [Tenant("a", weight=2, bid=9, token_rate=100, over_limit=OverLimit.DEMOTE),
               Tenant("b"), Tenant("unused")]
    assert write_trace(rows, tmp_path / "week.yaml", tenants) == 2
    assert (tmp_path / "week.csv").read_text().splitlines() == [
        "arrival_s,tenant,prompt_tokens,output_tokens", "0.000000,a,30,7", "0.500000,b,12,3"]
    sc = load_scenario(tmp_path / "week.yaml")
    w = sc.workload
    assert list(w.prompt_tokens) == [30, 12] and list(w.output_tokens) == [7, 3]
    a = next(t for t in w.tenants if t.tenant_id == "a")
    assert (a.weight, a.bid, a.token_rate, a.over_limit) == (2, 9, 100, OverLimit.DEMOTE)
    bare = load_scenario(tmp_path / "week.csv")  # the CSV alone replays too
    assert list(bare.workload.arrival_s) == [0.0, 0.5]
    with pytest.raises(StoreError, match="nothing to replay"):
        write_trace(rows[2:], tmp_path / "none.csv", tenants)


def test_cli_manages_tenants_and_keys_and_exports_the_ledger(tmp_path, database, opened):
    from typer.testing import CliRunner

    from aps.cli import app
    db = ["--db", database]
    run = CliRunner().invoke
    added = run(app, ["tenants", "add", "acme", "--bid", "8", "--token-rate", "100", *db])
    assert added.exit_code == 0 and added.output.strip().splitlines()[-1].startswith("sk-aps-")
    assert run(app, ["tenants", "add", "acme", *db]).exit_code == 2  # exists: use set
    assert run(app, ["tenants", "add", "bad", "--bid", "11", *db]).exit_code == 2
    listed = run(app, ["tenants", "list", "--json", *db])
    assert [(t["id"], t["bid"], t["token_rate"]) for t in json.loads(listed.output)] == [
        ("acme", 8, 100)]
    assert run(app, ["tenants", "set", "acme", "--unlimited", "token_rate", *db]).exit_code == 0
    assert opened().tenant("acme").token_rate is None
    assert run(app, ["tenants", "set", "acme", *db]).exit_code == 2  # nothing to change
    second = run(app, ["keys", "create", "acme", *db]).output.strip().splitlines()[-1]
    keys = run(app, ["keys", "list", *db]).output
    assert key_label(second) in keys and keys.count("acme") == 2
    assert run(app, ["keys", "create", "ghost", *db]).exit_code == 2
    opened().record([row("r1", "acme", 50.0, prompt=9, out=4)])
    totals = run(app, ["usage", *db])
    assert totals.exit_code == 0 and "acme" in totals.output
    assert ",acme," in run(app, ["usage", "--csv", "--tenant", "acme", *db]).output
    exported = run(app, ["usage", "export", "--trace", str(tmp_path / "t.yaml"), *db])
    assert exported.exit_code == 0 and "aps simulate" in exported.output
    assert load_scenario(tmp_path / "t.yaml").workload.tenants[0].tenant_id == "acme"
    assert run(app, ["tenants", "remove", "acme", *db]).exit_code == 0
    assert run(app, ["tenants", "remove", "acme", *db]).exit_code == 2


def test_a_cached_answer_costs_nothing_unless_hits_are_billed(tmp_path):
    from aps.core import Request, Status
    from aps.server.config import Prices
    from aps.store.ledger import Ledger

    def row(reason: str, bill_cached: bool) -> tuple:
        req = Request("r", "t", 1000, 500, 0.0, price=Prices(input_per_1m=1, output_per_1m=2)
                      .for_model("m"))
        req.status, req.reason, req.first_scheduled, req.finished = Status.FINISHED, reason, 0, 1
        req.num_output_tokens = 500
        ledger = Ledger(Store(tmp_path / "l.db"), lambda t: t, bill_cached=bill_cached)
        return ledger.row(req, "sk-x", "m")

    served, hit = row("length", False), row("cached", False)
    assert served[-1] == pytest.approx(0.002) and hit[-1] == 0.0
    assert hit[8:10] == (1000, 500)  # its tokens are still counted
    assert row("cached", True)[-1] == pytest.approx(0.002)


def test_a_tenant_stored_before_values_were_checked_is_left_out_not_fatal(tmp_path, caplog):
    s = Store(tmp_path / "a.db")
    s.put_tenant(Tenant("good"))
    s.put_tenant(Tenant("bad"))
    s.db.execute("UPDATE tenants SET token_rate = 1e999 WHERE id = 'bad'")  # inf, as old files
    assert [t.tenant_id for t in s.tenants()] == ["good"]
    assert "bad" in caplog.text and "aps tenants set" in caplog.text
    s.update_tenant("bad", token_rate=50)  # mended in place
    assert [t.tenant_id for t in s.tenants()] == ["bad", "good"]
