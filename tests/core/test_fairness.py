"""Fair share under continuous batching, and fast-forwarding equals stepping."""
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aps.core import BatchConfig, Request, Scheduler, Tenant
from aps.core.fastforward import advance_decode, decode_horizon
from aps.core.policies import POLICIES
from aps.core.stats import max_service_gap

MAX_PROMPT, MAX_OUT, SEATS = 64, 32, 4


def backlogged_gap(policy: str) -> float:
    """Two equal-weight tenants, both backlogged throughout; tenant a submits everything first."""
    rng = random.Random(7)
    s = Scheduler([Tenant("a"), Tenant("b")], policy=policy,
                  batch=BatchConfig(max_num_seqs=SEATS, max_num_batched_tokens=128))
    for tenant in "ab":
        for i in range(150):
            s.submit(Request(f"{tenant}{i}", tenant, rng.randint(1, MAX_PROMPT),
                             rng.randint(1, MAX_OUT), 0.0), 0.0)
    served = {"a": 0.0, "b": 0.0}
    samples, t = [], 0.0  # both stay backlogged until the loop ends
    while s.tenants["a"].num_in_flight and s.tenants["b"].num_in_flight:
        plan = s.step(t)
        for req, n in plan.scheduled:  # weighted service w_in=1, w_out=2, as VTC counts it
            served[req.tenant_id] += n if req.num_pending_tokens > 1 else 2
        t += 0.01
        s.complete_step(plan, t)
        samples.append((dict(served), {"a", "b"}))
    return max_service_gap(samples)


def test_vtc_keeps_backlogged_tenants_service_gap_bounded_where_fifo_does_not():
    # VTC's bound (Sheng et al., Theorem 4.x): the gap stays within a constant set by the
    # largest request cost and the batch: here 2 * seats * (w_in * prompt + w_out * output).
    bound = 2 * SEATS * (MAX_PROMPT + 2 * MAX_OUT)
    assert backlogged_gap("vtc") <= bound
    assert backlogged_gap("class+vtc") <= bound
    assert backlogged_gap("fifo") > 4 * bound  # the test can tell fair from unfair


def simulate(policy, cfg, reqs, fast: bool):
    """Step a scheduler; dt depends on the batch. With `fast`, jump decode-only stretches."""
    s = Scheduler([Tenant("a", weight=1.0), Tenant("b", weight=1.0, bid=2)], policy=policy, batch=cfg)
    pending = sorted(reqs, key=lambda r: r.arrival)
    now, i, out = 0.0, 0, {}
    while i < len(pending) or s.requests:
        while i < len(pending) and pending[i].arrival <= now:
            s.submit(pending[i], now)
            i += 1
        plan = s.step(now)
        if not plan:
            now = pending[i].arrival if i < len(pending) else plan.next_wakeup
            continue
        dt = 0.005 + 0.0001 * len(plan.scheduled) + 1e-6 * plan.num_batched_tokens
        k = decode_horizon(s, plan) if fast else 0
        if k > 1 and i < len(pending):  # do not run past the next arrival
            k = max(1, min(k, int((pending[i].arrival - now) / dt)))
        if k > 1:
            now += k * dt
            advance_decode(s, k, now)
        else:
            now += dt
            s.complete_step(plan, now)
    for r in reqs:
        out[r.request_id] = (r.first_scheduled, r.first_token, r.finished, r.num_output_tokens)
    return out


@settings(max_examples=40, deadline=None)
@given(policy=st.sampled_from(POLICIES), mode=st.sampled_from(["continuous", "micro"]),
       seats=st.integers(1, 6), kv_blocks=st.integers(8, 40), seed=st.integers(0, 10_000))
def test_fast_forward_gives_the_same_times_as_stepping(policy, mode, seats, kv_blocks, seed):
    rng = random.Random(seed)
    cfg = BatchConfig(mode=mode, max_num_seqs=seats, max_batch=seats, max_num_batched_tokens=64,
                      kv_capacity_tokens=kv_blocks * 16, window_s=0.01)

    def make():
        r = random.Random(seed)
        return [Request(f"r{i}", r.choice("ab"), r.randint(1, 60), r.randint(1, 60),
                        round(r.uniform(0, 2), 3)) for i in range(25)]
    slow, fast = simulate(policy, cfg, make(), False), simulate(policy, cfg, make(), True)
    assert slow.keys() == fast.keys()
    for rid in slow:
        for a, b in zip(slow[rid], fast[rid]):
            assert a == pytest.approx(b, rel=1e-9, abs=1e-12), rid
    del rng


def test_service_gap_only_counts_windows_where_both_tenants_wait():
    samples = [({"a": 0, "b": 0}, {"a", "b"}), ({"a": 50, "b": 10}, {"a", "b"}),
               ({"a": 500, "b": 10}, {"a"}),  # b idle: a may take everything
               ({"a": 520, "b": 40}, {"a", "b"}), ({"a": 530, "b": 80}, {"a", "b"})]
    assert max_service_gap(samples) == 40  # first run: 0 -> 40; second: 480 -> 450, range 30
    assert max_service_gap([({"a": 0}, {"a"}), ({"a": 9}, {"a"})]) == 0
