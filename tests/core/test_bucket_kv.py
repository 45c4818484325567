import math

import pytest

from aps.core import BlockManager, ConfigError, TokenBucket


def test_bucket_starts_full_and_refills_at_rate_up_to_burst():
    b = TokenBucket(rate=100, burst=500)
    assert b.take(500, now=0.0)
    assert not b.take(1, now=0.0)
    assert b.refill(now=1.0) == pytest.approx(100)
    assert b.refill(now=100.0) == 500  # capped at burst


def test_bucket_take_is_all_or_nothing_and_time_until_is_exact():
    b = TokenBucket(rate=10, burst=100)
    b.take(95, 0.0)
    assert not b.take(20, 0.0)
    assert b.refill(0.0) == pytest.approx(5)
    assert b.time_until(20, 0.0) == pytest.approx(1.5)
    assert not b.take(20, 1.49)
    assert b.take(20, 1.5)


def test_bucket_time_until_edges():
    b = TokenBucket(rate=10, burst=100)
    assert b.time_until(100, 0.0) == 0.0
    assert b.time_until(101, 0.0) == math.inf  # can never hold that much


def test_bucket_refund_never_exceeds_burst():
    b = TokenBucket(rate=1, burst=50)
    b.take(30, 0.0)
    b.give_back(10, 0.0)
    assert b.refill(0.0) == 30
    b.give_back(1000, 0.0)
    assert b.refill(0.0) == 50


def test_bucket_ignores_a_clock_that_goes_back():
    b = TokenBucket(rate=10, burst=100)
    b.take(100, 5.0)
    assert b.refill(4.0) == 0  # no tokens minted by a stale timestamp
    assert b.refill(6.0) == pytest.approx(10)


def test_kv_counts_blocks_per_request_and_never_over_allocates():
    kv = BlockManager(num_blocks=4, block_size=16)
    assert kv.can_allocate("a", 33) and kv.blocks_needed("a", 33) == 3
    kv.allocate("a", 33)
    assert kv.held("a") == 3 and kv.num_free_blocks == 1
    kv.allocate("a", 48)  # still 3 blocks
    assert kv.held("a") == 3
    assert not kv.can_allocate("b", 17)
    with pytest.raises(MemoryError):
        kv.allocate("b", 17)
    assert kv.num_free_blocks == 1 and kv.held("b") == 0  # the failed call changed nothing
    kv.allocate("b", 16)
    assert kv.usage == 1.0 and len(kv) == 2
    assert kv.free("a") == 3 and kv.free("a") == 0
    assert kv.num_free_blocks == 3 and kv.capacity_tokens == 64


def test_kv_rejects_empty_configuration():
    with pytest.raises(ConfigError):
        BlockManager(0, 16)


def test_bucket_is_ready_at_the_time_it_names_despite_rounding():
    # 0.1 is not exact in binary: the refill at the named instant can fall short by an ulp.
    for amount in (0.3, 1.7, 3.3, 9.9):
        b = TokenBucket(rate=0.1, burst=10)
        b.take(10, 0.3)
        wake = 0.3 + b.time_until(amount, 0.3)
        assert b.can_take(amount, wake), amount
        assert b.time_until(amount, wake) == 0.0


def test_recent_ends_keep_only_their_window():
    from aps.core.stats import RecentEnds
    recent = RecentEnds(window_s=10)
    for t in range(1000):
        recent.add(float(t), 2.0)
    assert len(recent._ends) <= 11  # bounded by the window, not by how many ended
    assert recent.time_for(5, 999.0) == pytest.approx(5 * 10 / 11)
    assert recent.mean_duration(999.0) == pytest.approx(2.0)
    assert RecentEnds().time_for(3, 0.0) is None
