"""The upstream pool's logic without a network: routing, consistent hashing, the circuit
breaker, capacity, the body sent upstream, SSE parsing and the response cache."""
import pytest

from aps.engines.breaker import BreakerState, CircuitBreaker
from aps.engines.cache import CachedResponse, ResponseCache, cache_key
from aps.engines.routing import HashRing
from aps.engines.upstream import Replica, UpstreamPool
from aps.engines.upstream_http import (UpstreamCall, UpstreamError, _parse, read_capacity,
                                       upstream_body, vllm_priority)


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def pool(n=3, routing="round-robin", clock=None, **kw):
    replicas = [Replica(f"http://10.0.0.{i}:8000", "m", healthy=True, **kw) for i in range(n)]
    return UpstreamPool(replicas, routing, clock=clock or Clock())


def urls(p, n, prompt="hello", tokens=10):
    out = []
    for _ in range(n):
        r = p.pick(tokens, prompt)
        out.append(r.url[-6])
    return "".join(out)


def test_round_robin_cycles_and_skips_full_or_down_replicas():
    p = pool(3)
    assert urls(p, 6) == "012012"
    p.replicas[1].healthy = False
    full = p.replicas[2]
    full.num_in_flight = full.max_in_flight
    assert urls(p, 3) == "000"


def test_least_outstanding_tokens_picks_the_least_loaded():
    p = pool(3, "least-outstanding-tokens")
    loads = [500, 20, 300]
    for r, load in zip(p.replicas, loads):
        r.num_tokens_in_flight = load
    assert p.pick(10, "x").url == p.replicas[1].url
    p.acquire(p.replicas[1], 1000)
    assert p.pick(10, "x").url == p.replicas[2].url
    p.release(p.replicas[1], 1000)
    assert p.replicas[1].num_in_flight == 0 and p.replicas[1].num_tokens_in_flight == 20


def test_room_counts_requests_and_tokens():
    r = Replica("http://a", "m", max_in_flight=2, max_tokens_in_flight=100, healthy=True)
    assert r.has_room(100) and not r.has_room(101)
    r.num_in_flight, r.num_tokens_in_flight = 1, 60
    assert r.has_room(40) and not r.has_room(41)
    r.num_in_flight = 2
    assert not r.has_room(1)


def test_prefix_affinity_keeps_a_prefix_on_one_replica_and_falls_back_along_the_ring():
    p = pool(4, "prefix-affinity")
    system = "You are a helpful assistant. " * 20  # longer than the routed prefix
    first = {p.pick(10, system + f"question {i}").url for i in range(20)}
    assert len(first) == 1  # the same prefix, the same replica
    spread = {p.pick(10, f"{i} different prompt").url for i in range(200)}
    assert len(spread) == 4  # different prefixes spread over every replica
    home = p.replicas[[r.url for r in p.replicas].index(first.pop())]
    home.healthy = False
    ring = HashRing([r.url for r in p.replicas]).walk(system[:256])
    assert p.pick(10, system).url == ring[1]  # the next replica on the ring


def test_consistent_hashing_moves_few_keys_when_a_replica_leaves():
    names = [f"r{i}" for i in range(5)]
    before, after = HashRing(names), HashRing(names[:-1])
    keys = [f"prompt {i}" for i in range(2000)]
    moved = sum(before.walk(k)[0] != after.walk(k)[0] for k in keys)
    owned_by_gone = sum(before.walk(k)[0] == "r4" for k in keys)
    assert moved == owned_by_gone  # only the departed replica's keys move
    assert 0.1 < owned_by_gone / len(keys) < 0.3


def test_avoided_replicas_are_used_only_when_nothing_else_is_up():
    p = pool(2)
    a, b = p.replicas
    assert p.pick(10, "x", avoid={a.url}).url == b.url
    b.healthy = False
    assert p.pick(10, "x", avoid={a.url}).url == a.url  # a single replica: try it again
    b.healthy, b.num_in_flight = True, b.max_in_flight
    assert p.pick(10, "x", avoid={a.url}) is None  # b is up but full: wait for it


def test_breaker_opens_after_n_failures_then_half_opens_for_one_trial():
    clock = Clock()
    b = CircuitBreaker(failures=3, cooldown_s=10)
    for _ in range(2):
        b.on_failure(clock.t)
    assert b.state(clock.t) is BreakerState.CLOSED and b.allows(clock.t)
    b.on_failure(clock.t)
    assert b.state(clock.t) is BreakerState.OPEN and not b.allows(clock.t + 9.9)
    assert b.state(clock.t + 10) is BreakerState.HALF_OPEN and b.allows(clock.t + 10)
    b.on_send(clock.t + 10)
    assert not b.allows(clock.t + 10)  # one trial at a time
    b.on_failure(clock.t + 11)  # the trial failed: a new cool-down
    assert b.state(clock.t + 20) is BreakerState.OPEN
    assert b.state(clock.t + 21) is BreakerState.HALF_OPEN
    b.on_send(clock.t + 21)
    b.on_success()
    assert b.state(clock.t + 21) is BreakerState.CLOSED and b.num_failures == 0


def test_a_success_resets_the_count_of_consecutive_failures():
    b = CircuitBreaker(failures=2)
    b.on_failure(0)
    b.on_success()
    b.on_failure(1)
    assert b.state(1) is BreakerState.CLOSED


def test_seats_follow_health_and_breakers():
    clock = Clock()
    p = pool(3, clock=clock, max_in_flight=8)
    assert p.seats() == 24
    p.replicas[0].healthy = False
    for _ in range(3):
        p.on_failure(p.replicas[1])
    assert p.seats() == 8
    clock.t += 10
    assert p.seats() == 9  # one trial on the half-open replica
    assert p.replicas[1].num_errors == 3


def test_pool_refuses_an_empty_or_duplicated_configuration():
    with pytest.raises(ValueError):
        UpstreamPool([])
    with pytest.raises(ValueError):
        UpstreamPool([Replica("http://a", "m"), Replica("http://a", "m")])
    with pytest.raises(ValueError):
        UpstreamPool([Replica("http://a", "m")], routing="random")


def test_upstream_body_forwards_the_clients_fields_and_priority_only_when_asked():
    call = UpstreamCall(True, {"model": "client-name", "messages": [{"role": "user", "content": "hi"}],
                               "temperature": 0.3, "top_p": 0.9, "stop": ["\n"], "seed": 7,
                               "stream": False, "priority": 9, "max_completion_tokens": 50})
    body = upstream_body(call, "served", 40, None)
    assert body["model"] == "served" and body["max_tokens"] == 40
    assert body["stream"] is False and "stream_options" not in body  # one plain request
    streamed = upstream_body(UpstreamCall(True, {**call.body, "stream": True}), "served", 40, None)
    assert streamed["stream"] is True and streamed["stream_options"] == {"include_usage": True}
    assert {k: body[k] for k in ("temperature", "top_p", "stop", "seed")} == \
        {"temperature": 0.3, "top_p": 0.9, "stop": ["\n"], "seed": 7}
    assert "priority" not in body and "max_completion_tokens" not in body
    assert upstream_body(call, "served", 40, 9)["priority"] == 2
    assert vllm_priority(10) < vllm_priority(5) < vllm_priority(1)  # vLLM: lower runs first


def test_sse_chunks_give_text_finish_and_usage_and_errors_raise():
    chunk = _parse(b'{"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}', True)
    assert chunk.text == "Hel" and chunk.finish_reason is None and chunk.usage is None
    chunk = _parse(b'{"choices":[{"index":0,"text":"lo","finish_reason":"length"}]}', False)
    assert chunk.text == "lo" and chunk.finish_reason == "length"
    chunk = _parse(b'{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,'
                   b'"total_tokens":8}}', True)
    assert chunk.usage.prompt_tokens == 5 and chunk.usage.completion_tokens == 3 and not chunk.text
    with pytest.raises(UpstreamError) as err:
        _parse(b'{"error":{"message":"engine died"}}', True)
    assert err.value.retryable and "engine died" in err.value.message
    with pytest.raises(UpstreamError):
        _parse(b"not json", True)


@pytest.mark.parametrize("data", [b'{"choices":[{"text":"a\xff"}]}', b'[1, 2]',
                                  b'{"usage":{"prompt_tokens":"many"}}', b'{"choices":[7]}'])
def test_an_answer_that_is_not_the_apis_json_is_a_failed_answer(data):
    """Never an exception the dispatcher does not expect: that would leave the request
    running with nobody to end it."""
    with pytest.raises(UpstreamError) as err:
        _parse(data, False)
    assert err.value.retryable and "malformed chunk" in err.value.message


def test_vllm_metrics_give_the_kv_capacity_in_tokens():
    text = ('# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n'
            'vllm:cache_config_info{block_size="16",cache_dtype="auto",num_gpu_blocks="2048"} 1.0\n')
    assert read_capacity(text) == 32768
    assert read_capacity("vllm:num_requests_running 3\n") is None


def test_cache_keys_only_deterministic_requests_per_tenant():
    body = {"messages": [{"role": "user", "content": "hi"}], "temperature": 0, "max_tokens": 5}
    key = cache_key("a", "m", True, body)
    assert key is not None
    assert cache_key("a", "m", True, {**body, "stream": True, "stream_options": {},
                                      "priority": 3}) == key
    assert cache_key("b", "m", True, body) != key  # scoped per tenant
    assert cache_key("a", "m", False, body) != key
    assert cache_key("a", "m", True, {**body, "max_tokens": 6}) != key
    assert cache_key("a", "m", True, {**body, "temperature": 0.7}) is None
    assert cache_key("a", "m", True, {k: v for k, v in body.items() if k != "temperature"}) is None
    reordered = dict(reversed(list(body.items())))
    assert cache_key("a", "m", True, reordered) == key


def test_cache_expires_after_its_ttl_and_evicts_least_recently_used_by_bytes():
    c = ResponseCache(ttl_s=10, max_bytes=3 * (100 + 64))
    for i in range(3):
        c.put(f"k{i}", CachedResponse("x" * 100, 1, 1, stored_at=0.0))
    assert c.get("k0", 1.0) is not None  # k0 is now the most recently used
    c.put("k3", CachedResponse("y" * 100, 1, 1, stored_at=1.0))
    assert c.get("k1", 2.0) is None and c.get("k0", 2.0) is not None and len(c) == 3
    assert c.evictions == 1 and c.num_bytes <= c.max_bytes
    assert c.get("k3", 11.0) is None  # expired
    assert (c.hits, c.misses) == (2, 2)
    c.put("huge", CachedResponse("z" * 10_000, 1, 1, 0.0))
    assert c.get("huge", 0.0) is None and len(c) == 2
