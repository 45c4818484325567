"""Arrival processes and length distributions: determinism and statistics."""
import numpy as np
import pytest

from aps.workload import generators as gen
from aps.workload.workload import WorkloadError


def rng(seed=0):
    return np.random.default_rng(seed)


def cv(times):
    gaps = np.diff(times)
    return gaps.std() / gaps.mean()


@pytest.mark.parametrize("process", [
    gen.Poisson(5.0), gen.Gamma(5.0, 3.0), gen.OnOff(5.0, 2.0, 3.0),
    gen.Diurnal(5.0, 100.0, 0.8), gen.Burst(1.0)])
def test_same_seed_same_arrivals(process):
    a, b = process.sample(rng(7), 1000), process.sample(rng(7), 1000)
    assert np.array_equal(a, b) and len(a) == 1000
    assert np.all(np.diff(a) >= 0) and a[0] >= 0


def test_poisson_rate_and_cv():
    t = gen.Poisson(20.0).sample(rng(), 200_000)
    assert len(t) / t[-1] == pytest.approx(20.0, rel=0.02)
    assert cv(t) == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("want_cv", [0.5, 2.0, 4.0])
def test_gamma_cv_and_rate(want_cv):
    t = gen.Gamma(10.0, want_cv).sample(rng(1), 200_000)
    assert cv(t) == pytest.approx(want_cv, rel=0.05)
    assert len(t) / t[-1] == pytest.approx(10.0, rel=0.05)


def test_gamma_cv_zero_is_evenly_spaced():
    t = gen.Gamma(4.0, 0.0).sample(rng(), 9)
    assert np.allclose(t, np.arange(1, 10) / 4)


def test_duration_and_count_stop_rules():
    p = gen.Poisson(100.0)
    t = p.sample(rng(), duration_s=50.0)
    assert t[-1] < 50.0 and len(t) == pytest.approx(5000, rel=0.05)
    assert len(p.sample(rng(), n=10, duration_s=50.0)) == 10  # count reached first
    assert len(p.sample(rng(), n=10**6, duration_s=1.0)) < 200  # duration reached first
    with pytest.raises(WorkloadError, match="count or a duration"):
        p.sample(rng())


def test_onoff_is_silent_when_off_and_keeps_its_mean_rate():
    p = gen.OnOff(rate=50.0, on_s=2.0, off_s=8.0)
    t = p.sample(rng(), duration_s=10_000.0)
    assert np.all(t % 10.0 < 2.0)
    assert len(t) / 10_000.0 == pytest.approx(p.mean_rate(), rel=0.03)  # 10 req/s
    assert cv(t) > 1.5  # bursty


def test_diurnal_follows_its_rate_curve():
    p = gen.Diurnal(rate=10.0, period_s=1000.0, amplitude=0.9)
    t = p.sample(rng(), duration_s=20_000.0)
    assert len(t) / 20_000.0 == pytest.approx(10.0, rel=0.03)
    phase = (t % 1000.0) / 1000.0
    peak = np.sum((phase > 0.15) & (phase < 0.35))  # around sin = 1
    trough = np.sum((phase > 0.65) & (phase < 0.85))  # around sin = -1
    assert peak > 5 * trough
    assert len(p.sample(rng(), n=1234)) == 1234


def test_burst_puts_everything_at_one_instant():
    assert gen.Burst().sample(rng(), 5).tolist() == [0.0] * 5
    with pytest.raises(WorkloadError, match="count"):
        gen.Burst().sample(rng(), duration_s=10.0)


def test_lengths():
    r = rng(3)
    assert gen.Constant(7).sample(r, 3).tolist() == [7, 7, 7]
    u = gen.Uniform(50, 200).sample(r, 100_000)
    assert u.min() == 50 and u.max() == 200 and u.mean() == pytest.approx(125, rel=0.01)
    ln = gen.LogNormal(mean=500, cv=1.0, max=100_000).sample(r, 200_000)
    assert ln.mean() == pytest.approx(500, rel=0.03)
    assert ln.std() / ln.mean() == pytest.approx(1.0, rel=0.1)
    capped = gen.LogNormal(mean=500, cv=2.0, max=1000).sample(r, 10_000)
    assert capped.min() >= 1 and capped.max() <= 1000 and capped.dtype == np.int32
    e = gen.Empirical(np.array([3, 9])).sample(r, 1000)
    assert set(e.tolist()) == {3, 9}
    p, o = gen.EmpiricalPairs(np.array([1, 2]), np.array([10, 20])).sample(r, 100)
    assert np.array_equal(o, p * 10)  # pairs stay together


@pytest.mark.parametrize("make, field", [
    (lambda: gen.Poisson(0.0), "rate"),
    (lambda: gen.Gamma(1.0, -1.0), "cv"),
    (lambda: gen.OnOff(1.0, 0.0, 1.0), "on_s"),
    (lambda: gen.Diurnal(1.0, amplitude=1.5), "amplitude"),
    (lambda: gen.Uniform(10, 5), "high"),
    (lambda: gen.LogNormal(0.5), "mean"),
    (lambda: gen.Constant(0), "value"),
])
def test_bad_parameters_name_their_field(make, field):
    with pytest.raises(WorkloadError) as info:
        make()
    assert info.value.field == field and f"'{field}'" in str(info.value)
