"""Tenants, keys and the ledger through a real gateway process: the admin API, the CLI on the
same database file, live reloads, and a ledger that survives SIGKILL."""
import asyncio
import json
import time

import httpx
import openai
import pytest
from typer.testing import CliRunner

from aps.cli import app as cli
from aps.bench.local.server import LocalServer
from aps.core import Tenant
from aps.store import Store
from aps.store.sqlite import key_label

ADMIN = "admin-key-for-tests-0123456789"
CONFIG = f"""
speed: 200
admin_key: {ADMIN}
prices: {{input_per_1m: 1.0, output_per_1m: 2.0}}
store: {{reload_s: 0.1}}
tenants:
  - {{id: acme, keys: [sk-acme-test-key], bid: 8}}
  - {{id: spare, keys: [sk-spare-test-key], token_rate: 1, token_burst: 100, over_limit: demote}}
"""


def admin(server, method, path, **kw):
    return httpx.request(method, server.url + "/admin" + path,
                         headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10, **kw)


def complete(server, key, tokens=3):
    c = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    return c.completions.create(model="sim-llama-3-8b", prompt="hello there", max_tokens=tokens)


def eventually(check, timeout_s=5.0, until_not=()):
    """`check()` once it passes (a live reload takes up to `store.reload_s`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check()
        except (AssertionError, pytest.fail.Exception, *until_not):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def server(tmp_path):
    s = LocalServer(CONFIG, log_path=tmp_path / "server.log", db_path=tmp_path / "aps.db")
    yield s
    s.stop()


def test_admin_api_needs_its_own_key(server, tmp_path):
    r = httpx.get(server.url + "/admin/tenants", headers={"Authorization": "Bearer sk-acme-test-key"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_admin_key"
    off = LocalServer("{}", log_path=tmp_path / "off.log")
    try:
        r = httpx.get(off.url + "/admin/tenants", headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 403 and "set admin_key" in r.json()["error"]["message"]
    finally:
        off.stop()


def test_tenant_and_key_lifecycle_through_the_admin_api(server):
    r = admin(server, "PUT", "/tenants/newco", json={"bid": 3, "token_rate": 1000})
    assert r.status_code == 201 and r.json()["token_burst"] == 1000
    assert admin(server, "PUT", "/tenants/newco", json={"bid": 4}).status_code == 200
    bad = admin(server, "PATCH", "/tenants/newco", json={"bid": 11})
    assert bad.status_code == 400 and "bid" in bad.json()["error"]["message"]
    assert admin(server, "PATCH", "/tenants/newco", json={"weight": 3}).json()["weight"] == 3
    assert admin(server, "PATCH", "/tenants/ghost", json={"weight": 3}).status_code == 404
    created = admin(server, "POST", "/tenants/newco/keys").json()
    key = created["key"]
    assert created["prefix"] == key_label(key) and len(key) > 40
    out = complete(server, key)
    assert out.usage.completion_tokens == 3
    rows = admin(server, "GET", "/usage", params={"tenant": "newco"}).json()["data"]
    assert [(r["request_id"], r["key_prefix"], r["status"]) for r in rows] == [
        (out.id, created["prefix"], "finished")]
    expected_cost = (rows[0]["prompt_tokens"] * 1.0 + 3 * 2.0) / 1e6
    assert rows[0]["cost"] == pytest.approx(expected_cost)
    csv = admin(server, "GET", "/usage", params={"format": "csv", "since": "1h"}).text
    assert out.id in csv and csv.startswith("request_id,")
    summary = admin(server, "GET", "/usage/summary").json()["data"]
    assert {"tenant_id": "newco", "requests": 1} .items() <= summary[-1].items()
    assert admin(server, "GET", "/usage", params={"since": "someday"}).status_code == 400
    assert admin(server, "DELETE", f"/keys/{created['prefix']}").status_code == 204
    with pytest.raises(openai.AuthenticationError):
        complete(server, key)
    assert admin(server, "DELETE", "/tenants/newco").status_code == 204
    assert admin(server, "GET", "/tenants/newco").status_code == 404
    assert admin(server, "GET", "/usage", params={"tenant": "newco"}).json()["data"]  # kept


def test_a_demoting_tenant_over_budget_is_served_not_refused(server):
    first = complete(server, "sk-spare-test-key", tokens=40)  # ~43 of its 100 tokens
    second = complete(server, "sk-spare-test-key", tokens=40)
    third = complete(server, "sk-spare-test-key", tokens=40)  # over budget: spare capacity
    assert {first.usage.completion_tokens, second.usage.completion_tokens,
            third.usage.completion_tokens} == {40}
    text = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN}"}).text
    assert 'tenant="spare"' in text  # the admin key sees tenants' series
    assert 'aps:request_rejected_total{reason="tokens",tenant="spare"}' not in text


def test_cli_changes_reach_a_running_server(server):
    db = ["--db", server.db_path]
    run = CliRunner().invoke(cli, ["tenants", "add", "clico", "--bid", "2", *db])
    assert run.exit_code == 0, run.output
    key = run.output.strip().splitlines()[-1]
    eventually(lambda: complete(server, key), until_not=(openai.AuthenticationError,))
    run = CliRunner().invoke(cli, ["tenants", "set", "clico", "--token-rate", "5", *db])
    assert run.exit_code == 0, run.output

    def limited():
        status = httpx.get(server.url + "/tenants/clico/status",
                           headers={"Authorization": f"Bearer {key}"}).json()
        assert status["token_rate"] == 5
    eventually(limited)
    with pytest.raises(openai.BadRequestError, match="burst of 5"):
        complete(server, key, tokens=50)  # can never fit the new burst
    assert CliRunner().invoke(cli, ["keys", "revoke", key_label(key), *db]).exit_code == 0

    def refused():
        with pytest.raises(openai.AuthenticationError):
            complete(server, key, tokens=1)
    # Until the revocation reaches the server, the key still works, and each try spends the
    # tenant's small new bucket: a 429 meanwhile is the limit doing its job, not the answer.
    eventually(refused, until_not=(openai.RateLimitError,))
    usage = CliRunner().invoke(cli, ["usage", "--tenant", "clico", "--csv", *db])
    lines = usage.output.splitlines()
    assert usage.exit_code == 0 and len(lines) >= 2 and all(",clico," in x for x in lines[1:])


def test_an_empty_database_gets_the_seed_tenants_once(tmp_path):
    db = tmp_path / "demo.db"
    s = LocalServer("{}", speed=200, log_path=tmp_path / "a.log", db_path=db)
    try:
        assert complete(s, "sk-demo-tenant_c").usage.completion_tokens == 3
    finally:
        s.stop()
    store = Store(db)
    assert [t.tenant_id for t in store.tenants()] == ["tenant_a", "tenant_b", "tenant_c"]
    store.remove_tenant("tenant_c")
    store.close()
    s = LocalServer("{}", speed=200, log_path=tmp_path / "b.log", db_path=db)
    try:  # not created again: the database, not the defaults, says who the tenants are
        with pytest.raises(openai.AuthenticationError):
            complete(s, "sk-demo-tenant_c")
        assert complete(s, "sk-demo-tenant_a")
    finally:
        s.stop()


def test_every_acknowledged_request_is_in_the_ledger_after_sigkill(tmp_path):
    """Load from 16 clients; SIGKILL the server mid-run; every request a client saw complete
    has its ledger row, and nothing is recorded twice."""
    db = tmp_path / "aps.db"
    s = LocalServer(CONFIG, log_path=tmp_path / "s.log", db_path=db)
    acked: list[str] = []
    failed = 0

    async def client(c: httpx.AsyncClient, i: int):
        """Even clients wait for whole answers; odd ones stream, and a streamed request is
        acknowledged by its `data: [DONE]`."""
        nonlocal failed
        headers = {"Authorization": "Bearer sk-acme-test-key"}
        for j in range(10_000):
            body = {"model": "sim-llama-3-8b", "prompt": f"client {i} request {j}", "max_tokens": 4,
                    "stream": bool(i % 2)}
            try:
                if not body["stream"]:
                    r = await c.post(s.url + "/v1/completions", json=body, headers=headers)
                    assert r.status_code == 200
                    acked.append(r.json()["id"])
                    continue
                async with c.stream("POST", s.url + "/v1/completions", json=body,
                                    headers=headers) as r:
                    lines = [line async for line in r.aiter_lines() if line.startswith("data:")]
                if lines and lines[-1] == "data: [DONE]":
                    acked.append(json.loads(lines[0][5:])["id"])
            except httpx.HTTPError:
                failed += 1
                return

    async def main():
        async with httpx.AsyncClient(timeout=10) as c:
            tasks = [asyncio.create_task(client(c, i)) for i in range(16)]
            while len(acked) < 300:
                await asyncio.sleep(0.01)
            s.kill()
            await asyncio.wait_for(asyncio.gather(*tasks), 20)

    asyncio.run(main())
    assert failed == 16  # every client was cut off mid-request
    ids = [r["request_id"] for r in Store(db).usage()]
    assert len(ids) == len(set(ids))
    missing = set(acked) - set(ids)
    print(f"\nSIGKILL under 16 clients: {len(acked)} acknowledged, {len(ids)} ledger rows, "
          f"{len(missing)} acknowledged and missing")
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged requests not in the ledger"


def test_only_demo_tenants_are_served_without_a_key(tmp_path):
    """Demo mode means the demo tenants demo seeding made: a tenant added with `aps tenants add`
    (no tenants in the YAML) needs its key, and the log lists only keys that exist."""
    db = tmp_path / "ops.db"
    store = Store(db)
    store.put_tenant(Tenant("acme"))
    acme_key = store.create_key("acme")
    store.close()
    log = tmp_path / "ops.log"
    s = LocalServer("{}", speed=200, log_path=log, db_path=db)  # no tenants in the YAML
    try:
        r = httpx.post(s.url + "/infer", json={"tenant_id": "acme", "prompt": "p"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
        r = httpx.post(s.url + "/infer", headers={"Authorization": f"Bearer {acme_key}"},
                       json={"tenant_id": "acme", "prompt": "p", "tokens_requested": 2})
        assert r.status_code == 200
        assert httpx.get(s.url + "/health").json()["demo"] is False
        assert "tenant=" not in httpx.get(s.url + "/metrics").text  # not public either
    finally:
        s.stop()
    assert "sk-demo" not in log.read_text()


def test_a_tenant_added_beside_the_demo_ones_needs_its_key(tmp_path):
    db = tmp_path / "demo.db"
    s = LocalServer("{}", speed=200, log_path=tmp_path / "a.log", db_path=db)
    try:
        r = httpx.post(s.url + "/infer", json={"tenant_id": "nope", "prompt": "p"})
        assert r.status_code == 404 and "tenant_a" in r.json()["error"]["message"]
        result = CliRunner().invoke(cli, ["tenants", "add", "acme", "--db", str(db)])
        assert result.exit_code == 0

        def needs_its_key():  # once the server has reloaded its tenants (every store.reload_s)
            r = httpx.post(s.url + "/infer", json={"tenant_id": "acme", "prompt": "p"})
            assert r.status_code == 401 and "acme" in r.json()["error"]["message"]
        eventually(needs_its_key)
        r = httpx.post(s.url + "/infer", json={"tenant_id": "tenant_a", "prompt": "p",
                                               "tokens_requested": 2})
        assert r.status_code == 200  # a demo tenant still is
        assert httpx.get(s.url + "/health").json()["demo"] is False  # not every tenant is
    finally:
        s.stop()


def test_demo_keys_are_listed_apart_and_revoked_by_their_label(tmp_path):
    db = tmp_path / "demo.db"
    LocalServer("{}", speed=200, log_path=tmp_path / "a.log", db_path=db).stop()
    labels = [k.prefix for k in Store(db).keys()]
    assert len(set(labels)) == 3, labels
    result = CliRunner().invoke(cli, ["keys", "revoke", key_label("sk-demo-tenant_b"),
                                      "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert [k.tenant_id for k in Store(db).keys() if k.revoked_at is not None] == ["tenant_b"]
