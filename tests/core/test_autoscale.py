"""The autoscaling signal: proposals per signal, stabilisation, cool-downs, step limits."""
import pytest

from aps.core.autoscale import AutoscaleConfig, Autoscaler, Decision, SloWindow
from aps.core.errors import ConfigError


def scaler(**kw) -> Autoscaler:
    base = dict(min=1, max=8, target_queue=10, up_cooldown_s=0,
                down_cooldown_s=0, stabilization_s=0, max_step_up=8, max_step_down=8)
    return Autoscaler(AutoscaleConfig(**{**base, **kw}))


def test_within_targets_keeps_the_count():
    d = scaler().observe(0.0, replicas=2, queue_depth=5, kv_usage=0.6, slo_attainment=0.95)
    assert d == Decision(2, d.reason, "steady")
    assert "within targets" in d.reason


def test_queue_depth_asks_for_one_replica_per_target_backlog():
    d = scaler().observe(0.0, replicas=2, queue_depth=45, kv_usage=0.6)
    assert (d.desired, d.signal) == (5, "queue")
    assert "queue depth 45" in d.reason


def test_kv_usage_above_the_band_scales_up_and_below_it_scales_down():
    up = scaler().observe(0.0, replicas=4, queue_depth=0, kv_usage=0.95)
    assert (up.desired, up.signal) == (5, "kv") and "KV usage 0.95 > 0.85" in up.reason
    s = scaler()
    s.observe(0.0, replicas=4, queue_depth=0, kv_usage=0.6)
    down = s.observe(1.0, replicas=4, queue_depth=0, kv_usage=0.2)
    assert (down.desired, down.signal) == (1, "low-load")  # ceil(4 * 0.2 / 0.85)


def test_missed_slo_scales_up_in_proportion_and_blocks_scale_down():
    s = scaler()
    d = s.observe(0.0, replicas=2, queue_depth=0, kv_usage=0.6, slo_attainment=0.45)
    assert (d.desired, d.signal) == (4, "slo") and "SLO attainment 45.0% < 90%" in d.reason
    s = scaler()
    s.observe(0.0, replicas=3, queue_depth=0, kv_usage=0.6)
    d = s.observe(1.0, replicas=3, queue_depth=0, kv_usage=0.1, slo_attainment=0.85)
    assert d.desired == 4  # low KV would release replicas, but the SLO is being missed


def test_bounds_and_step_limits():
    s = scaler(max=6, max_step_up=2)
    assert s.observe(0.0, 1, queue_depth=1000, kv_usage=0.5).desired == 3
    assert s.observe(1.0, 3, queue_depth=1000, kv_usage=0.5).desired == 5
    assert s.observe(2.0, 5, queue_depth=1000, kv_usage=0.5).desired == 6
    s = scaler(min=2, max_step_down=1)
    s.observe(0.0, 5, queue_depth=0, kv_usage=0.6)
    assert [s.observe(t, s.desired, 0, 0.0).desired for t in (1.0, 2.0, 3.0, 4.0)] == [4, 3, 2, 2]


def test_scale_down_waits_for_the_stabilisation_window():
    s = scaler(stabilization_s=300)
    assert s.observe(0.0, 4, queue_depth=0, kv_usage=0.6).desired == 4
    # a lull: low usage proposes 1, but 4 was proposed within the last 300 s
    for t in (10.0, 100.0, 299.0):
        d = s.observe(t, 4, queue_depth=0, kv_usage=0.1)
        assert (d.desired, d.signal) == (4, "hold") and "stabilising" in d.reason
    d = s.observe(301.0, 4, queue_depth=0, kv_usage=0.1)
    assert (d.desired, d.signal) == (1, "low-load")


def test_short_dips_inside_the_window_do_not_flap():
    s = scaler(stabilization_s=60)
    desired = []
    for k in range(40):  # every 10 s the load alternates between busy (3) and idle (1)
        busy = k % 2 == 0
        desired.append(s.observe(10.0 * k, 3, queue_depth=25 if busy else 0,
                                 kv_usage=0.6 if busy else 0.1).desired)
    assert desired == [3] * 40


def test_first_observation_counts_as_a_proposal_for_a_full_window():
    s = scaler(stabilization_s=120)
    assert s.observe(0.0, 3, 0, 0.0).desired == 3
    assert s.observe(119.0, 3, 0, 0.0).desired == 3
    assert s.observe(121.0, 3, 0, 0.0).desired == 1


def test_cool_downs_hold_the_last_decision():
    s = scaler(up_cooldown_s=30, down_cooldown_s=60)
    assert s.observe(0.0, 1, queue_depth=25, kv_usage=0.6).desired == 3
    d = s.observe(10.0, 3, queue_depth=80, kv_usage=0.6)
    assert (d.desired, d.signal) == (3, "hold") and "cool-down until t=30s" in d.reason
    assert s.observe(30.0, 3, queue_depth=80, kv_usage=0.6).desired == 8
    assert s.observe(50.0, 8, queue_depth=0, kv_usage=0.1).desired == 8  # down cool-down
    assert s.observe(90.0, 8, queue_depth=0, kv_usage=0.1).desired == 1


def test_the_desired_count_is_held_when_the_replicas_do_not_follow():
    # A gateway that only exports the signal keeps observing its one replica.
    s = scaler(up_cooldown_s=30)
    assert s.observe(0.0, 1, queue_depth=30, kv_usage=0.9).desired == 3
    assert s.observe(5.0, 1, queue_depth=30, kv_usage=0.9).desired == 3


def test_bad_config_is_refused_with_the_field_named():
    with pytest.raises(ConfigError, match="min <= max"):
        AutoscaleConfig(min=3, max=2)
    with pytest.raises(ConfigError, match="kv_low"):
        AutoscaleConfig(kv_low=0.9, kv_high=0.8)
    with pytest.raises(ConfigError, match="slo_target"):
        AutoscaleConfig(slo_target=0)
    with pytest.raises(ConfigError, match="slo_window_s"):
        SloWindow(0)


def test_slo_window_counts_only_recent_requests():
    w = SloWindow(60)
    assert w.attainment(0.0) is None
    for t, met in ((0.0, False), (10.0, False), (50.0, True), (65.0, True)):
        w.add(t, met)
    assert w.attainment(65.0) == pytest.approx(2 / 3)  # the one at t=0 has left the window
    assert w.attainment(115.0) == 1.0
    assert w.attainment(200.0) is None
