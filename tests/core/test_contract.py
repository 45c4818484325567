"""The tenant contract in the core: entitled bids, queue deadlines, spend budgets and their
calendar periods."""
import datetime as dt
import math
import random

import pytest

from aps.core import (BatchConfig, ConfigError, InvalidRequest, NeverFits, Request, Scheduler,
                      Status, Tenant)
from aps.core.periods import period_bounds

UTC = dt.timezone.utc


def R(rid, tenant="a", prompt=100, out=400, bid=None, **kw):
    return Request(rid, tenant, prompt, out, 0.0, bid, **kw)


# -- entitled priority -------------------------------------------------------------------------

def test_a_bid_above_the_tenants_entitlement_is_lowered_to_it():
    s = Scheduler([Tenant("low", bid=1), Tenant("mid", bid=3, max_bid=7)])
    asked = {"l10": ("low", 10), "m10": ("mid", 10), "m5": ("mid", 5), "m0": ("mid", None)}
    for rid, (tenant, bid) in asked.items():
        s.submit(R(rid, tenant, bid=bid), 0.0)
    assert {rid: s.requests[rid].bid for rid in asked} == {"l10": 1, "m10": 7, "m5": 5, "m0": 3}


@pytest.mark.parametrize("fields, message", [
    ({"bid": 5, "max_bid": 4}, "max_bid must be at least the tenant's bid"),
    ({"max_bid": 11}, "max_bid must be a whole number from 1 to 10"),
    ({"max_queue_s": 0}, "max_queue_s must be a number"),
    ({"budget_usd": -1}, "budget_usd must be a number"),
    ({"budget_usd": math.inf}, "budget_usd must be a number"),
    ({"budget_period": "year"}, "budget_period must be one of day, week, month, total"),
    ({"over_budget": "delay"}, "over_budget must be reject or demote"),
])
def test_bad_contract_fields_are_refused_by_name(fields, message):
    with pytest.raises(ConfigError, match=message):
        Tenant("t", **fields)


# -- queue deadlines ---------------------------------------------------------------------------

def one_seat(*tenants):
    return Scheduler(tenants, "fifo", BatchConfig(max_num_seqs=1, kv_capacity_tokens=100_000))


def test_a_request_still_waiting_at_its_deadline_expires_and_frees_everything():
    s = one_seat(Tenant("a"), Tenant("b", max_queue_s=0.5, token_rate=1000, token_burst=5000))
    s.submit(R("long", "a", out=1000), 0.0)
    s.complete_step(s.step(0.0), 0.1)  # `long` holds the only seat
    s.submit(R("late", "b"), 0.1)
    s.step(0.2)
    assert not s.pop_ended()  # not yet
    s.step(0.6)  # past 0.1 + 0.5
    [late] = s.pop_ended()
    assert (late.request_id, late.status, late.reason) == ("late", Status.EXPIRED, "queue_timeout")
    assert late.first_scheduled is None and "late" not in s.requests and s.num_waiting == 0
    state = s.tenants["b"]
    assert state.num_in_flight == 0 and state.tokens.refill(0.6) == pytest.approx(5000)


def test_the_shorter_of_the_tenants_and_the_clients_deadline_counts():
    s = one_seat(Tenant("a"), Tenant("b", max_queue_s=2.0))
    s.submit(R("long", "a", out=1000), 0.0)
    s.complete_step(s.step(0.0), 0.1)
    s.submit(R("short", "b", max_queue_s=0.3), 0.1)
    s.submit(R("longer", "b", max_queue_s=60), 0.1)  # cannot extend the tenant's 2 s
    assert (s.requests["short"].deadline, s.requests["longer"].deadline) == (pytest.approx(0.4),
                                                                              pytest.approx(2.1))
    with pytest.raises(InvalidRequest, match="max_queue_s must be > 0"):
        s.submit(R("bad", "b", max_queue_s=0), 0.1)


def test_an_idle_scheduler_wakes_for_a_deadline_and_a_started_request_never_expires():
    s = Scheduler([Tenant("a", max_queue_s=0.5, max_concurrent=1, over_limit="delay")], "fifo")
    s.submit(R("r1", out=3), 0.0)
    s.submit(R("r2", out=3), 0.0)  # held back: THROTTLED by max_concurrent
    plan = s.step(0.0)
    assert s.requests["r2"].status is Status.THROTTLED
    t = 0.0
    while "r1" in s.requests:  # r1 started in time: it runs to its end whatever the clock
        s.complete_step(plan, t := t + 0.4)
        plan = s.step(t)
    ended = {r.request_id: r.status for r in s.pop_ended()}
    assert ended == {"r1": Status.FINISHED, "r2": Status.EXPIRED}  # r2 waited past 0.5


# -- budgets -----------------------------------------------------------------------------------

PRICE = (1e-3, 1e-3)  # a dollar per thousand tokens either way


def test_admission_reserves_the_largest_cost_and_the_end_settles_the_real_one():
    s = Scheduler([Tenant("a", budget_usd=1.0, budget_period="day")], "fifo")
    assert s.submit(R("r1", prompt=100, out=400, price=PRICE), 0.0).ok  # reserves $0.50
    assert s.submit(R("r2", prompt=100, out=400, price=PRICE), 0.0).ok  # $1.00 reserved
    refused = s.submit(R("r3", prompt=100, out=400, price=PRICE), 10.0)
    assert (refused.ok, refused.reason) == (False, "budget")
    assert refused.retry_after == pytest.approx(86_400 - 10.0)  # the day's end (t is unix time)
    s.step(20.0)
    s.finish("r1", 21.0)  # stopped early: 100 prompt + 0 output tokens, $0.10
    budget = s.tenants["a"].budget
    assert budget.spent_usd == pytest.approx(0.1) and budget.reserved_usd == pytest.approx(0.5)
    assert s.submit(R("r4", prompt=100, out=300, price=PRICE), 22.0).ok  # $0.40 fits in $0.40


def test_a_tenant_over_its_rate_is_not_demoted_onto_a_spent_budget():
    """A bucket's refusal may demote (`over_limit: demote`), but the budget comes first: once
    it is spent, a request is refused as over budget instead of running in the spare band."""
    s = Scheduler([Tenant("a", budget_usd=0.5, budget_period="day", token_rate=1.0,
                          token_burst=500, over_limit="demote")], "fifo")
    assert s.submit(R("r1", price=PRICE), 0.0).ok  # $0.50 reserved, the bucket emptied
    over = s.submit(R("r2", price=PRICE), 0.0)
    assert (over.ok, over.reason) == (False, "budget")
    assert not s.requests.get("r2") or s.requests["r2"].status is not Status.WAITING


def test_a_new_period_starts_from_nothing_spent_and_a_total_budget_never_resets():
    s = Scheduler([Tenant("d", budget_usd=0.5, budget_period="day"),
                   Tenant("t", budget_usd=0.5, budget_period="total")], "fifo")
    for tenant in "dt":
        assert s.submit(R(f"{tenant}1", tenant, price=PRICE), 0.0).ok
        s.cancel(f"{tenant}1", 1.0)  # never started: charged nothing
        assert s.tenants[tenant].budget.spent_usd == 0
    s.tenants["d"].budget.spent_usd = s.tenants["t"].budget.spent_usd = 0.5  # spent it all
    assert s.submit(R("d2", "d", price=PRICE), 100.0).reason == "budget"
    over = s.submit(R("t2", "t", price=PRICE), 100.0)
    assert over.reason == "budget" and over.retry_after == math.inf  # waiting cannot help
    assert s.submit(R("d3", "d", price=PRICE), 86_400.0).ok  # the next day


def test_a_request_that_could_never_fit_the_budget_is_refused_as_such():
    s = Scheduler([Tenant("a", budget_usd=0.1)], "fifo")
    with pytest.raises(NeverFits, match="budget of \\$0.1 a month"):
        s.submit(R("big", prompt=100, out=400, price=PRICE), 0.0)


def test_over_budget_demote_serves_only_spare_capacity_and_still_bills():
    s = one_seat(Tenant("a", budget_usd=0.3, over_budget="demote"), Tenant("b"))
    assert s.submit(R("a1", "a", prompt=100, out=200, price=PRICE), 0.0).ok  # $0.30 reserved
    over = s.submit(R("a2", "a", prompt=100, out=200, price=PRICE), 0.0)
    assert not over.ok and s.requests["a2"].demoted
    s.submit(R("b1", "b"), 0.0)
    order, t = [], 0.0
    while s.requests:
        plan = s.step(t)
        order += [r.request_id for r, _ in plan.scheduled if r.request_id not in order]
        s.complete_step(plan, t := t + 0.01)
    assert order == ["a1", "b1", "a2"]  # the demoted one waited for spare capacity
    assert s.tenants["a"].budget.spent_usd == pytest.approx(0.6)  # both billed


def test_a_new_limit_keeps_what_was_spent():
    s = Scheduler([Tenant("a", budget_usd=1.0)], "fifo")
    s.tenants["a"].budget.spent_usd = 0.8
    s.set_tenant(Tenant("a", budget_usd=0.5))
    assert s.tenants["a"].budget.remaining(0.0) == 0


# -- calendar periods --------------------------------------------------------------------------

def test_periods_are_utc_calendar_days_weeks_from_monday_and_months():
    rng = random.Random(7)
    for _ in range(3000):
        t = rng.uniform(-2e9, 5e9)
        d = dt.datetime.fromtimestamp(t, UTC)
        month = dt.datetime(d.year, d.month, 1, tzinfo=UTC)
        after = dt.datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=UTC)
        assert period_bounds("month", t) == (month.timestamp(), after.timestamp())
        monday = dt.datetime(d.year, d.month, d.day, tzinfo=UTC) - dt.timedelta(d.weekday())
        assert period_bounds("week", t) == (monday.timestamp(), monday.timestamp() + 7 * 86400)
        day = dt.datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()
        assert period_bounds("day", t) == (day, day + 86400)
    assert period_bounds("total", 0.0) == (-math.inf, math.inf)
