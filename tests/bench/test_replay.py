"""The replay part of `aps bench upstream`, run briefly against the simulated GPU: the trace is
clipped, cut and compressed as described, every request is answered straight and through APS,
and the report says so."""
from aps.bench import replay


def test_the_trace_is_clipped_to_the_context_cut_to_the_time_and_compressed_to_overload():
    p = replay.plan(capacity_tok_s=1000.0, context=512, seconds=30)
    assert (p.prompt_tokens <= 256).all() and (p.prompt_tokens + p.output_tokens <= 512).all()
    served_s = p.output_tokens.sum() / 1000.0  # the cut: about 30 s of the engine's work
    assert 30 <= served_s < 30 + p.output_tokens.max() / 1000.0
    asked = p.output_tokens.sum() / p.arrival_s[-1]  # output tokens/s the arrivals ask for
    assert abs(asked / 1000.0 - replay.OVERLOAD) < 1e-9
    assert p.light == {t for t in set(p.tenant) if p.tenant.count(t) <= 30}


def test_prompts_take_the_measured_tokens_per_unit_and_never_repeat_a_start():
    prompts = replay.Prompts(base=6.0, per_unit=0.5)
    assert prompts.make(7, 106) == "0 . 7:" + replay.Prompts.UNIT * 200
    assert prompts.make(123, 1) == "0 . 1 2 3:"  # never less than no filler at all
    assert prompts.next_run().make(7, 106).startswith("1 . 7:")


def test_a_short_replay_against_the_simulated_gpu(tmp_path):
    r = replay.run(seats=4, seconds=2.0, simulated=True, probe_s=4.0, rounds=2, workdir=tmp_path)
    assert r["requests"] >= 2 and r["context"] is None  # the simulated GPU reports none
    for path in ("direct", "aps"):
        x = r[path]
        assert x["errors"] == 0, x["first_error"]
        assert x["requests"] == r["requests"] and x["output_tokens"] > 0
        assert x["upstream_cpu_wait_s"] >= 0  # read from the kernel: never NaN on Linux
        assert len(x["runs_output_tokens_per_s"]) == 2  # pooled: twice the trace's tokens
    assert r["direct"]["output_tokens"] == r["aps"]["output_tokens"]  # as the trace says
    text = "\n".join(replay.report(r))
    assert "straight" in text and "through APS (aps)" in text
    assert r["reserved_seats"] == 0 and "4 seats, 0 reserved" in text
