"""`aps bench sim`: every run reports its speed, load and memory (small: structure, not timing)."""
from aps.bench import sim


def test_every_run_reports_speed_load_and_memory():
    rows = sim.run("fifo", scale=0.0001)  # the floor: 1,000 requests a run
    assert [(r["mode"], r["load"]) for r in rows] == [(m, load) for m, *_, load in sim.RUNS]
    for r in rows:
        assert r["requests"] == 1000 and r["requests_per_s"] > 0 and r["peak_rss_mb"] > 0
        assert r["wall_s_per_1m"] > 0 and r["iterations"] > 0 and r["mean_batch"] > 0
    overloaded, served = rows[0], rows[2]
    assert overloaded["mean_batch"] > served["mean_batch"]  # the same GPU at 70% of the rate
