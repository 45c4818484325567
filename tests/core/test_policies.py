import pytest

from aps.core import ConfigError, Request, make_policy
from aps.core.policies import POLICIES, add_service


def req(rid, tenant="a", bid=5, arrival=0.0, prompt=10, out=10):
    return Request(rid, tenant, prompt, out, arrival, bid)


def drain(policy):
    out = []
    while len(policy):
        out.append(policy.pop().request_id)
    return out


def test_fifo_orders_by_arrival_and_ties_by_push_order():
    p = make_policy("fifo")
    for r in [req("c", arrival=2.0), req("a", arrival=1.0), req("b", arrival=1.0)]:
        p.push(r)
    assert drain(p) == ["a", "b", "c"]


def test_priority_orders_by_bid_then_arrival():
    p = make_policy("priority")
    for r in [req("low", bid=1, arrival=0.0), req("hi2", bid=10, arrival=2.0),
              req("hi1", bid=10, arrival=1.0), req("mid", bid=5, arrival=0.5)]:
        p.push(r)
    assert drain(p) == ["hi1", "hi2", "mid", "low"]


@pytest.mark.parametrize("name", ["aging", "aps"])
@pytest.mark.parametrize("alpha", [0.1, 0.5, 2.0])
def test_a_bid1_request_overtakes_fresh_bid10_ones_after_9_over_alpha(name, alpha):
    bound = 9 / alpha
    before = make_policy(name, alpha=alpha)
    before.push(req("old-low", bid=1, arrival=0.0))
    before.push(req("new-high", bid=10, arrival=bound * 0.99))
    assert drain(before) == ["new-high", "old-low"]
    after = make_policy(name, alpha=alpha)
    after.push(req("old-low", bid=1, arrival=0.0))
    after.push(req("new-high", bid=10, arrival=bound * 1.01))
    assert drain(after) == ["old-low", "new-high"]


def test_aps_shares_fairly_within_a_bid_where_aging_serves_arrival_order():
    """A tenant that floods at a bid cannot starve a light one at the same bid under `aps`:
    inside a bid the least-served tenant goes first; pure aging serves the flood first."""
    for name, expected in (("aging", ["f0", "f1", "f2", "light"]),
                           ("aps", ["f0", "light", "f1", "f2"])):
        p = make_policy(name, alpha=0.1)
        for i in range(3):
            p.push(req(f"f{i}", tenant="flood", bid=5, arrival=i * 0.01))
        p.push(req("light", tenant="light", bid=5, arrival=0.1))
        order = []
        while len(p):
            r = p.pop()
            p.note_progress(r, 100, 100)  # each request served as it leaves
            order.append(r.request_id)
        assert order == expected, name


def test_aps_groups_are_ordered_by_their_oldest_request_and_rank_follows_pops():
    p = make_policy("aps", alpha=1.0)
    p.push(req("low-old", bid=1, arrival=0.0))
    p.push(req("low-new", bid=1, arrival=50.0))
    p.push(req("high", bid=10, arrival=8.0))  # 10 - 8 = 2 > 1 - 0 = 1: the high group first
    assert p.peek().request_id == "high"
    assert [r.request_id for r in sorted([p.peek(), *p.heads()], key=p.rank)][0] == "high"
    assert drain(p) == ["high", "low-old", "low-new"]


def _victim(policy, running):
    return max(running, key=policy.preempt_key).request_id


def test_fifo_and_priority_preempt_the_newest_of_the_lowest_priority_as_vllm_does():
    a, b, c = req("a", bid=5, arrival=0.0), req("b", bid=5, arrival=1.0), req("c", bid=1, arrival=0.5)
    for r in (a, b, c):
        r.num_computed_tokens = 100
    assert _victim(make_policy("fifo"), [a, b, c]) == "b"
    assert _victim(make_policy("priority"), [a, b, c]) == "c"


@pytest.mark.parametrize("name", ["vtc", "class+vtc", "aps"])
def test_fair_share_preempts_the_cheapest_request_of_the_tenant_furthest_past_its_share(name):
    p = make_policy(name)
    heavy_old, heavy_new = req("heavy-old", "heavy", arrival=0.0), req("heavy-new", "heavy", arrival=2.0)
    light = req("light", "light", arrival=3.0)
    for r in (heavy_old, heavy_new, light):
        p.push(r)
    for _ in range(3):
        p.note_progress(p.pop(), 0, 0)
    p.note_progress(heavy_old, 500, 0)  # heavy is past its share
    heavy_old.num_computed_tokens, heavy_new.num_computed_tokens = 20, 900
    light.num_computed_tokens = 1
    # not the light tenant's request (least computed), nor heavy's newest: heavy's cheapest
    assert _victim(p, [heavy_old, heavy_new, light]) == "heavy-old"


def test_aps_preempts_from_the_lowest_aged_group_first():
    p = make_policy("aps", alpha=1.0)
    hi, lo = req("hi", "x", bid=10, arrival=0.0), req("lo", "y", bid=1, arrival=0.0)
    for r in (hi, lo):
        p.push(r)
    p.pop(), p.pop()
    assert _victim(p, [hi, lo]) == "lo"


def test_aging_effective_priority_matches_key_order():
    p = make_policy("aging", alpha=0.2)
    reqs = [req(f"r{i}", bid=1 + i % 10, arrival=i * 3.7 % 11) for i in range(40)]
    for r in reqs:
        p.push(r)
    now = 20.0
    order = drain(p)
    eff = {r.request_id: p.effective_priority(r, now) for r in reqs}
    values = [eff[rid] for rid in order]
    assert values == sorted(values, reverse=True)


def test_aging_tie_is_broken_by_push_order():
    p = make_policy("aging", alpha=1.0)
    p.push(req("first", bid=1, arrival=0.0))
    p.push(req("second", bid=10, arrival=9.0))  # same key: 1 - 0 == 10 - 9
    assert drain(p) == ["first", "second"]


def test_aging_weight_bonus_favours_heavier_tenant():
    weights = {"gold": 3.0, "free": 1.0}
    p = make_policy("aging", weights, alpha=0.1, weight_bonus=1.0)
    p.push(req("f", tenant="free", bid=6, arrival=0.0))
    p.push(req("g", tenant="gold", bid=5, arrival=0.0))
    assert drain(p) == ["g", "f"]


@pytest.mark.parametrize("name", POLICIES)
def test_remove_and_peek(name):
    p = make_policy(name)
    rs = [req(f"r{i}", tenant="ab"[i % 2], bid=1 + i, arrival=float(i)) for i in range(6)]
    for r in rs:
        p.push(r)
    first = p.peek()
    assert p.remove(rs[3]) and not p.remove(rs[3])
    assert len(p) == 5
    got = drain(p)
    assert got[0] == first.request_id and "r3" not in got and sorted(got) == ["r0", "r1", "r2", "r4", "r5"]
    with pytest.raises(IndexError):
        p.pop()
    assert p.peek() is None


def test_vtc_serves_tenant_with_least_service():
    p = make_policy("vtc")
    for i in range(3):
        p.push(req(f"a{i}", tenant="a", arrival=float(i)))
        p.push(req(f"b{i}", tenant="b", arrival=float(i) + 0.5))
    first = p.pop()
    assert first.request_id == "a0"  # equal counters: earliest backlogged tenant
    p.note_progress(first, 100, 10)  # a received 100 + 2*10 = 120
    assert [p.pop().request_id for _ in range(3)] == ["b0", "b1", "b2"]
    assert p.counters == {"a": 120.0, "b": 0.0}


def test_vtc_counts_tokens_by_weight_and_token_weights():
    weights = {"a": 2.0, "b": 1.0}
    p = make_policy("vtc", weights, w_in=1.0, w_out=3.0)
    a, b = req("a0", tenant="a"), req("b0", tenant="b")
    p.push(a), p.push(b)
    p.note_progress(a, 10, 2)
    p.note_progress(b, 10, 2)
    assert p.counters["a"] == pytest.approx(8.0) and p.counters["b"] == pytest.approx(16.0)


def test_vtc_lifts_returning_tenant_to_smallest_backlogged_counter():
    p = make_policy("vtc")
    for i in range(4):
        p.push(req(f"a{i}", tenant="a", arrival=float(i)))
    for _ in range(3):
        p.note_progress(p.pop(), 500, 0)  # a has 1500 of service, one request left
    p.push(req("b0", tenant="b", arrival=10.0))  # b was idle: no banked credit
    assert p.counters["b"] == 1500.0
    # b gets a turn, but not a monopoly: the next pops alternate by counter
    p.push(req("b1", tenant="b", arrival=11.0))
    served = p.pop()
    p.note_progress(served, 500, 0)
    assert p.pop().tenant_id != served.tenant_id


def test_vtc_counter_of_idle_tenant_is_lifted_to_last_served_when_nobody_waits():
    p = make_policy("vtc")
    a = req("a0", tenant="a")
    p.push(a)
    p.pop()
    p.note_progress(a, 1000, 0)
    p.push(req("a1", tenant="a", arrival=1.0))  # a keeps its own larger counter
    p.pop()
    p.push(req("b0", tenant="b", arrival=2.0))  # nobody backlogged: lifted to last served
    assert p.counters["b"] == p.counters["a"] == 1000.0


def test_class_vtc_strict_classes_then_fair_share():
    p = make_policy("class+vtc")
    for i in range(2):
        p.push(req(f"lo-a{i}", tenant="a", bid=1, arrival=float(i)))
    p.push(req("hi-b", tenant="b", bid=9, arrival=5.0))
    p.push(req("hi-a", tenant="a", bid=9, arrival=6.0))
    first = p.pop()
    assert first.request_id == "hi-b"
    p.note_progress(first, 100, 0)
    assert [p.pop().request_id for _ in range(3)] == ["hi-a", "lo-a0", "lo-a1"]


def test_unknown_policy_and_bad_params_are_config_errors():
    with pytest.raises(ConfigError, match="unknown policy 'lottery'; known: aps, fifo"):
        make_policy("lottery")
    with pytest.raises(ConfigError, match="alpha"):
        make_policy("aps", alpha=-1)
    with pytest.raises(ConfigError, match="bad parameters"):
        make_policy("fifo", alpha=1)


def test_vtc_add_service_moves_the_counter_but_not_what_this_replica_charged():
    vtc = make_policy("vtc", {"a": 1.0, "b": 2.0})
    for i, t in enumerate("ab"):
        vtc.push(Request(f"{t}1", t, 10, 10, float(i)))
    vtc.note_progress(Request("x", "b", 1, 1, 0.0), 10, 0)  # b's counter: 10 / weight 2 = 5
    assert vtc.charged == {"b": 5.0}
    assert vtc.peek().tenant_id == "a"
    add_service(vtc, "a", 7.0)  # another replica served a
    assert vtc.counters["a"] == 7.0 and "a" not in vtc.charged
    assert vtc.peek().tenant_id == "b"


def test_add_service_is_a_no_op_without_counters():
    fifo = make_policy("fifo")
    add_service(fifo, "a", 5.0)
    assert not hasattr(fifo, "counters")
