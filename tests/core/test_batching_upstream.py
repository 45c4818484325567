"""The core's upstream mode: admission by seats and in-flight tokens, progress as tokens stream,
requeue before the first token, refunds from the server's real counts."""
import pytest

from aps.core import BatchConfig, ConfigError, InvalidRequest, Request, Scheduler, Status, StopReason, Tenant


def make(policy="fifo", seats=2, tokens=1000, tenants=None):
    tenants = tenants or [Tenant("a", bid=5), Tenant("b", bid=5)]
    return Scheduler(tenants, policy, BatchConfig(mode="upstream", max_num_seqs=seats,
                                                  kv_capacity_tokens=tokens, block_size=1))


def req(rid, tenant="a", prompt=10, max_tokens=20, arrival=0.0, bid=None):
    return Request(rid, tenant, prompt, max_tokens, arrival, bid)


def test_admits_in_policy_order_up_to_the_seats_and_only_once():
    s = make(policy="priority", seats=2)
    for i, bid in enumerate((1, 9, 5)):
        s.submit(req(f"r{i}", bid=bid, arrival=i), now=i)
    plan = s.step(3.0)
    assert [(r.request_id, n) for r, n in plan.scheduled] == [("r1", 10), ("r2", 10)]
    assert plan.stop_reason is StopReason.MAX_SEQS
    again = s.step(4.0)  # running requests are not planned again
    assert not again.scheduled and s.num_running == 2 and s.num_waiting == 1


def test_in_flight_tokens_reserve_prompt_plus_max_tokens():
    s = make(seats=10, tokens=100)
    for i in range(4):
        s.submit(req(f"r{i}", prompt=10, max_tokens=30), now=0)  # 40 tokens each
    plan = s.step(0.0)
    assert len(plan.scheduled) == 2 and plan.stop_reason is StopReason.IN_FLIGHT_TOKENS
    s.finish("r0", 1.0)
    assert [r.request_id for r, _ in s.step(1.0).scheduled] == ["r2"]


def test_reserved_seats_wait_for_a_tenant_with_nothing_running():
    s = Scheduler([Tenant("a"), Tenant("b")], "vtc",
                  BatchConfig(mode="upstream", max_num_seqs=4, reserved_seats=1,
                              kv_capacity_tokens=10_000, block_size=1))
    for i in range(6):
        s.submit(req(f"a{i}"), now=0)
    assert len(s.step(0.0).scheduled) == 3  # a floods: it gets every seat but the reserved one
    s.submit(req("b0", tenant="b", arrival=1.0), now=1.0)
    assert [r.request_id for r, _ in s.step(1.0).scheduled] == ["b0"]  # at once, no wait
    s.submit(req("b1", tenant="b", arrival=1.0), now=1.0)
    assert not s.step(1.0).scheduled  # full: b has one running now, like a
    s.admission.progress("a1", 10, 5, 1.5)  # a has been served more than b
    s.finish("a0", 2.0)
    assert not s.step(2.0).scheduled  # the freed seat is the reserved one again
    s.finish("a1", 3.0)
    assert [r.request_id for r, _ in s.step(3.0).scheduled] == ["b1"]  # fair share: b next


def test_reserved_seats_must_leave_one_for_anyone():
    with pytest.raises(ConfigError, match="reserved_seats must be in 0..max_num_seqs-1"):
        BatchConfig(mode="upstream", max_num_seqs=2, reserved_seats=2)


def test_seats_follow_the_servers_at_run_time():
    s = make(seats=4)
    for i in range(4):
        s.submit(req(f"r{i}"), now=0)
    s.admission.set_seats(0)  # every server down: nothing is admitted, nothing is lost
    assert not s.step(0.0).scheduled and s.num_waiting == 4
    s.admission.set_seats(3)
    assert len(s.step(1.0).scheduled) == 3
    with pytest.raises(InvalidRequest):
        s.admission.set_seats(-1)
    assert not hasattr(Scheduler([Tenant("a")], "fifo").admission, "set_seats")  # upstream only


def test_progress_charges_the_fair_share_policy_as_tokens_stream():
    s = make(policy="vtc", seats=1)
    s.submit(req("a1", "a"), now=0)
    s.step(0.0)
    s.admission.progress("a1", 10, 0, now=0.1)
    assert s.policy.counters["a"] == 10 and s.requests["a1"].first_token is None
    s.admission.progress("a1", 10, 3, now=0.2)
    r = s.requests["a1"]
    assert r.first_token == 0.2 and r.num_output_tokens == 3
    assert s.policy.counters["a"] == 10 + 2 * 3 and s.service_tokens["a"] == 13
    s.admission.progress("a1", 10, 5, now=0.3)
    assert r.first_token == 0.2 and s.service_tokens["a"] == 15
    with pytest.raises(InvalidRequest):
        s.admission.progress("a1", 10, 4, now=0.4)  # output never goes back


def test_the_servers_prompt_count_corrects_the_estimate_and_the_refund():
    s = make(seats=1, tenants=[Tenant("a", token_rate=1, token_burst=1000)])
    s.submit(req("r", "a", prompt=40, max_tokens=100), now=0)  # reserves 140
    s.step(0.0)
    s.admission.progress("r", 40, 1, now=0.1)  # streaming: the estimate
    s.admission.progress("r", 25, 7, now=0.2)  # the server's usage at the end
    done = s.finish("r", 0.2)
    assert done.prompt_tokens == 25 and done.num_output_tokens == 7
    assert s.service_tokens["a"] == 32
    bucket = s.tenants["a"].tokens
    assert bucket.refill(0.2) == pytest.approx(1000 - 32 + 0.2)  # 108 of 140 refunded


def test_vtc_serves_the_light_tenant_next_once_the_heavy_one_has_streamed():
    s = make(policy="vtc", seats=1)
    s.submit(req("h1", "a"), now=0)
    s.step(0.0)
    for i in range(2, 5):
        s.submit(req(f"h{i}", "a", arrival=0.01 * i), now=0.01 * i)
    s.submit(req("l1", "b", arrival=0.5), now=0.5)
    s.admission.progress("h1", 10, 20, now=1.0)
    s.finish("h1", 1.0)
    assert [r.request_id for r, _ in s.step(1.0).scheduled] == ["l1"]


def test_requeue_before_the_first_token_keeps_the_place_in_line():
    s = make(policy="fifo", seats=1)
    s.submit(req("first", arrival=0.0), now=0)
    s.step(0.0)
    s.submit(req("second", arrival=1.0), now=1.0)
    back = s.admission.requeue("first", now=2.0)
    assert back.status is Status.WAITING and s.num_running == 0 and s.kv.num_used_blocks == 0
    assert [r.request_id for r, _ in s.step(2.0).scheduled] == ["first"]
    s.admission.progress("first", 10, 1, now=2.5)
    with pytest.raises(InvalidRequest):
        s.admission.requeue("first", now=3.0)  # after the first token it can only fail


def test_every_request_ends_once_and_frees_its_reservation():
    s = make(seats=3, tokens=200)
    for i in range(5):
        s.submit(req(f"r{i}"), now=0)
    s.step(0.0)
    s.admission.progress("r0", 10, 2, now=0.1)
    s.finish("r0", 0.2)
    s.fail("r1", 0.2, "upstream lost")
    s.cancel("r3", 0.2)  # still waiting
    s.admission.requeue("r2", 0.2)
    ended = s.pop_ended()  # each reported once, as it ended
    assert [(r.request_id, r.status.value) for r in ended] == [
        ("r0", "finished"), ("r1", "failed"), ("r3", "cancelled")]
    plan = s.step(0.3)
    assert not s.pop_ended()
    assert sorted(r.request_id for r in ended) == ["r0", "r1", "r3"]
    assert sorted(r.request_id for r, _ in plan.scheduled) == ["r2", "r4"]
    for rid in ("r2", "r4"):
        s.finish(rid, 0.4)
    assert not s.requests and s.kv.num_used_blocks == 0 and s.num_running == 0


def test_each_model_is_admitted_against_its_own_pool_under_one_fair_share():
    s = Scheduler([Tenant("a"), Tenant("b")], "vtc",
                  BatchConfig(mode="upstream", max_num_seqs=4, kv_capacity_tokens=20_000,
                              block_size=1))
    s.admission.set_pools({"big": (1, 10_000), "small": (2, 10_000)})
    for rid, tenant, model in (("a1", "a", "big"), ("a2", "a", "big"), ("b1", "b", "small")):
        s.submit(Request(rid, tenant, 100, 100, 0.0, model=model), 0.0)
    plan = s.step(0.0)  # big's one seat is taken: a2 waits, and does not hold back small's b1
    assert sorted(r.request_id for r, _ in plan.scheduled) == ["a1", "b1"]
    assert s.num_waiting == 1
    s.admission.progress("a1", 100, 50, now=0.1)  # a is served on big...
    for rid, tenant in (("a3", "a"), ("b2", "b")):
        s.submit(Request(rid, tenant, 100, 100, 0.2, model="small"), 0.2)
    plan = s.step(0.2)  # ...so on small, with one seat left, b goes first
    assert [r.request_id for r, _ in plan.scheduled] == ["b2"]
    with pytest.raises(InvalidRequest):
        s.admission.set_pools({"big": (-1, 10)})
