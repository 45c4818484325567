"""The ledger's promise with a database that stops answering: clients wait for commits while it
answers and not while it does not, the backlog is written in order once it is back, and a full
buffer refuses or drops as configured. (A real PostgreSQL restart: tests/server.)"""
import asyncio

import pytest

from aps.core import Request, Status
from aps.store.ledger import Ledger


class Unreachable(Exception):
    pass


class Flaky:
    """A store whose database can be taken away; what it committed, in order."""

    where, unreachable, rejected = "flaky://db", (Unreachable,), (ValueError,)

    def __init__(self):
        self.up, self.committed, self.commits = True, [], 0

    async def write_usage(self, rows):
        await asyncio.sleep(0.001)  # a network round trip
        if not self.up:
            raise Unreachable("connection refused")
        if any(r[0].startswith("poison") for r in rows):
            raise ValueError("value out of range")
        self.commits += 1
        self.committed += [r[0] for r in rows]


def ended(rid: str) -> Request:
    req = Request(rid, "t", 10, 5, 0.0)
    req.status, req.first_scheduled, req.finished, req.num_output_tokens = (
        Status.FINISHED, 0.0, 1.0, 5)
    return req


def test_clients_wait_for_the_commit_and_a_backlog_is_written_in_order_when_it_is_back():
    async def main():
        store = Flaky()
        ledger = Ledger(store, lambda t: t)
        for i in range(10):  # ten requests end in one turn: one commit
            ledger.record(ended(f"a{i}"), "", "m")
        await ledger.settled()
        assert store.committed == [f"a{i}" for i in range(10)] and store.commits == 1
        store.up = False
        ledger.record(ended("b0"), "", "m")
        await ledger.settled()  # the write failed: the row is kept, the client answered
        assert ledger.down and [r[0] for r in ledger.pending] == ["b0"]
        ledger.record(ended("b1"), "", "m")
        assert ledger._next is None  # while down, a client does not wait for anything
        await ledger.retry()
        assert ledger.down and len(ledger.pending) == 2
        store.up = True
        ledger.record(ended("b2"), "", "m")
        await ledger.retry()
        assert not ledger.down and ledger.pending == []
        assert store.committed[10:] == ["b0", "b1", "b2"]  # in order, each once
    asyncio.run(main())


@pytest.mark.parametrize("when_full", ["reject", "serve"])
def test_a_full_buffer_refuses_or_drops_as_configured(when_full):
    async def main():
        store = Flaky()
        store.up = False
        ledger = Ledger(store, lambda t: t, buffer_rows=3, when_full=when_full)
        for i in range(5):
            ledger.record(ended(f"r{i}"), "", "m")
            await ledger.settled()
        assert ledger.full
        if when_full == "serve":  # served, and the rows past the buffer are lost
            assert len(ledger.pending) == 3 and ledger.dropped == 2
        else:  # the gateway refuses new requests; those already running are all kept
            assert len(ledger.pending) == 5 and ledger.dropped == 0
        store.up = True
        await ledger.retry()
        assert not ledger.full and len(store.committed) == 5 - ledger.dropped
    asyncio.run(main())


def test_a_row_the_database_refuses_is_dropped_alone():
    async def main():
        store = Flaky()
        ledger = Ledger(store, lambda t: t)
        for rid in ("ok1", "poison", "ok2"):
            ledger.record(ended(rid), "", "m")
        await ledger.settled()
        assert store.committed == ["ok1", "ok2"] and ledger.dropped == 1 and not ledger.down
    asyncio.run(main())


def test_a_write_slower_than_the_timeout_counts_as_down():
    class Hung(Flaky):
        async def write_usage(self, rows):
            await asyncio.sleep(10)

    async def main():
        ledger = Ledger(Hung(), lambda t: t, timeout_s=0.05)
        ledger.record(ended("r"), "", "m")
        await asyncio.wait_for(ledger.settled(), 1)
        assert ledger.down and len(ledger.pending) == 1
    asyncio.run(main())


def test_rows_not_yet_written_count_toward_their_tenants_spend():
    """A budget that follows a shared ledger adds this replica's unwritten rows to it."""
    async def main():
        store = Flaky()
        store.up = False
        ledger = Ledger(store, lambda t: t)
        for rid, tenant in (("a", "t"), ("b", "t"), ("c", "other")):
            req = ended(rid)
            req.tenant_id, req.price = tenant, (0.01, 0.1)  # 10 prompt + 5 output: $0.60
            ledger.record(req, "", "m")
            await ledger.settled()
        assert ledger.unwritten_usd("t", None) == pytest.approx(1.2)
        assert ledger.unwritten_usd("t", 1.0) == pytest.approx(1.2)  # they ended at t = 1
        assert ledger.unwritten_usd("t", 1.5) == 0.0
        store.up = True
        await ledger.retry()
        assert ledger.unwritten_usd("t", None) == 0.0
    asyncio.run(main())


def test_a_small_buffer_drops_nothing_while_the_database_takes_writes():
    """The buffer's limit is for an outage: rows waiting for the next commit are not a backlog."""
    async def main():
        store = Flaky()
        ledger = Ledger(store, lambda t: t, buffer_rows=1, when_full="serve")
        for i in range(3):  # three requests end in one turn
            ledger.record(ended(f"r{i}"), "", "m")
        assert not ledger.full
        await ledger.settled()
        assert store.committed == ["r0", "r1", "r2"] and ledger.dropped == 0
    asyncio.run(main())


def test_a_write_that_fails_unexpectedly_keeps_the_rows_and_strands_no_client():
    class Broken(Flaky):
        rejected = (KeyError,)

        async def write_usage(self, rows):
            if len(rows) > 1:
                raise KeyError("refused: try them one by one")
            raise OSError("and then something nobody expected")

    async def main():
        ledger = Ledger(Broken(), lambda t: t)
        ledger.record(ended("r1"), "", "m")
        ledger.record(ended("r2"), "", "m")
        await asyncio.wait_for(ledger.settled(), 1)
        assert ledger.down and [r[0] for r in ledger.pending] == ["r1", "r2"]
    asyncio.run(main())
