"""The runtime drives the core Scheduler in wall time with the simulated engine (sped up)."""
import asyncio

import pytest

from aps.core import BatchConfig, InvalidRequest, Request, Scheduler, Status, Tenant
from aps.engines import EngineError, SimulatedEngine
from aps.perf import make_perf_model
from aps.runtime import Draining, Runtime, Stream

PERF = make_perf_model("llama-3-8b", "a100-80gb")


def make(speed=50.0, policy="fifo", seats=8, tenants=None, engine=None, on_end=None):
    sched = Scheduler(tenants or [Tenant("a", bid=10), Tenant("b", bid=1)], policy=policy,
                      batch=BatchConfig(max_num_seqs=seats, kv_capacity_tokens=200_000))
    return Runtime(sched, engine or SimulatedEngine(PERF, speed=speed), on_end=on_end)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


def test_a_request_streams_exactly_its_tokens_then_ends():
    async def main():
        rt = make()
        await rt.start()
        verdict, stream = rt.submit(Request("r1", "a", 100, 12, 0.0))
        pieces = [p async for p in stream]
        await rt.drain(1.0)
        return verdict, pieces, stream.request
    verdict, pieces, req = run(main())
    assert verdict.ok and len(pieces) == 12 and all(pieces)
    assert req.status is Status.FINISHED and req.num_output_tokens == 12
    assert 0 < req.ttft <= req.e2e


def test_priority_is_decided_by_the_scheduler_under_load():
    async def main():
        rt = make(policy="priority", seats=1)
        await rt.start()
        _, first = rt.submit(Request("busy", "b", 50, 20, 0.0))
        await asyncio.sleep(0)  # the first request takes the only seat
        streams = {}
        for i in range(3):
            streams[f"low{i}"] = rt.submit(Request(f"low{i}", "b", 50, 5, 0.0))[1]
        streams["high"] = rt.submit(Request("high", "a", 50, 5, 0.0))[1]
        await asyncio.gather(*(s.done.wait() for s in streams.values()), first.done.wait())
        await rt.drain(1.0)
        return {k: s.request.first_token for k, s in streams.items()}
    first_token = run(main())
    assert first_token["high"] < min(first_token[f"low{i}"] for i in range(3))


def test_cancel_mid_stream_frees_everything():
    async def main():
        rt = make(speed=5.0)
        await rt.start()
        _, stream = rt.submit(Request("r1", "a", 200, 400, 0.0))
        got = []
        async for piece in stream:
            got.append(piece)
            if len(got) == 3:
                rt.cancel("r1")
        await rt.drain(1.0)
        return got, stream.request, rt
    got, req, rt = run(main())
    assert req.status is Status.CANCELLED and 3 <= len(got) < 400
    assert rt.sched.kv.num_used_blocks == 0 and not rt.sched.requests and rt.num_streams == 0


def test_bad_input_raises_and_rejections_return_no_stream():
    async def main():
        rt = make(tenants=[Tenant("a", token_rate=10, token_burst=100)])
        await rt.start()
        with pytest.raises(InvalidRequest):
            rt.submit(Request("bad", "a", 0, 5, 0.0))
        ok, s1 = rt.submit(Request("r1", "a", 40, 40, 0.0))
        no, s2 = rt.submit(Request("r2", "a", 40, 40, 0.0))
        await s1.done.wait()
        await rt.drain(1.0)
        return ok, s1, no, s2
    ok, s1, no, s2 = run(main())
    assert ok.ok and s1 is not None and not no.ok and s2 is None and no.retry_after > 0


def test_drain_refuses_new_work_finishes_in_flight_and_cancels_past_the_timeout():
    async def main():
        rt = make(speed=20.0)
        await rt.start()
        _, short = rt.submit(Request("short", "a", 20, 5, 0.0))
        _, long = rt.submit(Request("long", "a", 20, 100_000, 0.0))
        cancelled = await rt.drain(0.3)
        with pytest.raises(Draining):
            rt.submit(Request("late", "a", 20, 5, 0.0))
        return cancelled, short.request, long.request
    cancelled, short, long = run(main())
    assert cancelled == 1 and short.status is Status.FINISHED and long.status is Status.CANCELLED


class BrokenEngine:
    model_name = "broken"

    async def execute(self, plan):
        raise EngineError("device lost")


def test_an_engine_error_fails_the_requests_and_ends_their_streams():
    async def main():
        rt = make(engine=BrokenEngine())
        await rt.start()
        _, stream = rt.submit(Request("r1", "a", 20, 5, 0.0))
        pieces = [p async for p in stream]
        await rt.drain(1.0)
        return pieces, stream, rt
    pieces, stream, rt = run(main())
    req = stream.request
    assert pieces == [] and req.status is Status.FAILED and req.reason == "device lost"
    assert isinstance(stream.error, EngineError)  # for the server to say why
    assert rt.sched.kv.num_used_blocks == 0


def test_every_end_is_reported_once_before_its_stream_closes_refusals_included():
    async def main():
        reported, seen_at_close = [], {}
        rt = make(tenants=[Tenant("a", token_rate=10, token_burst=100), Tenant("b")],
                  on_end=lambda req: reported.append((req.request_id, req.status)))
        await rt.start()
        _, s1 = rt.submit(Request("r1", "a", 40, 40, 0.0))
        _, refused = rt.submit(Request("r2", "a", 40, 40, 0.0))  # over the bucket
        assert refused is None and reported == [("r2", Status.REJECTED)]  # at once
        _, s3 = rt.submit(Request("r3", "b", 20, 300, 0.0))
        async for _ in s1:
            pass
        seen_at_close["r1"] = list(reported)
        rt.cancel("r3")
        seen_at_close["r3"] = list(reported)
        await s3.done.wait()
        await rt.drain(1.0)
        return reported, seen_at_close
    reported, seen = run(main())
    assert reported == [("r2", Status.REJECTED), ("r1", Status.FINISHED), ("r3", Status.CANCELLED)]
    assert ("r1", Status.FINISHED) in seen["r1"] and ("r3", Status.CANCELLED) in seen["r3"]


def test_a_failing_end_report_still_closes_the_stream():
    def on_end(req):
        raise RuntimeError("metrics are broken")

    async def main():
        rt = make(on_end=on_end)
        await rt.start()
        _, stream = rt.submit(Request("r1", "a", 20, 5, 0.0))
        pieces = [p async for p in stream]  # ends: the loop survives a failed report
        _, again = rt.submit(Request("r2", "a", 20, 5, 0.0))
        await again.done.wait()
        await rt.drain(1.0)
        return pieces, stream.request, again.request
    pieces, first, second = run(main())
    assert len(pieces) == 5 and first.status is second.status is Status.FINISHED


class CrashingEngine:
    """Not an EngineError: a bug in the loop's own path."""
    model_name = "crashing"

    async def execute(self, plan):
        raise RuntimeError("bug")


def test_a_crashed_loop_fails_every_request_ends_every_stream_and_refuses_new_ones():
    async def main():
        rt = make(engine=CrashingEngine(), seats=1)
        await rt.start()
        _, running = rt.submit(Request("r1", "a", 20, 5, 0.0))
        _, waiting = rt.submit(Request("r2", "a", 20, 5, 0.0))
        await asyncio.wait_for(asyncio.gather(running.done.wait(), waiting.done.wait()), 5)
        with pytest.raises(Draining, match="internal error"):
            rt.submit(Request("r3", "a", 20, 5, 0.0))
        with pytest.raises(RuntimeError, match="bug"):
            await rt._task
        return running.request, waiting.request, rt
    first, second, rt = run(main())
    assert first.status is second.status is Status.FAILED
    assert not rt.sched.requests and rt.num_streams == 0 and rt.sched.kv.num_used_blocks == 0


def test_a_stream_gives_what_came_together_in_one_batch_and_ends_after_the_last():
    async def main():
        stream = Stream(Request("r1", "a", 10, 5, 0.0))
        batches = stream.batches()
        stream.push("a")
        stream.push("b")
        first = await batches.__anext__()  # both were there: one batch
        reader = asyncio.ensure_future(batches.__anext__())
        await asyncio.sleep(0)
        assert not reader.done()  # nothing new: it waits
        stream.push("c")
        second = await reader
        stream.push("d")
        stream.close()  # pushed before the end: still read
        rest = [b async for b in batches]
        return first, second, rest
    assert run(main()) == (["a", "b"], ["c"], [["d"]])
