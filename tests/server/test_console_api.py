"""The console's page and figures over HTTP, without a browser: who may read them, what the
page loads, what the figures say against the gateway's own metrics; and the quantiles they are
computed with."""
import math
import re
import time

import httpx
import pytest

from aps.bench.local.server import LocalServer
from aps.server.console.live import MIN_INTERVAL_S, quantile
from served import module_server

ADMIN = "console-admin-0123456789"
CONFIG = f"""
speed: 50
admin_key: {ADMIN}
tenants:
  - {{id: acme, keys: [sk-acme], weight: 3}}
  - {{id: beta, keys: [sk-beta]}}
"""
AUTH = {"Authorization": f"Bearer {ADMIN}"}


server = module_server(CONFIG, "console-api")


def test_the_figures_need_the_admin_key(server):
    for headers in ({}, {"Authorization": "Bearer sk-acme"}, {"Authorization": "Bearer nope"}):
        r = httpx.get(server.url + "/console/api/live", headers=headers)
        assert r.status_code == 401
        error = r.json()["error"]
        assert error["code"] == "invalid_admin_key" and error["type"] == "authentication_error"
        assert "acme" not in r.text
    r = httpx.get(server.url + "/console/api/live", headers=AUTH)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert [t["id"] for t in r.json()["tenants"]] == ["acme", "beta"]


def test_the_page_and_its_files_are_served_and_fetch_nothing_from_elsewhere(server):
    page = httpx.get(server.url + "/console")  # the page holds no figures: open
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    files = re.findall(r'(?:src|href)="(console/[^"]+)"', page.text)
    assert {"console/app.js", "console/charts.js", "console/style.css"} <= set(files)
    for file in files:
        r = httpx.get(f"{server.url}/{file}")
        assert r.status_code == 200 and r.content, file
        # no address outside the gateway (the SVG namespace is a name, not a fetch)
        assert not re.findall(r"https?://(?!www\.w3\.org/2000/svg)", r.text), file
    assert not re.findall(r"https?://", page.text)
    missing = httpx.get(server.url + "/console/nothing.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_parameters_are_checked(server):
    for query in ("history=-1", "history=401", "history=x", "other=1", "history=1&history=2"):
        r = httpx.get(f"{server.url}/console/api/live?{query}", headers=AUTH)
        assert r.status_code == 400, query
        assert r.json()["error"]["code"] == "invalid_request", query


def test_figures_follow_the_load_and_agree_with_the_metrics(server):
    key = {"acme": "sk-acme", "beta": "sk-beta"}
    for tenant in ("acme", "beta", "acme"):
        r = httpx.post(server.url + "/v1/completions", timeout=30,
                       headers={"Authorization": f"Bearer {key[tenant]}"},
                       json={"model": "sim-llama-3-8b", "prompt": "word " * 100,
                             "max_tokens": 20})
        assert r.status_code == 200, r.text
    time.sleep(MIN_INTERVAL_S)  # the earlier tests' sample is too old: `view` takes a new one
    t0 = time.monotonic()
    view = httpx.get(server.url + "/console/api/live?history=5", headers=AUTH).json()
    again = httpx.get(server.url + "/console/api/live?history=5", headers=AUTH).json()
    if time.monotonic() - t0 < MIN_INTERVAL_S:  # (a loaded machine may stall the two apart)
        assert again["time"] == view["time"]  # within a second: the same sample, not a new one
    time.sleep(MIN_INTERVAL_S + 0.2)
    later = httpx.get(server.url + "/console/api/live?history=5", headers=AUTH).json()
    assert later["time"] > again["time"]
    assert len(later["history"]) == min(5, len(again["history"]) + 1)
    assert later["history"][-1]["time"] == later["time"]
    tenants = {t["id"]: t for t in later["tenants"]}
    metrics = httpx.get(server.url + "/metrics", headers=AUTH).text
    for tenant, t in tenants.items():
        assert f'aps:tenant_service_tokens{{tenant="{tenant}"}} {t["service_tokens"]}' in metrics
        assert f'aps:tenant_weight{{tenant="{tenant}"}} {t["weight"]}' in metrics
        assert t["ttft_p50"] is not None and 0 < t["ttft_p50"] <= t["ttft_p99"]
    assert tenants["acme"]["service_tokens"] > tenants["beta"]["service_tokens"] > 0
    summary = httpx.get(server.url + "/metrics?format=json", headers=AUTH).json()
    assert later["whole"]["jain"] == pytest.approx(summary["jain_fairness"])
    assert later["mode"] == "simulated" and later["upstreams"] is None
    assert later["autoscale"]["desired"] >= 1 and later["admin_api"] is True
    # the per-tenant gauges are kept from a scraper without the key, like every tenant series
    assert 'tenant="acme"' not in httpx.get(server.url + "/metrics").text


def test_demo_mode_is_open_and_a_gateway_without_admin_key_keeps_it_shut(tmp_path):
    demo = LocalServer("{}", speed=50, log_path=tmp_path / "demo.log")
    try:
        r = httpx.get(demo.url + "/console/api/live")
        assert r.status_code == 200 and r.json()["demo"] and not r.json()["admin_api"]
    finally:
        demo.stop()
    shut = LocalServer("tenants:\n  - {id: acme, keys: [sk-acme]}\n", log_path=tmp_path / "s.log")
    try:
        r = httpx.get(shut.url + "/console/api/live", headers={"Authorization": "Bearer sk-acme"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_disabled"
    finally:
        shut.stop()


def test_quantile_interpolates_within_buckets_like_prometheus():
    now = [(0.1, 10.0), (0.5, 20.0), (1.0, 20.0), (math.inf, 20.0)]
    assert quantile(0.5, now, None) == pytest.approx(0.1)
    assert quantile(0.99, now, None) == pytest.approx(0.1 + 0.4 * 9.8 / 10)
    # only what was observed since `then`: the ten fast ones are older
    then = [(0.1, 10.0), (0.5, 10.0), (1.0, 10.0), (math.inf, 10.0)]
    assert quantile(0.5, now, then) == pytest.approx(0.1 + 0.4 * 0.5)
    assert quantile(0.5, now, now) is None  # nothing new
    beyond = [(0.1, 0.0), (0.5, 0.0), (math.inf, 4.0)]
    assert quantile(0.99, beyond, None) == 0.5  # past the largest bound: that bound
