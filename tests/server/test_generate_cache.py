"""Seed 004's `/generate` and the response cache on the simulated GPU (`make run`'s engine): a
repeated greedy prompt is answered from the cache, per tenant, recorded in the ledger like any
other request. A real `aps serve` on 127.0.0.1, the openai SDK for the OpenAI routes."""
import sqlite3

import httpx
import openai
import pytest

from aps.bench.local.server import LocalServer
from served import module_server

CONFIG = """
speed: 50
metrics_key: scraper-key-0123456789
cache: {enabled: true, ttl_s: 60}
tenants:
  - {id: acme, keys: [sk-acme]}
  - {id: beta, keys: [sk-beta]}
"""
SCRAPER = {"Authorization": "Bearer scraper-key-0123456789"}


server = module_server(CONFIG, "cache")


def generate(server, prompt, key="sk-acme", **extra):
    return httpx.post(server.url + "/generate", json={"prompt": prompt, **extra},
                      headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=30)


def metric(server, name: str) -> float:
    for line in httpx.get(server.url + "/metrics", headers=SCRAPER).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def test_a_repeated_prompt_is_answered_from_the_cache_per_tenant(server):
    first = generate(server, "What is the capital of France?", max_tokens=12)
    assert first.status_code == 200, first.text
    first = first.json()
    assert not first["cached"] and first["completion_tokens"] == 12 and first["text"]
    second = generate(server, "What is the capital of France?", max_tokens=12).json()
    assert second["cached"] and second["text"] == first["text"]
    assert second["completion_tokens"] == 12 and second["latency_ms"] < first["latency_ms"]
    assert not generate(server, "What is the capital of France?", key="sk-beta").json()["cached"]
    assert not generate(server, "What is the capital of France?", max_tokens=5).json()["cached"]
    assert metric(server, "aps:cache_hits_total") == 1
    assert metric(server, "aps:cache_misses_total") == 3
    rows = sqlite3.connect(server.db_path).execute(
        "SELECT status, completion_tokens FROM usage WHERE tenant_id = 'acme' AND "
        "completion_tokens = 12").fetchall()
    assert rows == [("finished", 12), ("finished", 12)]  # the hit is billed as a request too


def test_openai_routes_cache_only_deterministic_requests_on_the_simulated_gpu(server):
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-acme", max_retries=0)
    body = dict(model="sim-llama-3-8b", messages=[{"role": "user", "content": "hi there"}],
                max_tokens=4)
    hits = metric(server, "aps:cache_hits_total")
    a = c.chat.completions.create(**body, temperature=0)
    b = c.chat.completions.create(**body, temperature=0)
    c.chat.completions.create(**body)  # the server's default sampling: never cached
    assert b.choices[0].message.content == a.choices[0].message.content
    assert metric(server, "aps:cache_hits_total") == hits + 1


@pytest.mark.parametrize("body, headers, status, code", [
    ({"prompt": "p"}, {}, 401, "missing_api_key"),
    ({"prompt": "p", "max_tokens": 0}, {"Authorization": "Bearer sk-acme"}, 400, None),
    ({"max_tokens": 3}, {"Authorization": "Bearer sk-acme"}, 400, None),
    ({"prompt": "p", "model": "nope"}, {"Authorization": "Bearer sk-acme"}, 404, "model_not_found"),
])
def test_generate_refuses_bad_calls_in_the_api_error_shape(server, body, headers, status, code):
    r = httpx.post(server.url + "/generate", json=body, headers=headers, timeout=10)
    assert r.status_code == status
    error = r.json()["error"]
    assert error["message"] and (code is None or error["code"] == code)


def test_without_the_cache_nothing_is_cached(tmp_path):
    s = LocalServer("speed: 50\ntenants:\n  - {id: acme, keys: [sk-acme]}\n",
                    log_path=tmp_path / "server.log")
    try:
        assert not generate(s, "same", max_tokens=3).json()["cached"]
        assert not generate(s, "same", max_tokens=3).json()["cached"]
    finally:
        s.stop()


def test_a_cache_hit_reports_and_bills_the_entitled_bid_not_the_asked_one(server):
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-beta", max_retries=0)
    body = dict(model="sim-llama-3-8b", prompt="the same words twice", max_tokens=3,
                temperature=0, extra_body={"priority": 10})  # beta bought bid 5
    answers = [c.completions.with_raw_response.create(**body) for _ in range(2)]
    assert [a.headers["x-aps-priority"] for a in answers] == ["5", "5"]  # a miss, then a hit
    bids = sqlite3.connect(server.db_path).execute(
        "SELECT reason, bid FROM usage WHERE tenant_id = 'beta' AND completion_tokens = 3 "
        "ORDER BY id").fetchall()
    assert bids[-2:] == [("", 5), ("cached", 5)]
