"""The tenant contract through a real gateway and the openai SDK: entitled priority, spend
budgets, queue deadlines, scoped keys, served models; and bad contract input refused in the
YAML, the CLI and the admin API."""
import sqlite3
import threading
import time

import httpx
import openai
import pytest
from typer.testing import CliRunner

from aps.bench.local.server import LocalServer
from aps.cli import app as cli
from aps.store import Store
from served import module_server

MODEL = "sim-llama-3-8b"
ADMIN = "admin-key-0123456789"
CONFIG = f"""
speed: 50
admin_key: {ADMIN}
aliases: {{house-model: {MODEL}}}
prices: {{input_per_1m: 1000, output_per_1m: 1000}}   # a dollar per thousand tokens
batch: {{max_num_seqs: 1}}
tenants:
  - {{id: low, keys: [sk-low], bid: 1}}
  - {{id: mid, keys: [sk-mid], bid: 3, max_bid: 8}}
  - {{id: hog, keys: [sk-hog]}}
  - {{id: quick, keys: [sk-quick], max_queue_s: 0.5}}
  - {{id: thrifty, keys: [sk-thrifty], budget_usd: 0.2, budget_period: day}}
  - {{id: once, keys: [sk-once], budget_usd: 0.2, budget_period: total}}
"""


def client(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=30)


server = module_server(CONFIG, "contract")


def test_a_client_cannot_claim_more_priority_than_its_tenant_bought(server):
    raw = client(server, "sk-low").completions.with_raw_response.create(
        model=MODEL, prompt="p", max_tokens=2, extra_body={"priority": 10})
    assert raw.headers["x-aps-priority"] == "1"
    raw = client(server, "sk-mid").completions.with_raw_response.create(
        model=MODEL, prompt="p", max_tokens=2, extra_body={"priority": 10})
    assert raw.headers["x-aps-priority"] == "8"  # up to its max_bid
    r = httpx.post(server.url + "/infer", headers={"Authorization": "Bearer sk-low"},
                   json={"tenant_id": "low", "prompt": "p", "tokens_requested": 2,
                         "priority_bid": 10})
    assert r.status_code == 200 and 1 <= r.json()["effective_priority"] < 2


def test_a_key_can_carry_a_lower_bid_cap_and_a_model_list(server):
    store = Store(server.db_path)
    capped = store.create_key("mid", max_bid=2)
    scoped = store.create_key("mid", models=["other-model"])
    expires_at = time.time() + 1.0
    expiring = store.create_key("mid", expires_at=expires_at)
    store.close()

    def unknown(key: str) -> bool:
        r = httpx.get(server.url + "/tenants/mid/status", headers={"Authorization": f"Bearer {key}"})
        return r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    deadline = time.monotonic() + 10  # the gateway picks new keys up within store.reload_s
    while any(unknown(key) for key in (capped, scoped, expiring)):
        assert time.monotonic() < deadline, "the new keys never reached the gateway"
        time.sleep(0.05)
    time.sleep(max(0.0, expires_at - time.time()))  # and the expiring one has expired
    raw = client(server, capped).completions.with_raw_response.create(
        model=MODEL, prompt="p", max_tokens=2, extra_body={"priority": 9})
    assert raw.headers["x-aps-priority"] == "2"
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client(server, scoped).completions.create(model=MODEL, prompt="p", max_tokens=2)
    assert refused.value.body["code"] == "model_not_allowed"
    with pytest.raises(openai.AuthenticationError) as expired:
        client(server, expiring).completions.create(model=MODEL, prompt="p", max_tokens=2)
    assert expired.value.body["code"] == "key_expired"


def test_only_served_models_and_their_aliases_are_served(server):
    c = client(server, "sk-hog")
    assert {m.id for m in c.models.list().data} == {MODEL, "house-model"}
    out = c.completions.create(model="house-model", prompt="p", max_tokens=2)
    assert out.model == "house-model" and out.usage.completion_tokens == 2
    with pytest.raises(openai.NotFoundError) as unknown:
        c.completions.create(model="gpt-4o", prompt="p", max_tokens=2)
    assert unknown.value.body["code"] == "model_not_found"


def test_a_request_still_waiting_at_its_deadline_gets_a_503_and_an_expired_row(server):
    done = threading.Event()

    def hog():  # holds the only seat for about 4 s
        with httpx.Client(timeout=30) as c:
            c.post(server.url + "/v1/completions", headers={"Authorization": "Bearer sk-hog"},
                   json={"model": MODEL, "prompt": "p", "max_tokens": 25_000})
        done.set()

    threading.Thread(target=hog, daemon=True).start()
    with httpx.Client(timeout=30) as c:
        while c.get(server.url + "/health").json()["running"] < 1:
            time.sleep(0.02)
        t0 = time.monotonic()
        r = c.post(server.url + "/v1/completions", headers={"Authorization": "Bearer sk-quick"},
                   json={"model": MODEL, "prompt": "p", "max_tokens": 2})
        waited = time.monotonic() - t0
        assert r.status_code == 503 and r.json()["error"]["code"] == "queue_timeout"
        assert "Retry-After" in r.headers and 0.4 < waited < 3
        r = c.post(server.url + "/v1/completions",  # the header shortens a tenant's none
                   headers={"Authorization": "Bearer sk-low", "X-APS-Max-Queue-Seconds": "0.3"},
                   json={"model": MODEL, "prompt": "p", "max_tokens": 2})
        assert r.status_code == 503 and r.json()["error"]["code"] == "queue_timeout"
        bad = c.post(server.url + "/v1/completions",
                     headers={"Authorization": "Bearer sk-low", "X-APS-Max-Queue-Seconds": "-1"},
                     json={"model": MODEL, "prompt": "p", "max_tokens": 2})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "X-APS-Max-Queue-Seconds"
        done.wait(30)
    time.sleep(0.3)
    with sqlite3.connect(server.db_path) as db:
        expired = db.execute("SELECT tenant_id, reason FROM usage WHERE status = 'expired'"
                             ).fetchall()
    assert ("quick", "queue_timeout") in expired and ("low", "queue_timeout") in expired


def spend_until_refused(server, key: str) -> httpx.Response:
    """$0.2 of budget, requests that may cost up to $0.06 (prompt + 50 tokens at $1/1000)."""
    for _ in range(20):
        r = httpx.post(server.url + "/v1/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"model": MODEL, "prompt": "a prompt of some forty characters here",
                             "max_tokens": 50}, timeout=30)
        if r.status_code != 200:
            return r
    raise AssertionError("the budget never ran out")


def test_a_budget_runs_out_says_when_it_resets_and_survives_a_restart(tmp_path):
    db = tmp_path / "budget.db"
    s = LocalServer(CONFIG, log_path=tmp_path / "a.log", db_path=db)
    try:
        refused = spend_until_refused(s, "sk-thrifty")
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
        to_midnight = 86_400 - time.time() % 86_400
        assert abs(int(refused.headers["Retry-After"]) - to_midnight) < 5
        total = spend_until_refused(s, "sk-once")
        assert total.headers["x-should-retry"] == "false" and "Retry-After" not in total.headers
        status = httpx.get(s.url + "/tenants/thrifty/status",
                           headers={"Authorization": "Bearer sk-thrifty"}).json()["budget"]
        assert status["spent_usd"] + status["reserved_usd"] > 0.14 and status["period"] == "day"
    finally:
        s.stop()
    s = LocalServer(CONFIG, log_path=tmp_path / "b.log", db_path=db)  # spend comes from the ledger
    try:
        again = httpx.post(s.url + "/v1/completions", headers={"Authorization": "Bearer sk-thrifty"},
                           json={"model": MODEL, "prompt": "p" * 40, "max_tokens": 50})
        assert again.status_code == 429
    finally:
        s.stop()
    with sqlite3.connect(db) as ledger:  # the same spend, yesterday: today starts from nothing
        ledger.execute("UPDATE usage SET finished = finished - 86400")
    s = LocalServer(CONFIG, log_path=tmp_path / "c.log", db_path=db)
    try:
        reset = httpx.post(s.url + "/v1/completions", headers={"Authorization": "Bearer sk-thrifty"},
                           json={"model": MODEL, "prompt": "p" * 40, "max_tokens": 50})
        assert reset.status_code == 200
    finally:
        s.stop()


@pytest.mark.parametrize("field, value, message", [
    ("budget_usd", -1, "budget_usd"), ("budget_period", "year", "budget_period"),
    ("max_bid", 11, "max_bid"), ("max_queue_s", 0, "max_queue_s"),
])
def test_bad_contract_values_are_refused_in_the_yaml_the_cli_and_the_admin_api(
        server, tmp_path, field, value, message):
    from aps.server.config import load_config
    from aps.core import ConfigError
    path = tmp_path / "c.yaml"
    path.write_text(f"tenants:\n  - {{id: a, {field}: {value}}}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path, env={})
    option = "--" + field.replace("_", "-")
    result = CliRunner().invoke(cli, ["tenants", "add", "x", option, str(value),
                                      "--db", str(tmp_path / "cli.db")])
    assert result.exit_code == 2 and message in result.output
    r = httpx.put(server.url + "/admin/tenants/x", headers={"Authorization": f"Bearer {ADMIN}"},
                  json={field: value})
    assert r.status_code == 400 and message in r.text


def test_the_admin_api_and_cli_set_and_show_the_contract(server, tmp_path):
    h = {"Authorization": f"Bearer {ADMIN}"}
    r = httpx.put(server.url + "/admin/tenants/newco", headers=h,
                  json={"bid": 2, "max_bid": 6, "max_queue_s": 5, "budget_usd": 10,
                        "budget_period": "week", "over_budget": "demote"})
    assert r.status_code == 201
    body = httpx.get(server.url + "/admin/tenants/newco", headers=h).json()
    assert (body["max_bid"], body["max_queue_s"], body["budget_period"], body["over_budget"]) == (
        6, 5, "week", "demote")
    assert body["budget"]["budget_usd"] == 10 and body["budget"]["spent_usd"] == 0
    key = httpx.post(server.url + "/admin/tenants/newco/keys", headers=h,
                     json={"expires": "30d", "models": [MODEL], "max_bid": 3}).json()
    assert key["max_bid"] == 3 and key["expires_at"] > time.time() + 29 * 86400
    listed = [k for k in httpx.get(server.url + "/admin/keys?tenant=newco", headers=h).json()["data"]]
    assert listed[0]["models"] == [MODEL]
    db = ["--db", server.db_path]
    out = CliRunner().invoke(cli, ["tenants", "list", "--json", *db]).output
    assert '"budget_usd": 10' in out and '"spent_usd"' in out
    created = CliRunner().invoke(cli, ["keys", "create", "newco", "--expires", "7d",
                                       "--models", f"{MODEL},house-model", "--max-bid", "2", *db])
    assert created.exit_code == 0, created.output
    assert "house-model" in CliRunner(env={"COLUMNS": "200"}).invoke(
        cli, ["keys", "list", "--tenant", "newco", *db]).output
