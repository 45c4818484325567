"""Two `aps serve` processes, as on two hosts, on one PostgreSQL database and one Redis: a key
made through one works on the other within a second, one budget holds across both, a replica
killed under load loses no acknowledged ledger row, and neither does a PostgreSQL restart."""
import asyncio
import json
import re
import time

import httpx
import psycopg
import pytest

from aps.bench.local.server import LocalServer
from budgets import PRICES, THRIFTY, spend_alternately
from postgres_server import PostgresServer, pg_url, postgres  # noqa: F401 (fixtures)

ADMIN = "admin-key-for-tests-0123456789"
PASSWORD = "pw-never-logged"  # trust authentication: accepted, never needed, never shown
CONFIG = f"""
speed: 500
admin_key: {ADMIN}
{PRICES}
store: {{reload_s: 0.2, redis_url: REDIS}}
tenants:
  - {{id: busy, keys: [sk-busy-key]}}
  - {THRIFTY}
"""


def with_password(url: str) -> str:
    return url.replace("postgresql://aps@", f"postgresql://aps:{PASSWORD}@")


def replicas(tmp_path, database_url, redis_url=None, n=2):
    config = CONFIG.replace("REDIS", redis_url or "null")
    return [LocalServer(config, log_path=tmp_path / f"replica{i}.log",
                        env={"APS_DATABASE_URL": with_password(database_url)}) for i in range(n)]


def ledger_ids(url: str) -> list[str]:
    with psycopg.connect(url) as db:
        return [r[0] for r in db.execute("SELECT request_id FROM usage")]


def pending_rows(server) -> float:
    text = httpx.get(server.url + "/metrics", timeout=5).text
    return float(re.search(r"^aps:ledger_pending_rows (\S+)", text, re.M).group(1))


async def load(urls, acked: list, seconds: float, clients_per_url: int = 6) -> dict:
    """Clients on every replica until `seconds` pass or their replica dies; half of them
    stream, and a streamed request is acknowledged by its `data: [DONE]`."""
    stop = time.monotonic() + seconds
    seen = {"cut": 0, "errors": 0}

    async def client(c: httpx.AsyncClient, url: str, i: int):
        headers = {"Authorization": "Bearer sk-busy-key"}
        while time.monotonic() < stop:
            body = {"model": "sim-llama-3-8b", "prompt": f"client {i}", "max_tokens": 4,
                    "stream": bool(i % 2)}
            try:
                if not body["stream"]:
                    r = await c.post(url + "/v1/completions", json=body, headers=headers)
                    if r.status_code != 200:
                        seen["errors"] += 1
                        continue
                    acked.append(r.json()["id"])
                    continue
                async with c.stream("POST", url + "/v1/completions", json=body,
                                    headers=headers) as r:
                    lines = [line async for line in r.aiter_lines() if line.startswith("data:")]
                if lines and lines[-1] == "data: [DONE]":
                    acked.append(json.loads(lines[0][5:])["id"])
                else:
                    seen["errors"] += 1
            except httpx.HTTPError:
                seen["cut"] += 1
                return  # its replica is gone

    async with httpx.AsyncClient(timeout=20) as c:
        await asyncio.gather(*(client(c, u, i) for u in urls for i in range(clients_per_url)))
    return seen


def test_keys_tenants_and_a_budget_are_shared_by_two_replicas(tmp_path, pg_url, redis):
    a, b = replicas(tmp_path, pg_url, redis.url)
    try:
        h = {"Authorization": f"Bearer {ADMIN}"}
        key = httpx.post(a.url + "/admin/tenants/busy/keys", headers=h).json()["key"]
        t0 = time.monotonic()
        while httpx.post(b.url + "/v1/completions", headers={"Authorization": f"Bearer {key}"},
                         json={"prompt": "hi", "max_tokens": 2}).status_code == 401:
            assert time.monotonic() - t0 < 1.0, "the key did not reach the other replica"
            time.sleep(0.02)
        assert httpx.patch(b.url + "/admin/tenants/busy", headers=h,
                           json={"token_rate": 77}).status_code == 200
        t0 = time.monotonic()
        while httpx.get(a.url + "/tenants/busy/status", headers={"Authorization": f"Bearer {key}"}
                        ).json()["token_rate"] != 77:
            assert time.monotonic() - t0 < 1.0, "the change did not reach the other replica"
            time.sleep(0.02)

        codes, spent = spend_alternately((a, b))
        assert "ok" in codes and codes[-2:] == ["budget_exceeded"] * 2
    finally:
        for s in (a, b):
            s.stop()
    with psycopg.connect(pg_url) as db:
        billed = db.execute("SELECT SUM(cost) FROM usage WHERE tenant_id = 'thrifty'").fetchone()[0]
    assert 0.4 < billed <= 0.5 + 1e-9  # one budget for both: each alone would allow $0.50
    assert spent[0] == pytest.approx(spent[1]) == pytest.approx(billed, abs=1e-6)
    logs = (tmp_path / "replica0.log").read_text() + (tmp_path / "replica1.log").read_text()
    assert "postgresql://aps:***@127.0.0.1" in logs and PASSWORD not in logs


def test_a_replica_killed_under_load_loses_no_acknowledged_row(tmp_path, pg_url, redis):
    a, b = replicas(tmp_path, pg_url, redis.url)
    acked: list[str] = []

    async def main():
        running = asyncio.ensure_future(load([a.url, b.url], acked, seconds=5))
        while len(acked) < 300:
            await asyncio.sleep(0.01)
        a.kill()  # SIGKILL: no drain, no goodbye; b goes on serving
        return await running

    try:
        seen = asyncio.run(main())
        assert seen["cut"] == 6 and seen["errors"] == 0  # a's clients were cut off, b's not
    finally:
        a.kill()
        b.stop()
    ids = ledger_ids(pg_url)
    missing = set(acked) - set(ids)
    print(f"\nSIGKILL of one of two replicas: {len(acked)} acknowledged, {len(ids)} ledger "
          f"rows, {len(missing)} acknowledged and missing")
    assert len(ids) == len(set(ids)) and not missing


def test_a_postgres_restart_under_load_loses_no_acknowledged_row(tmp_path):
    pg = PostgresServer(tmp_path / "postgres.log")
    try:
        url = pg.create_database("aps")
        servers = replicas(tmp_path, url, n=2)
        acked: list[str] = []
        most_pending = 0.0

        async def main():
            nonlocal most_pending
            running = asyncio.ensure_future(load([s.url for s in servers], acked, seconds=5))
            await asyncio.sleep(1.5)
            before = len(acked)
            await asyncio.to_thread(pg.restart, "fast")  # every connection is cut
            while not running.done():
                most_pending = max([most_pending] + [await asyncio.to_thread(pending_rows, s)
                                                     for s in servers])
                await asyncio.sleep(0.1)
            assert len(acked) > before + 50  # served through the restart and after it
            return await running

        try:
            seen = asyncio.run(main())
            deadline = time.monotonic() + 20
            while any(pending_rows(s) for s in servers):  # the backlog is written
                assert time.monotonic() < deadline, "the buffered rows were never written"
                time.sleep(0.2)
        finally:
            for s in servers:
                s.stop()
        ids = ledger_ids(url)
        missing = set(acked) - set(ids)
        print(f"\nPostgreSQL restarted under load: {len(acked)} acknowledged, {len(ids)} ledger "
              f"rows, {len(missing)} acknowledged and missing, at most {most_pending:.0f} rows "
              "buffered")
        assert seen["errors"] == seen["cut"] == 0
        assert len(ids) == len(set(ids)) and not missing
    finally:
        pg.close()
