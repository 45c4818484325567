"""The soak and overload benchmarks, run briefly: they must find nothing held after the load
stops, no error under a steady load, and only refusals (never a 5xx) past capacity."""
from aps.bench.reliability import overload, soak


def test_a_short_soak_has_no_errors_and_leaves_nothing_held():
    result = soak(minutes=0.1, streams=8)
    assert result["requests"] > 0 and result["errors"] == 0
    assert not any(result["held_after"].values()), result["held_after"]


def test_overload_is_refused_in_bounded_time_and_nothing_is_left_held():
    result = overload(factor=4.0, seconds=3.0)
    assert result["accepted"] > 0 and result["refused"].get("503 queue_full", 0) > 0
    assert result["server_errors"] == 0
    assert set(result["refused"]) <= {"503 queue_full"}
    assert not any(result["held_after"].values()), result["held_after"]
