"""A budget spent through several gateway replicas, for the tests that check it holds across
them (one SQLite file, or one PostgreSQL database, with one Redis)."""
import time

import httpx

THRIFTY = "{id: thrifty, keys: [sk-thrifty-key], budget_usd: 0.5, budget_period: day}"
PRICES = "prices: {input_per_1m: 1000, output_per_1m: 1000}   # a dollar per thousand tokens"


def spend_alternately(servers, requests: int = 40) -> tuple[list[str], list[float]]:
    """Requests of up to $0.07 each (20 prompt + 50 output tokens) from the $0.50-a-day tenant
    `thrifty`, sent to each replica in turn: each one's outcome ("ok" or the error code), and
    the spend each replica then shows."""
    auth = {"Authorization": "Bearer sk-thrifty-key"}
    codes = []
    for i in range(requests):
        r = httpx.post(servers[i % len(servers)].url + "/v1/completions", headers=auth,
                       json={"prompt": "x" * 80, "max_tokens": 50}, timeout=30)
        codes.append(r.json()["error"]["code"] if r.status_code != 200 else "ok")
    time.sleep(0.5)  # settled costs reach Redis
    spent = [httpx.get(s.url + "/tenants/thrifty/status", headers=auth).json()["budget"]
             ["spent_usd"] for s in servers]
    return codes, spent
