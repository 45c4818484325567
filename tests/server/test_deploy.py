"""deploy/: the Grafana dashboard and the Prometheus files against a real gateway. Every metric
they query must be one a running gateway exports (here in front of an upstream `aps serve`,
with the response cache on, a budget and a refusal, so that every family has samples);
`promtool` must accept the rules, pass their unit tests and accept the scrape example; and a
real Prometheus scraping the gateway must evaluate every panel's query. The last two skip,
saying what to install, where Prometheus is missing."""
import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from aps.bench.local.processes import free_port
from aps.bench.local.server import LocalServer

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "aps.json"
RULES = DEPLOY / "prometheus" / "aps-rules.yml"
INSTALL = "apt-get install -y prometheus (CI's .ci/run installs it)"
SCRAPER = "deploy-scraper-0123456789"
UPSTREAM = """
speed: 200
tenants:
  - {id: gw, keys: [sk-upstream]}
"""
GATEWAY = """
metrics_key: {key}
prices: {{input_per_1m: 1.0, output_per_1m: 3.0}}
cache: {{enabled: true, ttl_s: 60}}
tenants:
  - {{id: acme, keys: [sk-acme], weight: 2, budget_usd: 10}}
  - {{id: beta, keys: [sk-beta]}}
  - {{id: tight, keys: [sk-tight], request_rate: 0.001, request_burst: 1, over_limit: reject}}
upstreams:
  - {{url: {upstream}/v1, model: sim-llama-3-8b, api_key: sk-upstream}}
"""
BUILTIN = {"up"}  # series Prometheus makes itself


def dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
    return exprs


def rule_queries() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The series names a query reads: aps:..., and the few Prometheus makes itself."""
    names = set(re.findall(r"\baps:[A-Za-z0-9_:]+", expr))
    return names | {n for n in BUILTIN if re.search(rf"\b{n}\b\s*[{{\[]", expr)}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy")
    upstream = LocalServer(UPSTREAM, log_path=tmp / "upstream.log")
    try:
        gw = LocalServer(GATEWAY.format(key=SCRAPER, upstream=upstream.url),
                         log_path=tmp / "gateway.log")
    except BaseException:
        upstream.stop()
        raise
    try:
        # acme's second answer comes from the cache; tight's second is refused by its limit
        for key, prompt in (("sk-acme", "Once."), ("sk-acme", "Once."), ("sk-beta", "Once."),
                            ("sk-tight", "One."), ("sk-tight", "Two.")):
            httpx.post(gw.url + "/v1/completions", timeout=30,
                       headers={"Authorization": f"Bearer {key}"},
                       json={"model": "sim-llama-3-8b", "prompt": prompt, "max_tokens": 8,
                             "temperature": 0})
        deadline = time.monotonic() + 10  # budgets' standing: refreshed every store.reload_s
        while "aps:tenant_spend_usd" not in exported(gw) and time.monotonic() < deadline:
            time.sleep(0.2)
        yield gw
    finally:
        gw.stop()
        upstream.stop()


def exported(gw) -> set[str]:
    text = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {SCRAPER}"}).text
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def test_every_metric_the_dashboard_and_the_rules_query_is_exported(gateway):
    have = exported(gateway)
    assert "aps:request_rejected_total" in have and "aps:cache_hits_total" in have
    for source, exprs in (("dashboard", dashboard_queries()), ("rules", rule_queries())):
        wanted = set().union(*map(metric_names, exprs))
        assert len(wanted) >= 10, (source, wanted)
        assert wanted - BUILTIN <= have, f"{source} queries what no gateway exports: " \
                                         f"{sorted(wanted - BUILTIN - have)}"


def test_the_dashboard_is_well_formed():
    board = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in board["templating"]["list"]}
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
            assert used <= variables, (panel["title"], used)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(f"no promtool: {INSTALL}")
    return path


def test_promtool_accepts_the_rules_their_tests_and_the_scrape_example(tmp_path):
    tool = promtool()
    folder = DEPLOY / "prometheus"
    for args in (["check", "rules", "aps-rules.yml"], ["test", "rules", "aps-rules.test.yml"]):
        run = subprocess.run([tool, *args], cwd=folder, capture_output=True, text=True,
                             timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr
    # the scrape example names a key file on the Prometheus host: here, one of our own
    (tmp_path / "key").write_text(SCRAPER)
    config = (folder / "prometheus.yml").read_text()
    assert "/etc/prometheus/aps-metrics-key" in config
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/etc/prometheus/aps-metrics-key", str(tmp_path / "key")))
    shutil.copy(RULES, tmp_path / "aps-rules.yml")
    run = subprocess.run([tool, "check", "config", "prometheus.yml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_prometheus_evaluates_every_panel_on_the_scraped_gateway(gateway, tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(f"no prometheus: {INSTALL}")
    (tmp_path / "key").write_text(SCRAPER)
    port = free_port()
    host = gateway.url.removeprefix("http://")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "aps", "static_configs": [{"targets": [host]}],
                            "authorization": {"type": "Bearer",
                                              "credentials_file": str(tmp_path / "key")}}]}))
    log = open(tmp_path / "prometheus.log", "w")
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 60
        while True:  # until a few scrapes of the gateway are in
            assert proc.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                got = httpx.get(api + "/query", params={
                    "query": 'count_over_time(aps:tenant_weight{tenant="acme"}[1m])'}).json()
                if got["data"]["result"] and float(got["data"]["result"][0]["value"][1]) >= 6:
                    break
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.5)
        grafana = {"$__rate_interval": "5s", "$job": ".*", "$tenant": ".*"}
        for expr in dashboard_queries():
            if expr.startswith("label_values("):  # Grafana's, not PromQL: the series it reads
                expr = expr.removeprefix("label_values(").rsplit(",", 1)[0]
            for name, value in grafana.items():
                expr = expr.replace(name, value)
            got = httpx.get(api + "/query", params={"query": expr}, timeout=10).json()
            assert got["status"] == "success", (expr, got)
        weights = httpx.get(api + "/query", params={"query": "aps:tenant_weight"}).json()
        assert {s["metric"]["tenant"] for s in weights["data"]["result"]} == \
            {"acme", "beta", "tight"}
        rules = httpx.get(api + "/rules").json()["data"]["groups"][0]["rules"]
        assert {r["health"] for r in rules} == {"ok"}, rules
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
