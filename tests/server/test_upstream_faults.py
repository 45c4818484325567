"""Upstream servers that die or stall under a gateway: the client hears why, the ledger says
`failed`, no seat or reservation is kept, and a stalled replica is given up on in bounded time,
its breaker opening and closing again once it is back. Upstreams are real `aps serve` processes
on the simulated GPU, stopped by their own PID."""
import os
import signal
import sqlite3
import time

import httpx
import openai
import pytest

from aps.bench.local.server import LocalServer

UPSTREAM = """
speed: {speed}
tenants:
  - {{id: gw, keys: [sk-upstream]}}
"""
GATEWAY = """
policy: vtc
metrics_key: scraper-key-0123456789
drain_timeout_s: 2
tenants:
  - {{id: acme, keys: [sk-acme]}}
upstreams:
  - {{url: {url}, model: sim-llama-3-8b, api_key: sk-upstream, max_in_flight: 8}}
retries: 1
breaker: {{failures: 2, cooldown_s: 3}}  # outlasts a slow machine's stalls
timeouts: {{connect_s: 1, stall_s: 0.6, response_s: 30}}
health_interval_s: 0.3
"""
SCRAPER = {"Authorization": "Bearer scraper-key-0123456789"}


def metric(server, name: str) -> float:
    for line in httpx.get(server.url + "/metrics", headers=SCRAPER, timeout=5).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


def held(server) -> dict:
    return httpx.get(server.url + "/metrics?format=json", timeout=5).json()["held"]


def ledger_statuses(server) -> list[str]:
    with sqlite3.connect(server.db_path) as db:
        return [row[0] for row in db.execute("SELECT status FROM usage ORDER BY id")]


def stream_some(gw, max_tokens: int, stop_after: int | None = None):
    """Stream one completion; returns (text pieces, the error if the stream failed)."""
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-acme", max_retries=0, timeout=30)
    pieces = []
    try:
        for chunk in c.completions.create(model="sim-llama-3-8b", prompt="hi", max_tokens=max_tokens,
                                          stream=True):
            if chunk.choices and chunk.choices[0].text:
                pieces.append(chunk.choices[0].text)
            if stop_after is not None and len(pieces) == stop_after:
                yield pieces
    except openai.APIError as exc:
        yield exc
        return
    yield None


@pytest.fixture
def pair(tmp_path):
    up = LocalServer(UPSTREAM.format(speed=2), log_path=tmp_path / "upstream.log")
    gw = LocalServer(GATEWAY.format(url=up.url), log_path=tmp_path / "gateway.log")
    yield gw, up
    gw.stop()
    up.stop()


def test_an_upstream_killed_mid_stream_fails_the_request_cleanly(pair):
    gw, up = pair
    stream = stream_some(gw, max_tokens=2000, stop_after=3)
    assert len(next(stream)) == 3  # tokens are flowing
    up.kill()  # SIGKILL, mid-stream
    error = next(stream)
    assert isinstance(error, openai.APIError), error  # an error event, not a silent cut
    deadline = time.monotonic() + 5
    while ledger_statuses(gw) != ["failed"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ledger_statuses(gw) == ["failed"]
    assert not any(held(gw).values()), held(gw)  # no seat, reservation or stream kept
    assert metric(gw, "aps:upstream_errors_total") >= 1


def test_a_stalled_upstream_is_given_up_on_and_its_breaker_opens_then_closes(pair):
    gw, up = pair
    streams = [stream_some(gw, max_tokens=2000, stop_after=2) for _ in range(2)]
    for s in streams:
        assert len(next(s)) == 2
    os.kill(up.proc.pid, signal.SIGSTOP)  # alive, connected, silent
    try:
        t0 = time.monotonic()
        errors = [next(s) for s in streams]
        assert all(isinstance(e, openai.APIError) for e in errors), errors
        given_up = time.monotonic() - t0
        print(f"\nstalled upstream (stall_s 0.6): both streams failed after {given_up:.2f} s")
        assert given_up < 5  # the stall timeout, not the read timeout of minutes
        assert metric(gw, "aps:upstream_breaker_state") == 1  # open after two failures
        deadline = time.monotonic() + 3
        while metric(gw, "aps:upstream_healthy") != 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert metric(gw, "aps:upstream_healthy") == 0
    finally:
        os.kill(up.proc.pid, signal.SIGCONT)
    deadline = time.monotonic() + 5
    while metric(gw, "aps:upstream_healthy") != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    deadline = time.monotonic() + 10  # the breaker's cool-down: the next request is its trial
    while metric(gw, "aps:upstream_breaker_state") != 2:  # half-open
        assert time.monotonic() < deadline, "the breaker never became half-open"
        time.sleep(0.1)
    assert next(stream_some(gw, max_tokens=5)) is None
    assert metric(gw, "aps:upstream_breaker_state") == 0  # closed again
    assert ledger_statuses(gw).count("failed") == 2 and not any(held(gw).values())
