"""`aps bench cache` against two real gateways on 127.0.0.1 (small and fast: a check that the
benchmark measures what it says, not a timing)."""
from aps.bench import cache


def test_repeats_hit_the_cache_and_save_gpu_time():
    calls = cache.workload(40, 0.5)
    assert len(calls) == 40 and 10 < len(set(calls)) < 40
    r = cache.run(n=40, repeat=0.5, clients=2, speed=50)
    assert r["errors"] == 0 and 0 < r["hit_ratio"] <= 0.75
    assert r["hit_p50_ms"] < r["miss_p50_ms"]
    assert 0 < r["gpu_busy_with_cache_s"] < r["gpu_busy_without_cache_s"] and r["gpu_saved"] > 0


def test_with_no_repeats_nothing_hits():
    r = cache.run(n=10, repeat=0.0, clients=2, speed=50)
    assert r["hit_ratio"] == 0 and r["distinct_prompts"] == 10 and r["errors"] == 0
