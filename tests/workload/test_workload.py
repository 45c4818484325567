"""Workload: the columnar request table and its transformations."""
import numpy as np
import pytest

from aps.core.tenant import Tenant
from aps.workload.workload import Workload, WorkloadError, merge


def make(times, tenants=("a", "b"), name="w"):
    n = len(times)
    ts = [Tenant(t, bid=i + 1) for i, t in enumerate(tenants)]
    return Workload.build(name, ts, times, np.arange(n) % len(ts), np.arange(1, n + 1),
                          np.full(n, 7))


def test_build_sorts_and_defaults_bids_to_tenant_bid():
    w = make([3.0, 1.0, 2.0, 0.5])
    assert w.arrival_s.tolist() == [0.5, 1.0, 2.0, 3.0]
    assert w.prompt_tokens.tolist() == [4, 2, 3, 1]  # rows move together
    assert w.bid.tolist() == [2, 2, 1, 1]
    assert (w.arrival_s.dtype, w.tenant.dtype, w.prompt_tokens.dtype, w.bid.dtype) == (
        np.float64, np.int32, np.int32, np.int8)
    assert len(w) == 4


@pytest.mark.parametrize("field, value, words", [
    ("prompt_tokens", [0, 1], "token counts"),
    ("output_tokens", [1, -2], "token counts"),
    ("bid", [1, 11], "bids"),
    ("tenant", [0, 5], "tenant index"),
    ("arrival_s", [2.0, 1.0], "sorted"),
    ("arrival_s", [0.0, np.nan], "finite"),
])
def test_invalid_columns_are_rejected(field, value, words):
    cols = dict(arrival_s=[0.0, 1.0], tenant=[0, 0], prompt_tokens=[1, 1],
                output_tokens=[1, 1], bid=[5, 5])
    cols[field] = value
    with pytest.raises(WorkloadError, match=words):
        Workload("w", [Tenant("a")], **cols)


def test_column_length_mismatch_is_rejected():
    with pytest.raises(WorkloadError, match="rows"):
        Workload("w", [Tenant("a")], [0.0, 1.0], [0], [1, 1], [1, 1], [5, 5])


def test_head_cut_time_slice_scale_shift():
    w = make(np.arange(10, dtype=float))
    assert len(w.head(3)) == 3 and len(w.head(50)) == 10 and len(w.head(-1)) == 0
    assert w.cut(4.5).arrival_s.tolist() == [0, 1, 2, 3, 4]
    part = w.time_slice(2.0, 5.0)
    assert part.arrival_s.tolist() == [0, 1, 2] and part.prompt_tokens.tolist() == [3, 4, 5]
    assert np.allclose(w.scale_rate(2.0).arrival_s, np.arange(10) / 2)
    assert w.shift(1.5).arrival_s[0] == 1.5
    with pytest.raises(WorkloadError):
        w.scale_rate(0)


def test_repeat_to_tiles_in_time_keeping_the_rate():
    w = make(np.arange(5, dtype=float) * 2)  # 0, 2, ..., 8: one request every 2 s
    big = w.repeat_to(23)
    assert len(big) == 23
    assert np.all(np.diff(big.arrival_s) == 2.0)  # the copies join seamlessly
    assert big.prompt_tokens.tolist()[:10] == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]
    assert len(w.repeat_to(3)) == 3


def test_repeat_of_a_single_instant_still_advances_time():
    w = make([0.0, 0.0])
    big = w.repeat_to(6)
    assert big.arrival_s.tolist() == [0, 0, 1, 1, 2, 2]


def test_merge_unions_tenants_by_id_and_interleaves_ties():
    a = make([0.0, 0.0, 0.0], tenants=("x",), name="a")
    b = make([0.0, 0.0, 1.0], tenants=("y", "x"), name="b")
    m = merge([a, b])
    assert [t.tenant_id for t in m.tenants] == ["x", "y"]
    # Same-instant requests alternate between inputs: a0 b0 a1 b1 a2, then b at t=1.
    assert m.prompt_tokens.tolist() == [1, 1, 2, 2, 3, 3]
    assert m.tenant_ids().tolist() == ["x", "y", "x", "x", "x", "y"]
    assert m.name == "a+b"
    with pytest.raises(WorkloadError):
        merge([])


def test_with_tenants_replaces_configuration_by_id():
    w = make([0.0, 1.0]).with_tenants([Tenant("b", weight=3.0)])
    assert [t.weight for t in w.tenants] == [1.0, 3.0]


def test_summary():
    w = make(np.arange(101, dtype=float))
    s = w.summary()
    assert s.requests == 101 and s.span_s == 100 and s.rate_rps == pytest.approx(1.0)
    assert s.iat_cv == pytest.approx(0.0)
    assert s.requests_per_tenant == {"a": 51, "b": 50}
    assert s.as_dict()["prompt_p50"] == 51
