"""The usage ledger as the gateway writes it: one row per ended request, committed before the
client hears that its request ended.

Group commit: `record` (the runtime's end-of-request hook) queues the row and one writer
commits every queued row in one transaction; rows that end while a commit is in flight go in
the next one. A handler awaits `settled()` before it tells its client the request ended (the
response body, or the stream's last event), so an acknowledged request's row is committed
(SQLite WAL, or PostgreSQL), while rows still cost one commit per batch, not per request.

When the database does not take a write (unreachable, slower than `timeout_s`, locked, a full
disk), the rows stay in memory, `pending` (the metric `aps:ledger_pending_rows`), and the
ledger is `down`: clients are answered without waiting, and `retry` (every `store.reload_s`)
writes the backlog once the database is back, in order, each row once (the PostgreSQL store
ignores a row it already has). Rows past `buffer_rows` are refused or kept as `when_full`
says: `reject`, the gateway answers new requests 503 until the backlog is written; `serve`,
it keeps serving and drops the rows that do not fit (`dropped`, logged). A row the database
can never take (a value out of its range) is dropped alone, logged, not the batch around it.
"""
from __future__ import annotations

import asyncio
import logging
import time

from aps.core import Request, Status
from aps.store.base import USAGE_COLUMNS, SqlStore

log = logging.getLogger("aps.ledger")
RECORDED = (Status.FINISHED, Status.FAILED, Status.CANCELLED, Status.EXPIRED)
_TENANT, _FINISHED, _COST = (USAGE_COLUMNS.index(c) for c in ("tenant_id", "finished", "cost"))


class Ledger:
    """The cost of a row is the request's own price (set when it was submitted) times what it
    used: a request that never started is billed no prompt."""

    def __init__(self, store: SqlStore, monotonic_to_unix, bill_cached: bool = False,
                 buffer_rows: int = 100_000, when_full: str = "reject", timeout_s: float = 2.0):
        self.store = store
        self._unix = monotonic_to_unix  # runtime time -> unix seconds
        self.bill_cached = bill_cached  # a response from the cache costs its price too
        self.buffer_rows, self.when_full, self.timeout_s = buffer_rows, when_full, timeout_s
        self.pending: list[tuple] = []  # recorded and not yet committed, oldest first
        self.dropped = 0  # rows given up on (a full buffer under `serve`, or unwritable)
        self.down = False  # the last write failed: the backlog waits for `retry`
        self._next: asyncio.Future | None = None  # settles the rows not yet being written
        self._writing: asyncio.Future | None = None  # settles the batch being written
        self._writer: asyncio.Task | None = None

    @property
    def full(self) -> bool:
        """The database does not take writes and the backlog has reached its limit (new work
        is refused under `reject`). While it takes them, rows only wait for the next commit."""
        return self.down and len(self.pending) >= self.buffer_rows

    def unwritten_usd(self, tenant_id: str, since: float | None) -> float:
        """Dollars billed to a tenant in rows not yet written (ended since `since`, unix)."""
        return sum(r[_COST] for r in self.pending
                   if r[_TENANT] == tenant_id and (since is None or r[_FINISHED] >= since))

    def row(self, req: Request, key_prefix: str, model: str) -> tuple:
        unix = self._unix
        started = req.first_scheduled is not None
        billed_prompt = req.prompt_tokens if started else 0
        free = req.reason == "cached" and not self.bill_cached
        return (req.request_id, req.tenant_id, key_prefix, model, req.bid, unix(req.arrival),
                None if req.first_token is None else unix(req.first_token),
                unix(req.finished if req.finished is not None else req.arrival),
                req.prompt_tokens, req.num_output_tokens, req.status.value, req.reason,
                0.0 if free else req.cost_usd(billed_prompt, req.num_output_tokens))

    def record(self, req: Request, key_prefix: str, model: str) -> None:
        if req.status not in RECORDED:
            return
        if self.full and self.when_full == "serve":
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("usage ledger buffer full (%d rows unwritten): %d rows dropped so far "
                          "(store.ledger_full: serve)", len(self.pending), self.dropped)
            return
        self.pending.append(self.row(req, key_prefix, model))
        if not self.down:
            self._schedule()

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        if self._next is None:
            self._next = loop.create_future()
        if self._writer is None:
            self._writer = loop.create_task(self._write_all(), name="aps-ledger")

    async def _write_all(self) -> None:
        """The one writer: commit everything pending, batch after batch, until nothing new is
        queued or a write fails."""
        try:
            while self._next is not None:
                self._writing, self._next = self._next, None
                batch = list(self.pending)  # a backlog left by an outage goes first, in order
                if await self._write(batch, attempts=2):
                    del self.pending[:len(batch)]  # rows recorded meanwhile stay, after them
                else:
                    self.down = True
                self._writing.set_result(None)  # clients may hear now: committed, or kept
                self._writing = None
                if self.down and self._next is not None:
                    self._next.set_result(None)  # their rows are kept for `retry` too
                    self._next = None
        except BaseException:
            self.down = True  # whatever failed, the rows are kept and `retry` writes them
            raise
        finally:
            self._writer = None
            for waiting in (self._writing, self._next):  # no client waits for ever
                if waiting is not None and not waiting.done():
                    waiting.set_result(None)
            self._writing = self._next = None

    async def retry(self) -> None:
        """Write the backlog a failed write left (the gateway calls this periodically). Clients
        do not wait for it: while the ledger is down they are answered at once."""
        if not self.pending or self._writer is not None:
            return
        if not self.down:  # rows recorded while the last retry was writing
            self._schedule()
            return
        batch = list(self.pending)
        self._writer = asyncio.current_task()  # the one writer, meanwhile
        try:
            written = await self._write(batch, attempts=1)
        finally:
            self._writer = None
        if written:
            del self.pending[:len(batch)]
            self.down = False
            log.warning("usage ledger: %s takes writes again; %d buffered rows written",
                        self.store.where, len(batch))
            if self.pending:
                self._schedule()

    async def _write(self, rows: list[tuple], attempts: int) -> bool:
        """Commit `rows`; False if the database did not take them (they stay pending). A
        pooled connection that a database restart broke fails at once: one more try is not
        an outage. A write slower than `timeout_s` is not tried again."""
        failure: BaseException | None = None
        for _ in range(attempts):
            try:
                await asyncio.wait_for(self.store.write_usage(rows), self.timeout_s)
                return True
            except self.store.rejected:
                return await self._write_each(rows)
            except asyncio.TimeoutError as exc:
                failure = exc
                break
            except self.store.unreachable as exc:
                failure = exc
            except Exception as exc:  # keep the rows whatever went wrong, and say what it was
                log.exception("usage ledger write failed")
                failure = exc
                break
        if not self.down:
            log.error("usage ledger: %s does not take writes (%s): %d rows kept in memory and "
                      "retried", self.store.where, str(failure) or type(failure).__name__,
                      len(self.pending))
        return False

    async def _write_each(self, rows: list[tuple]) -> bool:
        """One row at a time, to find the rows the database refuses; those are dropped. False
        if the database stops answering meanwhile (the rest stay pending)."""
        for i, row in enumerate(rows):
            try:
                await asyncio.wait_for(self.store.write_usage([row]), self.timeout_s)
            except self.store.rejected as exc:
                self.dropped += 1
                log.error("usage ledger: the row of request %s is dropped, the database refuses "
                          "it: %s", row[0], exc)
            except Exception:  # the database stops answering: the rest stay pending
                del self.pending[:i]
                return False
        return True

    async def idle(self) -> None:
        """Return once no write is in flight, or after a write's timeout (at shutdown, before
        the last `flush`, so that it does not write a batch in flight a second time)."""
        deadline = time.monotonic() + 2 * self.timeout_s + 1
        while self._writer is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def settled(self) -> None:
        """Return once every row recorded so far has been committed (or its write failed and
        it was kept to retry)."""
        waiting = self._next or self._writing
        if waiting is not None:
            await asyncio.shield(waiting)

    def flush(self) -> bool:
        """Write what is pending now, synchronously (at shutdown, when no writer will run
        again). A batch still in flight may be written twice: both stores keep one row."""
        if not self.pending:
            return True
        try:
            self.store.record(self.pending)
        except Exception as exc:  # the caller says how many rows are lost
            log.error("usage ledger write failed: %s", exc)
            return False
        self.pending.clear()
        return True


def unix_clock(runtime_now) -> callable:
    """Map runtime time (monotonic seconds since start) to unix seconds."""
    offset = time.time() - runtime_now()
    return lambda t: offset + t
