"""The gateway in front of real OpenAI-compatible upstreams: here `aps serve` processes with the
simulated GPU (no install needed), behind a real `aps serve` gateway, with the openai SDK."""
import asyncio
import re
import time

import httpx
import openai
import pytest

from aps.bench.local.server import LocalServer

SCRAPER = {"Authorization": "Bearer scraper-key-0123456789"}
UPSTREAM = """
speed: {speed}
metrics_key: scraper-key-0123456789
tenants:
  - {{id: gw, keys: [sk-upstream]}}
  - {{id: small, keys: [sk-small], token_rate: 1, token_burst: 50}}
"""

GATEWAY = """
policy: vtc
metrics_key: scraper-key-0123456789
drain_timeout_s: 2
tenants:
  - {{id: acme, keys: [sk-acme]}}
  - {{id: beta, keys: [sk-beta]}}
upstreams:
{upstreams}
routing: {routing}
retries: 2
breaker: {{failures: 2, cooldown_s: {cooldown}}}
health_interval_s: {health}
cache: {{enabled: true, ttl_s: 60}}
"""


def upstream(tmp_path, name, speed=200, port=None):
    return LocalServer(UPSTREAM.format(speed=speed), log_path=tmp_path / f"{name}.log", port=port)


def gateway(tmp_path, ups, routing="round-robin", key="sk-upstream", max_in_flight=16,
            health=0.3, extra="", cooldown=1):
    lines = "\n".join(f"  - {{url: {u.url}/v1, model: sim-llama-3-8b, api_key: {key}, "
                      f"max_in_flight: {max_in_flight}}}" for u in ups)
    return LocalServer(extra + GATEWAY.format(upstreams=lines, routing=routing, health=health,
                                              cooldown=cooldown),
                       log_path=tmp_path / "gateway.log")


def metric(server, name: str, **labels) -> float:
    """The sum of a Prometheus series' samples whose labels include `labels`."""
    total = 0.0
    for line in httpx.get(server.url + "/metrics", headers=SCRAPER, timeout=5).text.splitlines():
        m = re.match(r"^([^{ ]+)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def client(server, key="sk-acme") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pair")
    ups = [upstream(tmp, "a"), upstream(tmp, "b")]
    gw = gateway(tmp, ups)
    yield gw, ups
    for s in (gw, *ups):
        s.stop()


def test_completions_and_streaming_through_the_gateway_with_the_openai_sdk(pair):
    gw, ups = pair
    c = client(gw)
    out = c.completions.create(model="sim-llama-3-8b", prompt="Say something.", max_tokens=7)
    assert out.model == "sim-llama-3-8b" and out.choices[0].text.strip()
    assert out.usage.completion_tokens == 7 and out.choices[0].finish_reason == "length"
    chunks = list(c.chat.completions.create(
        model="sim-llama-3-8b", messages=[{"role": "user", "content": "Hi"}], max_tokens=5, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text.startswith(" simulated") and chunks[-1].usage.completion_tokens == 5
    assert [m.id for m in c.models.list().data] == ["sim-llama-3-8b"]
    # the upstreams did the work, round-robin across both
    assert all(metric(u, "aps:request_ended_total", tenant="gw", status="finished") >= 1
               for u in ups)
    assert metric(gw, "aps:upstream_healthy") == 2


def test_concurrent_clients_all_get_answers_and_nothing_leaks(pair):
    gw, _ = pair

    async def main():
        c = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-beta", max_retries=0)
        return await asyncio.gather(*(c.completions.create(model="sim-llama-3-8b", prompt=f"p{i}", max_tokens=4)
                                      for i in range(40)))
    outs = asyncio.run(main())
    assert all(o.usage.completion_tokens == 4 for o in outs)
    health = httpx.get(gw.url + "/health").json()
    assert health["running"] == 0 and health["waiting"] == 0
    assert metric(gw, "aps:upstream_num_requests_running") == 0
    assert metric(gw, "aps:upstream_num_tokens_in_flight") == 0


def test_an_upstream_4xx_reaches_the_client_as_its_error(pair, tmp_path):
    _, ups = pair
    # the gateway uses the upstream's `small` tenant, whose burst can never take 200 tokens:
    # the upstream answers 400, which is the client's error, not retried
    bad = gateway(tmp_path, ups[:1], key="sk-small")
    try:
        with pytest.raises(openai.BadRequestError) as err:
            client(bad).completions.create(model="sim-llama-3-8b", prompt="x" * 200, max_tokens=60)
        assert "upstream answered 400" in str(err.value)
        assert metric(bad, "aps:upstream_retries_total") == 0
        assert metric(bad, "aps:request_ended_total", status="failed") == 1
    finally:
        bad.stop()


def test_deterministic_requests_are_cached_per_tenant(pair):
    gw, ups = pair
    before = sum(metric(u, "aps:request_ended_total", tenant="gw") for u in ups)
    body = dict(model="sim-llama-3-8b", prompt="What is two and two?", max_tokens=6, temperature=0)
    first = client(gw).completions.create(**body)
    second = client(gw).completions.create(**body)
    assert second.choices[0].text == first.choices[0].text
    assert second.usage.completion_tokens == first.usage.completion_tokens == 6
    client(gw, "sk-beta").completions.create(**body)  # another tenant: its own entry
    client(gw).completions.create(**{**body, "temperature": 0.5})  # not deterministic
    after = sum(metric(u, "aps:request_ended_total", tenant="gw") for u in ups)
    assert after - before == 3
    assert metric(gw, "aps:cache_hits_total") == 1 and metric(gw, "aps:cache_misses_total") == 2
    # the hit is still recorded as a finished request of its tenant, with its tokens
    assert metric(gw, "aps:generation_tokens_total", tenant="acme") >= 18


async def burst(gw, n, key="sk-acme"):
    c = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=30)
    return await asyncio.gather(*(c.completions.create(model="sim-llama-3-8b", prompt=f"q{i}", max_tokens=3)
                                  for i in range(n)))


def test_a_dead_upstream_costs_retries_not_requests_and_its_breaker_cools_down(tmp_path):
    a, b = upstream(tmp_path, "a"), upstream(tmp_path, "b")
    # no health check in time: the breaker decides; its cool-down outlasts a slow burst, so
    # that the breaker is still open (not yet half-open) when the burst is over
    gw = gateway(tmp_path, [a, b], health=60, cooldown=3)
    dead = b.url
    try:
        b.kill()  # a crash: connections are refused from now on
        outs = asyncio.run(burst(gw, 20))
        assert all(o.usage.completion_tokens == 3 for o in outs)  # none lost
        assert metric(gw, "aps:upstream_retries_total") >= 2
        assert metric(gw, "aps:upstream_errors_total", upstream=dead) >= 2  # then it opened
        assert metric(gw, "aps:upstream_breaker_state", upstream=dead) == 1
        # back on the same port: after the cool-down one trial closes the breaker again
        b = upstream(tmp_path, "b2", port=int(dead.rsplit(":", 1)[1]))
        time.sleep(1.0)
        deadline = time.monotonic() + 10
        while metric(b, "aps:request_ended_total", tenant="gw", status="finished") == 0:
            assert time.monotonic() < deadline, "the revived upstream never got traffic"
            asyncio.run(burst(gw, 4))
        assert metric(gw, "aps:upstream_breaker_state", upstream=dead) == 0
    finally:
        for s in (gw, a, b):
            s.stop()


def test_requests_wait_while_no_upstream_is_up_and_run_when_one_is_back(tmp_path):
    only = upstream(tmp_path, "only")
    gw = gateway(tmp_path, [only])
    url = only.url
    try:
        only.kill()
        deadline = time.monotonic() + 5
        while metric(gw, "aps:upstream_healthy", upstream=url) != 0:
            assert time.monotonic() < deadline, "the health check never noticed the crash"
            time.sleep(0.1)

        async def wait_then_revive():
            pending = asyncio.ensure_future(burst(gw, 3))
            async with httpx.AsyncClient(timeout=5) as http:
                deadline = time.monotonic() + 10  # however slowly the clients get there
                while (await http.get(gw.url + "/health")).json()["waiting"] < 3:
                    assert time.monotonic() < deadline, "the requests never reached the queue"
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            assert not pending.done()  # queued at the gateway, not failed
            assert httpx.get(gw.url + "/health").json()["waiting"] == 3
            revived = await asyncio.to_thread(upstream, tmp_path, "again", 200,
                                              int(url.rsplit(":", 1)[1]))
            return revived, await asyncio.wait_for(pending, 20)
        only, outs = asyncio.run(wait_then_revive())
        assert [o.usage.completion_tokens for o in outs] == [3, 3, 3]
    finally:
        gw.stop()
        only.stop()


def test_a_client_that_goes_away_cancels_the_upstream_request(tmp_path):
    slow = upstream(tmp_path, "slow", speed=1)  # a real-time GPU: 200 tokens take seconds
    gw = gateway(tmp_path, [slow])
    try:
        with httpx.Client(timeout=10) as h:
            with h.stream("POST", gw.url + "/v1/completions",
                          headers={"Authorization": "Bearer sk-acme"},
                          json={"prompt": "go on", "max_tokens": 400, "stream": True}) as r:
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        break  # the first token: now hang up
        deadline = time.monotonic() + 5
        while metric(slow, "aps:request_ended_total", tenant="gw", status="cancelled") < 1:
            assert time.monotonic() < deadline, "the upstream never saw the cancellation"
            time.sleep(0.05)
        assert metric(gw, "aps:request_ended_total", tenant="acme", status="cancelled") == 1
        assert metric(gw, "aps:upstream_num_requests_running") == 0
    finally:
        gw.stop()
        slow.stop()


def busy_seconds(server) -> float:
    s = httpx.get(server.url + "/metrics?format=json", timeout=5).json()
    return s["gpu_utilization"] * s["uptime_s"]


def test_utilization_is_the_wall_time_upstream_requests_were_in_flight(tmp_path):
    """In upstream mode the summary's busy time is wall time with a request in flight: it is not
    scaled by `speed` (a setting of the simulated GPU, which this gateway does not run)."""
    ups = [upstream(tmp_path, "slow", speed=1)]
    gw = gateway(tmp_path, ups, extra="speed: 50\n")
    try:
        c = client(gw)
        before, spent = busy_seconds(gw), 0.0
        for _ in range(4):  # one at a time: the gateway is busy exactly while each runs
            t0 = time.perf_counter()
            c.completions.create(model="sim-llama-3-8b", prompt="hello", max_tokens=16)
            spent += time.perf_counter() - t0
        busy = busy_seconds(gw) - before
        assert 0.5 * spent <= busy <= 1.02 * spent, (busy, spent)
    finally:
        gw.stop()
        ups[0].stop()


def test_two_models_on_two_pools_with_an_alias_and_no_head_of_line_blocking(tmp_path):
    big = LocalServer(UPSTREAM.format(speed=10), log_path=tmp_path / "big.log")
    small = LocalServer(UPSTREAM.format(speed=200) + "model: llama-2-7b\n",
                        log_path=tmp_path / "small.log")
    config = GATEWAY.format(
        upstreams=f"  - {{url: {big.url}/v1, model: sim-llama-3-8b, api_key: sk-upstream, "
                  f"max_in_flight: 1}}\n"
                  f"  - {{url: {small.url}/v1, model: sim-llama-2-7b, api_key: sk-upstream, "
                  f"max_in_flight: 4}}", routing="round-robin", health=0.3, cooldown=1)
    gw = LocalServer(config + "aliases: {fast: sim-llama-2-7b}\n", log_path=tmp_path / "gw.log")
    try:
        c = client(gw)
        assert {m.id for m in c.models.list().data} == {"sim-llama-3-8b", "sim-llama-2-7b", "fast"}

        async def main():
            ac = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-acme", max_retries=0,
                                    timeout=30)
            first = asyncio.create_task(ac.completions.create(  # holds big's only seat for
                model="sim-llama-3-8b", prompt="a", max_tokens=2000))  # ~3 s: a slow machine's
            # stalls do not let it end before the quick one has been served
            await asyncio.sleep(0.3)
            second = asyncio.create_task(ac.completions.create(  # waits for that seat
                model="sim-llama-3-8b", prompt="b", max_tokens=2))
            await asyncio.sleep(0.1)
            t0 = time.monotonic()
            quick = await ac.completions.create(model="fast", prompt="c", max_tokens=3)
            waited = time.monotonic() - t0
            return quick, waited, first.done(), await first, await second
        quick, waited, first_done, first, second = asyncio.run(main())
        assert quick.model == "fast" and quick.usage.completion_tokens == 3
        assert waited < 1.0 and not first_done  # served beside big's queue, not behind it
        assert first.usage.completion_tokens == 2000 and second.usage.completion_tokens == 2
        assert metric(small, "aps:request_ended_total", tenant="gw") == 1
        assert metric(big, "aps:request_ended_total", tenant="gw") == 2
        with pytest.raises(openai.NotFoundError):
            c.completions.create(model="sim-mistral-7b", prompt="p", max_tokens=1)
    finally:
        for s in (gw, big, small):
            s.stop()
