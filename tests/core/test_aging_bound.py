"""The bound `aps` promises (docs/SCHEDULING.md), as properties over random workloads.

1. The rule: the bid group served next is the one whose oldest waiting request has the highest
   aged priority, `bid - alpha * oldest arrival`; inside it, the tenant with the least weighted
   service. So a group at bid c is served ahead of a request r at bid b < c only while it holds a
   request that arrived before `a_r + (c - b) / alpha`.
2. What that gives on one server (one request at a time, service independent of order, one
   tenant per bid): every request starts within FIFO's longest wait + (10 - bid) / alpha + one
   request's service time, and a top-bid request never waits longer than under FIFO.
"""
from hypothesis import given, settings
from hypothesis import strategies as st

from aps.core import BatchConfig, Request, Scheduler, Tenant, make_policy

ALPHAS = st.sampled_from([0.2, 1.0, 3.0])


@given(alpha=ALPHAS, ops=st.lists(st.one_of(
    st.tuples(st.just("push"), st.sampled_from(["a", "b", "c", "d"]), st.sampled_from([1, 4, 10]),
              st.floats(0, 5)),
    st.tuples(st.just("pop"), st.integers(1, 300))), max_size=80))
@settings(max_examples=200, deadline=None)
def test_the_group_served_has_the_highest_aged_priority_and_its_least_served_tenant(alpha, ops):
    policy = make_policy("aps", alpha=alpha)
    waiting: list[Request] = []
    now, n = 0.0, 0
    for op in ops:
        if op[0] == "push":
            _, tenant, bid, gap = op
            now += gap
            req = Request(f"r{n}", tenant, 10, 10, now, bid)
            n += 1
            policy.push(req)
            waiting.append(req)
            continue
        if not waiting:
            continue
        oldest = {}
        for r in waiting:
            oldest[r.bid] = min(oldest.get(r.bid, r.arrival), r.arrival)
        req = policy.pop()
        waiting.remove(req)
        c = req.bid
        for g, o in oldest.items():  # the rule, against every other group
            assert (c - alpha * oldest[c], c) >= (g - alpha * o, g)
        for r in waiting:  # the bound it gives every request passed over
            if r.bid < c:
                assert oldest[c] <= r.arrival + (c - r.bid) / alpha + 1e-9
        group = [r for r in waiting + [req] if r.bid == c]
        least = min(policy.counters.get(r.tenant_id, 0.0) for r in group)
        assert policy.counters.get(req.tenant_id, 0.0) == least
        assert req.arrival == min(r.arrival for r in group if r.tenant_id == req.tenant_id)
        policy.note_progress(req, 0, op[1])


DT = 1.0  # one iteration: constant, so a request's service time does not depend on the order
BIDS = {"t1": 1, "t5": 5, "t10": 10}


def waits(policy: str, arrivals: list[tuple[float, str, int]], alpha: float) -> dict[str, float]:
    """Run the arrivals on one server (one request at a time); each request's wait to start."""
    params = {"alpha": alpha} if policy == "aps" else {}
    s = Scheduler([Tenant(t, bid=b) for t, b in BIDS.items()], policy=policy,
                  batch=BatchConfig(max_num_seqs=1, max_num_batched_tokens=4096,
                                    kv_capacity_tokens=1 << 16), **params)
    pending = sorted(arrivals)
    reqs, now, i = {}, 0.0, 0
    while True:
        while i < len(pending) and pending[i][0] <= now:
            at, tenant, out = pending[i]
            reqs[f"r{i}"] = req = Request(f"r{i}", tenant, 8, out, at)
            s.submit(req, now)
            i += 1
        plan = s.step(now)
        if not plan.scheduled:
            if i == len(pending):
                break
            now = pending[i][0]
            continue
        now += DT
        s.complete_step(plan, now)
        s.pop_ended()
    assert all(r.first_scheduled is not None for r in reqs.values())
    return {rid: r.first_scheduled - r.arrival for rid, r in reqs.items()}


@given(alpha=ALPHAS, arrivals=st.lists(st.tuples(
    st.floats(0, 60).map(lambda x: round(x, 3)), st.sampled_from(sorted(BIDS)), st.integers(1, 6)),
    min_size=1, max_size=40))
@settings(max_examples=150, deadline=None)
def test_one_server_waits_stay_within_fifo_plus_the_aging_horizon(alpha, arrivals):
    fifo, aps = waits("fifo", arrivals, alpha), waits("aps", arrivals, alpha)
    tenant_of = {f"r{i}": a[1] for i, a in enumerate(sorted(arrivals))}
    service = max(out for _, _, out in arrivals) * DT
    slack = max(fifo.values()) + service + DT  # + DT: arrivals are seen at iteration bounds
    for rid, wait in aps.items():
        bid = BIDS[tenant_of[rid]]
        assert wait <= slack + (10 - bid) / alpha + 1e-9
        if bid == 10:
            assert wait <= fifo[rid] + 1e-9  # what precedes it arrived before it
