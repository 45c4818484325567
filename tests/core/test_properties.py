"""Properties over random workloads and configurations (hypothesis)."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aps.core import (BatchConfig, NeverFits, OverLimit, Request, Scheduler, Status, Tenant)
from aps.core.policies import POLICIES

TENANTS = ["t0", "t1", "t2"]


@st.composite
def configs(draw):
    mode = draw(st.sampled_from(["continuous", "micro"]))
    block = draw(st.sampled_from([1, 4, 16]))
    return BatchConfig(
        mode=mode,
        max_num_seqs=draw(st.integers(1, 8)),
        max_num_batched_tokens=draw(st.integers(8, 256)),
        chunked_prefill=draw(st.booleans()),
        priority_preemption=draw(st.booleans()),
        window_s=draw(st.sampled_from([0.0, 0.005, 0.02])),
        max_batch=draw(st.integers(1, 8)),
        batch_above_utilization=draw(st.one_of(st.none(), st.sampled_from([0.5, 0.8, 1.0]))),
        kv_capacity_tokens=draw(st.integers(4, 64)) * 16,
        block_size=block,
    )


@st.composite
def tenant_sets(draw):
    out = []
    for name in TENANTS:
        limited = draw(st.booleans())
        bid = draw(st.integers(1, 10))
        out.append(Tenant(
            name, weight=draw(st.sampled_from([0.5, 1.0, 2.0])), bid=bid,
            token_rate=400.0 if limited else None, token_burst=2000.0 if limited else None,
            max_concurrent=draw(st.one_of(st.none(), st.integers(1, 4))),
            over_limit=draw(st.sampled_from(list(OverLimit))),
            max_bid=draw(st.one_of(st.none(), st.integers(bid, 10))),
            max_queue_s=draw(st.one_of(st.none(), st.sampled_from([0.02, 0.1, 0.5]))),
            budget_usd=draw(st.one_of(st.none(), st.sampled_from([0.0005, 0.002, 0.01]))),
            budget_period=draw(st.sampled_from(["day", "total"])),
            over_budget=draw(st.sampled_from([OverLimit.REJECT, OverLimit.DEMOTE]))))
    return out


PRICE = (1e-6, 3e-6)  # dollars per prompt and output token, for the budgets


requests = st.lists(st.tuples(
    st.sampled_from(TENANTS), st.integers(1, 200), st.integers(1, 60),
    st.floats(0, 0.5), st.one_of(st.none(), st.integers(1, 10)),
    st.booleans()), min_size=1, max_size=40)


def check_invariants(s: Scheduler, plan, seen_in_plan):
    b, kv = s.batch, s.kv
    assert 0 <= kv.num_free_blocks <= kv.num_blocks
    assert sum(kv.held(r.request_id) for r in s.running) == kv.num_used_blocks
    ids = [r.request_id for r, _ in plan.scheduled]
    assert len(ids) == len(set(ids)), "a request scheduled twice in one step"
    if b.mode == "continuous":
        assert len(s.running) <= b.max_num_seqs
        assert plan.num_batched_tokens <= b.max_num_batched_tokens
    else:
        assert len(s.running) <= b.max_batch
    for r, n in plan.scheduled:
        assert r.status is Status.RUNNING and 1 <= n <= r.num_pending_tokens
        assert kv.held(r.request_id) * kv.block_size >= r.num_computed_tokens + n
    for state in s.tenants.values():
        if state.tokens is not None:
            assert state.tokens.level <= state.tokens.burst + 1e-9


def collect(s: Scheduler, submitted: list, ended: dict) -> None:
    """Take what ended from the scheduler: each request once, reported as soon as it ended (a
    submitted request is always either live or reported)."""
    for r in s.pop_ended():
        assert r.request_id not in ended, "a request ended twice"
        assert r.status.is_terminal
        ended[r.request_id] = r
    live = set(s.requests)
    assert {r.request_id for r in submitted} == live | (set(ended) & {r.request_id for r in submitted})
    assert not live & set(ended)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), ts=tenant_sets(), policy=st.sampled_from(POLICIES), reqs=requests,
       cancel_at=st.integers(0, 30))
def test_no_request_lost_or_served_twice(cfg, ts, policy, reqs, cancel_at):
    s = Scheduler(ts, policy=policy, batch=cfg)
    submitted, to_cancel = [], []
    pending = sorted(enumerate(reqs), key=lambda x: x[1][3])
    now, i, step_no, ended = 0.0, 0, 0, {}
    for _ in range(20_000):
        while i < len(pending) and pending[i][1][3] <= now:
            k, (tenant, prompt, out, at, bid, cancel) = pending[i]
            r = Request(f"r{k}", tenant, prompt, out, at, bid, price=PRICE)
            try:
                s.submit(r, now)
            except NeverFits:
                assert r.request_id not in s.requests
            else:
                submitted.append(r)
                assert r.bid <= s.tenants[tenant].tenant.entitled_bid  # clamped, never above
                if cancel:
                    to_cancel.append(r.request_id)
            i += 1
        if step_no == cancel_at:
            for rid in to_cancel:
                if rid in s.requests:
                    held = s.cancel(rid, now)
                    assert s.kv.held(rid) == 0 and held not in s.running
        collect(s, submitted, ended)
        plan = s.step(now)
        collect(s, submitted, ended)  # a step ends requests too: expired, or refused on release
        step_no += 1
        check_invariants(s, plan, ended)
        if plan:
            now += 0.01
            s.complete_step(plan, now)
            collect(s, submitted, ended)
        elif i < len(pending) or s.requests:
            options = [pending[i][1][3]] if i < len(pending) else []
            if plan.next_wakeup is not None:
                options.append(plan.next_wakeup)
            assert options, "idle with live requests and nothing that could wake it"
            now = max(now, min(options))
        else:
            break
    else:
        raise AssertionError("did not drain")
    assert set(ended) == {r.request_id for r in submitted}, "a request was lost"
    assert not s.requests and not s.running and s.kv.num_used_blocks == 0 and len(s.policy) == 0
    for r in ended.values():
        assert r.status.is_terminal
        if r.status is Status.FINISHED:
            assert r.num_output_tokens == r.max_tokens, "finished without exactly its tokens"
            assert r.first_token is not None and r.arrival <= r.first_token <= r.finished
        if r.status is Status.EXPIRED:  # only a request still waiting to start expires, on time
            assert r.first_scheduled is None and r.finished >= r.deadline
    for state in s.tenants.values():
        assert state.num_in_flight == 0 and not state.throttled
        if state.budget is not None:  # every reservation settled
            assert abs(state.budget.reserved_usd) < 1e-12


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ts=tenant_sets(), policy=st.sampled_from(POLICIES), reqs=requests,
       seats=st.integers(1, 6), reserved=st.integers(0, 3), capacity=st.integers(60, 400),
       actions=st.lists(st.integers(0, 99), min_size=200, max_size=200))
def test_upstream_mode_loses_nothing_and_keeps_its_limits(ts, policy, reqs, seats, reserved,
                                                          capacity, actions):
    """Upstream mode driven as the Dispatcher drives it, servers answering at random: tokens
    stream in, requests finish early or at max_tokens, fail, are retried before their first
    token, or are cancelled."""
    reserved = min(reserved, seats - 1)
    cfg = BatchConfig(mode="upstream", max_num_seqs=seats, reserved_seats=reserved,
                      kv_capacity_tokens=capacity, block_size=1)
    s = Scheduler(ts, policy=policy, batch=cfg)
    submitted, ended, now, i = [], {}, 0.0, 0
    pending = sorted(enumerate(reqs), key=lambda x: x[1][3])
    for step_no in range(5_000):
        while i < len(pending) and pending[i][1][3] <= now:
            k, (tenant, prompt, out, at, bid, _) = pending[i]
            r = Request(f"r{k}", tenant, prompt, out, at, bid)
            try:
                s.submit(r, now)
                submitted.append(r)
            except NeverFits:
                assert r.request_id not in s.requests
            i += 1
        before = {r.tenant_id for r in s.running}
        collect(s, submitted, ended)
        plan = s.step(now)
        collect(s, submitted, ended)
        assert len(s.running) <= seats and s.kv.num_used_blocks <= capacity
        assert s.kv.num_used_blocks == sum(r.prompt_tokens + r.max_tokens for r in s.running)
        over = len(s.running) - max(1, seats - reserved)
        if over > 0:  # the reserved seats went only to tenants with nothing running before
            admitted = [r for r, _ in plan.scheduled]
            assert all(r.tenant_id not in before for r in admitted[len(admitted) - over:])
        for r in list(s.running):  # what the servers did meanwhile
            a = actions[(step_no + hash(r.request_id)) % len(actions)]
            if a < 5:
                s.cancel(r.request_id, now)
            elif a < 10:
                s.fail(r.request_id, now, "server error")
            elif a < 15 and r.num_output_tokens == 0:
                s.admission.requeue(r.request_id, now)
            elif a < 25 and r.num_output_tokens:
                s.finish(r.request_id, now, "stop")  # EOS before max_tokens
            else:
                out = min(r.max_tokens, r.num_output_tokens + 1 + a % 7)
                s.admission.progress(r.request_id, r.prompt_tokens, out, now)
                if out == r.max_tokens:
                    s.finish(r.request_id, now, "length")
        collect(s, submitted, ended)
        if not s.requests and i == len(pending):
            break
        now += 0.05
    else:
        raise AssertionError("did not drain")
    assert set(ended) == {r.request_id for r in submitted}, "a request was lost"
    assert not s.running and s.kv.num_used_blocks == 0 and len(s.policy) == 0
    for state in s.tenants.values():
        assert state.num_in_flight == 0 and not state.throttled
        if state.tokens is not None:
            assert state.tokens.level <= state.tokens.burst + 1e-9
