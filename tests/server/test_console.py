"""The operator's console in a real browser: headless Chromium (tests/browser.py) on a real
`aps serve` under a small load. The page's numbers must change, and match the figures the
gateway served it; a tenant and a key made on the page must work with the openai SDK.
Screenshots go to APS_CONSOLE_SCREENSHOTS (a folder), or to the test's temporary folder."""
import os
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from browser import chromium
from served import module_server

ADMIN = "console-admin-0123456789"
CONFIG = f"""
speed: 2
admin_key: {ADMIN}
prices: {{input_per_1m: 1.0, output_per_1m: 3.0}}
tenants:
  - {{id: acme, keys: [sk-acme], weight: 2, bid: 8, budget_usd: 1}}
  - {{id: beta, keys: [sk-beta], weight: 1}}
  - {{id: tight, keys: [sk-tight], max_concurrent: 1, over_limit: reject}}
"""
AUTH = {"Authorization": f"Bearer {ADMIN}"}
MODEL = "sim-llama-3-8b"
pytestmark = pytest.mark.timeout(300)


class Load:
    """A few clients per tenant, sending completions until stopped."""

    def __init__(self, url: str, keys: dict[str, int]):
        self.url, self.stop_event = url, threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(key, i), daemon=True)
                        for key, n in keys.items() for i in range(n)]
        for t in self.threads:
            t.start()

    def _client(self, key: str, i: int) -> None:
        with httpx.Client(timeout=60) as http:
            while not self.stop_event.is_set():
                try:
                    r = http.post(self.url + "/v1/completions", headers={
                        "Authorization": f"Bearer {key}"}, json={
                        "model": MODEL, "prompt": "word " * (200 + 50 * i), "max_tokens": 48})
                    if r.status_code == 429:  # refused by its limits: counted; try again soon
                        time.sleep(0.2)
                except httpx.HTTPError:
                    time.sleep(0.2)

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(70)


server = module_server(CONFIG, "console")


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("APS_CONSOLE_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def page(server):
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                      accept_downloads=True)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # the page's own failures; not the 401s it gets before the key is typed in
        page.on("console", lambda m: errors.append(m.text)
                if m.type == "error" and "status of 401" not in m.text else None)
        page.errors = errors
        yield page
        context.close()


def live(server) -> dict:
    r = httpx.get(server.url + "/console/api/live", headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


# What the table view shows: the figures' time, and each tenant's cells' text.
RENDERED = """() => {
    const out = {time: Number(document.getElementById('updated').dataset.time), cells: {}};
    for (const td of document.querySelectorAll('#tenant-table td[data-tenant]')) {
        (out.cells[td.dataset.tenant] ||= {})[td.dataset.field] = td.textContent;
    }
    return out;
}"""
# Keeps what the table showed right after each draw (the page's `aps:live` event), by the
# figures' time: the page polls every second, and a slow test process could otherwise look
# only after the next figures had replaced the ones it fetched.
KEEP_DRAWN = f"""() => {{
    if (window.apsDrawn) return;
    window.apsDrawn = {{}};
    document.addEventListener('aps:live', () => {{
        const shown = ({RENDERED})();
        window.apsDrawn[shown.time] = shown;
    }});
}}"""


def next_view(page) -> tuple[dict, dict]:
    """The next figures the page fetches, and the table as the page drew them."""
    page.evaluate(KEEP_DRAWN)
    with page.expect_response(lambda r: "/console/api/live" in r.url and r.status == 200,
                              timeout=10_000) as answer:
        pass
    view = answer.value.json()
    shown = page.wait_for_function("t => window.apsDrawn[t]", arg=view["time"],
                                   timeout=10_000).json_value()  # drawn, or a timeout error
    return view, shown


def number(text: str) -> float:
    return float(text.rstrip("%").removeprefix("$").split()[0])


def assert_table_matches(view: dict, shown: dict) -> None:
    """Every tenant's row on the page says what the gateway's JSON said, as rounded there."""
    assert set(shown["cells"]) == {t["id"] for t in view["tenants"]}
    for t in view["tenants"]:
        cells = shown["cells"][t["id"]]
        for field in ("waiting", "running", "throttled", "bid", "service_tokens"):
            assert number(cells[field]) == round(t[field]), (t["id"], field, cells[field])
        assert number(cells["weight"]) == pytest.approx(t["weight"], abs=0.005)
        assert number(cells["rejected"]) == sum(t["rejected"].values())
        for reason, n in t["rejected"].items():
            assert f"{reason} {n:g}" in cells["rejected"]
        for field, scale, rounding in (("tokens_per_s", 1, 0.05), ("share", 100, 0.05),
                                       ("entitled_share", 100, 0.05)):
            if t[field] is None:
                assert cells[field] == "–"
            else:
                assert number(cells[field]) == pytest.approx(t[field] * scale, abs=rounding)
        if t["budget"] is None:
            assert (cells["spent_usd"], cells["budget_usd"]) == ("–", "none")
        else:
            assert number(cells["spent_usd"]) == pytest.approx(t["budget"]["spent_usd"],
                                                               abs=0.00005)
            assert number(cells["budget_usd"]) == t["budget"]["budget_usd"]
        for field in ("ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99"):
            value, text = t[field], cells[field]
            if value is None:
                assert text == "–"
            else:
                seconds = number(text) / (1000 if text.endswith(" ms") else 1)
                assert seconds == pytest.approx(value, abs=0.006), (t["id"], field, text)


def test_the_console_live_under_load(server, page, shots):
    page.goto(server.url + "/console")
    # authentication is on: the figures need the admin key, and the page says so
    page.wait_for_selector("#status.error")
    assert "admin key" in page.inner_text("#message")
    load = Load(server.url, {"sk-acme": 4, "sk-beta": 4, "sk-tight": 2})
    try:
        page.fill("#admin-key", ADMIN)
        page.click("#use-key")
        page.wait_for_selector("#status.live")
        time.sleep(6)  # enough samples for rates, shares and quantiles
        first_view, first = next_view(page)
        assert_table_matches(first_view, first)
        served = {t["id"]: t["service_tokens"] for t in first_view["tenants"]}
        assert served["acme"] > 0 and served["beta"] > 0
        later_view, later = next_view(page)
        assert_table_matches(later_view, later)
        assert later_view["time"] > first_view["time"]
        assert later["cells"]["acme"]["service_tokens"] != first["cells"]["acme"]["service_tokens"]
        acme = next(t for t in later_view["tenants"] if t["id"] == "acme")
        assert acme["tokens_per_s"] > 0 and acme["ttft_p50"] is not None
        assert 0 < acme["budget"]["spent_usd"] < 1
        tight = next(t for t in later_view["tenants"] if t["id"] == "tight")
        assert tight["rejected"].get("concurrency", 0) > 0, tight["rejected"]

        # charts: a line per tenant, each tenant in one colour on every chart and the legend
        colours = page.evaluate("""() => {
            const rgb = (el, prop) => getComputedStyle(el)[prop];
            const out = {};
            for (const item of document.querySelectorAll('#legend > span'))
                (out[item.textContent] ||= {}).legend = rgb(item.querySelector('.swatch'), 'backgroundColor');
            for (const path of document.querySelectorAll('#chart-tps path'))
                (out[path.textContent] ||= {}).line = rgb(path, 'stroke');
            for (const row of document.querySelectorAll('#bars-share .bar-row'))
                (out[row.querySelector('.name').textContent] ||= {}).bar =
                    rgb(row.querySelector('.fill'), 'backgroundColor');
            return out;
        }""")
        assert set(colours) == {"acme", "beta", "tight"}, colours
        for name, seen in colours.items():
            assert seen["legend"] == seen["line"] == seen["bar"], (name, seen)
        assert len({seen["legend"] for seen in colours.values()}) == 3
        before = page.get_attribute("#chart-tps path", "d")
        next_view(page)
        assert page.get_attribute("#chart-tps path", "d") != before  # the lines move
        page.screenshot(path=str(shots / "console-charts.png"), full_page=True)
        page.click("#show-table")
        page.screenshot(path=str(shots / "console-table.png"), full_page=True)
    finally:
        load.stop()

    # quiet now: the page, the JSON endpoint and /metrics say the same totals
    for _ in range(100):
        if all(t["running"] == t["waiting"] == 0 for t in live(server)["tenants"]):
            break
        time.sleep(0.1)
    time.sleep(1.0)  # a fresh sample after the last request ended
    view, shown = next_view(page)
    assert_table_matches(view, shown)
    metrics = httpx.get(server.url + "/metrics", headers=AUTH).text
    for t in live(server)["tenants"]:
        assert number(shown["cells"][t["id"]]["service_tokens"]) == t["service_tokens"]
        assert f'aps:tenant_service_tokens{{tenant="{t["id"]}"}} {t["service_tokens"]}' in metrics
    assert page.errors == []


def test_tenants_keys_and_usage_from_the_page(server, page, shots):
    if not page.url.endswith("/console"):
        page.goto(server.url + "/console")
        page.fill("#admin-key", ADMIN)
        page.click("#use-key")
    page.click("#show-admin")
    page.wait_for_selector('#admin-tenants tr[data-tenant="acme"]')

    # a new tenant
    form = "#tenant-form"
    for name, value in (("id", "gamma"), ("weight", "3"), ("bid", "6"), ("max_bid", "9"),
                        ("token_rate", "5000"), ("token_burst", "20000"), ("budget_usd", "2.5")):
        page.fill(f"{form} [name={name}]", value)
    page.select_option(f"{form} [name=budget_period]", "month")
    page.click("#tenant-save")
    page.wait_for_selector('#admin-tenants tr[data-tenant="gamma"]')
    made = httpx.get(server.url + "/admin/tenants/gamma", headers=AUTH).json()
    assert (made["weight"], made["bid"], made["max_bid"], made["token_rate"],
            made["token_burst"], made["budget_usd"], made["budget_period"]) == \
        (3, 6, 9, 5000, 20000, 2.5, "month")

    # edit it: a new weight, and no token limit any more
    page.click('#admin-tenants tr[data-tenant="gamma"] button:text-is("Edit")')
    assert page.input_value(f"{form} [name=id]") == "gamma"
    page.fill(f"{form} [name=weight]", "4")
    page.fill(f"{form} [name=token_rate]", "")
    page.fill(f"{form} [name=token_burst]", "")
    page.click("#tenant-save")
    page.wait_for_selector('#admin-tenants tr[data-tenant="gamma"] td[data-field="weight"]'
                           ':text-is("4")')
    edited = httpx.get(server.url + "/admin/tenants/gamma", headers=AUTH).json()
    assert (edited["weight"], edited["token_rate"], edited["bid"], edited["budget_usd"]) == \
        (4, None, 6, 2.5)

    # a key for it, shown once, that works with the openai SDK
    page.select_option("#key-tenant", "gamma")
    page.click("#key-create")
    page.wait_for_selector("#new-key:not([hidden])")
    key = page.inner_text("#new-key-value").strip()
    assert key.startswith("sk-aps-") and len(key) > 30, key
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    out = sdk.completions.create(model=MODEL, prompt="Hello from the console.", max_tokens=5)
    assert out.usage.completion_tokens == 5
    page.screenshot(path=str(shots / "console-admin.png"), full_page=True)
    page.click("#new-key-done")
    assert page.inner_text("#new-key-value") == ""

    # its usage, on the page and as a CSV file
    page.select_option("#usage-tenant", "gamma")
    page.click("#usage-show")
    page.wait_for_selector('#usage-totals td[data-field="tenant_id"]:text-is("gamma")')
    assert page.inner_text('#usage-totals td[data-field="requests"]') == "1"
    with page.expect_download() as download:
        page.click("#usage-export")
    csv = Path(download.value.path()).read_text()
    assert csv.count("\n") >= 2 and "gamma" in csv.splitlines()[1]

    # revoked from the page: the SDK's next call is refused
    prefix = page.get_attribute('#admin-keys tr:has(td[data-field="tenant"]:text-is("gamma"))',
                                "data-prefix")
    page.once("dialog", lambda d: d.accept())
    page.click(f'#admin-keys tr[data-prefix="{prefix}"] button')
    page.wait_for_selector(f'#admin-keys tr[data-prefix="{prefix}"] '
                           'td[data-field="revoked"]:not(:text-is("–"))')
    with pytest.raises(openai.AuthenticationError):
        sdk.completions.create(model=MODEL, prompt="Hello again.", max_tokens=5)

    assert page.errors == []

    # a refusal from the API is shown as the API worded it
    page.fill(f"{form} [name=id]", "bad")
    page.fill(f"{form} [name=bid]", "1000000")
    page.click("#tenant-save")
    page.wait_for_selector("#message:not(.ok)")
    assert "bid" in page.inner_text("#message")
    assert httpx.get(server.url + "/admin/tenants/bad", headers=AUTH).status_code == 404
