import pytest

from aps.core import (BatchConfig, ConfigError, InvalidRequest, NeverFits, OverLimit, Request, Scheduler,
                      Status, StopReason, Tenant, UnknownRequest, UnknownTenant)
from drive import run


def tenants(**limits):
    return [Tenant("a", bid=10, **limits), Tenant("b", bid=1, **limits)]


def R(rid, tenant="a", prompt=32, out=8, arrival=0.0, bid=None):
    return Request(rid, tenant, prompt, out, arrival, bid)


# -- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, exc, msg", [
    (R("x", prompt=0), InvalidRequest, "prompt_tokens and max_tokens must be >= 1"),
    (R("x", out=-3), InvalidRequest, "must be >= 1"),
    (R("x", tenant="nobody"), UnknownTenant, "unknown tenant 'nobody'"),
    (R("x", bid=11), InvalidRequest, "bid must be an integer in 1..10, got 11"),
    (R("x", bid=0), InvalidRequest, "bid must be"),
    (R("x", prompt=4000, out=200), NeverFits, "can never fit the KV cache of 4096 tokens"),
])
def test_bad_input_raises_a_clear_error_and_leaves_no_trace(bad, exc, msg):
    s = Scheduler(tenants(), batch=BatchConfig(kv_capacity_tokens=4096))
    with pytest.raises(exc, match=msg):
        s.submit(bad, 0.0)
    assert not s.requests and s.num_waiting == 0 and s.kv.num_used_blocks == 0
    assert s.tenants["a"].num_in_flight == 0


def test_request_over_the_tenants_burst_never_fits():
    s = Scheduler([Tenant("a", token_rate=10, token_burst=100)])
    with pytest.raises(NeverFits, match="burst of 100"):
        s.submit(R("x", prompt=90, out=20), 0.0)


def test_prompt_over_budget_without_chunked_prefill_never_fits():
    s = Scheduler(tenants(), batch=BatchConfig(chunked_prefill=False, max_num_batched_tokens=64))
    with pytest.raises(NeverFits, match="without chunked prefill"):
        s.submit(R("x", prompt=60, out=10), 0.0)


def test_duplicate_id_and_resubmission_are_rejected():
    s = Scheduler(tenants())
    r = R("x")
    s.submit(r, 0.0)
    with pytest.raises(InvalidRequest, match="already in use"):
        s.submit(R("x"), 0.0)
    with pytest.raises(UnknownRequest):
        s.cancel("nope", 0.0)


# -- limits ----------------------------------------------------------------------------------

def test_token_bucket_reject_says_when_to_retry_and_refunds_unused():
    s = Scheduler([Tenant("a", token_rate=10, token_burst=100)])
    assert s.submit(R("r1", prompt=40, out=40), 0.0).ok
    v = s.submit(R("r2", prompt=40, out=40), 0.0)
    assert not v.ok and v.reason == "tokens" and v.retry_after == pytest.approx(6.0)
    rejected = s.pop_ended()  # reported at once, in the step where it was refused
    assert [r.request_id for r in rejected] == ["r2"] and rejected[0].status is Status.REJECTED
    plan = s.step(0.0)
    s.complete_step(plan, 1.0)
    s.finish("r1", 1.0)  # stopped after 1 of 40 output tokens: 39 refunded
    assert s.tenants["a"].tokens.refill(1.0) == pytest.approx(20 + 10 + 39)


def test_delay_holds_requests_throttled_then_releases_them_in_order():
    s = Scheduler([Tenant("a", token_rate=10, token_burst=60, over_limit=OverLimit.DELAY)])
    for i in range(3):
        s.submit(R(f"r{i}", prompt=30, out=30, arrival=0.0), 0.0)
    assert s.num_waiting == 1 and s.num_throttled == 2
    assert s.requests["r1"].status is Status.THROTTLED
    assert s.next_release(0.0) == pytest.approx(6.0)
    trace = run(s, [])
    assert [r.request_id for r in trace.finished] == ["r0", "r1", "r2"]
    starts = {r.request_id: r.first_scheduled for r in trace.finished}
    assert starts["r1"] >= 6.0 - 1e-9 and starts["r2"] >= starts["r1"]


def test_demote_queues_over_budget_requests_behind_everyone_else():
    s = Scheduler([Tenant("a", token_rate=10, token_burst=60, over_limit=OverLimit.DEMOTE),
                   Tenant("b")], batch=BatchConfig(max_num_seqs=1))
    assert s.submit(R("a1", prompt=30, out=30), 0.0).ok
    v = s.submit(R("a2", prompt=30, out=30), 0.0)  # over budget: demoted, not refused
    assert not v.ok and v.reason == "tokens" and s.requests["a2"].demoted
    assert s.submit(R("b1", tenant="b"), 0.0).ok  # arrives later, but a2 only gets spare capacity
    trace = run(s, [])
    order = [r.request_id for r in trace.finished]
    assert order == ["a1", "b1", "a2"]
    state = s.tenants["a"]
    assert state.num_in_flight == 0 and state.tokens.refill(100.0) == pytest.approx(60)


def test_a_tenant_switched_to_demote_keeps_what_is_queued():
    s = Scheduler([Tenant("a", token_rate=10, token_burst=60)], batch=BatchConfig(max_num_seqs=1))
    s.submit(R("a1", prompt=30, out=30), 0.0)
    s.set_tenant(Tenant("a", token_rate=10, token_burst=60, over_limit=OverLimit.DEMOTE))
    s.submit(R("a2", prompt=30, out=30), 0.0)
    assert s.num_waiting == 2
    assert [r.request_id for r in run(s, []).finished] == ["a1", "a2"]


def test_concurrency_limit_and_request_rate():
    s = Scheduler([Tenant("a", max_concurrent=2), Tenant("b", request_rate=1, request_burst=1)])
    assert s.submit(R("a1"), 0.0).ok and s.submit(R("a2"), 0.0).ok
    v = s.submit(R("a3"), 0.0)
    assert v.reason == "concurrency" and v.retry_after is None
    assert s.submit(R("b1", tenant="b"), 0.0).ok
    v = s.submit(R("b2", tenant="b"), 0.25)
    assert v.reason == "requests" and v.retry_after == pytest.approx(0.75)


def test_bounded_queue_rejects_with_queue_full():
    s = Scheduler(tenants(), batch=BatchConfig(max_waiting=3, max_waiting_per_tenant=2))
    assert s.submit(R("a1"), 0).ok and s.submit(R("a2"), 0).ok
    assert s.submit(R("a3"), 0).reason == "queue_full"  # per tenant
    assert s.submit(R("b1", tenant="b"), 0).ok
    assert s.submit(R("b2", tenant="b"), 0).reason == "queue_full"  # global


# -- continuous batching ---------------------------------------------------------------------

def test_continuous_chunked_prefill_then_decode_and_ttft():
    s = Scheduler(tenants(), batch=BatchConfig(max_num_batched_tokens=64))
    s.submit(R("x", prompt=150, out=3), 0.0)
    chunks = []
    t = 0.0
    while s.requests:
        plan = s.step(t)
        chunks.append(plan.num_tokens.get("x"))
        t += 1.0
        s.complete_step(plan, t)
    assert chunks == [64, 64, 22, 1, 1]
    r = s.pop_ended()[0]
    assert r.num_output_tokens == 3 and r.ttft == 3.0 and r.e2e == 5.0 and r.tpot == 1.0


def test_continuous_admits_in_policy_order_and_records_why_it_stopped():
    s = Scheduler(tenants(), policy="priority", batch=BatchConfig(max_num_seqs=2))
    s.submit(R("b1", tenant="b"), 0.0)
    s.submit(R("a1"), 0.0)
    s.submit(R("a2"), 0.0)
    plan = s.step(0.0)
    assert [r.request_id for r, _ in plan.scheduled] == ["a1", "a2"]
    assert plan.stop_reason is StopReason.MAX_SEQS
    budget = Scheduler(tenants(), batch=BatchConfig(max_num_batched_tokens=40, chunked_prefill=False))
    budget.submit(R("a1"), 0.0)
    budget.submit(R("a2"), 0.0)
    assert budget.step(0.0).stop_reason is StopReason.TOKEN_BUDGET


def test_kv_exhaustion_preempts_lowest_ranked_and_recomputes_it():
    # 4 blocks of 16: two requests of 32 prompt tokens fill the cache; decode needs more.
    s = Scheduler(tenants(), policy="priority", batch=BatchConfig(kv_capacity_tokens=64))
    s.submit(R("low", tenant="b", prompt=32, out=20), 0.0)
    s.submit(R("high", tenant="a", prompt=32, out=20), 0.0)
    trace = run(s, [])
    preempted = [r.request_id for p in trace.plans for r in p.preempted]
    assert preempted and set(preempted) == {"low"}
    done = {r.request_id: r for r in trace.finished}
    assert done["low"].num_output_tokens == 20 and done["low"].num_preemptions >= 1
    assert done["high"].finished < done["low"].finished
    assert s.kv.num_used_blocks == 0


def test_priority_preemption_evicts_lower_ranked_running_request():
    cfg = BatchConfig(max_num_seqs=1, priority_preemption=True)
    s = Scheduler(tenants(), policy="priority", batch=cfg)
    s.submit(R("low", tenant="b", out=50), 0.0)
    s.complete_step(s.step(0.0), 0.1)
    s.submit(R("high", tenant="a"), 0.1)
    plan = s.step(0.1)
    assert [r.request_id for r in plan.preempted] == ["low"]
    assert [r.request_id for r, _ in plan.scheduled] == ["high"]
    off = Scheduler(tenants(), policy="priority", batch=BatchConfig(max_num_seqs=1))
    off.submit(R("low", tenant="b", out=50), 0.0)
    off.complete_step(off.step(0.0), 0.1)
    off.submit(R("high", tenant="a"), 0.1)
    assert off.step(0.1).stop_reason is StopReason.MAX_SEQS


# -- micro batching --------------------------------------------------------------------------

def test_micro_waits_for_the_window_or_a_full_batch():
    s = Scheduler(tenants(), batch=BatchConfig(mode="micro", window_s=0.010, max_batch=3))
    s.submit(R("r1"), 0.0)
    plan = s.step(0.004)
    assert not plan and plan.stop_reason is StopReason.WINDOW and plan.next_wakeup == pytest.approx(0.010)
    s.submit(R("r2"), 0.005)
    s.submit(R("r3"), 0.006)
    plan = s.step(0.006)  # max_batch reached: no need to wait
    assert len(plan.scheduled) == 3


def test_micro_batch_fits_kv_limit_and_runs_to_completion():
    cfg = BatchConfig(mode="micro", window_s=0.0, max_batch=16, kv_capacity_tokens=256)
    s = Scheduler(tenants(), batch=cfg)
    for i in range(4):
        s.submit(R(f"r{i}", prompt=64, out=32), 0.0)  # 96 tokens each: two fit in 256
    plan = s.step(0.0)
    assert len(plan.scheduled) == 2 and plan.stop_reason is StopReason.KV_CACHE
    s.complete_step(plan, 0.1)
    s.submit(R("late", prompt=8, out=8), 0.1)
    plan = s.step(0.1)
    assert plan.stop_reason is StopReason.BATCH_RUNNING and len(plan.scheduled) == 2


def test_micro_adaptive_window_shrinks_with_irregular_arrivals():
    cfg = BatchConfig(mode="micro", window_s=0.010, adaptive_window=True, max_batch=10_000)
    regular, irregular = Scheduler(tenants(), batch=cfg), Scheduler(tenants(), batch=cfg)
    t = 0.0
    for i in range(64):
        regular.submit(R(f"r{i}", arrival=i * 0.002), i * 0.002)
        t += (i * 7919 % 13) * 0.001
        irregular.submit(R(f"i{i}", arrival=t), t)
    assert regular.admission.governor.window() == pytest.approx(0.010)  # zero entropy
    assert irregular.admission.governor.window() < 0.5 * regular.admission.governor.window()


def _run_micro_batch(s, start, seconds):
    """Form a batch at `start` (or when its window closes) and finish it `seconds` later (its
    requests have one token each); returns when it ended."""
    plan = s.step(start)
    if not plan.scheduled:
        start = plan.next_wakeup
        plan = s.step(start)
    assert plan.scheduled
    s.complete_step(plan, start + seconds)
    s.pop_ended()
    return start + seconds


def test_micro_batches_only_above_the_utilization_threshold():
    cfg = BatchConfig(mode="micro", window_s=0.010, max_batch=16, batch_above_utilization=0.8)
    s = Scheduler(tenants(), batch=cfg)
    s.submit(R("idle", out=1), 0.0)
    plan = s.step(0.0)  # an idle GPU: no waiting for the window
    assert [r.request_id for r, _ in plan.scheduled] == ["idle"]
    s.complete_step(plan, 0.05)
    s.pop_ended()
    assert s.admission.utilization(1.0) == pytest.approx(0.05)
    t = 1.0
    for i in range(9):  # then busy back to back, nearly all of the last second
        s.submit(R(f"busy{i}", out=1), t)
        t = _run_micro_batch(s, t, 0.1)
    assert s.admission.utilization(t) > 0.85
    s.submit(R("late", out=1), t)
    plan = s.step(t)  # busy: the window applies again
    assert not plan and plan.stop_reason is StopReason.WINDOW
    assert plan.next_wakeup == pytest.approx(t + 0.010)
    assert s.step(t + 0.010).scheduled


def test_micro_without_the_threshold_always_waits_for_the_window():
    s = Scheduler(tenants(), batch=BatchConfig(mode="micro", window_s=0.010))
    s.submit(R("r1"), 0.0)
    assert s.step(0.0).stop_reason is StopReason.WINDOW


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5])
def test_a_utilization_threshold_outside_0_1_is_refused(bad):
    with pytest.raises(ConfigError, match="batch_above_utilization must be in"):
        BatchConfig(mode="micro", batch_above_utilization=bad)


# -- cancellation ----------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["waiting", "running", "throttled"])
def test_cancel_frees_everything_it_held(where):
    s = Scheduler([Tenant("a", token_rate=1, token_burst=200, over_limit="delay")])
    s.submit(R("first", prompt=64, out=64), 0.0)
    s.submit(R("second", prompt=64, out=64), 0.0)  # over the bucket: throttled
    if where == "running":
        s.complete_step(s.step(0.0), 0.1)
    target = {"waiting": "first", "running": "first", "throttled": "second"}[where]
    now = 0.1 if where == "running" else 0.0
    before = s.tenants["a"].tokens.refill(now)
    r = s.cancel(target, now)
    assert r.status is Status.CANCELLED and target not in s.requests
    assert s.kv.held(target) == 0 and r not in s.running and s.policy.remove(r) is False
    refunded = s.tenants["a"].tokens.refill(now) - before
    expected = {"waiting": 128, "running": 63, "throttled": 0}[where]
    assert refunded == pytest.approx(expected)
    assert s.tenants["a"].num_in_flight == (0 if where != "throttled" else 1)
    assert [x.request_id for x in s.pop_ended()] == [target]


def test_fail_ends_a_running_request_as_failed_and_frees_it():
    s = Scheduler(tenants(max_concurrent=4))
    s.submit(R("x", prompt=64, out=64), 0.0)
    s.complete_step(s.step(0.0), 0.1)
    assert s.kv.held("x") > 0
    r = s.fail("x", 0.2, "upstream error")
    assert r.status is Status.FAILED and r.reason == "upstream error" and s.kv.held("x") == 0
    assert not s.running and s.tenants["a"].num_in_flight == 0
    assert [x.request_id for x in s.pop_ended()] == ["x"]
